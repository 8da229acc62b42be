"""Mixed precision on the CPU, the code path CUDA runs too: bf16 and fp16 autocast train and learn, an fp16 step
whose gradients overflow is skipped by the loss scaler instead of stopping the run as diverged (float32 takes
the same step and diverges), and the scaler's state resumes with the run."""
from __future__ import annotations

import io

import pytest
import torch

from mtlbench.config.loader import load_spec
from mtlbench.training.run import load_data, run_spec
from mtlbench.training.run_plan import plan_cells
from mtlbench.training.trainer import train_run
from tests.conftest import TINY_SPEC
from tests.fake_methods import GradSpike, register
from tests.test_resume import Killed, killed_at

SHORT = TINY_SPEC.replace("iterations: 300", "iterations: 60").replace("eval_every: 50", "eval_every: 20")


def spec_with(write_spec, tmp_path, amp: str, methods: str | None = None):
    text = SHORT.replace("{out}", str(tmp_path / "runs")).replace("threads: 1", f"threads: 1\n  amp: {amp}")
    if methods:
        text = text.replace("  - name: stl\n    label: STL\n  - name: hard_share\n    label: Hard-Share\n", methods)
    return load_spec(write_spec(text))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_and_learns(amp, write_spec, tmp_path):
    resolved = spec_with(write_spec, tmp_path, amp, "  - name: hard_share\n    label: Hard-Share\n")
    record, = run_spec(resolved)
    full, = run_spec(spec_with(write_spec, tmp_path / "fp32", "none", "  - name: hard_share\n    label: Hard-Share\n"))
    assert record.status == "ok" and record.spec["training"]["amp"] == amp
    losses = [h["loss"] for h in record.history]
    assert losses[-1] < losses[0]
    # the same run in float32 reaches about the same score (bf16 keeps 8 bits of mantissa)
    assert abs(record.metrics["test"]["map@10"].mean - full.metrics["test"]["map@10"].mean) < 0.05
    assert record.history != full.history  # autocast really ran
    assert ("skipped_steps" in record.history[0]) == (amp == "fp16")


def test_an_fp16_overflow_is_skipped_not_diverged(write_spec, tmp_path, monkeypatch):
    register(monkeypatch, "grad_spike", GradSpike)
    methods = "  - name: grad_spike\n    label: Spike\n"
    record, = run_spec(spec_with(write_spec, tmp_path, "fp16", methods))
    assert record.status == "ok" and record.iterations_run == 60
    assert record.history[0]["skipped_steps"] == 1 and record.history[-1]["skipped_steps"] == 1
    diverged, = run_spec(spec_with(write_spec, tmp_path / "fp32", "none", methods))
    assert diverged.status == "diverged" and diverged.failure.startswith(f"diverged at iteration {GradSpike.AT + 1}")


def resumed_equals_uninterrupted(resolved, cell, at: int, steps_taken: list) -> dict:
    """Train ``cell`` whole, then killed at iteration ``at`` and resumed: assert both end alike; return the
    state it resumed from."""
    data = load_data(resolved)
    whole, whole_model = train_run(resolved, cell, data)
    box = []
    with pytest.raises(Killed):
        train_run(resolved, cell, data, checkpoint=killed_at(at, box))
    state = torch.load(io.BytesIO(box[0]), weights_only=True)
    steps_taken.clear()
    resumed, model = train_run(resolved, cell, data, resume=state)
    assert steps_taken == list(range(at + 1, whole.iterations_run + 1))  # it went on from ``at``
    assert resumed.metrics == whole.metrics and resumed.history == whole.history
    for (k, a), b in zip(whole_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
    return state


def test_fp16_run_resumes_with_its_loss_scaler(write_spec, tmp_path, monkeypatch, steps_taken):
    register(monkeypatch, "grad_spike", GradSpike)
    resolved = spec_with(write_spec, tmp_path, "fp16", "  - name: grad_spike\n    label: Spike\n")
    state = resumed_equals_uninterrupted(resolved, plan_cells(resolved, [0], tmp_path)[0], 40, steps_taken)
    assert state["precision"]["skipped"] == 1 and state["precision"]["scaler"]["scale"] == 2.0 ** 15
