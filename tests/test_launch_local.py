"""`mtlbench train --launcher local`: cells in parallel worker processes (real spawned subprocesses that train
cell after cell, the job really pickled). Its records equal the in-process run's exactly (metrics, history,
weights), a DMTRL cell waits for the STL cell whose weights it factorises, `mtlbench status` names a failed
job with the last line of its log, and a rerun skips finished cells and resubmits only the failed one."""
from __future__ import annotations

import functools
import json
import pickle
import re
import time

import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.launch.cells import dependencies, waves
from mtlbench.launch.local import Slots
from mtlbench.launch.status import job_state
from mtlbench.launch.worker import Worker
from mtlbench.results import read_record
from mtlbench.training.run import run_spec
from mtlbench.training.run_plan import plan_cells
from tests.conftest import TINY_SPEC
from tests.fake_methods import FailsWhenAsked, register

pytest.importorskip("submitit", reason="the launchers need submitit: pip install -e '.[test]'")
runner = CliRunner()

GRID = TINY_SPEC.replace("iterations: 300", "iterations: 40").replace("eval_every: 50", "eval_every: 20") \
    .replace("  - name: hard_share\n    label: Hard-Share\n",
             "  - name: hard_share\n    label: Hard-Share\n"
             "  - name: dmtrl_laf\n    label: DMTRL-LAF\n"
             "    params: {{stl_checkpoint: '{out}/tiny/STL/seed{{seed}}.pt'}}\n")


def grid_spec(write_spec, out, name="spec.yaml"):
    return write_spec(GRID.replace("{out}", str(out)).replace("{{", "{").replace("}}", "}"), name)


def test_the_dmtrl_cells_wait_for_the_stl_cells_they_factorise(write_spec, tmp_path):
    resolved = load_spec(grid_spec(write_spec, tmp_path / "runs"))
    cells = plan_cells(resolved, [0, 1], tmp_path / "runs")
    rows = [(c.row, c.seed) for c in cells]
    deps = dependencies(cells)
    assert {rows[i]: [rows[j] for j in js] for i, js in deps.items()} == {
        ("DMTRL-LAF", 0): [("STL", 0)], ("DMTRL-LAF", 1): [("STL", 1)]}
    assert waves(len(cells), deps) == [0, 0, 0, 0, 1, 1]


def test_local_jobs_write_the_records_of_the_in_process_run(write_spec, tmp_path):
    inproc = run_spec(load_spec(grid_spec(write_spec, tmp_path / "inproc", "a.yaml")))
    spec = grid_spec(write_spec, tmp_path / "jobs", "b.yaml")
    result = runner.invoke(app, ["train", str(spec), "--launcher", "local", "--workers", "2", "--cpus-per-job", "1",
                                 "--format", "csv"])
    assert result.exit_code == 0, result.output
    started = [line for line in result.output.splitlines() if ": started as local job" in line]
    assert len(started) == 3 and started[-1].startswith("DMTRL-LAF seed 0")  # after STL seed 0 was done
    stl_done = result.output.index("STL seed 0: done")
    assert result.output.index("DMTRL-LAF seed 0: started") > stl_done
    for want in inproc:  # (DMTRL's identity differs: its stl_checkpoint option names another folder)
        got = read_record(tmp_path / "jobs" / "tiny" / want.row / "seed0.json")
        assert (got.metrics, got.history) == (want.metrics, want.history)
        assert got.summary.get("dmtrl", {}).get("layers") == want.summary.get("dmtrl", {}).get("layers")
        assert got.env["torch_threads"] == 1
        a = torch.load(tmp_path / "inproc" / "tiny" / want.row / "seed0.pt")
        b = torch.load(tmp_path / "jobs" / "tiny" / want.row / "seed0.pt")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    dmtrl = read_record(tmp_path / "jobs" / "tiny" / "DMTRL-LAF" / "seed0.json")
    assert dmtrl.summary["dmtrl"]["init"] == "stl"
    jobs = json.loads((tmp_path / "jobs" / "tiny" / "jobs.json").read_text())["cells"]
    assert set(jobs) == {"STL/seed0", "Hard-Share/seed0", "DMTRL-LAF/seed0"}
    assert jobs["DMTRL-LAF/seed0"]["depends_on"] == ["STL/seed0"]
    # two workers for three cells: the third cell ran in a worker that had trained one already (no fresh start)
    workers = {jobs[k]["job_id"].split("-")[0] for k in jobs}
    assert len(workers) == 2 and sorted(j["job_id"].split("-")[1] for j in jobs.values()) == ["1", "1", "2"]
    status = runner.invoke(app, ["status", str(spec)])
    assert status.exit_code == 0 and status.output.count(" done ") == 3, status.output
    again = runner.invoke(app, ["train", str(spec), "--launcher", "local", "--format", "csv"])
    assert again.exit_code == 0 and again.output.count("finished, skipped") == 3 and "started" not in again.output


