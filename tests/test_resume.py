"""Resuming: the sampler and random-number states round-trip, a run resumed from any checkpoint ends exactly as the
uninterrupted run (every registered method, in process), and a `mtlbench train` killed with SIGKILL and rerun
writes the record and weights an uninterrupted run writes."""
from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mtlbench.config.loader import load_spec
from mtlbench.errors import SpecError
from mtlbench.registry import METHODS
from mtlbench.results import read_record
from mtlbench.training.run import load_data, run_spec
from mtlbench.training.run_plan import plan_cells
from mtlbench.training.sampler import TaskSampler
from mtlbench.training.state import TrainState, load_state_file, rng_state, set_rng_state
from mtlbench.training.trainer import train_run
from tests.conftest import REPO, small_data


def test_sampler_state_round_trip_continues_the_same_batches():
    splits = small_data("vector", n_examples=200).split("train")
    a = TaskSampler(splits, batch=7, seed=3)
    for _ in range(11):  # past a pass over the smallest task, so orders have been redrawn
        a.rows(0), a.rows(1)
    saved = a.state_dict()
    want = [(a.rows(0), a.rows(1)) for _ in range(20)]
    b = TaskSampler(splits, batch=7, seed=99)  # another seed: everything must come from the state
    b.load_state_dict(saved)
    got = [(b.rows(0), b.rows(1)) for _ in range(20)]
    assert all(torch.equal(x, y) for pair_w, pair_g in zip(want, got) for x, y in zip(pair_w, pair_g))
    fresh = TaskSampler(splits, batch=7, seed=3)
    assert not torch.equal(fresh.rows(0), want[0][0])  # a restart would have drawn other rows


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    saved = rng_state()
    want = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    path = tmp_path / "rng.pt"
    torch.save(saved, path)
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    set_rng_state(torch.load(path, weights_only=True))
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == want


SPEC = """
name: resume
data:
  dataset: synthetic_vector
  options: {{n_groups: 2, tasks_per_group: 1, outlier: false, input_dim: 16, n_examples: 300, n_classes: 4}}
backbone: {{hidden: [16, 16, 16]}}
methods: [{{name: {method}, label: {label}}}]
optimizer: {{lr: 0.01}}
training: {{iterations: {iterations}, batch_per_task: 16, eval_every: 10, checkpoint_every: {every},
           patience: {patience}, threads: 1}}
output: {{dir: {out}}}
"""


class Killed(Exception):
    pass


def killed_at(iteration: int, box: list):
    """A checkpoint callback that serialises the state at ``iteration`` and then stops the run, as a kill would."""
    def checkpoint(state: TrainState) -> None:
        if state.iteration == iteration:
            buf = io.BytesIO()
            torch.save(state.state_dict(), buf)
            box.append(buf.getvalue())
            raise Killed
    return checkpoint


def saved_until(cell, iteration: int):
    """A checkpoint callback that saves the state file as the trainer would and stops the run at ``iteration``."""
    def checkpoint(state: TrainState) -> None:
        state.save(cell.state_path, cell.identity, cell.key)
        if state.iteration == iteration:
            raise Killed
    return checkpoint


# for methods that refuse the vector spec (MTAL shares conv kernels): small images through a conv trunk
IMAGES = ("""dataset: synthetic_image
  options: {{n_groups: 2, tasks_per_group: 1, outlier: false, image_size: 8, per_class: 10, n_classes: 3}}
backbone: {{kind: conv, channels: [4, 4], padding: 1, dense: [8]}}""")


def spec_for(name: str, write_spec, **fields):
    """The resume spec for ``name``: the vector one, or the image one where the method refuses vectors."""
    text = SPEC.format(method=name, label=name, **fields)
    try:
        return load_spec(write_spec(text))
    except SpecError:
        vector = text[text.index("dataset:"):text.index("methods:")].rstrip()
        return load_spec(write_spec(text.replace(vector, IMAGES.format())))


# closed-form methods (MTDA) take no steps: there is nothing to interrupt and resume
STEPPED = [n for n in METHODS.names() if not METHODS.get(n).closed_form]


