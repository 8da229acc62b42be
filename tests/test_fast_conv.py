"""The fast conv path (training.kernel: fused, mtlbench/nn/fast_conv.py) computes the eager blocks' function:
on a fixed batch, every method on the conv backbone gives the same outputs, parameter gradients and BatchNorm
running statistics (float64: 1e-10 relative; float32: 1e-4), in training and in evaluation; a short training
run's loss curve is the eager one's to float32 rounding."""
from __future__ import annotations

import copy

import pytest
import torch

from mtlbench.nn import fast_conv
from mtlbench.nn.backbone import BackboneSpec
from mtlbench.registry import METHODS
from tests.conftest import small_data

# size-preserving convolutions and 2x2 pooling after each (every method accepts equal widths: Soft-Order)
CONV = BackboneSpec(channels=[8, 8, 8], padding=1, dense=[16])
PARAMS = {"taan": {"alpha_init": "normal", "M": 8}}  # an activation that is not ReLU
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}
CONV_METHODS = [n for n in METHODS.names() if not METHODS.get(n).closed_form
                and not METHODS.get(n).raw_inputs]


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def pair(name: str, dtype: torch.dtype, data=None, backbone: BackboneSpec = CONV):
    """(eager model, fused model) with the same weights; some BatchNorm scales negative, so the fused path's
    min-pool branch is exercised too."""
    data = data or small_data("image")
    cls = METHODS.get(name)
    params = cls.Params(**PARAMS.get(name, {}))
    if cls.check(data.info, backbone, params):
        pytest.skip(f"{name} refuses this data: {cls.check(data.info, backbone, params)[0]}")
    torch.manual_seed(0)
    eager = cls(data.info, backbone, params)
    with torch.no_grad():
        for m in eager.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.linspace(-1.0, 1.5, m.num_features))
                m.bias.normal_(0, 0.1)
    fused = copy.deepcopy(eager)
    fast_conv.configure(eager, "eager")
    fast_conv.configure(fused, "fused")
    return eager.to(dtype), fused.to(dtype), data


def run(model, data, dtype):
    batches = [s.batch(torch.arange(6)) for s in data.split("train")]
    outs = model([x.to(dtype) for x, _ in batches])
    loss = sum(o.square().mean() for o in outs)
    reg = model.regularizer()
    (loss if reg is None else loss + reg).backward()
    model.eval()
    with torch.no_grad():
        evals = [model.forward_task(x.to(dtype), t) for t, (x, _) in enumerate(batches)]
    model.train()
    return outs, evals


def test_the_fused_path_is_taken():
    eager, fused, _ = pair("hard_share", torch.float64)
    assert all(b.fast for b in fused.trunk.blocks) and not any(b.fast for b in eager.trunk.blocks)
    assert fused.trunk.blocks[0].affine.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", CONV_METHODS)
def test_fused_equals_eager(name, dtype):
    check_equal(*pair(name, dtype), dtype)


@pytest.mark.parametrize("name", ["hard_share", "mtal", "taan"])
def test_fused_equals_eager_on_a_vgg_trunk(name):
    """VGG stages: convolutions without pooling inside a stage (BatchNorm and the activation, no pool)."""
    vgg = BackboneSpec(kind="vgg", stages=[[4], [8, 8]], dense=[16])
    check_equal(*pair(name, torch.float64, backbone=vgg), torch.float64)


def check_equal(eager, fused, data, dtype):
    torch.manual_seed(1)
    outs_e, evals_e = run(eager, data, dtype)
    torch.manual_seed(1)
    outs_f, evals_f = run(fused, data, dtype)
    tol = TOL[dtype]
    for a, b in zip([*outs_f, *evals_f], [*outs_e, *evals_e]):
        assert relative(a, b) <= tol
    grads_e = dict(eager.named_parameters())
    # a conv bias before BatchNorm has a gradient of exactly zero in exact arithmetic (the normalisation removes
    # it): both paths leave round-off there, compared against the gradients' overall scale instead
    scale = torch.stack([q.grad.norm() for q in grads_e.values() if q.grad is not None]).norm()
    for n, p in fused.named_parameters():
        q = grads_e[n]
        assert (p.grad is None) == (q.grad is None), n
        if q.grad is not None:
            assert float((p.grad - q.grad).norm()) <= tol * max(float(q.grad.norm()), 1e-3 * float(scale)), n
    buffers_e = dict(eager.named_buffers())
    for n, b in fused.named_buffers():
        if b.is_floating_point():
            assert relative(b, buffers_e[n]) <= tol, n


def loss_curves(name: str, steps: int, data, backbone):
    from mtlbench.training.step import Objective
    eager, fused, data = pair(name, torch.float32, data, backbone)
    curves = []
    for model in (eager, fused):
        torch.manual_seed(2)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        objective, losses = Objective(model, data.info.tasks), []
        train = data.split("train")
        for i in range(steps):
            rows = torch.arange(8) + 8 * (i % 4)
            loss, _ = objective([s.batch(rows % len(s.y)) for s in train])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves.append(torch.tensor(losses))
    return curves


@pytest.mark.parametrize("name", ["hard_share", "taan"])
def test_a_training_run_follows_the_eager_loss_curve(name):
    """200 steps on 8 x 8 images (cheap); the slow test below runs 1,000 on the 16 x 16 ones."""
    curves = loss_curves(name, 200, small_data("image", image_size=8), BackboneSpec(channels=[8, 8], padding=1,
                                                                                     dense=[16]))
    assert curves[1][-1] < 0.5 * curves[1][0]  # it learned: the comparison is of a real run
    assert relative(curves[1], curves[0]) <= 1e-3  # float32 round-off, grown by 200 Adam steps (TAAN: ~2e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hard_share", "taan"])
def test_a_long_training_run_follows_the_eager_loss_curve(name):
    curves = loss_curves(name, 1000, small_data("image"), CONV)
    assert curves[1][-1] < 0.5 * curves[1][0]
    assert relative(curves[1], curves[0]) <= 1e-3


def test_kernel_is_how_to_run():
    from mtlbench.results import HOW_TO_RUN
    assert "kernel" in HOW_TO_RUN
