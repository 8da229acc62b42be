"""On a real GPU (skipped where torch sees no CUDA device; about a minute on one): training end to end on
CUDA in float32, bf16 and fp16 (with the loss scaler), an fp16 run resumed on the GPU ending as the
uninterrupted one, batches staged through pinned memory, `mtlbench timing` synchronising the device and
reporting its name and each method's peak memory, and a local-launcher job given its own GPU. Embedded data
only: no preparation, no download."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.results import read_record
from mtlbench.training.run import run_spec
from mtlbench.training.run_plan import plan_cells
from mtlbench.training.sampler import TaskSampler, stage
from tests.conftest import TINY_SPEC, small_data
from tests.test_precision import resumed_equals_uninterrupted

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
runner = CliRunner()
CUDA = torch.device("cuda")


def cuda_spec(write_spec, out, amp="none", iterations=100, name="spec.yaml"):
    text = TINY_SPEC.replace("{out}", str(out)).replace("iterations: 300", f"iterations: {iterations}") \
        .replace("eval_every: 50", "eval_every: 20").replace("threads: 1", f"threads: 1\n  device: cuda\n  amp: {amp}")
    return write_spec(text, name)


@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_training_end_to_end_on_cuda(amp, write_spec, tmp_path):
    records = run_spec(load_spec(cuda_spec(write_spec, tmp_path / "runs", amp)))
    for rec in records:
        assert rec.status == "ok" and rec.env["device"].startswith("cuda") and rec.env["gpu"]
        assert rec.history[-1]["loss"] < rec.history[0]["loss"]
        # an untrained net scores ~0.30 here, 100 steps on the CPU 0.75-0.78: the model learned on the GPU
        assert rec.metrics["test"]["map@10"].mean > 0.6
        assert ("skipped_steps" in rec.history[0]) == (amp == "fp16")
    weights = torch.load(tmp_path / "runs" / "tiny" / "STL" / "seed0.pt")
    assert all(t.device.type == "cpu" for t in weights.values())  # loadable anywhere


def test_fp16_run_resumed_on_cuda_ends_as_the_uninterrupted_run(write_spec, tmp_path, steps_taken):
    resolved = load_spec(cuda_spec(write_spec, tmp_path, "fp16", 60))
    cell = plan_cells(resolved, [0], tmp_path)[1]  # Hard-Share: deterministic CUDA kernels only
    state = resumed_equals_uninterrupted(resolved, cell, 40, steps_taken)
    assert state["precision"]["scaler"]["scale"] > 0 and state["rng"]["cuda"] is not None


def test_batches_are_staged_through_pinned_memory(monkeypatch):
    splits = small_data("vector").split("train")
    rows = TaskSampler(splits, batch=16, seed=0)
    want = [split.batch(rows.rows(t)) for t, split in enumerate(splits)]
    got = TaskSampler(splits, batch=16, seed=0).next_batches(CUDA)
    torch.cuda.synchronize()
    for (x, y), (gx, gy) in zip(want, got):
        assert gx.is_cuda and gy.is_cuda and torch.equal(gx.cpu(), x) and torch.equal(gy.cpu(), y)
    pinned, real = [], torch.Tensor.pin_memory
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a: pinned.append(1) or real(self, *a))
    on_gpu = stage(torch.ones(3), CUDA)
    monkeypatch.undo()
    assert pinned == [1] and on_gpu.is_cuda
    assert torch.equal(stage(torch.ones(3), torch.device("cpu")), torch.ones(3))


def test_timing_synchronises_and_reports_the_gpu_and_peak_memory(write_spec, tmp_path):
    spec = cuda_spec(write_spec, tmp_path / "runs", "bf16")
    result = runner.invoke(app, ["timing", str(spec), "--iterations", "3", "--blocks", "2", "--warmup", "1"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "runs" / "tiny" / "timing.json").read_text())
    assert record["device"].startswith("cuda") and record["device_name"] == torch.cuda.get_device_name()
    assert record["env"]["gpu"] == record["device_name"] and record["env"]["git"]
    peaks = {r["row"]: r["train_peak_mb"] for r in record["results"]}
    assert all(p > 0 for p in peaks.values()) and peaks["STL"] > peaks["Hard-Share"]  # STL is 3x the weights


def test_a_local_job_trains_on_its_own_gpu(write_spec, tmp_path):
    pytest.importorskip("submitit")
    spec = cuda_spec(write_spec, tmp_path / "runs", "bf16", 40)
    result = runner.invoke(app, ["train", str(spec), "--launcher", "local", "--workers", "1", "--gpus-per-job", "1",
                                 "--seeds", "0"])
    assert result.exit_code == 0, result.output
    rec = read_record(tmp_path / "runs" / "tiny" / "Hard-Share" / "seed0.json")
    assert rec.status == "ok" and rec.env["device"].startswith("cuda")
