"""The ``taan`` method: options, Hard-Share equivalence at alpha = 0, closed-form regularizer, summary."""
from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from mtlbench.nn.backbone import BackboneSpec
from mtlbench.registry import METHODS
from mtlbench.store.dataset import DataInfo, TaskInfo
from mtlbench.taan import AdaptiveActivation, cosine_reg, distance_reg, trace_norm_reg


def vector_info(n_tasks=3, dim=10):
    tasks = [TaskInfo(f"task{t}", 2 + t, "multiclass", (dim,)) for t in range(n_tasks)]
    return DataInfo("toy", tasks, "shared", "accuracy")


def image_info(n_tasks=2):
    tasks = [TaskInfo(f"alphabet{t}", 3 + t, "multiclass", (1, 20, 20)) for t in range(n_tasks)]
    return DataInfo("toy_img", tasks, "per_task", "accuracy")


def build(name, info, backbone, **params):
    cls = METHODS.get(name)
    return cls(info, backbone, cls.Params.model_validate(params))


MLP = BackboneSpec(hidden=[16, 12])
CONV = BackboneSpec(channels=[3, 4], dense=[8], kernel_size=3)


def test_registered_with_documented_defaults():
    cls = METHODS.get("taan")
    p = cls.Params()
    assert (p.M, p.b_mode, p.reg, p.dis_power, p.fidelity, p.gmm) == (64, "fixed", "none", 1, "paper", None)
    assert (p.b_init.kind, p.b_init.lo, p.b_init.hi, p.alpha_init.kind) == ("grid", -3.0, 3.0, "zero")
    q = cls.Params.model_validate({"b_init": "uniform", "alpha_init": {"kind": "normal", "std": 0.02},
                                   "gmm": [[0.5, 0.0, 1.0], [0.5, 1.0, 2.0]], "reg": "dis", "dis_power": 2})
    assert (q.b_init.lo, q.b_init.hi, q.alpha_init.std) == (-0.5, 0.5, 0.02)


@pytest.mark.parametrize("bad, field, needle", [
    ({"reg": "l2"}, "reg", "'none', 'tn', 'cos' or 'dis'"),
    ({"M": 0}, "M", "greater than or equal to 1"),
    ({"bogus": 1}, "bogus", "Extra inputs are not permitted"),
    ({"gmm": [[0.5, 0.0, 1.0]]}, "gmm", "gmm weights must sum to 1, got 0.5"),
    ({"gmm": [[1.0, 0.0, 0.0]]}, "gmm", "needs pi >= 0 and sigma > 0"),
    ({"b_init": {"kind": "grid", "lo": 1, "hi": 1}}, "b_init", "needs hi > lo"),
    ({"alpha_init": {"kind": "normal", "std": -1}}, "alpha_init", "greater than 0"),
    ({"dis_power": 3}, "dis_power", "1 or 2"),
])
def test_bad_params_refused(bad, field, needle):
    with pytest.raises(ValidationError) as refused:
        METHODS.get("taan").Params.model_validate(bad)
    (error,) = refused.value.errors()  # one problem, on the field given, in words a user can act on
    assert error["loc"][0] == field and needle in error["msg"], error


@pytest.mark.parametrize("info,backbone", [(vector_info(), MLP), (image_info(), CONV)], ids=["mlp", "conv"])
def test_alpha_zero_computes_exactly_hard_share(info, backbone):
    torch.manual_seed(0)
    hard = build("hard_share", info, backbone)
    taan = build("taan", info, backbone, M=16)
    missing, unexpected = taan.load_state_dict(hard.state_dict(), strict=False)
    assert not unexpected and all(k.endswith(("act.alpha", "act.b")) for k in missing)
    n_hidden = len(backbone.hidden) if backbone is MLP else len(backbone.channels + backbone.dense)
    assert len(taan.adaptive_layers()) == n_hidden
    hard.eval(), taan.eval()
    xs = [torch.randn(5 + t, *info.tasks[t].input_shape) for t in range(info.n_tasks)]
    for a, b in zip(taan(xs), hard(xs)):
        assert torch.equal(a, b)
    assert torch.equal(taan.forward_task(xs[1], 1), hard.forward_task(xs[1], 1))
    assert taan.regularizer() is None
    # ... and the same gradients for the shared weights
    sum(o.sum() for o in taan(xs)).backward()
    sum(o.sum() for o in hard(xs)).backward()
    taan_params = dict(taan.named_parameters())
    for name, p in hard.named_parameters():
        assert torch.equal(p.grad, taan_params[name].grad), name


