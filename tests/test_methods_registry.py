"""Checks every registered method gets automatically (the timm habit): on vector and image data, forward shapes,
no NaN, every trainable parameter receives a gradient, a positive parameter count."""
from __future__ import annotations

import pytest
import torch

from mtlbench.methods.backbone import BackboneSpec
from mtlbench.methods.base import count_parameters
from mtlbench.registry import METHODS
from tests.conftest import small_data

# Three equal-width layers and size-preserving convolutions: the shape every method accepts (Soft-Order
# reorders its shared layers, so it needs equal widths and at least two layers to order after its encoder).
BACKBONES = {"vector": BackboneSpec(hidden=[32, 32, 32]),
             "image": BackboneSpec(channels=[8, 8, 8], padding=1, dense=[16])}


def build(name: str, kind: str):
    data = small_data(kind)
    cls = METHODS.get(name)
    params = cls.Params()
    reasons = cls.check(data.info, BACKBONES[kind], params)
    if reasons:
        pytest.skip(f"{name} refuses {kind} data: {reasons[0]}")
    torch.manual_seed(0)
    return cls(data.info, BACKBONES[kind], params), data


def task_batches(data, n: int = 6):
    return [s.batch(torch.arange(n)) for s in data.split("train")]


@pytest.mark.parametrize("kind", ["vector", "image"])
@pytest.mark.parametrize("name", METHODS.names())
def test_forward_shapes_and_finite(name, kind):
    model, data = build(name, kind)
    outs = model([x for x, _ in task_batches(data)])
    assert len(outs) == data.info.n_tasks
    for out, task in zip(outs, data.info.tasks):
        assert out.shape == (6, task.n_classes)
        assert torch.isfinite(out).all()
    model.eval()
    for t, (x, _) in enumerate(task_batches(data)):
        assert model.forward_task(x, t).shape == (6, data.info.tasks[t].n_classes)


@pytest.mark.parametrize("kind", ["vector", "image"])
@pytest.mark.parametrize("name", METHODS.names())
def test_every_parameter_gets_a_gradient(name, kind):
    model, data = build(name, kind)
    outs = model([x for x, _ in task_batches(data)])
    loss = sum(o.square().mean() for o in outs)
    reg = model.regularizer()
    if reg is not None:
        assert torch.isfinite(reg)
        loss = loss + reg
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing, f"no (finite) gradient for {missing}"
    untouched = [n for n, p in model.named_parameters() if p.requires_grad and p.grad.abs().sum() == 0]
    assert not untouched, f"all-zero gradient for {untouched}"


@pytest.mark.parametrize("name", METHODS.names())
def test_parameter_count_reported(name):
    model, _ = build(name, "vector")
    assert count_parameters(model) == sum(p.numel() for p in model.parameters() if p.requires_grad) > 0


@pytest.mark.parametrize("name", METHODS.names())
def test_method_declares_its_paper_and_params(name):
    cls = METHODS.get(name)
    assert cls.__doc__ and cls.paper, f"{name} needs a docstring and a paper citation"
    assert cls.Params.model_config.get("extra") == "forbid"
