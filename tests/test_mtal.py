"""MTAL (mtal, mtal_r): eqs. 5-6 against a hand computation, phi and pair-kernel symmetry, the reductions to STL
(delta > 1) and to the pair average (delta = -1), the threshold (mask flips, no gradient), MTAL_R's groups, the
shared-initialisation lock, eval mode, parameter counts, the recorded sharing ratios, eq. 7's penalty and the
refusals."""
from __future__ import annotations

import itertools

import pytest
import torch

from mtlbench.nn import kernel_sharing as ks
from mtlbench.nn.backbone import BackboneSpec
from mtlbench.nn.method import count_parameters
from mtlbench.registry import METHODS
from tests.conftest import small_data

MTAL, MTALR, STL = METHODS.get("mtal"), METHODS.get("mtal_r"), METHODS.get("stl")
VGG = BackboneSpec(kind="vgg", stages=[[4], [8, 8]], dense=[16])


def params(cls=MTAL, **kw):
    return cls.Params.model_validate({"lambda": 0.0, **kw})


def mtal(data, cls=MTAL, seed=0, backbone=VGG, **kw):
    torch.manual_seed(seed)
    return cls(data.info, backbone, params(cls, **kw))


def inputs(data, n=6):
    return [s.batch(torch.arange(n)) for s in data.split("train")]


def two_tasks():
    return small_data("image", n_groups=1, tasks_per_group=2, outlier=False, size_step=4)


def grouped():
    """A1, A2 | B1, B2 | the outlier X, images of five sizes."""
    return small_data("image", n_groups=2, tasks_per_group=2, outlier=True, size_step=2)


# -- eqs. 5-6 ----------------------------------------------------------------------------------------------------
def hand_effective(w, mask, phi, partner=None):
    """Eq. 6 by loops: the mean over selected j of phi_ij w_i,k + phi_ji w_j,partner (or w_i,k)."""
    m, T, _ = w.shape
    out = torch.empty_like(w)
    for k, i in itertools.product(range(m), range(T)):
        chosen = [j for j in range(T) if mask[k, i, j]]
        pair = [phi[i, j] * w[k, i] + phi[j, i] * w[k if partner is None else partner[k, i, j], j] for j in chosen]
        out[k, i] = sum(pair) / len(pair) if pair else w[k, i]
    return out


def test_eqs_5_and_6_match_a_hand_computation_for_three_tasks():
    torch.manual_seed(0)
    w, T = torch.randn(5, 3, 7), 3  # 5 filters of 3 tasks, 7 weights each
    upper = torch.rand(5, T, T) < 0.5
    mask = torch.triu(upper, 1) | torch.triu(upper, 1).transpose(1, 2)  # symmetric, no self pairs
    pairs = torch.tensor([[0, 1], [0, 2], [1, 2]])
    phi = ks.phi_matrix(torch.tensor([0.7, -1.2, 2.0]), pairs, T)
    sel = ks.Selection(torch.zeros(5, T, T), None, mask)
    torch.testing.assert_close(ks.effective(w, sel, phi), hand_effective(w, mask, phi), rtol=0, atol=1e-6)
    assert mask.any() and not mask.all(1).all()  # some filters shared, some their own


def test_best_match_pairs_each_filter_with_its_mutual_best_partner():
    torch.manual_seed(1)
    a = torch.randn(6, 9)
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    w = torch.stack([a, a[perm] + 0.01 * torch.randn(6, 9)], dim=1)  # task 1 holds task 0's filters, permuted
    candidates = torch.tensor([[False, True], [True, False]])
    sel = ks.select(w, candidates, 0.9, "best_match")
    assert torch.equal(sel.partner[:, 1, 0], perm)  # task 1's filter k matches task 0's filter perm[k]
    assert torch.equal(perm[sel.partner[:, 0, 1]], torch.arange(6)) and sel.mask[:, 0, 1].all()
    assert not ks.select(w, candidates, 0.9, "index").mask[:, 0, 1][perm != torch.arange(6)].any()
    phi = ks.phi_matrix(torch.tensor([0.4]), torch.tensor([[0, 1]]), 2)
    torch.testing.assert_close(ks.effective(w, sel, phi), hand_effective(w, sel.mask, phi, sel.partner),
                               rtol=0, atol=1e-6)


