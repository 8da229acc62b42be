"""Run identity: a rerun skips finished runs (no data loaded, nothing trained), a record of other settings is
refused before anything trains (exit 2) unless --force, how-to-run fields and older records of the same
experiment count as the same run, and a state file of other settings is never resumed."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import mtlbench.training.run as run_mod
from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.training.run import load_data, run_spec
from mtlbench.training.run_plan import plan_cells
from mtlbench.training.trainer import train_run
from tests.conftest import TINY_SPEC
from tests.test_resume import Killed, saved_until

runner = CliRunner()
SHORT = TINY_SPEC.replace("iterations: 300", "iterations: 60").replace("eval_every: 50", "eval_every: 20")


@pytest.fixture
def spec(write_spec, tmp_path):
    return write_spec(SHORT.replace("{out}", str(tmp_path / "runs")))


def record_files(tmp_path) -> dict:
    return {p.name + p.parent.name: p.read_bytes() for p in sorted((tmp_path / "runs").rglob("seed*.json"))}


def counting_train_run(monkeypatch) -> list:
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[1].row)
        return train_run(*args, **kwargs)
    monkeypatch.setattr(run_mod, "train_run", counted)
    return calls


def test_rerun_skips_every_finished_run_without_loading_data(spec, tmp_path, monkeypatch):
    first = run_spec(load_spec(spec))

    def no(*_a, **_k):
        raise AssertionError("a finished spec must not load data or train")
    monkeypatch.setattr(run_mod, "train_run", no)
    monkeypatch.setattr(run_mod, "load_data", no)
    lines = []
    again = run_spec(load_spec(spec), log=lines.append)
    run = tmp_path / "runs" / "tiny"
    assert lines == [f"STL seed 0: finished, skipped ({run / 'STL' / 'seed0.json'})",
                     f"Hard-Share seed 0: finished, skipped ({run / 'Hard-Share' / 'seed0.json'})"]
    assert [r.metrics for r in again] == [r.metrics for r in first]


def test_cli_rerun_skips_and_leaves_records_untouched(spec, tmp_path):
    assert runner.invoke(app, ["train", str(spec), "--no-progress"]).exit_code == 0
    before = record_files(tmp_path)
    result = runner.invoke(app, ["train", str(spec), "--no-progress", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert f"Hard-Share seed 0: finished, skipped ({tmp_path / 'runs' / 'tiny' / 'Hard-Share' / 'seed0.json'})" \
        in result.output
    assert "Hard-Share," in result.output  # the table is still printed
    assert record_files(tmp_path) == before


def test_edited_spec_is_refused_before_training_and_force_retrains(spec, tmp_path, monkeypatch):
    assert runner.invoke(app, ["train", str(spec), "--no-progress"]).exit_code == 0
    before = record_files(tmp_path)
    spec.write_text(spec.read_text().replace("lr: 0.003", "lr: 0.002"))
    calls = counting_train_run(monkeypatch)
    result = runner.invoke(app, ["train", str(spec), "--no-progress"])
    assert result.exit_code == 2 and calls == []
    assert result.output == (f"error: {tmp_path / 'runs' / 'tiny' / 'STL' / 'seed0.json'}: holds a run made with "
                             "other settings (optimizer.lr: 0.003 -> 0.002) (and 1 more record(s) of this spec); "
                             "rerun with --force to retrain over it, or give the spec another name or output.dir\n")
    assert record_files(tmp_path) == before
    forced = runner.invoke(app, ["train", str(spec), "--no-progress", "--force"])
    assert forced.exit_code == 0, forced.output
    assert calls == ["STL", "Hard-Share"]
    rec = json.loads((tmp_path / "runs" / "tiny" / "STL" / "seed0.json").read_text())
    assert rec["spec"]["optimizer"]["lr"] == 0.002


def test_force_retrains_finished_runs(spec, monkeypatch):
    run_spec(load_spec(spec))
    calls = counting_train_run(monkeypatch)
    run_spec(load_spec(spec), force=True)
    assert calls == ["STL", "Hard-Share"]


def test_how_to_run_fields_are_not_part_of_the_identity(spec, monkeypatch):
    run_spec(load_spec(spec))
    spec.write_text(spec.read_text().replace("threads: 1", "threads: 2\n  eval_batch: 64\n  checkpoint_every: 7\n"
                                                           "  device: cpu"))
    calls = counting_train_run(monkeypatch)
    run_spec(load_spec(spec))
    assert calls == []


def strip_to_schema_1(path, **env_versions):
    """The record as mtlbench wrote it before records had a status and an identity (results/reference's)."""
    rec = json.loads(path.read_text())
    for key in ("schema_version", "status", "failure", "trained_by", "identity", "code_version"):
        rec.pop(key)
    del rec["spec"]["training"]["checkpoint_every"]  # that spec field did not exist then either
    rec["env"]["versions"].update(env_versions)
    path.write_text(json.dumps(rec))


def test_records_of_older_code_of_the_same_version_count_as_finished(spec, tmp_path, monkeypatch):
    run_spec(load_spec(spec))
    for path in (tmp_path / "runs").rglob("seed0.json"):
        strip_to_schema_1(path)
    calls = counting_train_run(monkeypatch)
    records = run_spec(load_spec(spec))
    assert calls == [] and all(r.schema_version == 1 and r.status == "ok" for r in records)


def test_a_record_of_another_package_version_is_refused(spec, tmp_path):
    run_spec(load_spec(spec))
    path = tmp_path / "runs" / "tiny" / "Hard-Share" / "seed0.json"
    strip_to_schema_1(path, mtlbench="0.0.9")
    result = runner.invoke(app, ["train", str(spec), "--no-progress"])
    assert result.exit_code == 2
    assert f'{path}: holds a run made with other settings (code: "0.0.9+t1" -> "0.1.0+t1");' in result.output


def test_a_state_file_of_other_settings_is_neither_resumed_nor_trained_over(spec, tmp_path):
    """The spec edited between a kill and the rerun: the rerun stops before training (exit 2), naming the
    state file and what differs; the state is kept (restoring the spec resumes it); --force trains from the
    start, as a fresh run."""
    resolved = load_spec(spec)
    cell = plan_cells(resolved, [0], tmp_path / "runs")[0]
    with pytest.raises(Killed):
        train_run(resolved, cell, load_data(resolved), checkpoint=saved_until(cell, 40))
    saved = cell.state_path.read_bytes()
    spec.write_text(spec.read_text().replace("lr: 0.003", "lr: 0.002"))
    result = runner.invoke(app, ["train", str(spec), "--no-progress"])
    assert result.exit_code == 2
    assert result.output == (f"error: {cell.state_path}: the saved state of an interrupted run made with other "
                             "settings (optimizer.lr: 0.003 -> 0.002); restore the spec to resume it, or delete the "
                             "file (or rerun with --force) to train this run from the start\n")
    assert cell.state_path.read_bytes() == saved and not cell.record_path.exists()
    got = run_spec(load_spec(spec), force=True)[0]
    fresh = run_spec(load_spec(spec), out_dir=tmp_path / "fresh")[0]
    assert got.metrics == fresh.metrics and got.history == fresh.history
