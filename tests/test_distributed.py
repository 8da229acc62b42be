"""Data-parallel training under torchrun, on the CPU with gloo: the rank-aware sampler splits every batch into
disjoint slices whose union is the one-process batch; two processes at the same global batch end with the
one-process weights to float tolerance (MLP without BatchNorm, BatchNorm with sync_batchnorm, MRN with its
covariance updates); a run interrupted in one process resumes under torchrun; validation refuses what cannot
be split.

Tolerance: after 30 SGD-with-momentum steps (lr 0.01) every weight agrees within 2e-6 absolute (measured:
~1e-7 for every row, running variances ~2e-6) and the history's losses within 1e-5 relative. Two caveats
about what "match" can mean: with Adam, a bias right before a BatchNorm has a zero true gradient, and Adam
turns its float noise into full-size steps, so such biases follow the summation order (the outputs do not
depend on them); and a large step size (lr 0.05 here) makes training chaotic enough that 1e-7 differences
grow to 1e-3 within 30 steps, in one process as much as across ranks."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.results import read_record
from mtlbench.training.run import load_data, run_spec
from mtlbench.training.run_plan import plan_cells
from mtlbench.training.sampler import TaskSampler
from mtlbench.training.state import state_digest
from mtlbench.training.trainer import train_run
from tests.conftest import REPO, small_data
from tests.fake_methods import RidgeFit, register
from tests.test_resume import Killed, saved_until

runner = CliRunner()

SPEC = """
name: ddp
data:
  dataset: synthetic_vector
  options: {{n_groups: 2, tasks_per_group: 2, input_dim: 64, n_examples: 2000, input_noise: 0.3}}
backbone: {{hidden: [64, 64]}}
methods:
  - {{name: hard_share, label: Hard-Share}}
  - {{name: hard_share, label: HS-BN, backbone: {{hidden: [64, 64], dense_batch_norm: true}}}}
  - {{name: mrn_t, label: MRN_t}}
optimizer: {{name: sgd, lr: 0.01, momentum: 0.9}}
training: {{iterations: 30, batch_per_task: 33, eval_every: 10, threads: 1, sync_batchnorm: true}}
output: {{dir: {out}}}
"""


def test_rank_slices_are_disjoint_and_make_up_the_one_process_batch():
    splits = small_data("vector", n_examples=300).split("train")
    whole = TaskSampler(splits, batch=10, seed=4)
    ranks = [TaskSampler(splits, batch=10, seed=4, rank=r, world=3) for r in range(3)]
    for _ in range(40):  # several passes: orders are redrawn identically on every rank
        for t in range(len(splits)):
            want = whole.rows(t)
            parts = [s.rows(t) for s in ranks]
            assert torch.equal(torch.cat(parts), want) and [len(p) for p in parts] == [4, 3, 3]
            assert all(s.totals[t] == 10 for s in ranks)
    assert all(torch.equal(a, b) for s in ranks for a, b in zip(s.state_dict()["orders"], whole.state_dict()["orders"]))


def torchrun(spec, out, n=2):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                           "-m", "mtlbench", "train", str(spec), "--out", str(out), "--no-progress"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_two_gloo_ranks_train_what_one_process_trains(write_spec, tmp_path):
    spec = write_spec(SPEC.format(out=tmp_path / "one"))
    resolved = load_spec(spec)
    one = run_spec(resolved)
    # MRN_t is interrupted at iteration 20 in one process, then resumed by the two ranks
    cell = plan_cells(resolved, [0], tmp_path / "two")[2]
    with pytest.raises(Killed):
        train_run(resolved, cell, load_data(resolved), checkpoint=saved_until(cell, 20))
    # a mark the ranks can only have read from the state: its training seconds so far (a resume that loaded
    # nothing would retrain from the seed and end alike, but without the mark)
    saved = torch.load(cell.state_path, weights_only=True)
    saved["state"]["train_time"] = 1e6
    saved["digest"] = state_digest(saved["state"])  # a mark, not damage: the digest is made to match
    torch.save(saved, cell.state_path)
    done = torchrun(spec, tmp_path / "two")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MRN_t seed 0: resuming from iteration 20" in done.stderr
    for rec in one:
        got = read_record(tmp_path / "two" / "ddp" / rec.row / "seed0.json")
        assert got.env["world_size"] == 2 and rec.env["world_size"] == 1
        assert (got.train_time_s > 1e6) == (rec.row == "MRN_t")
        assert [h["iteration"] for h in got.history] == [10, 20, 30]
        assert [h["loss"] for h in got.history] == pytest.approx([h["loss"] for h in rec.history], rel=1e-5)
        want_w = torch.load(tmp_path / "one" / "ddp" / rec.row / "seed0.pt")
        got_w = torch.load(tmp_path / "two" / "ddp" / rec.row / "seed0.pt")
        assert want_w.keys() == got_w.keys()
        for k in want_w:
            torch.testing.assert_close(got_w[k], want_w[k], atol=2e-6, rtol=0, msg=f"{rec.row} {k}")
    # only rank 0 wrote: one record and one weights file per run, no state file left
    files = sorted(p.name for p in (tmp_path / "two" / "ddp").rglob("seed0*"))
    assert files == ["seed0.json"] * 3 + ["seed0.pt"] * 3


def test_validate_under_torchrun_refuses_closed_form_methods_and_tiny_batches(write_spec, tmp_path, monkeypatch):
    register(monkeypatch, "ridge_fit", RidgeFit)
    text = SPEC.format(out=tmp_path).replace("{name: mrn_t, label: MRN_t}", "{name: ridge_fit, label: Ridge}")
    spec = write_spec(text.replace("batch_per_task: 33", "batch_per_task: 1"))
    assert runner.invoke(app, ["validate", str(spec)]).exit_code == 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert (f"{spec}:9: methods[2].name: ridge_fit is fitted in closed form (one fit, no steps) and cannot be "
            "split across the 2 processes torchrun started; run it without torchrun") in result.output
    assert "training.batch_per_task: 1 row(s) per task cannot be split across the 2 processes" in result.output
    jobs = runner.invoke(app, ["train", str(spec), "--launcher", "local"])
    assert jobs.exit_code == 2, jobs.output  # refused before any job starts, for the reasons validate gave
    assert jobs.output.startswith(f"error: {spec}:9: methods[2].name: ridge_fit is fitted in closed form")
