"""Outputs: a folder that cannot be written is refused before any work (exit 2, one line, nothing written); a
write that fails while running is one line, exit 1, and leaves no half-written file (the finished work and the
resumable state are kept); commands reading a results tree while a run writes into it never see a half-written
record."""
from __future__ import annotations

import errno
import json
import os
import tempfile
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mtlbench.io as io_mod
from mtlbench.cli import app
from mtlbench.results import read_record, write_record
from tests.test_refusals import GOOD, snapshot

runner = CliRunner()


@pytest.fixture
def read_only(tmp_path) -> Path:
    """A folder nobody may create files in: a chmod 555 folder, or for root (whom permission bits do not
    stop) a folder under /sys, a file system the kernel keeps closed to writes."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder / "runs"
        folder.chmod(0o755)
        return
    folder = Path("/sys/mtlbench-runs")
    try:
        tempfile.mkstemp(dir="/sys")
    except OSError:
        yield folder
        return
    pytest.skip("/sys is writable here; no read-only folder to test against")


def spec_in(tmp_path: Path, out: Path, text: str = GOOD) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text.replace("OUT", str(out)))
    return path


@pytest.mark.parametrize("command", ["train", "timing"])
def test_a_read_only_out_is_refused_before_any_work(command, read_only, tmp_path):
    spec = spec_in(tmp_path, tmp_path / "unused")
    before = snapshot(tmp_path)
    result = runner.invoke(app, [command, str(spec), "--out", str(read_only)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: --out: {read_only} cannot be written (")
    assert result.output.endswith("); choose another folder\n") and len(result.output.splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_a_read_only_output_dir_of_the_spec_is_refused_before_any_work(read_only, tmp_path):
    spec = spec_in(tmp_path, read_only)
    result = runner.invoke(app, ["train", str(spec), "--no-progress"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {spec}: output.dir: {read_only} cannot be written (")
    assert len(result.output.splitlines()) == 1


def test_a_write_failing_while_running_leaves_nothing_half_written(tmp_path, monkeypatch):
    """The disk fills up while the record is written (after half its bytes): one line, exit 1; neither the
    record nor a temporary is left, the selected weights and resumable state are, and the rerun writes the
    record an uninterrupted run writes."""
    spec = spec_in(tmp_path, tmp_path / "runs")
    real_write = io_mod.atomic_write

    def full_disk(path, write):
        if path.suffix != ".json":
            return real_write(path, write)

        def half_then_full(tmp):
            write(tmp)
            tmp.write_bytes(tmp.read_bytes()[: tmp.stat().st_size // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_write(path, half_then_full)
    monkeypatch.setattr(io_mod, "atomic_write", full_disk)
    result = runner.invoke(app, ["train", str(spec), "--no-progress", "--format", "csv"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    record = tmp_path / "runs" / "good" / "Hard-Share" / "seed0.json"
    assert result.output.splitlines()[-1] == f"error: {record}: No space left on device"
    assert sorted(p.name for p in record.parent.iterdir()) == ["seed0.pt", "seed0.state.pt"]
    monkeypatch.undo()
    assert runner.invoke(app, ["train", str(spec), "--no-progress", "--format", "csv"]).exit_code == 0
    again = read_record(record)
    whole_spec = tmp_path / "whole.yaml"
    whole_spec.write_text(GOOD.replace("OUT", str(tmp_path / "whole")))
    assert runner.invoke(app, ["train", str(whole_spec), "--no-progress", "--format", "csv"]).exit_code == 0
    whole = read_record(tmp_path / "whole" / "good" / "Hard-Share" / "seed0.json")
    assert again.metrics == whole.metrics and again.history == whole.history


def test_readers_never_see_a_half_written_record(tmp_path):
    """A writer rewrites a record over and over (as `train --force` or a resumed run does) while `compare`,
    `check`, `status` and read_record read the tree: every read is one whole version."""
    spec = spec_in(tmp_path, tmp_path / "runs")
    assert runner.invoke(app, ["train", str(spec), "--no-progress", "--format", "csv"]).exit_code == 0
    path = tmp_path / "runs" / "good" / "Hard-Share" / "seed0.json"
    ref = tmp_path / "reference"
    ref.mkdir()
    (ref / "good").symlink_to(path.parents[1])
    first = read_record(path)
    second = first.model_copy(update={"wall_time_s": first.wall_time_s + 1.0,
                                      "history": first.history * 40})  # a longer file: more to tear
    versions = {json.dumps(v.model_dump(mode="json"), sort_keys=True) for v in (first, second)}
    stop, errors = threading.Event(), []

    def writer():
        i = 0
        while not stop.is_set():
            write_record(path, (first, second)[i % 2])
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(30):
            for args in (["compare", str(spec), "--format", "csv"], ["status", str(spec)],
                         ["check", str(spec), "--against", str(ref), "--format", "csv"]):
                result = runner.invoke(app, args)
                if result.exit_code != 0:
                    errors.append((args[0], result.output))
            got = read_record(path).model_dump(mode="json")
            got.pop("path", None)
            if json.dumps(got, sort_keys=True) not in versions:
                errors.append(("read_record", "a record that is neither version"))
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[:3]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
