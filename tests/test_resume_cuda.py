"""Resume on a CUDA device: the CUDA random state round-trips, a state saved from the accelerator (its best
weights kept on the CPU) is loaded back onto it, and the resumed run ends exactly as the uninterrupted one
(deterministic kernels). Skipped where torch sees no CUDA device."""
from __future__ import annotations

import io

import pytest
import torch

from mtlbench.config.loader import load_spec
from mtlbench.training.run import load_data
from mtlbench.training.run_plan import plan_cells
from mtlbench.training.state import rng_state, set_rng_state
from mtlbench.training.trainer import train_run
from tests.test_resume import SPEC, Killed, killed_at

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_rng_state_round_trips():
    torch.cuda.manual_seed_all(3)
    buf = io.BytesIO()
    torch.save(rng_state(), buf)
    want = torch.rand(4, device="cuda")
    torch.cuda.manual_seed_all(9)
    set_rng_state(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert torch.equal(torch.rand(4, device="cuda"), want)


@pytest.mark.parametrize("name", ["hard_share", "mrn_t", "taan", "cross_stitch"])
def test_resumed_run_on_cuda_ends_as_the_uninterrupted_run(name, write_spec, tmp_path, steps_taken):
    text = SPEC.format(method=name, label=name, iterations=40, every=5, patience=3, out=tmp_path)
    resolved = load_spec(write_spec(text.replace("threads: 1}", "threads: 1, device: cuda}")))
    cell = plan_cells(resolved, [0], tmp_path)[0]
    data = load_data(resolved)
    whole, whole_model = train_run(resolved, cell, data)
    assert next(whole_model.parameters()).is_cuda and whole.env["device"].startswith("cuda")
    box = []
    with pytest.raises(Killed):
        train_run(resolved, cell, data, checkpoint=killed_at(15, box))
    state = torch.load(io.BytesIO(box[0]), weights_only=True)
    assert all(t.device.type == "cpu" for t in state["best"]["weights"].values())  # no second model on the GPU
    assert state["rng"]["cuda"] is not None
    steps_taken.clear()
    resumed, model = train_run(resolved, cell, data, resume=state)
    assert steps_taken == list(range(16, whole.iterations_run + 1))  # it went on from 15, not from the start
    assert resumed.metrics == whole.metrics and resumed.history == whole.history
    for (k, a), b in zip(whole_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
