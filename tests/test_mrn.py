"""MRN (Long et al. 2017): the prior against its Kronecker form, the flip-flop updates, planted task groups."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtlbench.methods.mrn import TensorNormalPrior, official_precision
from mtlbench.nn.backbone import BackboneSpec
from mtlbench.registry import METHODS
from mtlbench.store.dataset import DataInfo, TaskInfo

MRN_T, MRN_FULL = METHODS.get("mrn_t"), METHODS.get("mrn_full")


def info_of(n_tasks: int, dim: int, classes, name="toy") -> DataInfo:
    classes = classes if isinstance(classes, list) else [classes] * n_tasks
    tasks = [TaskInfo(f"t{t}", c, "multiclass", (dim,)) for t, c in enumerate(classes)]
    return DataInfo(name, tasks, "per_task", "accuracy")


def random_spd(n: int, gen: torch.Generator) -> torch.Tensor:
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    return a @ a.T / n + 0.5 * torch.eye(n, dtype=torch.float64)


def kron_penalty(w: torch.Tensor, o_task, o_out, o_in) -> torch.Tensor:
    """vec(W)^T (Omega_task (x) Omega_out (x) Omega_in) vec(W) for the tensor W[i, j, t] = w[t, j, i], vec with
    the first index fastest -- the MRN paper's formula, Kronecker product formed explicitly."""
    tensor = w.permute(2, 1, 0)  # [D1, D2, T]
    vec = tensor.permute(2, 1, 0).reshape(-1)  # t slowest, i fastest
    return vec @ torch.kron(o_task, torch.kron(o_out, o_in)) @ vec


def test_regularizer_equals_the_explicit_kronecker_form():
    gen = torch.Generator().manual_seed(0)
    model = MRN_FULL(info_of(3, 5, 2), BackboneSpec(hidden=[4]), MRN_FULL.Params(c=0.7)).double()
    prior = model.priors[0]
    for name, n in (("omega_task", 3), ("omega_out", 4), ("omega_in", 5)):
        getattr(prior, name).copy_(random_spd(n, gen))
    w = model.stacks()[0]
    expected = 0.7 * kron_penalty(w, prior.omega_task, prior.omega_out, prior.omega_in)
    torch.testing.assert_close(model.regularizer(), expected, rtol=1e-10, atol=0)
    # MRN_t ignores whatever is stored for the feature precisions: they are the identity by definition
    task_only = MRN_T(info_of(3, 5, 2), BackboneSpec(hidden=[4]), MRN_T.Params(c=0.7)).double()
    task_only.priors[0].omega_task.copy_(prior.omega_task)
    i4, i5 = torch.eye(4, dtype=torch.float64), torch.eye(5, dtype=torch.float64)
    expected_t = 0.7 * kron_penalty(task_only.stacks()[0], prior.omega_task, i4, i5)
    torch.testing.assert_close(task_only.regularizer(), expected_t, rtol=1e-10, atol=0)


def unfold(tensor: torch.Tensor, mode: int) -> torch.Tensor:
    return tensor.movedim(mode, 0).reshape(tensor.shape[mode], -1)


def test_paper_updates_are_the_flip_flop_mle_in_kronecker_form():
    """Sigma_k = W_(k) (Kronecker of the other precisions) W_(k)^T / (product of the other dims) + eps I."""
    gen = torch.Generator().manual_seed(1)
    T, D2, D1, eps = 3, 4, 5, 1e-3
    w = torch.randn(T, D2, D1, generator=gen, dtype=torch.float64)
    prior = TensorNormalPrior(T, D2, D1).double()
    prior.update(w, ("task", "out", "in"), "paper", eps)
    tensor = w.permute(2, 1, 0)  # [D1, D2, T]
    o_task, o_out, o_in = prior.omega_task, prior.omega_out, prior.omega_in
    i1, i2 = torch.eye(D1, dtype=torch.float64), torch.eye(D2, dtype=torch.float64)
    # each mode's update used the precisions that were current when it ran: task first (others I) ...
    sigma_task = unfold(tensor, 2) @ torch.kron(i2, i1) @ unfold(tensor, 2).T / (D1 * D2)
    torch.testing.assert_close(torch.linalg.inv(o_task), sigma_task + eps * torch.eye(T, dtype=torch.float64))
    # ... then out with the new task precision, then in with both new ones. A row-major unfolding's columns run
    # over the remaining modes with the last one fastest, so the Kronecker factors come slowest first.
    sigma_out = unfold(tensor, 1) @ torch.kron(i1, o_task) @ unfold(tensor, 1).T  # Omega_in still I here
    torch.testing.assert_close(torch.linalg.inv(o_out), sigma_out / (T * D1) + eps * i2)
    sigma_in = unfold(tensor, 0) @ torch.kron(o_out, o_task) @ unfold(tensor, 0).T
    torch.testing.assert_close(torch.linalg.inv(o_in), sigma_in / (T * D2) + eps * i1)


