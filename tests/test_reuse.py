"""A run finished under another spec name or row label is the same run: the premise (training it again under the
new name and label gives the same numbers, bit for bit), and the reuse itself (copied with its origin named,
nothing trained, weights beside it), but never across a difference that reaches training."""
from __future__ import annotations

import json

import pytest

from mtlbench.config.loader import load_spec
from mtlbench.results import read_record
from mtlbench.training.run import run_spec
from tests.test_skip import SHORT, counting_train_run

RENAMED = (SHORT.replace("name: tiny", "name: figure").replace("label: Hard-Share", "label: HS c=0")
           .replace("label: STL", "label: Single"))


@pytest.fixture
def first(write_spec, tmp_path):
    spec = write_spec(SHORT.replace("{out}", str(tmp_path / "runs")), "table.yaml")
    return run_spec(load_spec(spec))


def renamed(write_spec, tmp_path, text=RENAMED):
    return write_spec(text.replace("{out}", str(tmp_path / "runs")), "figure.yaml")


def test_the_same_run_under_another_name_and_label_trains_to_the_same_numbers(first, write_spec, tmp_path):
    again = run_spec(load_spec(renamed(write_spec, tmp_path)), force=True)  # --force: trained, not reused
    for a, b in zip(first, again):
        assert (a.metrics, a.history, a.best_iteration) == (b.metrics, b.history, b.best_iteration)
        assert a.row != b.row and a.reused_from is None and b.reused_from is None


def test_a_finished_run_is_reused_not_trained(first, write_spec, tmp_path, monkeypatch):
    calls = counting_train_run(monkeypatch)
    lines = []
    records = run_spec(load_spec(renamed(write_spec, tmp_path)), log=lines.append)
    assert calls == []
    runs = tmp_path / "runs"
    for old, new in zip(first, records):
        assert new.metrics == old.metrics and new.history == old.history and new.env == old.env
        assert new.reused_from == f"tiny/{old.path.parent.name}/seed0.json" and new.spec_name == "figure"
        assert (runs / new.reused_from).samefile(old.path)
        stored = read_record(new.path)
        assert stored.row == new.row and stored.reused_from == new.reused_from
        assert new.path.with_suffix(".pt").read_bytes() == old.path.with_suffix(".pt").read_bytes()
    assert lines[0] == (f"Single seed 0: the same run finished as {runs / 'tiny' / 'STL' / 'seed0.json'}, "
                        f"reused ({runs / 'figure' / 'Single' / 'seed0.json'})")
    # a record trained here stores no reused_from key at all
    assert "reused_from" not in json.loads(first[0].path.read_text())


@pytest.mark.parametrize("change", [
    ("optimizer: {lr: 0.003}", "optimizer: {lr: 0.002}"),  # what is trained
    ("name: hard_share", "name: mmoe"),  # another method under the same label
    ("iterations: 60", "iterations: 40"),
])
def test_a_run_that_differs_in_what_is_trained_is_trained(first, write_spec, tmp_path, monkeypatch, change):
    calls = counting_train_run(monkeypatch)
    text = RENAMED.replace(*change)
    assert text != RENAMED
    records = run_spec(load_spec(renamed(write_spec, tmp_path, text)))
    assert "HS c=0" in calls and all(r.reused_from is None for r in records if r.row == "HS c=0")


def test_force_trains_instead_of_reusing(first, write_spec, tmp_path, monkeypatch):
    calls = counting_train_run(monkeypatch)
    run_spec(load_spec(renamed(write_spec, tmp_path)), force=True)
    assert calls == ["Single", "HS c=0"]


def test_status_says_a_missing_run_will_be_reused(first, write_spec, tmp_path):
    from typer.testing import CliRunner

    from mtlbench.cli import app
    result = CliRunner().invoke(app, ["status", str(renamed(write_spec, tmp_path))], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "Single" in line)
    assert "missing" in row and "the same run finished as" in row and "reuses it" in row
