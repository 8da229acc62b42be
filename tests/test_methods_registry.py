"""Checks every registered method gets automatically (the timm habit), on homogeneous data and on mixed inputs
(images of different sizes; vectors beside images): forward shapes, no NaN, every trainable parameter receives
a non-zero gradient unless the method declares it exempt (``gradient_exempt``), the optimizer groups hold every
trainable parameter once, and a method refuses only at ``check`` time, with a reason."""
from __future__ import annotations

import pytest
import torch

from mtlbench.data.base import DataInfo, MTLData, TaskInfo, TaskSplit
from mtlbench.methods.backbone import BackboneSpec
from mtlbench.methods.base import count_parameters, parameter_counts
from mtlbench.registry import METHODS
from tests.conftest import small_data

# Three equal-width layers and size-preserving convolutions: the shape every method accepts (Soft-Order
# reorders its shared layers, so it needs equal widths and at least two layers to order after its encoder).
CONV = BackboneSpec(channels=[8, 8, 8], padding=1, dense=[16])
BACKBONES = {"vector": BackboneSpec(hidden=[32, 32, 32]), "image": CONV, "image_sizes": CONV,
             "vector_image": CONV, "image_vgg": BackboneSpec(kind="vgg", stages=[[4], [8, 8]], dense=[16])}
KINDS = list(BACKBONES)


def vector_image_data() -> MTLData:
    """Task 0's 16x16 images as 256-d vectors beside the image tasks of other sizes (16, 20, 24)."""
    data = small_data("image", size_step=4)
    t0 = data.info.tasks[0]
    tasks = [TaskInfo(t0.name, t0.n_classes, t0.target, (256,)), *data.info.tasks[1:]]
    splits = {s: [TaskSplit(p[0].x.flatten(1), p[0].y), *p[1:]] for s, p in data.splits.items()}
    info = DataInfo("vector_image", tasks, "per_task", "accuracy")
    return MTLData(info, splits)


def load(kind: str) -> MTLData:
    if kind == "vector_image":
        return vector_image_data()
    if kind in ("image_sizes", "image_vgg"):
        return small_data("image", size_step=4)
    return small_data(kind)


def build(name: str, kind: str):
    data = load(kind)
    cls = METHODS.get(name)
    params = cls.Params()
    reasons = cls.check(data.info, BACKBONES[kind], params)
    if reasons:
        assert all(r.strip() and "\n" not in r for r in reasons)
        pytest.skip(f"{name} refuses {kind} data: {reasons[0]}")
    torch.manual_seed(0)
    return cls(data.info, BACKBONES[kind], params), data


def task_batches(data, n: int = 6):
    return [s.batch(torch.arange(n)) for s in data.split("train")]


@pytest.mark.parametrize("kind", KINDS)
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


@pytest.mark.parametrize("kind", KINDS)
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
    checked = [(n, p) for n, p in model.named_parameters() if p.requires_grad and not model.is_gradient_exempt(n)]
    missing = [n for n, p in checked if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no (finite) gradient for {missing}"
    untouched = [n for n, p in checked if p.grad.abs().sum() == 0]
    assert not untouched, f"all-zero gradient for {untouched}"


@pytest.mark.parametrize("kind", ["vector", "vector_image"])
@pytest.mark.parametrize("name", METHODS.names())
def test_optimizer_groups_hold_every_trainable_parameter_once(name, kind):
    model, data = build(name, kind)
    grouped = [p for g in model.param_groups(1e-3) for p in g["params"]]
    assert len({id(p) for p in grouped}) == len(grouped), "a parameter is in two groups"
    assert sum(p.numel() for p in grouped) == count_parameters(model) > 0
    counts = parameter_counts(model)
    homogeneous = len({t.input_shape for t in data.info.tasks}) == 1
    assert (counts["stems"] == 0) == homogeneous and counts["stems"] < counts["trainable"]


@pytest.mark.parametrize("name", METHODS.names())
def test_method_declares_its_paper_and_params(name):
    cls = METHODS.get(name)
    assert cls.__doc__ and cls.paper, f"{name} needs a docstring and a paper citation"
    assert cls.Params.model_config.get("extra") == "forbid"


def test_gradient_exemptions_are_declared_patterns():
    """A method may declare parameters that legitimately get no gradient in a step (e.g. a pair weight whose
    pair shares no kernel); only those names are exempt."""
    class Declared(METHODS.get("hard_share")):
        def gradient_exempt(self):
            return {"heads.1.*": "task 1's head is unused in this toy"}

    model = Declared(small_data("vector").info, BACKBONES["vector"], Declared.Params())
    assert model.is_gradient_exempt("heads.1.weight") and model.is_gradient_exempt("heads.1.bias")
    assert not model.is_gradient_exempt("heads.0.weight") and not model.is_gradient_exempt("trunk.blocks.0.affine.weight")
    assert METHODS.get("hard_share")(small_data("vector").info, BACKBONES["vector"],
                                     Declared.Params()).gradient_exempt() == {}