def test_each_update_uses_the_other_modes_current_precisions():
    gen = torch.Generator().manual_seed(4)
    T, D2, D1, eps = 3, 4, 5, 1e-4
    w = torch.randn(T, D2, D1, generator=gen, dtype=torch.float64)
    prior = TensorNormalPrior(T, D2, D1).double()
    o_task, o_in = random_spd(T, gen), random_spd(D1, gen)
    prior.omega_task.copy_(o_task)
    prior.omega_in.copy_(o_in)
    prior.update(w, ("out", "in"), "paper", eps)  # out reads the stored task and in precisions
    tensor = w.permute(2, 1, 0)
    sigma_out = unfold(tensor, 1) @ torch.kron(o_in, o_task) @ unfold(tensor, 1).T / (T * D1)
    torch.testing.assert_close(torch.linalg.inv(prior.omega_out), sigma_out + eps * torch.eye(D2, dtype=torch.float64))


def test_official_precision_map_and_trace_cap():
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    raw = q @ torch.diag(torch.tensor([4.0, 0.5, 0.05], dtype=torch.float64)) @ q.T
    omega = official_precision(raw - 1e-5 * torch.eye(3, dtype=torch.float64))  # the map adds the 1e-5 back
    s = torch.linalg.eigvalsh(omega)
    torch.testing.assert_close(s, torch.tensor([0.05, 0.25, 2.0], dtype=torch.float64))  # 0.05 kept, not 20
    many = official_precision(0.11 * torch.eye(400, dtype=torch.float64))  # trace 400 / 0.11 = 3636 > 3000
    assert torch.trace(many).item() == pytest.approx(3000.0)


