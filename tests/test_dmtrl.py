"""DMTRL (Yang & Hospedales 2017): factorisations reconstruct within tolerance, counts match the closed forms of
STL initialisation reproduces the STL networks, and bad inputs are refused."""
from __future__ import annotations

import math

import pytest
import torch

from mtlbench.methods import dmtrl as dmtrl_module
from mtlbench.nn.backbone import BackboneSpec
from mtlbench.nn.method import count_parameters
from mtlbench.nn.tensor_factors import LAF, TensorTrain, Tucker
from mtlbench.registry import METHODS
from mtlbench.store.dataset import DataInfo, TaskInfo

NAMES = ["dmtrl_laf", "dmtrl_tucker", "dmtrl_tt"]
FACTORS = {"LAF": LAF, "Tucker": Tucker, "TT": TensorTrain}


def low_rank_tensor(shape=(12, 10, 6), ranks=(3, 4, 2), noise=0.05, seed=0) -> torch.Tensor:
    """A Tucker-structured tensor plus noise: its ranks are well below full, so rank selection matters."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(*ranks, generator=gen, dtype=torch.float64)
    for n, (d, k) in enumerate(zip(shape, ranks)):
        u = torch.randn(d, k, generator=gen, dtype=torch.float64)
        w = (w.movedim(n, -1) @ u.T).movedim(-1, n)
    return w + noise * w.norm() / math.sqrt(w.numel()) * torch.randn(*shape, generator=gen, dtype=torch.float64)


def closed_form(kind: str, shape, ranks) -> int:
    """Parameter counts: LAF K(prod D + T); Tucker prod K + sum Dn Kn + T K_T; TT sum r_{n-1} Dn r_n."""
    if kind == "LAF":
        return ranks[0] * (math.prod(shape[:-1]) + shape[-1])
    if kind == "Tucker":
        return math.prod(ranks) + sum(d * k for d, k in zip(shape, ranks))
    r = [1, *ranks, 1]
    return sum(r[n] * d * r[n + 1] for n, d in enumerate(shape))


@pytest.mark.parametrize("kind", list(FACTORS))
@pytest.mark.parametrize("eps", [0.05, 0.2, 0.5])
@pytest.mark.parametrize("shape", [(12, 10, 6), (3, 3, 4, 5, 6)])
def test_frobenius_rule_reconstructs_within_tolerance(kind, eps, shape):
    w = low_rank_tensor(shape, ranks=tuple(min(3, d) for d in shape))
    f = FACTORS[kind](w, eps, "frobenius")
    with torch.no_grad():
        err = float((f.full().double() - w).norm() / w.norm())
    assert err <= eps * (1 + 1e-5), (f.ranks, err)
    assert f.n_params() == f.closed_form_params() == closed_form(kind, shape, f.ranks)
    full = FACTORS[kind](w, 1e-9, "frobenius")
    assert sum(f.ranks) < sum(full.ranks)  # the tolerance really truncated something


@pytest.mark.parametrize("kind", list(FACTORS))
def test_task_slice_equals_the_full_tensor(kind):
    w = low_rank_tensor()
    f = FACTORS[kind](w, 0.1, "frobenius")
    with torch.no_grad():
        full = f.full()
        for t in range(w.shape[-1]):
            torch.testing.assert_close(f.task(t), full[..., t])


def test_spectral_rule_bounds_each_svd_in_the_spectral_norm():
    w = low_rank_tensor()
    flat = w.reshape(-1, w.shape[-1])
    s = torch.linalg.svdvals(flat)
    for eps in (0.05, 0.3):
        f = LAF(w, eps, "spectral")
        k = f.ranks[0]
        with torch.no_grad():
            resid = torch.linalg.matrix_norm(flat - (f.L @ f.S).double(), ord=2)
        assert resid <= eps * s[0] * (1 + 1e-6)
        assert s[k - 1] > eps * s[0]  # the smallest k that does it


def test_explicit_ranks_and_exact_full_rank_reconstruction():
    w = low_rank_tensor(noise=0.3)
    assert LAF(w, 2, "frobenius").ranks == [2]
    assert Tucker(w, [2, 3, 1], "frobenius").ranks == [2, 3, 1]
    assert TensorTrain(w, [4, 2], "frobenius").ranks == [4, 2]
    for kind, k in (("LAF", 6), ("Tucker", [12, 10, 6]), ("TT", [12, 6])):
        f = FACTORS[kind](w, k, "frobenius")
        torch.testing.assert_close(f.full().double(), w, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="makes 3 SVDs"):
        Tucker(w, [2, 3], "frobenius")


def test_interpolative_rule_matches_the_toolbox_rank():
    interpolative = pytest.importorskip("scipy.linalg.interpolative")
    w = low_rank_tensor()
    flat = w.reshape(-1, w.shape[-1]).numpy()
    _, s, _ = interpolative.svd(flat, 0.1, rand=False)
    assert LAF(w, 0.1, "interpolative").ranks == [len(s)]


# -- the method ------------------------------------------------------------------------------------------------
def info_of(shape, n_tasks=3, name="toy") -> DataInfo:
    tasks = [TaskInfo(f"t{t}", 2 + t, "multiclass", shape) for t in range(n_tasks)]
    return DataInfo(name, tasks, "per_task", "accuracy")


def stl_checkpoint(tmp_path, info, spec, seed=0):
    torch.manual_seed(seed)
    stl = METHODS.get("stl")(info, spec, METHODS.get("stl").Params())
    with torch.no_grad():  # non-trivial biases and BN statistics, so that copying them is tested
        for name, p in stl.named_parameters():
            if name.endswith("bias"):
                p.normal_()
        for name, b in stl.named_buffers():
            if "running" in name:
                b.uniform_(0.5, 1.5)
    path = tmp_path / "stl" / "seed0.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(stl.state_dict(), path)
    return stl.eval(), path


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape, spec", [
    ((7,), BackboneSpec(hidden=[6, 5])),
    ((1, 10, 10), BackboneSpec(channels=[3, 4], dense=[5])),
])
def test_stl_init_at_full_rank_reproduces_the_stl_networks(tmp_path, name, shape, spec):
    info = info_of(shape)
    stl, path = stl_checkpoint(tmp_path, info, spec)
    cls = METHODS.get(name)
    model = cls(info, spec, cls.Params(init="stl", stl_checkpoint=str(path), eps_or_k=1e-9)).eval()
    assert model.summary()["dmtrl"]["init"] == "stl"
    xs = [torch.randn(4, *shape) for _ in range(3)]
    with torch.no_grad():
        for t, (mine, ref) in enumerate(zip(model(xs), stl(xs))):
            torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(model.forward_task(xs[t], t), ref, rtol=1e-4, atol=1e-4)


def test_auto_init_uses_the_checkpoint_when_given_and_warns_without(tmp_path, caplog):
    info, spec = info_of((7,)), BackboneSpec(hidden=[6, 5])
    _, path = stl_checkpoint(tmp_path, info, spec)
    cls = METHODS.get("dmtrl_tucker")
    assert cls(info, spec, cls.Params(stl_checkpoint=str(path))).init_used == "stl"
    dmtrl_module.warn_random_once.cache_clear()  # another test may have built a random DMTRL in this process
    with caplog.at_level("WARNING"):
        model = cls(info, spec, cls.Params())
        cls(info, spec, cls.Params())
    assert model.init_used == "random" and caplog.text.count("random tensor") == 1  # once per process
    assert "random tensor" in model.summary()["dmtrl"]["warning"]
    dmtrl_module.warn_random_once.cache_clear()
    with caplog.at_level("WARNING"):
        code = cls(info, spec, cls.Params(fidelity="taan_code"))  # the TAAN code's model: random by design
    assert code.init_used == "random" and caplog.text.count("random tensor") == 1  # no second warning
    assert "warning" not in code.summary()["dmtrl"]
    missing = cls.Params(stl_checkpoint=str(tmp_path / "not_yet.pt"))  # auto: not refused, random at build
    assert cls.check(info, spec, missing) == [] and cls(info, spec, missing).init_used == "random"


@pytest.mark.parametrize("name", NAMES)
def test_summary_reports_ranks_and_closed_form_counts(name):
    info, spec = info_of((7,), n_tasks=4), BackboneSpec(hidden=[6, 5])
    cls = METHODS.get(name)
    model = cls(info, spec, cls.Params(eps_or_k=0.3))
    s = model.summary()["dmtrl"]
    kind = cls.factorisation
    for layer in s["layers"]:
        assert layer["params"] == closed_form(kind, layer["shape"], layer["ranks"])
        assert layer["init_rel_error"] <= 0.3 * (1 + 1e-5)
    heads = sum(6 * 0 + 5 * c + c for c in (2, 3, 4, 5))
    biases = 4 * (6 + 5)
    assert s["total_params"] == count_parameters(model) == s["factor_params"] + heads + biases


@pytest.mark.parametrize("kind", ["Tucker", "TT"])
@pytest.mark.parametrize("tasks", [[0, 1, 2, 3, 4, 5], [4], [5, 0, 2]])
@pytest.mark.parametrize("ragged", [False, True])
def test_applied_factors_equal_the_built_tensor_in_value_and_gradient(kind, tasks, ragged):
    """apply_to (x through the factors, W never built) is x @ W[..., t] of the built tensor: same outputs and
    the same gradients for the factors and the inputs (float64; one batched product, or one chain per input
    when the inputs' batch sizes differ)."""
    f = FACTORS[kind](low_rank_tensor(), 0.1, "frobenius").double()
    gen = torch.Generator().manual_seed(1)
    xs = [torch.randn(3 + (k if ragged else 0), 12, generator=gen, dtype=torch.float64, requires_grad=True)
          for k in range(len(tasks))]
    probes = [torch.randn(x.shape[0], 10, generator=gen, dtype=torch.float64) for x in xs]

    def grads(outs):
        params = [*f.parameters(), *xs]
        return torch.autograd.grad(sum((o * p).sum() for o, p in zip(outs, probes)), params)

    applied = f.apply_to(xs, tasks)
    built = [x @ f.full()[..., t] for x, t in zip(xs, tasks)]
    for a, b in zip(applied, built):
        torch.testing.assert_close(a, b)
    for a, b in zip(grads(applied), grads(built)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", ["Tucker", "TT"])
def test_applied_factors_pass_gradcheck(kind):
    f = FACTORS[kind](low_rank_tensor((5, 4, 3), ranks=(2, 2, 2)), 0.1, "frobenius").double()
    x = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: f.apply_to([x, y], [0, 2]), (x, y))
    # the factors themselves: gradcheck perturbs its inputs in place, and these inputs are f's parameters
    assert torch.autograd.gradcheck(lambda *_: f.apply_to([x.detach(), x.detach()], [1, 2]),
                                    tuple(f.parameters()))


@pytest.mark.parametrize("name", ["dmtrl_tucker", "dmtrl_tt"])
def test_dense_layers_are_applied_and_conv_tensors_built_once_per_iteration(name, monkeypatch):
    """Training never builds a dense layer's tensor (applied through its factors) and builds a conv layer's
    once per iteration for all tasks, not once per task."""
    cls = METHODS.get(name)
    factor_cls = FACTORS[cls.factorisation]
    model = cls(info_of((1, 8, 8), n_tasks=5), BackboneSpec(channels=[3, 4], padding=1, dense=[6, 5]), cls.Params())
    calls = []
    full, apply_to = factor_cls.full, factor_cls.apply_to
    monkeypatch.setattr(factor_cls, "full", lambda self: calls.append(("full", len(self.shape))) or full(self))
    monkeypatch.setattr(factor_cls, "apply_to", lambda self, xs, tasks: calls.append(("apply", len(xs)))
                        or apply_to(self, xs, tasks))
    model([torch.randn(2, 1, 8, 8) for _ in range(5)])
    assert calls == [("full", 5), ("full", 5), ("apply", 5), ("apply", 5)]


@pytest.mark.parametrize("name", ["dmtrl_tucker", "dmtrl_tt"])
def test_applied_model_equals_the_model_with_built_weights(name, monkeypatch):
    """The whole network through applied factors computes what it computes with every tensor built (training
    and per-task evaluation), to float rounding."""
    cls = METHODS.get(name)
    torch.manual_seed(0)
    model = cls(info_of((7,), n_tasks=4), BackboneSpec(hidden=[6, 5]), cls.Params()).double()
    xs = [torch.randn(3, 7, dtype=torch.float64) for _ in range(4)]
    applied = model(xs), [model.forward_task(x, t) for t, x in enumerate(xs)]
    monkeypatch.setattr(FACTORS[cls.factorisation], "applicable", property(lambda self: False))
    built = model(xs), [model.forward_task(x, t) for t, x in enumerate(xs)]
    torch.testing.assert_close(applied, built)


def test_taan_code_fidelity_options():
    laf, tucker = METHODS.get("dmtrl_laf").Params, METHODS.get("dmtrl_tucker").Params
    p = laf(fidelity="taan_code")
    assert (p.init, p.random_std, p.eps_or_k, p.activation, p.bias_init) == ("random", 0.01, 5, "none", "ones")
    assert tucker(fidelity="taan_code").eps_or_k == 0.5
    assert tucker(fidelity="taan_code", activation="relu").activation == "relu"
    cls = METHODS.get("dmtrl_laf")
    model = cls(info_of((7,)), BackboneSpec(hidden=[6, 5]), p)
    biases = [block.affine.bias for tower in model.towers for block in tower.blocks]
    assert len(biases) == 6 and all(torch.equal(b, torch.ones_like(b)) for b in biases)
    assert [f.ranks for f in model.tensors] == [[3], [3]]  # K = 5 capped by T = 3 tasks


def affine_defect(model, x: torch.Tensor, y: torch.Tensor) -> float:
    """How far task 0's network is from affine: g(v) = f(v) - f(0) must be additive (g(x + y) = g(x) + g(y)) and
    odd (g(-x) = -g(x)); a ReLU network is positively homogeneous, so a scaling test alone would not tell."""
    g = lambda v: model.forward_task(v, 0) - model.forward_task(torch.zeros(1, v.shape[1]), 0)  # noqa: E731
    return max((g(x + y) - g(x) - g(y)).abs().max().item(), (g(-x) + g(x)).abs().max().item())


def test_no_activation_makes_the_trunk_linear():
    cls = METHODS.get("dmtrl_laf")
    torch.manual_seed(0)
    x, y = torch.randn(3, 7), torch.randn(3, 7)
    linear = cls(info_of((7,)), BackboneSpec(hidden=[6, 5]), cls.Params(activation="none"))
    assert affine_defect(linear, x, y) < 1e-5
    relu = cls(info_of((7,)), BackboneSpec(hidden=[6, 5]), cls.Params(activation="relu"))
    assert affine_defect(relu, x, y) > 1e-2  # the check tells a nonlinear trunk apart


@pytest.mark.parametrize("params, needle", [
    ({"init": "stl"}, "needs `stl_checkpoint: PATH`"),
    ({"init": "stl", "stl_checkpoint": "/nonexistent/seed0.pt"}, "does not exist"),
    ({"eps_or_k": [0.1, 0.1]}, "needs 3 for Tucker"),
    ({"eps_or_k": 2.5}, "whole rank"),
    ({"eps_or_k": 0}, "must be > 0"),
])
def test_check_refuses_bad_options(params, needle):
    cls = METHODS.get("dmtrl_tucker")
    problems = cls.check(info_of((7,)), BackboneSpec(hidden=[6, 5]), cls.Params(**params))
    assert any(needle in p for p in problems), problems


def test_check_refuses_a_checkpoint_of_another_spec(tmp_path):
    info = info_of((7,))
    _, path = stl_checkpoint(tmp_path, info, BackboneSpec(hidden=[6, 5]))
    cls = METHODS.get("dmtrl_laf")
    problems = cls.check(info, BackboneSpec(hidden=[6, 4]), cls.Params(init="stl", stl_checkpoint=str(path)))
    assert any("of shape (5, 6)" in p and "(4, 6)" in p for p in problems), problems
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    problems = cls.check(info, BackboneSpec(hidden=[6, 5]), cls.Params(stl_checkpoint=str(tmp_path / "junk.pt")))
    assert any("cannot be read" in p for p in problems), problems


def test_seed_placeholder_names_each_seeds_stl_checkpoint(tmp_path, write_spec):
    """`stl_checkpoint: .../seed{seed}.pt`: validate checks every seed's file, and seed k's DMTRL run
    factorises seed k's STL weights."""
    from mtlbench.config.loader import load_spec
    from mtlbench.errors import SpecError
    from mtlbench.training.run import run_spec
    out = tmp_path / "runs"
    text = f"""
    name: seeded
    data:
      dataset: synthetic_vector
      options: {{n_groups: 1, tasks_per_group: 2, outlier: false, input_dim: 16, n_examples: 300, n_classes: 4}}
    backbone: {{hidden: [8, 8]}}
    methods:
      - {{name: stl, label: STL}}
      - {{name: dmtrl_laf, label: LAF,
          params: {{init: stl, eps_or_k: 1.0e-9, stl_checkpoint: "{out}/seeded/STL/seed{{seed}}.pt"}}}}
    training: {{iterations: 4, eval_every: 2, batch_per_task: 8, threads: 1}}
    seeds: [0, 1]
    output: {{dir: {out}}}
    """
    spec = write_spec(text)
    with pytest.raises(SpecError, match=r"seed0\.pt does not exist"):
        load_spec(spec)
    resolved = load_spec(write_spec(text.replace("init: stl, ", "")))  # auto: decided per seed at build time
    run_spec(resolved, seeds=[0, 1])
    resolved = load_spec(spec)  # both checkpoints exist now
    lafs = next(m for m in resolved.methods if m.entry.row == "LAF")
    assert [lafs.params_for(s).stl_checkpoint for s in (0, 1)] == [f"{out}/seeded/STL/seed{s}.pt" for s in (0, 1)]
    records = run_spec(resolved, seeds=[0, 1], force=True)  # LAF's entry changed: its auto-init records go
    laf = {r.seed: r for r in records if r.row == "LAF"}
    assert [laf[s].summary["dmtrl"]["stl_checkpoint"] for s in (0, 1)] == \
        [f"{out}/seeded/STL/seed{s}.pt" for s in (0, 1)]
    assert all(laf[s].summary["dmtrl"]["init"] == "stl" for s in (0, 1))


def test_layers_run_the_activation_factory():
    """DMTRL's layers go through the backbone's layer plan, with the activation its factory makes (not a
    hard-coded ReLU): a factory of tanh activations changes every hidden layer of every task."""
    class Tanh(torch.nn.Module):
        def forward(self, z, segments=None):
            calls.append(z.shape)
            return torch.tanh(z)

    class TanhDMTRL(METHODS.get("dmtrl_laf")):
        def activation_factory(self):
            return lambda layer, width: Tanh()

    calls: list = []
    model = TanhDMTRL(info_of((7,)), BackboneSpec(hidden=[6, 5]), TanhDMTRL.Params(init="random"))
    model([torch.randn(2, 7) for _ in range(3)])
    assert calls == [(2, 6)] * 3 + [(2, 5)] * 3
