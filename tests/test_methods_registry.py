"""Checks every registered method gets automatically (the timm habit), on homogeneous data and on mixed inputs
(images of different sizes; vectors beside images): forward shapes, no NaN, every trainable parameter receives
a non-zero gradient unless the method declares it exempt (``gradient_exempt``), the optimizer groups hold every
trainable parameter once, and a method refuses only at ``check`` time, with a reason. A closed-form method is
checked after its ``fit`` on the training split (that is the model it is evaluated as)."""
from __future__ import annotations

import fnmatch

import pytest
import torch

from mtlbench.config.schema import OptimizerSpec
from mtlbench.nn.backbone import BackboneSpec
from mtlbench.nn.method import count_parameters, parameter_counts
from mtlbench.registry import METHODS
from mtlbench.store.dataset import DataInfo, MTLData, TaskInfo, TaskSplit
from mtlbench.training.optim import optimizer_groups
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


# What a method cannot run, by design, with the words that say why. Every other (method, data) pair must be
# accepted: a check that started refusing everything would otherwise turn these tests into skips.
REFUSED = {
    ("mtal", "vector"): "has no conv layer",
    ("mtal_r", "vector"): "has no conv layer",
    ("mtal_r", "vector_image"): "relations: groups needs the dataset's task groups",
    ("mtda", "vector"): "multi-class tasks only",
    ("soft_order", "image_vgg"): "reorders equal layers",
}


def build(name: str, kind: str):
    data = load(kind)
    cls = METHODS.get(name)
    params = cls.Params()
    reasons = cls.check(data.info, BACKBONES[kind], params)
    if (name, kind) in REFUSED:
        assert reasons and REFUSED[name, kind] in reasons[0], reasons
        assert all(r.strip() and "\n" not in r for r in reasons)
        pytest.skip(f"{name} refuses {kind} data: {reasons[0]}")
    assert not reasons, f"{name} refuses {kind} data: {reasons}"
    torch.manual_seed(0)
    model = cls(data.info, BACKBONES[kind], params)
    if model.closed_form:  # fitted, not stepped: its gradients and outputs are checked on the fitted model
        model.fit(data.split("train"))
    return model, data


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
    if METHODS.get(name).closed_form:
        pytest.skip(f"{name} is fitted in closed form: no optimizer, no parameter groups")
    model, data = build(name, kind)
    grouped = [p for g in optimizer_groups(model, OptimizerSpec(lr_mult={"heads": 2.0})) for p in g["params"]]
    assert len({id(p) for p in grouped}) == len(grouped), "a parameter is in two groups"
    assert sum(p.numel() for p in grouped) == count_parameters(model) > 0
    named = model.named_groups()
    assert set(named) == set(model.group_names()) and named["heads"], "every method has heads"
    assert not any(n.startswith("heads.") for g, pairs in named.items() if g != "heads" for n, _ in pairs)
    # a pattern of one method group must not also match another's: each parameter has one group by rule, not by order
    for n, _ in model.named_parameters():
        hits = [g for g, pats in type(model).groups.items() if any(fnmatch.fnmatch(n, p) for p in pats)]
        assert len(hits) <= 1, f"{n} matches the patterns of {hits}"
    assert not hasattr(model, "param_groups"), "methods name groups (groups, group_lr_mult); the optimizer builds them"
    counts = parameter_counts(model)
    homogeneous = len({t.input_shape for t in data.info.tasks}) == 1
    assert (counts["stems"] == 0) == (homogeneous or model.raw_inputs) and counts["stems"] < counts["trainable"]


@pytest.mark.parametrize("name", METHODS.names())
def test_method_declares_its_paper_and_params(name):
    cls = METHODS.get(name)
    assert cls.__doc__ and cls.cite, f"{name} needs a docstring and a paper (cite: a key of the bibliography)"
    assert cls.Params.model_config.get("extra") == "forbid"


def test_gradient_exemptions_are_declared_patterns():
    """A method may declare parameters that legitimately get no gradient in a step (e.g. a pair weight whose
    pair shares no kernel); only those names are exempt."""
    class Declared(METHODS.get("hard_share")):
        def gradient_exempt(self):
            return {"heads.1.*": "task 1's head is unused in this toy"}

    model = Declared(small_data("vector").info, BACKBONES["vector"], Declared.Params())
    assert model.is_gradient_exempt("heads.1.weight") and model.is_gradient_exempt("heads.1.bias")
    assert not model.is_gradient_exempt("heads.0.weight")
    assert not model.is_gradient_exempt("trunk.blocks.0.affine.weight")
    assert METHODS.get("hard_share")(small_data("vector").info, BACKBONES["vector"],
                                     Declared.Params()).gradient_exempt() == {}
