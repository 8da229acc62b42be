"""Cross-Stitch (Misra et al. 2016): identity units give STL towers exactly; inits, granularity and refusals."""
from __future__ import annotations

import pytest
import torch

from mtlbench.config.schema import OptimizerSpec
from mtlbench.nn.backbone import BackboneSpec
from mtlbench.registry import METHODS
from mtlbench.store.dataset import DataInfo, TaskInfo
from mtlbench.training.optim import optimizer_groups

CrossStitch, STL = METHODS.get("cross_stitch"), METHODS.get("stl")

CASES = [((7,), BackboneSpec(hidden=[6, 5, 4])), ((1, 12, 12), BackboneSpec(channels=[3, 4], dense=[5]))]


def info_of(shape, n_tasks=3) -> DataInfo:
    tasks = [TaskInfo(f"t{t}", 2 + t, "multiclass", shape) for t in range(n_tasks)]
    return DataInfo("toy", tasks, "per_task", "accuracy")


def set_identity(model):
    with torch.no_grad():
        for a in model.alphas:
            a.copy_(torch.eye(a.shape[-1]).expand_as(a))


@pytest.mark.parametrize("granularity", ["scalar", "channel"])
@pytest.mark.parametrize("shape, spec", CASES)
def test_identity_units_equal_stl_towers_exactly(shape, spec, granularity):
    torch.manual_seed(0)
    info = info_of(shape)
    model = CrossStitch(info, spec, CrossStitch.Params(granularity=granularity))
    set_identity(model)
    stl = STL(info, spec, STL.Params())
    stl.load_state_dict(model.state_dict(), strict=False)  # the towers use STL's key names
    if spec.conv_batch_norm and len(shape) == 3:
        model.eval(), stl.eval()  # in training a tower's BatchNorm sees every task's batch (documented)
    xs = [torch.randn(4, *shape) for _ in range(3)]
    with torch.no_grad():
        ours, ref = model(xs), stl(xs)
        for t, (a, b) in enumerate(zip(ours, ref)):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)  # batch concatenation: BLAS rounding only
            assert torch.equal(model.forward_task(xs[t], t), stl.forward_task(xs[t], t))
        # and the units are not a no-op: mixing the towers changes the outputs
        for a in model.alphas:
            a.copy_(torch.full_like(a, 1 / 3))
        assert not torch.allclose(model(xs)[0], ref[0])


def test_identity_units_on_mixed_inputs_and_vgg_stages_equal_stl():
    """Tasks of different sizes and kinds reach the towers through their stems; units after the VGG pooling
    stages (the default positions); identity units give STL exactly, the convex init does not."""
    torch.manual_seed(0)
    shapes = [(1, 16, 16), (3, 12, 12), (20,)]
    info = DataInfo("mixed", [TaskInfo(f"t{t}", 2 + t, "multiclass", s) for t, s in enumerate(shapes)],
                    "per_task", "accuracy")
    spec = BackboneSpec(kind="vgg", stages=[[3, 3], [4]], dense=[5])
    model = CrossStitch(info, spec, CrossStitch.Params()).eval()
    assert [model.plan.layers[i].name for i in model.positions] == ["conv1_2", "conv2_1"]
    stl = STL(info, spec, STL.Params()).eval()
    stl.load_state_dict(model.state_dict(), strict=False)
    xs = [torch.randn(4, *s) for s in shapes]
    with torch.no_grad():
        assert not torch.allclose(model.forward_task(xs[0], 0), stl.forward_task(xs[0], 0))  # convex 0.9/0.05
        set_identity(model)
        for t, (a, b) in enumerate(zip(model(xs), stl(xs))):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
            assert torch.equal(model.forward_task(xs[t], t), stl.forward_task(xs[t], t))


def test_convex_init_and_row_sums():
    model = CrossStitch(info_of((7,), n_tasks=5), BackboneSpec(hidden=[6, 5]), CrossStitch.Params())
    assert len(model.alphas) == 2
    a = model.alphas[0]
    assert torch.allclose(torch.diagonal(a), torch.full((5,), 0.9))
    assert torch.allclose(a[0, 1:], torch.full((4,), 0.025))
    assert torch.allclose(a.sum(1), torch.ones(5))
    one = CrossStitch(info_of((7,), n_tasks=1), BackboneSpec(hidden=[6]), CrossStitch.Params())
    assert torch.equal(one.alphas[0], torch.ones(1, 1))


def test_taan_code_init_renormalises_rows_every_forward():
    model = CrossStitch(info_of((7,)), BackboneSpec(hidden=[6, 5]), CrossStitch.Params(fidelity="taan_code"))
    assert model.params.init == "random_rownorm"
    with torch.no_grad():
        model.alphas[0].mul_(3.0)
    model([torch.randn(2, 7) for _ in range(3)])
    assert torch.allclose(model.alphas[0].norm(dim=-1), torch.ones(3))
    ones = CrossStitch(info_of((7,)), BackboneSpec(hidden=[6]), CrossStitch.Params(init="ones"))
    assert torch.equal(ones.alphas[0], torch.ones(3, 3))


def test_positions_channel_units_and_lr_multiplier():
    spec = BackboneSpec(hidden=[6, 5, 4])
    model = CrossStitch(info_of((7,)), spec, CrossStitch.Params(positions=[1], granularity="channel",
                                                               alpha_lr_mult=100.0))
    assert model.positions == [1] and model.alphas[0].shape == (5, 3, 3)
    groups = optimizer_groups(model, OptimizerSpec(lr=1e-3))
    assert groups[1]["lr"] == pytest.approx(0.1) and groups[1]["params"][0] is model.alphas[0]
    n_all = sum(p.numel() for g in groups for p in g["params"])
    assert n_all == sum(p.numel() for p in model.parameters())
    summary = model.summary()["cross_stitch"]
    assert summary["tower_batch_passes_per_iteration"] == 9 and len(summary["alpha"][0]) == 3


def test_stl_tower_init(tmp_path):
    info, spec = info_of((7,)), BackboneSpec(hidden=[6, 5])
    stl = STL(info, spec, STL.Params())
    torch.save(stl.state_dict(), tmp_path / "seed0.pt")
    model = CrossStitch(info, spec, CrossStitch.Params(tower_init="stl", stl_checkpoint=str(tmp_path / "seed0.pt")))
    assert torch.equal(model.trunks[2].blocks[1].affine.weight, stl.trunks[2].blocks[1].affine.weight)
    assert torch.equal(model.heads[1].bias, stl.heads[1].bias)


@pytest.mark.parametrize("info, params, needle", [
    (info_of((7,)), {"positions": [0, 5]}, "positions [5]"),
    (info_of((7,)), {"positions": ["fc2", "conv1"]}, "positions ['conv1'] are not layers of this backbone"),
    (info_of((7,)), {"tower_init": "stl"}, "stl_checkpoint"),
])
def test_check_refuses(info, params, needle):
    problems = CrossStitch.check(info, BackboneSpec(hidden=[6, 5]), CrossStitch.Params(**params))
    assert any(needle in p for p in problems), problems