def test_a_failed_job_is_reported_and_the_rerun_resubmits_only_it(write_spec, tmp_path, monkeypatch):
    register(monkeypatch, "fails_when_asked", FailsWhenAsked)
    text = TINY_SPEC.replace("{out}", str(tmp_path / "runs")).replace("iterations: 300", "iterations: 20") \
        .replace("eval_every: 50", "eval_every: 10") \
        .replace("name: stl\n    label: STL", "name: fails_when_asked\n    label: Flaky")
    spec = write_spec(text)
    monkeypatch.setenv("MTLBENCH_TEST_FAIL", "1")
    first = runner.invoke(app, ["train", str(spec), "--launcher", "local", "--workers", "2"])
    assert first.exit_code == 1, first.output
    assert "Flaky seed 0: failed after" in first.output
    assert "RuntimeError: asked to fail by MTLBENCH_TEST_FAIL" in first.output
    assert "error: 1 run(s) did not finish: failed" in first.output
    status = runner.invoke(app, ["status", str(spec)])
    assert re.search(r"Flaky\s+│ 0\s+│ failed\s+│ \d+-1\s+│ RuntimeError: asked to fail by MTLBENCH_TEST_FAIL",
                     status.output), status.output
    assert re.search(r"Hard-Share\s+│ 0\s+│ done", status.output)
    monkeypatch.delenv("MTLBENCH_TEST_FAIL")
    second = runner.invoke(app, ["train", str(spec), "--launcher", "local", "--workers", "2"])
    assert second.exit_code == 0, second.output
    assert "Hard-Share seed 0: finished, skipped" in second.output
    assert "Flaky seed 0: started as local job" in second.output
    assert "Flaky seed 0: done after" in second.output
    assert read_record(tmp_path / "runs" / "tiny" / "Flaky" / "seed0.json").status == "ok"


def test_a_cell_past_its_time_limit_is_stopped_and_its_slot_gets_a_fresh_worker(tmp_path):
    slots = Slots(1, 0)
    try:
        first = slots.workers[slots.idle.pop(0)]
        job_id = first.submit(functools.partial(time.sleep, 60), tmp_path)
        assert slots.ended(0, limit_s=60) is None  # still running, within its limit
        time.sleep(0.3)
        assert slots.ended(0, limit_s=0.2) == (job_id, pytest.approx(0.3, abs=5), True)
        assert not first.alive() and slots.workers[0] is not first and slots.workers[0].alive()
        assert slots.idle == [0]
    finally:
        slots.stop()


def test_a_worker_writes_each_cells_log_and_result_as_a_job_does(tmp_path):
    worker = Worker()
    try:
        ok = worker.submit(functools.partial(print, "hello from the cell"), tmp_path)
        while not worker.done():
            time.sleep(0.05)
        bad = worker.submit(functools.partial(int, "not a number"), tmp_path)
        while not worker.done():
            time.sleep(0.05)
        assert ok.split("-")[0] == bad.split("-")[0] == str(worker.process.pid)  # one process, two cells
        assert (tmp_path / f"{ok}_0_log.out").read_text() == "hello from the cell\n"
        assert pickle.loads((tmp_path / f"{ok}_0_result.pkl").read_bytes()) == ("success", None)
        outcome, text = pickle.loads((tmp_path / f"{bad}_0_result.pkl").read_bytes())
        assert outcome == "error" and text.strip().splitlines()[-1].startswith("ValueError: invalid literal")
        assert job_state({"folder": str(tmp_path), "job_id": bad, "launcher": "local"})[0] == "failed"
    finally:
        worker.stop()
    assert not worker.alive()