def test_phi_pairs_sum_to_one_and_pair_kernels_are_symmetric():
    pairs = torch.tensor([[0, 1], [0, 2], [1, 3]])
    phi = ks.phi_matrix(torch.tensor([3.0, -0.5, 0.2]), pairs, 4)
    for i, j in pairs.tolist():
        assert abs(phi[i, j] + phi[j, i] - 1.0) < 1e-7 and phi[i, j] != 0.5
    # two tasks, every filter selected: both use w_12 = phi_12 w_1 + phi_21 w_2 = w_21
    torch.manual_seed(2)
    w = torch.randn(4, 2, 9)
    sel = ks.Selection(torch.ones(4, 2, 2), None, ~torch.eye(2, dtype=torch.bool).expand(4, 2, 2))
    eff = ks.effective(w, sel, phi[:2, :2])
    torch.testing.assert_close(eff[:, 0], eff[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(eff[:, 0], phi[0, 1] * w[:, 0] + phi[1, 0] * w[:, 1])


# -- reductions -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pairing", ["index", "best_match"])
def test_delta_above_one_computes_exactly_what_stl_computes(pairing):
    data = small_data("image", size_step=4)
    model = mtal(data, delta=1.01, pairing=pairing)
    stl = STL(data.info, VGG, STL.Params())
    stl.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("thetas.")})
    xs = [x for x, _ in inputs(data)]
    outs, ref = model(xs), stl(xs)
    assert all(torch.equal(a, b) for a, b in zip(outs, ref))
    sum(o.square().sum() for o in outs).backward()
    sum(o.square().sum() for o in ref).backward()
    mine = dict(model.named_parameters())
    assert all(torch.equal(p.grad, mine[n].grad) for n, p in stl.named_parameters())
    assert all(p.grad is None or not p.grad.any() for n, p in mine.items() if n.startswith("thetas."))


def test_delta_below_minus_one_with_fixed_phi_averages_the_two_tasks_filters():
    model = mtal(two_tasks(), delta=-1.0, phi="fixed")
    for layer in model.conv_layers:
        w1, w2 = (trunk.blocks[layer.index].affine.weight for trunk in model.trunks)
        e1, e2 = model.effective_weights(layer)
        torch.testing.assert_close(e1, (w1 + w2) / 2, rtol=0, atol=1e-7)
        torch.testing.assert_close(e2, (w1 + w2) / 2, rtol=0, atol=1e-7)
    assert not hasattr(model, "thetas") and count_parameters(model) == count_parameters(STL(two_tasks().info, VGG,
                                                                                            STL.Params()))


def test_moving_one_filter_across_delta_flips_the_mask_and_the_output_and_the_mask_has_no_gradient():
    data = two_tasks()
    model = mtal(data, delta=0.5)
    layer = model.conv_layers[0]
    w0 = model.trunks[0].blocks[0].affine.weight
    u = w0[0].detach().flatten() / w0[0].norm()
    v = torch.randn_like(u)
    v = (v - (v @ u) * u) / (v - (v @ u) * u).norm()  # orthogonal to task 0's filter 0
    x = [xb for xb, _ in inputs(data)]
    results = []
    for cos in (0.49, 0.51):
        with torch.no_grad():
            model.trunks[1].blocks[0].affine.weight[0] = ((cos * u + (1 - cos ** 2) ** 0.5 * v) * 0.3).view_as(w0[0])
        _, sel, _, _ = model.share(layer)
        assert not sel.mask.requires_grad and sel.mask.grad_fn is None and sel.cosine.grad_fn is None
        results.append((bool(sel.mask[0, 0, 1]), model(x)[0].detach()))
    assert [r[0] for r in results] == [False, True]
    assert not torch.allclose(results[0][1], results[1][1])