def test_nonzero_alpha_makes_tasks_differ_and_trains():
    torch.manual_seed(1)
    info = vector_info()
    taan = build("taan", info, MLP, M=8, alpha_init={"kind": "normal", "std": 0.5}, reg="dis", reg_coef=0.3)
    x = torch.randn(6, 10)
    out0, out1 = taan.trunk(x, [(0, 6)]), taan.trunk(x, [(1, 6)])
    assert not torch.allclose(out0, out1)
    opt = torch.optim.SGD(taan.parameters(), lr=0.05)
    reg0 = taan.regularizer().item()
    for _ in range(20):  # the regularizer alone pulls the activations together
        opt.zero_grad()
        taan.regularizer().backward()
        opt.step()
    assert taan.regularizer().item() < 0.5 * reg0


@pytest.mark.parametrize("reg,fn", [("tn", lambda a, b, p: trace_norm_reg(a)),
                                    ("cos", lambda a, b, p: cosine_reg(a, b)),
                                    ("dis", lambda a, b, p: distance_reg(a, b, None, p))])
@pytest.mark.parametrize("power", [1, 2])
def test_regularizer_is_c_times_sum_over_layers(reg, fn, power):
    torch.manual_seed(2)
    taan = build("taan", vector_info(), MLP, M=6, alpha_init="normal", reg=reg, reg_coef=0.7, dis_power=power,
                 b_mode="learned", b_init="uniform")
    want = 0.7 * sum(fn(*layer.ordered(), power) for layer in taan.adaptive_layers())
    got = taan.regularizer()
    assert got.requires_grad
    torch.testing.assert_close(got, want)
    got.backward()
    for layer in taan.adaptive_layers():
        assert torch.isfinite(layer.alpha.grad).all() and layer.alpha.grad.abs().sum() > 0


def test_trace_norm_regularizer_finite_at_default_alpha_zero():
    taan = build("taan", vector_info(), MLP, M=5, reg="tn")
    taan.regularizer().backward()
    assert all(torch.isfinite(layer.alpha.grad).all() for layer in taan.adaptive_layers())


def test_summary_has_matrices_per_layer():
    torch.manual_seed(3)
    info = vector_info(4)
    taan = build("taan", info, MLP, M=7, alpha_init={"kind": "normal", "std": 0.3},
                 gmm=[[0.5, -1.0, 1.0], [0.5, 1.0, 0.5]])
    s = taan.summary()
    assert s["task_names"] == info.task_names and len(s["layers"]) == 2
    for layer in s["layers"]:
        d, c = torch.tensor(layer["distance"]), torch.tensor(layer["cosine"])
        assert d.shape == c.shape == (4, 4)
        assert torch.allclose(d, d.T) and d.diagonal().abs().max() < 1e-12 and (d >= 0).all()
        assert torch.allclose(c.diagonal(), torch.ones(4, dtype=c.dtype)) and (c.abs() <= 1 + 1e-9).all()
        assert len(layer["alpha"]) == 4 and len(layer["alpha"][0]) == 7 and len(layer["b"]) == 7


def test_layers_are_adaptive_activations_with_options():
    taan = build("taan", image_info(), CONV, M=5, b_mode="learned",
                 b_init={"kind": "grid", "lo": -1, "hi": 2})
    layers = taan.adaptive_layers()
    assert all(isinstance(a, AdaptiveActivation) and isinstance(a.b, torch.nn.Parameter) for a in layers)
    assert layers[0].b.tolist() == pytest.approx([-1.0, -0.25, 0.5, 1.25, 2.0])
    assert layers[0].alpha.shape == (2, 5)
