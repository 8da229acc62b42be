"""NDDR-CNN (Gao et al. 2019): with init (1, 0) and no BatchNorm it is exactly STL's towers; the diagonal and
Xavier inits; closed-form parameter counts; the learning-rate multiplier; refusals."""
from __future__ import annotations

import pytest
import torch

from mtlbench.config.schema import OptimizerSpec
from mtlbench.nn.backbone import BackboneSpec
from mtlbench.nn.method import parameter_counts
from mtlbench.registry import METHODS
from mtlbench.store.dataset import DataInfo, TaskInfo
from mtlbench.training.optim import optimizer_groups

NDDR, STL = METHODS.get("nddr"), METHODS.get("stl")

# a vector MLP, the TAAN conv net, and a small VGG on tasks of different input sizes and kinds (stems)
CASES = [
    ([(7,)] * 3, BackboneSpec(hidden=[6, 5, 4])),
    ([(1, 12, 12)] * 3, BackboneSpec(channels=[3, 4], dense=[5])),
    ([(1, 16, 16), (3, 12, 12), (20,)], BackboneSpec(kind="vgg", stages=[[3, 3], [4]], dense=[5])),
]


def info_of(shapes) -> DataInfo:
    tasks = [TaskInfo(f"t{t}", 2 + t, "multiclass", s) for t, s in enumerate(shapes)]
    return DataInfo("toy", tasks, "per_task", "accuracy")


@pytest.mark.parametrize("shapes, spec", CASES)
def test_identity_init_without_batch_norm_is_exactly_stl(shapes, spec):
    torch.manual_seed(0)
    info = info_of(shapes)
    model = NDDR(info, spec, NDDR.Params(alpha=1.0, beta=0.0, batch_norm=False)).eval()
    stl = STL(info, spec, STL.Params()).eval()
    stl.load_state_dict(model.state_dict(), strict=False)  # stems, towers and heads use STL's key names
    xs = [torch.randn(4, *s) for s in shapes]
    with torch.no_grad():
        for t, (a, b) in enumerate(zip(model(xs), stl(xs))):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)  # batch concatenation: BLAS rounding only
            assert torch.equal(model.forward_task(xs[t], t), stl.forward_task(xs[t], t))
        # the paper's init mixes the towers: the outputs change
        mixed = NDDR(info, spec, NDDR.Params(batch_norm=False)).eval()
        mixed.load_state_dict(model.state_dict(), strict=False)
        mixed.units.load_state_dict(NDDR(info, spec, NDDR.Params(batch_norm=False)).units.state_dict())
        assert not torch.allclose(mixed.forward_task(xs[0], 0), stl.forward_task(xs[0], 0))


def test_diagonal_init_blocks_and_xavier():
    """Row block t of the [T*C, T*C] weight is task t's reduction: alpha I on its own block, beta I elsewhere."""
    info, spec = info_of([(7,)] * 4), BackboneSpec(hidden=[3, 2])
    w = NDDR(info, spec, NDDR.Params()).units[0].reduce.weight.detach()  # T = 4, C = 3
    blocks = w.view(4, 3, 4, 3).permute(0, 2, 1, 3)  # [t, s, C, C]
    beta = (1 - 0.9) / 3
    for t in range(4):
        for s in range(4):
            torch.testing.assert_close(blocks[t, s], (0.9 if s == t else beta) * torch.eye(3))
    given = NDDR(info, spec, NDDR.Params(alpha=0.5, beta=0.5)).units[0].reduce.weight.detach()
    assert torch.equal(given.view(4, 3, 4, 3)[0, :, 1], 0.5 * torch.eye(3))  # beta not divided by T - 1
    xavier = NDDR(info, spec, NDDR.Params(init="xavier")).units[1].reduce.weight.detach()  # C = 2: fan 8 -> 2
    bound = (6 / (8 + 2)) ** 0.5
    assert xavier.abs().max() <= bound and xavier.std() > bound / 4


@pytest.mark.parametrize("shapes, spec", CASES)
def test_parameter_count_closed_form(shapes, spec):
    """STL's count (stems, towers, heads) + per NDDR layer T*(T*C*C) weights + 2*T*C BatchNorm parameters."""
    info = info_of(shapes)
    model = NDDR(info, spec, NDDR.Params())
    T = len(shapes)
    widths = [model.plan.layers[i].width for i in model.plan.stage_ends()]
    stl = parameter_counts(STL(info, spec, STL.Params()))
    counts = parameter_counts(model)
    assert counts["trainable"] == stl["trainable"] + sum(T * (T * c * c) + 2 * T * c for c in widths)
    assert counts["stems"] == stl["stems"]
    if spec.kind == "vgg":
        assert [model.plan.layers[i].name for i in model.positions] == ["conv1_2", "conv2_1"]


def test_lr_multiplier_on_the_nddr_weights_only():
    model = NDDR(info_of([(7,)] * 3), BackboneSpec(hidden=[6, 5]), NDDR.Params(positions=["fc2"]))
    groups = optimizer_groups(model, OptimizerSpec(lr=1e-3))
    assert groups[1]["lr"] == pytest.approx(0.1) and groups[1]["params"] == [model.units[0].reduce.weight]
    assert groups[1]["groups"] == ["reductions"] and groups[0]["lr"] == pytest.approx(1e-3)
    assert model.positions == [1] and model.summary()["nddr"]["position_names"] == ["fc2"]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters())


def test_stl_tower_init(tmp_path):
    info, spec = info_of([(7,), (9,)]), BackboneSpec(hidden=[6, 5])
    stl = STL(info, spec, STL.Params())
    torch.save(stl.state_dict(), tmp_path / "seed0.pt")
    model = NDDR(info, spec, NDDR.Params(tower_init="stl", stl_checkpoint=str(tmp_path / "seed0.pt")))
    assert torch.equal(model.trunks[1].blocks[1].affine.weight, stl.trunks[1].blocks[1].affine.weight)
    assert torch.equal(model.stems[0].proj.weight, stl.stems[0].proj.weight)


@pytest.mark.parametrize("params, needle", [
    ({"positions": [0, 7]}, "positions [7] are not layers"),
    ({"positions": ["conv1"]}, "positions ['conv1']"),
    ({"tower_init": "stl"}, "stl_checkpoint"),
])
def test_check_refuses(params, needle):
    problems = NDDR.check(info_of([(7,)] * 2), BackboneSpec(hidden=[6, 5]), NDDR.Params(**params))
    assert any(needle in p for p in problems), problems