def test_mtal_r_shares_nothing_across_groups():
    data = grouped()
    model = mtal(data, MTALR, delta=-1.0)
    names = data.info.task_names
    group = {n: g for g, members in enumerate(data.info.metadata["groups"]) for n in members}
    for layer in model.conv_layers:
        mask = model.share(layer)[1].mask
        for i, j in itertools.combinations(range(len(names)), 2):
            same = names[i] in group and group[names[i]] == group.get(names[j])
            assert bool(mask[:, i, j].all()) == same and bool(mask[:, i, j].any()) == same
    outlier = names.index("X")
    raw = model.kernels(model.conv_layers[0])[:, outlier]
    assert torch.equal(model.share(model.conv_layers[0])[3][:, outlier], raw)  # its own kernels, untouched
    summary = model.summary()
    assert summary["mtal"]["settings"]["candidate_pairs"] == [["A1", "A2"], ["B1", "B2"]]
    assert all(p["shared"] == 0 for la in summary["layers"] for p in la["pairs"] if not p["candidate"])


# -- the shared-initialisation lock -------------------------------------------------------------------------------
def trained(init: str, steps: int = 30):
    data = two_tasks()
    model = mtal(data, init=init, delta=0.4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(steps):
        batches = [s.batch(torch.randint(len(s), (16,), generator=torch.Generator().manual_seed(step)))
                   for s in data.split("train")]
        loss = sum(torch.nn.functional.cross_entropy(o, y) for o, (_, y) in zip(model([x for x, _ in batches]),
                                                                                  batches))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_shared_init_locks_two_tasks_filters_parallel():
    locked = trained("shared")
    for layer in locked.conv_layers:
        w = locked.kernels(layer)
        assert (w[:, 0] - w[:, 1]).abs().max() < 1e-6 * w.abs().max()  # identical, to rounding
        assert locked.share(layer)[1].mask[:, 0, 1].all()  # every filter selected, for ever
        assert locked.thetas[layer.name].abs().max() < 1e-6  # phi never moves from 0.5
    free = trained("independent")
    cos = ks.index_cosines(free.kernels(free.conv_layers[-1]).detach())[:, 0, 1]
    assert cos.max() < 0.9  # independent filters are not parallel
    noisy = mtal(two_tasks(), init="shared_noise", init_noise=0.5)
    w = noisy.kernels(noisy.conv_layers[0]).detach()
    assert 0.5 < ks.index_cosines(w)[:, 0, 1].mean() < 0.99


# -- eval mode, counts, records, objective ---------------------------------------------------------------------------
def test_eval_forward_of_all_tasks_equals_each_task_alone():
    data = grouped()
    model = mtal(data, delta=0.0)
    model([x for x, _ in inputs(data, 8)])  # one training forward: BatchNorm statistics move
    model.eval()
    xs = [x for x, _ in inputs(data, 5)]
    together = model(xs)
    assert any(model.share(layer)[1].mask.any() for layer in model.conv_layers)
    for t, x in enumerate(xs):
        torch.testing.assert_close(together[t], model.forward_task(x, t), rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls, pairs", [(MTAL, 10), (MTALR, 2)])
def test_parameter_count_is_stl_plus_one_theta_per_candidate_pair_and_conv_layer(cls, pairs):
    data = grouped()
    model = mtal(data, cls)
    stl = STL(data.info, VGG, STL.Params())
    assert count_parameters(model) == count_parameters(stl) + 3 * pairs  # three conv layers


def test_recorded_ratios_and_deduplicated_kernels():
    shared_all = mtal(two_tasks(), delta=-1.0).summary()
    layers = shared_all["layers"]
    assert [la["name"] for la in layers] == ["conv1_1", "conv2_1", "conv2_2"]
    for la in layers:  # two tasks, every pair shared: both tasks use one kernel per filter
        assert la["ratios"] == {"pair_entries": 1.0, "filters_with_partner": 1.0, "compression": 0.5}
        assert la["distinct_kernels"] == la["filters"] and la["pairs"][0]["shared"] == la["filters"]
    kernels = shared_all["mtal"]["kernels"]
    assert kernels["distinct"] * 2 == kernels["all"] == 2 * (4 + 8 + 8)
    assert kernels["params_distinct"] == 4 * 9 + 8 * 36 + 8 * 72
    # three tasks all shared: every filter has partners, yet each task's mean differs -- no compression
    three = mtal(small_data("image", size_step=4), delta=-1.0).summary()
    totals = three["mtal"]["totals"]
    assert totals["pair_entries"]["mean"] == 1.0 and totals["compression"]["mean"] == 0
    cos = torch.tensor(three["layers"][0]["cosine"])
    assert cos.shape == (3, 3) and torch.equal(cos, cos.t()) and (cos.diagonal() == 1).all()
    torch.testing.assert_close(torch.tensor(three["layers"][0]["distance"]), 1 - cos)
    none = mtal(two_tasks(), delta=1.5).summary()["mtal"]["totals"]
    assert all(none[r] == {"mean": 0.0, "by_filters": 0.0, "by_params": 0.0} for r in ks.RATIOS)


def test_totals_simple_by_filters_and_by_kernel_parameters():
    layers = [{"filters": 2, "kernel_params": 9, "ratios": {r: 0.5 for r in ks.RATIOS}},
              {"filters": 6, "kernel_params": 18, "ratios": {r: 0.1 for r in ks.RATIOS}}]
    t = ks.totals(layers)["pair_entries"]
    assert t["mean"] == pytest.approx(0.3)
    assert t["by_filters"] == pytest.approx((2 * 0.5 + 6 * 0.1) / 8)
    assert t["by_params"] == pytest.approx((18 * 0.5 + 108 * 0.1) / 126)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_eq_7_penalty_under_each_reduction(reduction):
    data = grouped()
    model = mtal(data, **{"lambda": 0.1, "l2_reduction": reduction})
    xs = [x for x, _ in inputs(data, 6)]
    model(xs)
    squares = sum(m.weight.square().sum() for m in model.modules() if isinstance(m, (torch.nn.Conv2d,
                                                                                      torch.nn.Linear)))
    T = data.info.n_tasks
    expected = 0.1 * squares / (T * 6 if reduction == "sum" else T)
    torch.testing.assert_close(model.regularizer(), expected)
    assert mtal(data).regularizer() is None  # lambda 0


def test_thetas_are_exempt_only_in_layers_without_a_selected_pair():
    data = grouped()
    model = mtal(data, delta=0.3)
    idle = {f"thetas.{la.name}" for la in model.conv_layers if not model.share(la)[1].mask.any()}
    assert set(model.gradient_exempt()) == idle and len(idle) < len(model.conv_layers)
    assert set(mtal(data, delta=2.0).gradient_exempt()) == {f"thetas.{la.name}" for la in model.conv_layers}


def test_refusals_name_the_reason():
    vector = small_data("vector")
    assert "has no conv layer" in MTAL.check(vector.info, BackboneSpec(hidden=[8]), params())[0]
    info = small_data("image").info
    info.metadata = {}
    reasons = MTALR.check(info, VGG, params(MTALR))
    assert reasons == ["mtal_r: relations: groups needs the dataset's task groups, and dataset 'synthetic_image' "
                       "declares none (use relations: none, i.e. mtal)"]
    assert MTAL.check(info, VGG, params()) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the GPU path runs one grouped conv per layer")
@pytest.mark.parametrize("pairing", ["index", "best_match"])
def test_gpu_grouped_convolution_computes_what_the_cpu_path_computes(pairing, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # compare float32 with float32
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    data = grouped()
    model = mtal(data, delta=0.0, pairing=pairing)
    xs = [x for x, _ in inputs(data)]
    cpu = model(xs)
    sum(o.square().sum() for o in cpu).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    gpu = model.cuda()([x.cuda() for x in xs])
    assert torch.is_tensor(model.effective_weights(model.conv_layers[0]))  # stacked: one grouped conv
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-4)
    sum(o.square().sum() for o in gpu).backward()
    for n, p in model.named_parameters():
        if n in grads:
            torch.testing.assert_close(p.grad.cpu(), grads[n], rtol=1e-3, atol=1e-3)
    model.eval()
    together = model([x.cuda() for x in xs])
    torch.testing.assert_close(together[1], model.forward_task(xs[1].cuda(), 1), rtol=1e-5, atol=1e-5)
