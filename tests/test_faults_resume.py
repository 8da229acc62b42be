"""Resume state that cannot be trusted is never used, and `kill -9` at any moment loses nothing.

- `kill -9` at random moments of a run, N times, then a rerun: the record and weights are an uninterrupted
  run's, exactly, and no half-written temporary is left (N = 3 here; the slow version N = 12).
- a state file damaged on disk (a byte flipped in its tensors, truncated, not a state at all): the rerun says
  so in one line and trains that run from the start -- a clean start, equal to a fresh run, never a
  continuation from garbage;
- a state of another run at the cell's place (the spec edited between the kill and the rerun, another code
  version): refused before anything trains, exit 2, one line naming the file and what differs; the state is
  kept, so restoring the spec resumes it;
- a state of this run whose contents do not fit the model: one line, trained from the start;
- a damaged jobs file of the launchers: one line, never a traceback.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.results import read_record
from mtlbench.training.run import load_data, run_spec
from mtlbench.training.run_plan import plan_cells
from mtlbench.training.state import state_digest
from mtlbench.training.trainer import train_run
from tests.conftest import REPO
from tests.test_resume import Killed, saved_until

runner = CliRunner()

SPEC = """
name: killed
data:
  dataset: synthetic_vector
  options: {{n_groups: 2, tasks_per_group: 2, outlier: true, input_dim: 64, n_examples: 1000}}
backbone: {{hidden: [64, 64, 64]}}
methods: [{{name: mrn_t, label: MRN}}]
optimizer: {{lr: 0.002}}
training: {{iterations: {iterations}, batch_per_task: 64, eval_every: 20, checkpoint_every: 10, threads: 1}}
output: {{dir: {out}}}
"""


def uninterrupted(write_spec, tmp_path: Path, iterations: int):
    resolved = load_spec(write_spec(SPEC.format(out=tmp_path / "whole", iterations=iterations), name="whole.yaml"))
    return run_spec(resolved)[0]


def assert_same_run(got, whole) -> None:
    assert got.metrics == whole.metrics and got.history == whole.history
    assert (got.best_iteration, got.iterations_run, got.identity) == \
        (whole.best_iteration, whole.iterations_run, whole.identity)
    a = torch.load(got.path.with_suffix(".pt"), weights_only=True)
    b = torch.load(whole.path.with_suffix(".pt"), weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def kill_repeatedly(spec: Path, folder: Path, kills: int, rng: random.Random) -> list[str]:
    """Start `mtlbench train spec` and SIGKILL it at a random moment after it saved a state, ``kills`` times
    (fewer if a run finishes first); what each kill interrupted, for the assertion messages."""
    cmd = [sys.executable, "-m", "mtlbench", "train", str(spec), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    state, record = folder / "seed0.state.pt", folder / "seed0.json"
    log = []
    for _ in range(kills):
        before = state.stat().st_mtime_ns if state.exists() else None
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and \
                (not state.exists() or state.stat().st_mtime_ns == before):
            time.sleep(0.005)  # until this process has saved a state of its own
        delay = rng.uniform(0.0, 0.5)
        time.sleep(delay)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.append(f"{'finished' if finished else 'killed'} {delay:.2f}s after a checkpoint")
        if record.exists():
            break
    return log


def kill_and_resume(write_spec, tmp_path: Path, kills: int, iterations: int, seed: int | None = None) -> None:
    rng = random.Random(seed)
    spec = write_spec(SPEC.format(out=tmp_path / "killed", iterations=iterations))
    folder = tmp_path / "killed" / "killed" / "MRN"
    log = kill_repeatedly(spec, folder, kills, rng)
    rerun = runner.invoke(app, ["train", str(spec), "--no-progress", "--format", "csv"])
    assert rerun.exit_code == 0, (log, rerun.output)
    assert_same_run(read_record(folder / "seed0.json"), uninterrupted(write_spec, tmp_path, iterations))
    left = sorted(p.name for p in folder.iterdir())
    assert left == ["seed0.json", "seed0.pt"], (log, left)  # no state, no half-written temporary


def test_kill_9_at_random_moments_then_resume_equals_the_uninterrupted_run(write_spec, tmp_path):
    kill_and_resume(write_spec, tmp_path, kills=3, iterations=200)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 12 processes start torch (and the reference run trains) on a busy machine
def test_many_kills_at_random_moments(write_spec, tmp_path):
    kill_and_resume(write_spec, tmp_path, kills=12, iterations=600)


# -- damaged and foreign state files ---------------------------------------------------------------------------------
@pytest.fixture
def interrupted(write_spec, tmp_path):
    """A run stopped after its checkpoint at iteration 40 (as a kill would leave it), and the spec file."""
    spec = write_spec(SPEC.format(out=tmp_path / "runs", iterations=80))
    resolved = load_spec(spec)
    cell = plan_cells(resolved, [0], tmp_path / "runs")[0]
    with pytest.raises(Killed):
        train_run(resolved, cell, load_data(resolved), checkpoint=saved_until(cell, 40))
    return spec, cell


def flip_tensor_byte(path: Path) -> None:
    """One byte of the largest stored tensor flipped: torch.load reads the file as before, the weight is wrong."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        biggest = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    start = raw.index(biggest.filename.encode()) + len(biggest.filename) + 64  # well inside its data
    raw[start] ^= 0x40
    path.write_bytes(bytes(raw))


