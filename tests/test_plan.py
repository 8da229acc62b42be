"""The layer plan (names, shapes, stages, width scaling), the trunk input rule, the per-task stems (shapes and
closed-form parameter counts) and run_towers' computed-weight path (grouped conv == tower by tower)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtlbench.nn.backbone import BackboneSpec, TrunkInput
from mtlbench.nn.layer_plan import PlanError, Trunk, build_plan, plan_for, run_towers, trunk_input
from mtlbench.nn.method import MTLMethod, parameter_counts
from mtlbench.registry import METHODS
from mtlbench.store.dataset import DataInfo, TaskInfo


def info_of(*shapes) -> DataInfo:
    return DataInfo("toy", [TaskInfo(f"t{i}", 3, "multiclass", s) for i, s in enumerate(shapes)], "per_task", "acc")


def test_vgg16_plan_names_shapes_and_stages():
    plan = build_plan(BackboneSpec(kind="vgg", dense=[4096, 4096]), "vgg", (3, 224, 224))
    names = [layer.name for layer in plan.layers]
    assert names == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1",
                     "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc1", "fc2"]
    assert [plan.layers[i].name for i in plan.stage_ends()] == ["conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"]
    assert plan.layers[1].out_shape == (64, 112, 112) and plan.layers[0].out_shape == (64, 224, 224)
    assert plan.layers[12].out_shape == (512, 7, 7) and plan.layers[13].in_shape == (512 * 7 * 7,)
    assert plan.layers[13].flatten and not plan.layers[14].flatten and plan.out_features == 4096
    trunk = Trunk(plan)  # VGG-16's 13 convolutions + fc6/fc7 as our fc1/fc2 (BatchNorm on by default)
    n_conv = sum(p.numel() for n, p in trunk.named_parameters() if ".affine." in n and int(n.split(".")[1]) < 13)
    assert n_conv == 14_714_688  # VGG-16's published conv parameter count


def test_width_scales_every_layer_rounded_and_at_least_one():
    plan = build_plan(BackboneSpec(kind="vgg", width=0.125, dense=[4096, 10]), "vgg", (3, 32, 32))
    assert [layer.width for layer in plan.layers] == [8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64, 512, 1]
    assert plan.layers[12].out_shape == (64, 1, 1)
    assert [layer.width for layer in build_plan(BackboneSpec(hidden=[5, 3], width=0.5), "mlp", (4,)).layers] == [3, 2]


def test_conv_and_mlp_kinds_name_layers_and_end_a_stage_at_every_layer():
    conv = build_plan(BackboneSpec(channels=[6, 12, 24], dense=[32]), "conv", (1, 28, 28))
    assert [(layer.name, layer.out_shape) for layer in conv.layers] == [
        ("conv1", (6, 13, 13)), ("conv2", (12, 5, 5)), ("conv3", (24, 1, 1)), ("fc1", (32,))]
    assert conv.stage_ends() == [0, 1, 2, 3]
    mlp = build_plan(BackboneSpec(hidden=[8, 8]), "mlp", (1, 4, 4))
    assert [layer.name for layer in mlp.layers] == ["fc1", "fc2"]
    assert mlp.layers[0].flatten and mlp.stage_ends() == [0, 1]


def test_too_small_input_names_the_layer():
    with pytest.raises(PlanError, match=r"conv4 gets 24x1x1 and its 3x3 convolution \(padding 0\) and 2x2 "
                                        r"max-pool would leave 0x0") as e:
        build_plan(BackboneSpec(), "conv", (1, 28, 28))
    assert e.value.field == () and "\n" not in str(e.value)


@pytest.mark.parametrize("shapes, spec, expected", [
    ([(1, 28, 28)] * 3, BackboneSpec(), (1, 28, 28)),  # homogeneous: the tasks' shape
    ([(1, 28, 28), (3, 64, 48), (800,)], BackboneSpec(), (3, 64, 48)),  # largest C, H, W over image tasks
    ([(1, 28, 28), (800,)], BackboneSpec(input=TrunkInput(channels=3, size=32)), (3, 32, 32)),
    ([(1, 28, 28)], BackboneSpec(input=TrunkInput(size=(20, 24))), (1, 20, 24)),
    ([(7,), (9,)], BackboneSpec(), (9,)),  # mlp: the largest flattened size
    ([(1, 4, 4)] * 2, BackboneSpec(kind="mlp"), (1, 4, 4)),  # flattened by the first layer, as before stems
    ([(7,), (9,)], BackboneSpec(input=TrunkInput(features=5)), (5,)),
])
def test_trunk_input_rule(shapes, spec, expected):
    assert trunk_input(info_of(*shapes), spec) == expected


@pytest.mark.parametrize("shapes, spec, needle", [
    ([(7,)], BackboneSpec(kind="conv"), "needs input: {channels: C, size: S}"),
    ([(7,)], BackboneSpec(input=TrunkInput(size=4)), "an mlp trunk takes input: {features: N}"),
    ([(1, 8, 8)], BackboneSpec(input=TrunkInput(features=4)), "takes input: {channels: C, size: S}"),
])
def test_trunk_input_refusals_name_backbone_input(shapes, spec, needle):
    with pytest.raises(PlanError) as e:
        plan_for(info_of(*shapes), spec)
    assert e.value.field == ("input",) and needle in e.value.message


class Heads(MTLMethod):
    """Stems and a linear head per task on the flattened trunk input: to count and run the stems alone."""

    def __init__(self, info, backbone, params):
        super().__init__(info, backbone, params)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(self.plan.out_features, 3) for _ in info.tasks)

    def forward_one(self, h, task):
        return self.heads[task](h.flatten(1))


@pytest.mark.parametrize("shape, trunk, params", [
    ((3, 32, 32), (3, 32, 32), 0),  # identity
    ((1, 20, 20), (1, 24, 24), 0),  # resize only
    ((1, 16, 16), (3, 32, 32), 1 * 3 + 3),  # resize + 1x1 conv 1 -> 3
    ((3, 32, 32), (1, 32, 32), 3 * 1 + 1),  # 1x1 conv 3 -> 1
    ((800,), (3, 8, 8), 800 * 192 + 192),  # SURF vector -> C x H x W
    ((1, 16, 16), (300,), 256 * 300 + 300),  # flattened image -> mlp trunk width
    ((1, 16, 16), (256,), 0),  # flattening only
    ((5,), (9,), 5 * 9 + 9),
])
def test_stem_shapes_and_closed_form_parameter_counts(shape, trunk, params):
    kind = "mlp" if len(trunk) == 1 else "conv"
    spec = BackboneSpec(kind=kind, hidden=[4], channels=[2], padding=1, dense=[],
                        input=TrunkInput(features=trunk[0]) if kind == "mlp" else
                        TrunkInput(channels=trunk[0], size=trunk[1]))
    model = Heads(info_of(shape), spec, Heads.Params())
    assert parameter_counts(model)["stems"] == params
    stemmed = model.stems[0](torch.randn(2, *shape))
    assert stemmed.shape == (2, *trunk)


def test_image_stem_resizes_with_antialiased_bilinear_by_default():
    spec = BackboneSpec(channels=[2], padding=1, dense=[], input=TrunkInput(size=8))
    model = Heads(info_of((1, 16, 16)), spec, Heads.Params())
    x = torch.randn(2, 1, 16, 16)
    expected = F.interpolate(x, size=(8, 8), mode="bilinear", antialias=True)
    assert torch.equal(model.stems[0](x), expected)
    nearest = Heads(info_of((1, 16, 16)), spec.model_copy(update={"resize": "nearest"}), Heads.Params())
    assert torch.equal(nearest.stems[0](x), x[:, :, ::2, ::2])


def test_stl_rows_of_mixed_inputs_count_their_stems_apart():
    stl = METHODS.get("stl")
    info = info_of((1, 16, 16), (3, 24, 24), (800,))
    spec = BackboneSpec(kind="vgg", stages=[[4], [8]], dense=[16])
    counts = parameter_counts(stl(info, spec, stl.Params()))
    assert counts["stems"] == (1 * 3 + 3) + 0 + (800 * 3 * 24 * 24 + 3 * 24 * 24)


def test_backbone_dump_of_old_specs_is_unchanged():
    """Keys added with VGG stages and stems are left out of the dump while at their defaults (records written
    before them keep their identity); once set they are dumped."""
    old = {"kind": "conv", "hidden": [8], "channels": [4], "kernel_size": 3, "padding": 1, "pool": 2,
           "dense": [16], "conv_batch_norm": True, "dense_batch_norm": False, "dropout": 0.0}
    assert BackboneSpec.model_validate(old).model_dump(mode="json") == old
    new = BackboneSpec.model_validate({**old, "kind": "vgg", "width": 0.5, "input": {"size": 32}})
    dumped = new.model_dump(mode="json")
    assert dumped["width"] == 0.5 and dumped["input"]["size"] == 32 and "resize" not in dumped
    assert BackboneSpec.model_validate(dumped) == new


@pytest.mark.parametrize("stacked", [True, False])
def test_computed_conv_weights_run_tower_by_tower_or_as_one_grouped_conv(stacked):
    """weights(layer) replaces each tower's conv weight (the towers keep their bias, BatchNorm, activation and
    pooling); a stacked [T, out, in, k, k] weight runs all towers in one grouped conv with the same result."""
    torch.manual_seed(0)
    plan = build_plan(BackboneSpec(channels=[4, 5], padding=1, dense=[3]), "conv", (2, 8, 8))
    towers = [Trunk(plan).eval() for _ in range(3)]
    new = {0: torch.randn(3, 4, 2, 3, 3), 1: torch.randn(3, 5, 4, 3, 3)}
    xs = [torch.randn(6, 2, 8, 8) for _ in range(3)]

    def weights(layer):
        if layer.kind != "conv":
            return None
        return new[layer.index] if stacked else list(new[layer.index])
    got = run_towers(plan, [t.blocks for t in towers], xs, weights=weights)
    with torch.no_grad():
        for t, tower in enumerate(towers):
            for i in (0, 1):
                tower.blocks[i].affine.weight.copy_(new[i][t])
            torch.testing.assert_close(got[t], tower(xs[t]), rtol=1e-5, atol=1e-5)


def test_raw_input_methods_build_no_plan_and_no_stems():
    """A method declaring raw_inputs (no trunk) reads each task's raw input: no layer plan, identity stems,
    and a backbone that could not be built for the tasks does not stop it."""
    from tests.fake_methods import RidgeFit

    info = info_of((7,), (1, 5, 5))
    model = RidgeFit(info, BackboneSpec(kind="conv"), RidgeFit.Params())  # a conv trunk could not take (7,)
    assert model.plan is None and all(isinstance(s, torch.nn.Identity) for s in model.stems)
    assert [o.shape for o in model([torch.randn(2, 7), torch.randn(2, 1, 5, 5)])] == [(2, 3), (2, 3)]