@pytest.mark.parametrize("name", STEPPED)
def test_resumed_run_ends_as_the_uninterrupted_run(name, write_spec, tmp_path, steps_taken):
    resolved = spec_for(name, write_spec, iterations=40, every=5, patience=3, out=tmp_path)
    cell = plan_cells(resolved, [0], tmp_path)[0]
    data = load_data(resolved)
    whole, whole_model = train_run(resolved, cell, data)
    box = []
    with pytest.raises(Killed):
        train_run(resolved, cell, data, checkpoint=killed_at(15, box))
    random.random(), np.random.rand(), torch.rand(5)  # whatever ran in between must not matter
    steps_taken.clear()
    resumed, model = train_run(resolved, cell, data, resume=torch.load(io.BytesIO(box[0]), weights_only=True))
    assert steps_taken == list(range(16, whole.iterations_run + 1))  # it went on from 15, not from the start
    assert resumed.metrics == whole.metrics and resumed.history == whole.history
    assert (resumed.best_iteration, resumed.iterations_run) == (whole.best_iteration, whole.iterations_run)
    for (k, a), b in zip(whole_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_state_file_is_used_only_by_its_own_run(tmp_path, write_spec):
    resolved = load_spec(write_spec(SPEC.format(method="hard_share", label="HS", iterations=30, every=10,
                                                patience="null", out=tmp_path)))
    cell = plan_cells(resolved, [0], tmp_path)[0]
    with pytest.raises(Killed):
        train_run(resolved, cell, load_data(resolved), checkpoint=saved_until(cell, 20))
    state, why = load_state_file(cell.state_path, cell.identity)
    assert state["iteration"] == 20 and why == ""
    assert load_state_file(cell.state_path, "another identity") == (None, "made by another spec or code version")
    cell.state_path.write_bytes(b"not a state")
    assert load_state_file(cell.state_path, cell.identity)[1].startswith("unreadable")


def test_run_spec_resumes_from_the_state_file_and_removes_it(tmp_path, write_spec, steps_taken):
    text = SPEC.format(method="mrn_t", label="MRN", iterations=40, every=5, patience=3, out=tmp_path / "a")
    resolved = load_spec(write_spec(text))
    whole = run_spec(resolved)[0]
    resolved = load_spec(write_spec(text.replace(str(tmp_path / "a"), str(tmp_path / "b"))))
    cell = plan_cells(resolved, [0], tmp_path / "b")[0]
    with pytest.raises(Killed):
        train_run(resolved, cell, load_data(resolved), checkpoint=saved_until(cell, 25))
    lines = []
    steps_taken.clear()
    again = run_spec(resolved, log=lines.append)[0]
    assert lines == [f"MRN seed 0: resuming from iteration 25 ({cell.state_path})"]
    assert steps_taken == list(range(26, whole.iterations_run + 1))
    assert again.metrics == whole.metrics and again.history == whole.history
    assert not cell.state_path.exists() and cell.record_path.exists()


KILL_SPEC = """
name: killed
data:
  dataset: synthetic_vector
  options: {{n_groups: 2, tasks_per_group: 2, outlier: true, input_dim: 64, n_examples: 1000}}
backbone: {{hidden: [64, 64, 64]}}
methods: [{{name: mrn_t, label: MRN}}]
optimizer: {{lr: 0.002}}
training: {{iterations: 300, batch_per_task: 64, eval_every: 20, checkpoint_every: 10, threads: 1}}
output: {{dir: {out}}}
"""


def test_sigkill_then_rerun_writes_the_uninterrupted_record(write_spec, tmp_path):
    spec = write_spec(KILL_SPEC.format(out=tmp_path / "killed"))
    cmd = [sys.executable, "-m", "mtlbench", "train", str(spec), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = tmp_path / "killed" / "killed" / "MRN" / "seed0.state.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    delay = random.Random().uniform(0.0, 0.8)  # a random iteration after the first checkpoint (the run: ~3 s idle)
    time.sleep(delay)
    assert proc.poll() is None, f"the run ended before the kill ({delay:.2f}s after its first checkpoint)"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists() and not state.with_name("seed0.json").exists(), delay
    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "MRN seed 0: resuming from iteration " in rerun.stderr, (delay, rerun.stderr)
    resolved = load_spec(write_spec(KILL_SPEC.format(out=tmp_path / "whole"), name="whole.yaml"))
    whole = run_spec(resolved)[0]
    got = read_record(tmp_path / "killed" / "killed" / "MRN" / "seed0.json")
    assert got.metrics == whole.metrics and got.history == whole.history, delay
    assert (got.best_iteration, got.iterations_run, got.identity) == \
        (whole.best_iteration, whole.iterations_run, whole.identity)
    a = torch.load(got.path.with_suffix(".pt"), weights_only=True)
    b = torch.load(whole.path.with_suffix(".pt"), weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), delay
    assert not state.exists()


def test_status_says_how_far_an_interrupted_run_got(tmp_path, write_spec):
    from mtlbench.launch.status import spec_statuses
    resolved = load_spec(write_spec(SPEC.format(method="hard_share", label="HS", iterations=30, every=10,
                                                patience="null", out=tmp_path)))
    cell = plan_cells(resolved, [0, 1], tmp_path)[0]
    with pytest.raises(Killed):
        train_run(resolved, cell, load_data(resolved), checkpoint=saved_until(cell, 20))
    interrupted, never = spec_statuses(resolved, [0, 1], tmp_path)
    assert interrupted.state == "missing" and never.state == "missing" and never.detail == ""
    assert interrupted.detail == "state saved at iteration 20 of 30, 0 min ago: `mtlbench train` resumes it"
    other = load_spec(write_spec(SPEC.format(method="hard_share", label="HS", iterations=40, every=10,
                                             patience="null", out=tmp_path)))
    assert spec_statuses(other, [0], tmp_path)[0].detail == ("seed0.state.pt saved by a run of other settings: "
                                                            "`mtlbench train` refuses to train over it (restore "
                                                            "the spec, or delete it)")