DAMAGE = {
    "a byte flipped in a tensor": (flip_tensor_byte,
                                   "corrupt: its contents no longer match the digest saved with them"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                  "unreadable: truncated or not a mtlbench state (RuntimeError)"),
    "not a state": (lambda p: torch.save({"weights": torch.zeros(3)}, p), "unreadable: not a mtlbench state"),
    "empty": (lambda p: p.write_bytes(b""), "unreadable: truncated or not a mtlbench state (EOFError)"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_state_is_said_and_the_run_trains_from_the_start(damage, interrupted, write_spec, tmp_path):
    spec, cell = interrupted
    harm, why = DAMAGE[damage]
    if damage == "a byte flipped in a tensor":  # the premise: torch.load alone does not notice
        before = torch.load(cell.state_path, weights_only=True)["state"]["model"]
        harm(cell.state_path)
        after = torch.load(cell.state_path, weights_only=True)["state"]["model"]
        assert any(not torch.equal(before[k], after[k]) for k in before)
    else:
        harm(cell.state_path)
    result = runner.invoke(app, ["train", str(spec), "--no-progress", "--format", "csv"])
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert f"MRN seed 0: not resuming from {cell.state_path} ({why}); training from the start" in result.output
    assert_same_run(read_record(cell.record_path), fresh_run(write_spec, tmp_path, 80))
    assert not cell.state_path.exists()


def fresh_run(write_spec, tmp_path: Path, iterations: int):
    return run_spec(load_spec(write_spec(SPEC.format(out=tmp_path / "fresh", iterations=iterations),
                                         name="fresh.yaml")))[0]


def test_a_state_of_another_code_version_is_refused_and_kept(interrupted):
    spec, cell = interrupted
    payload = torch.load(cell.state_path, weights_only=True)
    payload["key"]["code"] = "0.0.9+t1"
    payload["identity"] = "0123456789abcdef"
    torch.save(payload, cell.state_path)
    saved = cell.state_path.read_bytes()
    for args in (["train", str(spec), "--no-progress"], ["train", str(spec), "--launcher", "local", "--dry-run"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.output == (f"error: {cell.state_path}: the saved state of an interrupted run made with other "
                                 'settings (code: "0.0.9+t1" -> "0.1.0+t1"); restore the spec to resume it, or '
                                 "delete the file (or rerun with --force) to train this run from the start\n")
    assert cell.state_path.read_bytes() == saved and not cell.record_path.exists()
    assert runner.invoke(app, ["train", str(spec), "--no-progress", "--force", "--format", "csv"]).exit_code == 0


def test_a_state_that_does_not_fit_the_model_trains_from_the_start(interrupted, write_spec, tmp_path):
    spec, cell = interrupted
    payload = torch.load(cell.state_path, weights_only=True)
    model = payload["state"]["model"]
    payload["state"]["model"] = {k: v[..., :1] if v.dim() else v for k, v in model.items()}  # shapes changed
    payload["digest"] = state_digest(payload["state"])  # intact on disk: the shapes are what does not fit
    torch.save(payload, cell.state_path)
    result = runner.invoke(app, ["train", str(spec), "--no-progress", "--format", "csv"])
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert (f"MRN seed 0: not resuming from {cell.state_path} (it does not fit this run: RuntimeError: Error(s) in "
            "loading state_dict for ") in result.output and "size mismatch" in result.output
    assert_same_run(read_record(cell.record_path), fresh_run(write_spec, tmp_path, 80))


def test_stale_temporaries_of_a_killed_write_are_removed(interrupted):
    spec, cell = interrupted
    stale = [cell.record_path.parent / f".seed0.{kind}.abc123.tmp" for kind in ("json", "pt", "state.pt")]
    other_seed = cell.record_path.parent / ".seed00.json.abc123.tmp"  # another cell's name: left alone
    for path in [*stale, other_seed]:
        path.write_bytes(b"half")
    assert runner.invoke(app, ["train", str(spec), "--no-progress", "--format", "csv"]).exit_code == 0
    assert not any(p.exists() for p in stale) and other_seed.exists()


# -- launcher files ---------------------------------------------------------------------------------------------------
JOBS = {
    "not JSON": "{\"cells\": ",
    "a list": "[1, 2]",
    "an entry that is a number": json.dumps({"cells": {"MRN/seed0": 5}}),
    "an entry without its fields": json.dumps({"cells": {"MRN/seed0": {"identity": None}}}),
    "a job id that is no number": None,  # filled in below: the cell's identity, launcher local, job id 'x'
}


@pytest.mark.parametrize("damage", list(JOBS))
def test_a_damaged_jobs_file_is_one_line_never_a_traceback(damage, interrupted):
    spec, cell = interrupted
    jobs = cell.record_path.parents[1] / "jobs.json"
    text = JOBS[damage] or json.dumps({"cells": {"MRN/seed0": {"identity": cell.identity, "launcher": "local",
                                                               "job_id": "x", "folder": "/nowhere"}}})
    jobs.write_text(text)
    for args in (["status", str(spec)], ["train", str(spec), "--launcher", "local", "--dry-run"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output == (f"error: {jobs}: not a jobs file mtlbench wrote (hand-edited or damaged); "
                                 "delete it once no job of this spec is running (`mtlbench train --launcher` "
                                 "writes a new one)\n"), result.output