def planted_groups_run(cls, seed: int = 0, steps: int = 300, **params):
    """6 tasks in 2 planted groups (tasks 0-2 and 3-5 share a linear 3-class labelling of a 10-d input, up to
    a 10% perturbation); shared trunk, prior on the heads (the MRN paper's fc8)."""
    torch.manual_seed(seed)
    T, d, C = 6, 10, 3
    centres = [torch.randn(C, d) for _ in range(2)]
    maps = [centres[t // 3] + 0.1 * torch.randn(C, d) for t in range(T)]
    model = cls(info_of(T, d, C, "planted"), BackboneSpec(hidden=[16]),
                cls.Params(task_layers=0, prior_on_heads=True, update_interval=25, **{"c": 1e-3, **params}))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(1, steps + 1):
        xs = [torch.randn(64, d) for _ in range(T)]
        loss = sum(F.cross_entropy(o, (x @ m.T).argmax(1)) for o, x, m in zip(model(xs), xs, maps)) / T
        loss = loss + model.regularizer()
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.after_step(step)
    return model, model.task_covariances()[-1]


def group_entries(sigma: torch.Tensor):
    g = torch.arange(6) // 3
    within = (g[:, None] == g[None]) & ~torch.eye(6, dtype=torch.bool)
    return sigma[within], sigma[g[:, None] != g[None]]


@pytest.mark.parametrize("rule", ["paper", "official"])
def test_mrn_t_learns_the_planted_task_groups(rule):
    # measured (seed 0): paper rule within-group entries >= 0.030 vs across <= 0.012 (means 0.034 / 0.008);
    # official rule (unnormalised) within >= 11.5 vs across <= 2.3
    model, sigma = planted_groups_run(MRN_T, update_rule=rule)
    within, across = group_entries(sigma)
    assert within.min() > across.max(), sigma
    assert within.mean() > 3 * across.mean().abs()
    assert int(model.n_updates) == 12  # 300 steps / every 25
    assert model.summary()["mrn"]["covariance_updates"] == 12


def test_mrn_full_learns_the_planted_groups_with_a_larger_ridge():
    # measured (seed 0): mean within 0.0113 vs across 0.0023. With the default eps = 1e-5 the three-way MLE
    # from one weight tensor is ill-posed here (D1 = 16 input features vs T * D2 = 18 columns) and the task
    # covariance comes out unstructured on some seeds -- a property of MRN_full, recorded in the report.
    _, sigma = planted_groups_run(MRN_FULL, eps=1e-2)
    within, across = group_entries(sigma)
    assert within.mean() > 3 * across.mean().abs()


def test_mrn_t_keeps_feature_covariances_at_identity_and_mrn_full_learns_them():
    torch.manual_seed(3)
    for cls in (MRN_T, MRN_FULL):
        model = cls(info_of(3, 6, 2), BackboneSpec(hidden=[5, 4]), cls.Params(update_interval=2))
        for step in range(1, 5):
            model.after_step(step)
        assert int(model.n_updates) == 2
        for prior in model.priors:
            assert not torch.equal(prior.omega_task, torch.eye(3))
            eye_out, eye_in = torch.eye(len(prior.omega_out)), torch.eye(len(prior.omega_in))
            same = torch.equal(prior.omega_out, eye_out), torch.equal(prior.omega_in, eye_in)
            assert same == ((True, True) if cls is MRN_T else (False, False))


def test_precisions_are_checkpointed_buffers_not_parameters():
    model = MRN_FULL(info_of(3, 6, 2), BackboneSpec(hidden=[5, 4]), MRN_FULL.Params())
    names = {n for n, _ in model.named_parameters()}
    assert not any("omega" in n for n in names)
    state = model.state_dict()
    assert {"priors.0.omega_task", "priors.0.omega_out", "priors.1.omega_in", "n_updates"} <= set(state)
    model.update_covariances()
    clone = MRN_FULL(info_of(3, 6, 2), BackboneSpec(hidden=[5, 4]), MRN_FULL.Params())
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.priors[1].omega_out, model.priors[1].omega_out)


def test_layer_options_and_taan_fidelity():
    info = info_of(3, 6, 2)
    all_layers = MRN_T(info, BackboneSpec(hidden=[5, 4]), MRN_T.Params())
    assert len(all_layers.shared) == 0 and len(all_layers.priors) == 2
    last_one = MRN_T(info, BackboneSpec(hidden=[5, 4]), MRN_T.Params(task_layers=1, prior_on_heads=True))
    assert len(last_one.shared) == 1 and len(last_one.priors) == 2
    assert [p.omega_in.shape[0] for p in last_one.priors] == [5, 4]
    assert last_one.summary()["mrn"]["regularised_layer_names"] == ["fc2", "heads"]
    taan = MRN_T.Params(fidelity="taan_code")
    assert (taan.update_rule, taan.update_interval) == ("official", 50)
    assert MRN_T(info, BackboneSpec(hidden=[5]), taan).c == 1e-3
    assert MRN_T(info, BackboneSpec(hidden=[5]), MRN_T.Params()).c == 1e-6  # paper rule: ~ 1 / (2 N)
    assert MRN_T.Params(fidelity="taan_code", update_interval=7).update_interval == 7


def test_conv_backbone_regularises_flattened_kernels():
    info = DataInfo("img", [TaskInfo(f"t{t}", 3, "multiclass", (1, 12, 12)) for t in range(2)], "per_task", "acc")
    spec = BackboneSpec(channels=[3, 4], dense=[6])
    model = MRN_FULL(info, spec, MRN_FULL.Params(task_layers=2))
    # 12 -> conv 10 -> pool 5 -> conv 3 -> pool 1
    assert [tuple(w.shape) for w in model.stacks()] == [(2, 4, 27), (2, 6, 4)]
    model.update_covariances()
    out = model([torch.randn(2, 1, 12, 12) for _ in range(2)])
    assert [o.shape for o in out] == [(2, 3), (2, 3)]


@pytest.mark.parametrize("info, params, needle", [
    (info_of(3, 6, [2, 3, 2]), {"prior_on_heads": True}, "same number of classes"),
    (info_of(3, 6, 2), {"task_layers": 5}, "only 2 hidden layers"),
    (info_of(3, 6, 2), {"task_layers": 0}, "no layer for the prior"),
])
def test_check_refuses(info, params, needle):
    problems = MRN_T.check(info, BackboneSpec(hidden=[5, 4]), MRN_T.Params(**params))
    assert any(needle in p for p in problems), problems
