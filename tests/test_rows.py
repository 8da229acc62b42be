"""`--rows`: train (and show the status of) only some method rows of a spec. A row trained alone writes the
record the whole spec would write, so the whole spec later skips it; a pattern matching no row is refused."""
from __future__ import annotations

from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.cli.rows import only_rows
from mtlbench.config.loader import load_spec
from tests.conftest import TINY_SPEC

runner = CliRunner()
SHORT = TINY_SPEC.replace("iterations: 300", "iterations: 20").replace("eval_every: 50", "eval_every: 10") \
    + "seeds: [0]\n"
SHORT = SHORT.replace("  - name: hard_share\n    label: Hard-Share\n",
                      "  - name: hard_share\n    label: Hard-Share\n  - name: taan\n    label: TAAN (M 8)\n"
                      "    params: {M: 8}\n")


def test_only_rows_matches_labels_globs_and_folder_names(write_spec, tmp_path):
    resolved = load_spec(write_spec(SHORT.replace("{out}", str(tmp_path))))
    rows = lambda r: [m.entry.row for m in r.methods]  # noqa: E731
    assert rows(only_rows(resolved, None)) == ["STL", "Hard-Share", "TAAN (M 8)"]
    assert rows(only_rows(resolved, ["Hard*", "STL"])) == ["STL", "Hard-Share"]  # spec order, not pattern order
    assert rows(only_rows(resolved, ["TAAN_M_8"])) == ["TAAN (M 8)"]  # its results folder's name
    picked = only_rows(resolved, ["TAAN*"])
    assert [m.row for m in picked.spec.methods] == ["TAAN (M 8)"] and picked.spec.name == resolved.spec.name


def test_a_row_trained_alone_is_skipped_by_the_whole_spec(write_spec, tmp_path):
    spec = write_spec(SHORT.replace("{out}", str(tmp_path / "runs")))
    alone = runner.invoke(app, ["train", str(spec), "--rows", "STL", "--no-progress", "--format", "csv"])
    assert alone.exit_code == 0, alone.output
    folder = tmp_path / "runs" / "tiny"
    assert sorted(p.parent.name for p in folder.rglob("seed0.json")) == ["STL"]
    first = (folder / "STL" / "seed0.json").read_bytes()
    assert "\nHard-Share," in alone.output  # the table printed is the whole spec's
    status = runner.invoke(app, ["status", str(spec), "--rows", "STL,Hard-Share"])
    assert status.exit_code == 0 and "TAAN" not in status.output
    assert "done" in status.output and "missing" in status.output
    whole = runner.invoke(app, ["train", str(spec), "--no-progress", "--format", "csv"])
    assert whole.exit_code == 0, whole.output
    assert "STL seed 0: finished, skipped" in whole.output
    assert (folder / "STL" / "seed0.json").read_bytes() == first
    assert sorted(p.parent.name for p in folder.rglob("seed0.json")) == ["Hard-Share", "STL", "TAAN_M_8"]


def test_a_pattern_matching_no_row_is_refused_before_training(write_spec, tmp_path):
    spec = write_spec(SHORT.replace("{out}", str(tmp_path / "runs")))
    for command in ("train", "status"):
        result = runner.invoke(app, [command, str(spec), "--rows", "STL,Soft*"])
        assert result.exit_code == 2, result.output
        assert result.output == (f"error: --rows: 'Soft*' matches no row of {spec}; its rows: STL, Hard-Share, "
                                 "TAAN (M 8)\n")
    empty = runner.invoke(app, ["train", str(spec), "--rows", " , "])
    assert empty.exit_code == 2 and "--rows: expected comma-separated row labels" in empty.output
    assert not (tmp_path / "runs").exists()
