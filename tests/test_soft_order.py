"""Soft-Order (Meyerson & Miikkulainen 2018): one-hot orderings reduce it to a plain network, options and refusals."""
from __future__ import annotations

import itertools
import re

import pytest
import torch

from mtlbench.errors import SpecError
from mtlbench.nn.backbone import BackboneSpec
from mtlbench.nn.method import count_parameters
from mtlbench.registry import METHODS
from mtlbench.store.dataset import DataInfo, TaskInfo

SoftOrder = METHODS.get("soft_order")


def info_of(shapes, classes=None, name="toy") -> DataInfo:
    classes = classes or [3 + t for t in range(len(shapes))]
    tasks = [TaskInfo(f"t{t}", c, "multiclass", s) for t, (s, c) in enumerate(zip(shapes, classes))]
    return DataInfo(name, tasks, "per_task", "accuracy")


def force_orders(model, orders):
    """sigma -> +-1e4 so that the softmax is exactly one-hot: task t applies layer orders[t][d] at depth d."""
    with torch.no_grad():
        model.sigma.fill_(-1e4)
        for t, order in enumerate(orders):
            for d, layer in enumerate(order):
                model.sigma[t, d, layer] = 1e4


def test_one_hot_orders_equal_the_plain_network_mlp():
    torch.manual_seed(0)
    info = info_of([(7,)] * 3)
    model = SoftOrder(info, BackboneSpec(hidden=[6, 6, 6, 6]), SoftOrder.Params())
    orders = [(0, 1, 2), (2, 0, 1), (1, 1, 0)]  # a repeated layer is a valid order too
    force_orders(model, orders)
    xs = [torch.randn(5, 7) for _ in range(3)]
    out = model(xs)
    for t, (x, order) in enumerate(zip(xs, orders)):
        y = model.encoders[t](x)
        for layer in order:
            y = model.layers[layer](y)
        expected = model.heads[t](y)
        # the all-task forward runs the concatenated batch, so only BLAS rounding may differ
        torch.testing.assert_close(out[t], expected, rtol=1e-6, atol=1e-6)
        assert torch.equal(model.forward_task(x, t), expected)
    # soft (non one-hot) mixing gives a different function: the equality above is not vacuous
    with torch.no_grad():
        model.sigma.zero_()
    assert not torch.allclose(model(xs)[0], out[0])


def test_one_hot_orders_equal_the_plain_network_conv():
    torch.manual_seed(1)
    info = info_of([(1, 12, 12)] * 2)
    spec = BackboneSpec(channels=[4, 4, 4], padding=1, dense=[5])
    model = SoftOrder(info, spec, SoftOrder.Params(encoder="shared")).eval()
    orders = [(1, 0), (1, 1)]
    force_orders(model, orders)
    xs = [torch.randn(3, 1, 12, 12) for _ in range(2)]
    out = model(xs)
    for t, (x, order) in enumerate(zip(xs, orders)):
        y = model.encoders[0](x)
        for layer in order:
            y = model.pool(model.layers[layer](y))
        y = model.post[0](y.flatten(1))
        torch.testing.assert_close(out[t], model.heads[t](y), rtol=1e-6, atol=1e-6)


def test_taan_variant_is_hard_share_plus_the_ordering_tensor():
    info = info_of([(9,)] * 4)
    spec = BackboneSpec(hidden=[8, 8, 8])
    model = SoftOrder(info, spec, SoftOrder.Params(fidelity="taan_code"))
    hard = METHODS.get("hard_share")(info, spec, METHODS.get("hard_share").Params())
    assert model.params.encoder == "shared" and model.params.sigma_init == "normal"
    assert model.sigma.shape == (4, 2, 2)  # D = L = 2 with three hidden layers
    assert count_parameters(model) == count_parameters(hard) + 4 * 2 * 2
    assert 0 < model.sigma.abs().max() < 0.1  # 0.01 N(0, 1)
    paper = SoftOrder(info, spec, SoftOrder.Params())
    assert torch.equal(paper.sigma, torch.zeros(4, 2, 2)) and len(paper.encoders) == 4


