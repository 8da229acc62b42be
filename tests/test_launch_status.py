"""How `mtlbench status` classifies a cell: from its record (done, diverged, a record of other settings), else
from its job's files and process (running, failed with the last line of its log, ended without a record), else
missing. Jobs are stood in for by their files and by process ids (this test's own: alive; a reaped child's:
gone)."""
from __future__ import annotations

import pickle
import subprocess

from mtlbench.config.loader import load_spec
from mtlbench.launch.jobs_file import job_entry
from mtlbench.launch.status import cell_status, job_files
from mtlbench.training.run import run_spec
from mtlbench.training.run_plan import plan_cells
from tests.conftest import TINY_SPEC
from tests.fake_methods import PoisonedWeight, register

SHORT = TINY_SPEC.replace("iterations: 300", "iterations: 20").replace("eval_every: 50", "eval_every: 10")


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_cell_states(write_spec, tmp_path, monkeypatch):
    register(monkeypatch, "poisoned_weight", PoisonedWeight)
    spec = SHORT.replace("{out}", str(tmp_path / "runs")).replace("name: stl\n    label: STL",
                                                                   "name: poisoned_weight\n    label: Poisoned")
    resolved = load_spec(write_spec(spec))
    cells = plan_cells(resolved, [0, 1], tmp_path / "runs")  # Poisoned 0, Poisoned 1, Hard-Share 0, Hard-Share 1
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    assert cell_status(cells[2], None).state == "missing"
    run_spec(resolved, seeds=[0])
    diverged = cell_status(cells[0], None)
    assert diverged.state == "diverged" and "diverged at iteration 8" in diverged.detail
    assert cell_status(cells[2], job_entry(cells[2], "local", "1", jobs, [])).state == "done"

    alive = job_entry(cells[3], "local", str(__import__("os").getpid()), jobs, [])
    assert (cell_status(cells[3], alive).state, cell_status(cells[3], alive).job) == ("running", alive["job_id"])
    gone = job_entry(cells[3], "local", str(dead_pid()), jobs, [])
    job_files(gone)["err"].write_text("loading data\nMemoryError: cannot allocate 23 GB\n\n")
    assert (cell_status(cells[3], gone).state, cell_status(cells[3], gone).detail) == \
        ("failed", "MemoryError: cannot allocate 23 GB")
    with open(job_files(gone)["result"], "wb") as f:
        pickle.dump(("error", "Traceback (most recent call last):\n  ...\nValueError: bad shard\n"), f)
    assert cell_status(cells[3], gone).detail == "ValueError: bad shard"
    with open(job_files(gone)["result"], "wb") as f:
        pickle.dump(("success", {"status": "ok"}), f)
    assert cell_status(cells[3], gone).state == "missing"  # it ended well, but its record is gone
    other = {**gone, "identity": "0123456789abcdef"}
    assert cell_status(cells[3], other).state == "missing"  # submitted for other settings