def test_depth_option_and_mixing_summary():
    info = info_of([(5,)] * 2)
    model = SoftOrder(info, BackboneSpec(hidden=[4, 4, 4]), SoftOrder.Params(depth=5))
    assert model.sigma.shape == (2, 5, 2)
    mixing = torch.tensor(model.summary()["soft_order"]["mixing"])
    assert torch.allclose(mixing.sum(-1), torch.ones(2, 5))


def test_task_encoders_accept_different_input_sizes():
    info = info_of([(5,), (9,)])
    model = SoftOrder(info, BackboneSpec(hidden=[4, 4, 4]), SoftOrder.Params())
    out = model([torch.randn(3, 5), torch.randn(2, 9)])
    assert [o.shape for o in out] == [(3, 3), (2, 4)]


@pytest.mark.parametrize("shapes, spec, params, needle", [
    ([(5,)] * 2, BackboneSpec(hidden=[8, 4, 4]), {}, "hidden widths must be equal"),
    ([(5,)] * 2, BackboneSpec(hidden=[8, 8]), {}, "at least 3 hidden layers"),
    ([(1, 28, 28)] * 2, BackboneSpec(channels=[4, 8, 8], padding=1), {}, "conv channels must be equal"),
    ([(1, 28, 28)] * 2, BackboneSpec(channels=[4, 4, 4]), {}, "padding"),
    ([(1, 28, 28)] * 2, BackboneSpec(channels=[4, 4], padding=1), {}, "at least 3 conv blocks"),
    ([(1, 8, 8)] * 2, BackboneSpec(channels=[4, 4, 4, 4, 4], padding=1), {}, "too small"),
    ([(1, 32, 32)] * 2, BackboneSpec(kind="vgg"), {}, "vgg backbone"),
])
def test_check_refuses_what_soft_order_cannot_run(shapes, spec, params, needle):
    info = info_of(shapes)
    problems = SoftOrder.check(info, spec, SoftOrder.Params(**params))
    assert any(needle in p for p in problems), problems
    assert all("\n" not in p for p in problems)
    with pytest.raises(SpecError, match=re.escape(needle)):  # building it refuses with the same words
        SoftOrder(info, spec, SoftOrder.Params(**params))


def test_every_order_of_two_layers_is_reachable():
    """All L**D hard orders are distinct functions (the layers really are applied in the given order)."""
    torch.manual_seed(2)
    info = info_of([(6,)])
    model = SoftOrder(info, BackboneSpec(hidden=[5, 5, 5]), SoftOrder.Params())
    x = torch.randn(4, 6)
    outs = []
    for order in itertools.product(range(2), repeat=2):
        force_orders(model, [order])
        outs.append(model.forward_task(x, 0))
    assert all(not torch.allclose(a, b) for a, b in itertools.combinations(outs, 2))


@pytest.mark.parametrize("shape, spec", [((6,), BackboneSpec(hidden=[5, 5, 5])),
                                         ((1, 10, 10), BackboneSpec(channels=[3, 3, 3], padding=1, dense=[4]))])
def test_every_parameter_gets_a_gradient(shape, spec):
    """(The registry-wide test skips soft_order on its default backbones, whose widths differ.)"""
    torch.manual_seed(3)
    model = SoftOrder(info_of([shape] * 3), spec, SoftOrder.Params())
    sum(o.square().mean() for o in model([torch.randn(4, *shape) for _ in range(3)])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_batchnorm_statistics_belong_to_the_layer_not_the_depth():
    """Meyerson & Miikkulainen's y_d = sum_l s_{t,d,l} F_l(y_{d-1}) applies the same function F_l at every depth,
    and the TAAN code's SoftOrderNet reuses one module per soft layer at both depths (its BatchNorm, commented out,
    sits inside that module): a layer's BatchNorm is one set of running statistics, updated at every depth."""
    torch.manual_seed(2)
    info = info_of([(1, 16, 16)] * 2)
    spec = BackboneSpec(channels=[4, 4, 4, 4], padding=1, dense=[5], conv_batch_norm=True)
    model = SoftOrder(info, spec, SoftOrder.Params(depth=2)).train()
    norms = [m for m in model.layers.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == model.n_layers == 3  # one per shared layer, none per depth
    model([torch.randn(6, 1, 16, 16) for _ in range(2)])
    # every shared layer ran once per depth (all tasks' rows in one call): D updates of its one statistics
    assert [int(n.num_batches_tracked) for n in norms] == [model.depth] * 3
