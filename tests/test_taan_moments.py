"""Closed-form TAAN moments, inner products, distances and regularizers against numerical quadrature of their
defining integrals (Gaussian moments; inner product, norm and distance; the regularizers)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from mtlbench.taan import (
    activation_distance,
    activation_inner,
    cosine_matrix,
    cosine_reg,
    distance_matrix,
    distance_reg,
    gaussian_moments,
    inner_matrix,
    trace_norm_reg,
)
from mtlbench.taan.moments import cdf_difference

F64 = torch.float64
HINGES = [-2.5, -0.7, 0.0, 0.0, 0.4, 1.9, 3.2]  # negative, zero, repeated, positive
GAUSSIANS = [(0.0, 1.0), (0.8, 1.0), (-1.3, 0.6), (0.5, 7.0), (2.0, 0.05)]  # mu != 0, sigma far from 1
GMM2 = [(0.3, -1.0, 0.5), (0.7, 1.5, 2.0)]


def quad_under(f, gmm):
    """integral of f(x) dG(x) for a mixture G, split at every kink so quad sees smooth pieces."""
    total = 0.0
    for w, mu, sigma in gmm:
        lo, hi = mu - 14 * sigma, mu + 14 * sigma
        kinks = sorted({p for p in [0.0, *HINGES] if lo < p < hi})
        value, _ = integrate.quad(lambda x: f(x) * stats.norm.pdf(x, mu, sigma), lo, hi,  # noqa: B023 -- called within this iteration
                                  points=kinks or None, limit=400, epsabs=1e-13, epsrel=1e-11)
        total += w * value
    return total


def relu(v):
    return max(0.0, v)


def apl_value(x, alpha, b):
    return relu(x) + sum(a * relu(bi - x) for a, bi in zip(alpha, b))


def printed_e0b(b, mu, sigma):
    """Lemma 1's E[B0 B_b] exactly as printed in the paper: sigma (b - 3 mu) in the last term."""
    nd = stats.norm
    if b <= 0:
        return 0.0
    return ((b * mu - mu * mu - sigma * sigma) * (nd.cdf((b - mu) / sigma) - nd.cdf(-mu / sigma))
            + sigma * mu * nd.pdf((b - mu) / sigma) + sigma * (b - 3 * mu) * nd.pdf(mu / sigma))


@pytest.mark.parametrize("mu,sigma", GAUSSIANS)
def test_moments_match_quadrature(mu, sigma):
    b = torch.tensor(HINGES, dtype=F64)
    e00, e0b, ebb = gaussian_moments(b, mu, sigma)
    assert e00.shape == () and e0b.shape == (len(HINGES),) and ebb.shape == (len(HINGES),) * 2
    assert e00.dtype == e0b.dtype == ebb.dtype == F64
    g = [(1.0, mu, sigma)]
    scale = max(1.0, mu * mu + sigma * sigma)
    assert e00.item() == pytest.approx(quad_under(lambda x: relu(x) ** 2, g), abs=1e-9 * scale)
    for i, bi in enumerate(HINGES):
        want = quad_under(lambda x: relu(x) * relu(bi - x), g)  # noqa: B023 -- called within this iteration
        assert e0b[i].item() == pytest.approx(want, abs=1e-9 * scale), f"E[B0 B_b] at b={bi}"
        for j, bj in enumerate(HINGES):
            want = quad_under(lambda x: relu(bi - x) * relu(bj - x), g)  # noqa: B023 -- called within this iteration
            assert ebb[i, j].item() == pytest.approx(want, abs=1e-9 * scale), f"E[B_bi B_bj] at {bi},{bj}"


def test_paper_printed_e0b_fails_quadrature_where_ours_passes():
    mu, sigma = 0.7, 1.3
    g = [(1.0, mu, sigma)]
    _, ours, _ = gaussian_moments(torch.tensor(HINGES, dtype=F64), mu, sigma)
    for i, bi in enumerate(HINGES):
        truth = quad_under(lambda x: relu(x) * relu(bi - x), g)  # noqa: B023 -- called within this iteration
        assert ours[i].item() == pytest.approx(truth, abs=1e-9)
        if bi > 0:  # the typo's error is exactly -2 mu sigma phi(mu / sigma)
            assert abs(printed_e0b(bi, mu, sigma) - truth) > 0.1
            assert printed_e0b(bi, mu, sigma) - truth == pytest.approx(
                -2 * mu * sigma * stats.norm.pdf(mu / sigma), abs=1e-9)
    # ... and the typo is invisible at mu = 0, which is why the paper's N(0,1) experiments were unaffected
    assert printed_e0b(1.5, 0.0, 1.0) == pytest.approx(quad_under(lambda x: relu(x) * relu(1.5 - x),
                                                                  [(1.0, 0.0, 1.0)]), abs=1e-10)


def test_cdf_difference_uses_upper_tails_far_right():
    hi, lo = torch.tensor(9.0, dtype=F64), torch.tensor(8.5, dtype=F64)
    want = stats.norm.sf(8.5) - stats.norm.sf(9.0)  # ~ 9.5e-18: 1 - 1 in float64 would give 0
    assert cdf_difference(hi, lo).item() == pytest.approx(want, rel=1e-9)
    mixed = cdf_difference(torch.tensor(0.5, dtype=F64), torch.tensor(-1.0, dtype=F64))
    assert mixed.item() == pytest.approx(
        stats.norm.cdf(0.5) - stats.norm.cdf(-1.0), rel=1e-12)


def alphas(t=3, seed=0):
    return torch.randn(t, len(HINGES), dtype=F64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("gmm", [None, [(1.0, 0.8, 2.5)], GMM2], ids=["std", "shifted", "mixture"])
def test_inner_and_distance_match_quadrature(gmm):
    b, a = torch.tensor(HINGES, dtype=F64), alphas()
    g = gmm or [(1.0, 0.0, 1.0)]
    k, d = inner_matrix(a, b, gmm), distance_matrix(a, b, gmm)
    for s in range(3):
        for t in range(3):
            fs = lambda x: apl_value(x, a[s].tolist(), HINGES)  # noqa: E731, B023 -- called within this iteration
            ft = lambda x: apl_value(x, a[t].tolist(), HINGES)  # noqa: E731, B023 -- called within this iteration
            want_k = quad_under(lambda x: fs(x) * ft(x), g)  # noqa: B023 -- called within this iteration
            want_d = quad_under(lambda x: (fs(x) - ft(x)) ** 2, g)  # noqa: B023 -- called within this iteration
            assert activation_inner(a[s], a[t], b, gmm).item() == pytest.approx(want_k, rel=1e-8, abs=1e-9)
            assert activation_distance(a[s], a[t], b, gmm).item() == pytest.approx(want_d, rel=1e-8, abs=1e-9)
            assert k[s, t].item() == pytest.approx(want_k, rel=1e-8, abs=1e-9)
            assert d[s, t].item() == pytest.approx(want_d, rel=1e-8, abs=1e-9)


def test_regularizers_match_quadrature_and_definitions():
    b, a = torch.tensor(HINGES, dtype=F64), alphas(4, seed=3)
    g = [(1.0, 0.0, 1.0)]
    rows = [a[s].tolist() for s in range(4)]
    k = np.array([[quad_under(lambda x: apl_value(x, rows[s], HINGES) * apl_value(x, rows[t], HINGES), g)  # noqa: B023 -- called within this iteration
                   for t in range(4)] for s in range(4)])
    dq = np.diag(k)[:, None] + np.diag(k)[None, :] - 2 * k
    cos = k / np.sqrt(np.outer(np.diag(k), np.diag(k)))
    assert cosine_reg(a, b).item() == pytest.approx(-cos.sum() / 16, rel=1e-8)
    assert distance_reg(a, b).item() == pytest.approx(dq.sum() / 16, rel=1e-7)
    assert distance_reg(a, b, None, 2).item() == pytest.approx((dq ** 2).sum() / 16, rel=1e-7)
    singular_values = np.linalg.svd(a.numpy(), compute_uv=False)
    assert trace_norm_reg(a).item() == pytest.approx(singular_values.sum(), rel=1e-12)
    assert trace_norm_reg(a, fidelity="taan_code").item() == pytest.approx(
        np.linalg.norm(a.numpy(), axis=1).sum(), rel=1e-12)


def test_taan_code_cosine_uses_relu_b_instead_of_indicator():
    b = torch.tensor([-1.0, 0.5, 2.0], dtype=F64)
    _, paper, _ = gaussian_moments(b)
    _, code, _ = gaussian_moments(b, fidelity="taan_code")
    phi0 = 1 / math.sqrt(2 * math.pi)
    # the code's E[B0 B_b]: relu(b) for the indicator
    want = [max(v, 0) * (v * phi0 + 0.5 - stats.norm.cdf(v)) for v in b.tolist()]
    assert code.tolist() == pytest.approx(want, abs=1e-14)
    assert paper[0] == 0 and code[0] == 0 and abs(code[2] - paper[2]) > 0.1
    a = alphas(3)[:, :3]
    assert cosine_reg(a, b, fidelity="taan_code").item() != pytest.approx(cosine_reg(a, b).item(), abs=1e-6)


@pytest.mark.parametrize("gmm", [None, GMM2])
def test_regularizers_minimal_exactly_when_rows_equal(gmm):
    b = torch.linspace(-3, 3, 7, dtype=F64)
    row = torch.randn(7, dtype=F64, generator=torch.Generator().manual_seed(1))
    equal = row.repeat(5, 1)
    assert distance_reg(equal, b, gmm).item() == pytest.approx(0.0, abs=1e-12)
    assert distance_reg(equal, b, gmm, 2).item() == pytest.approx(0.0, abs=1e-20)
    assert cosine_reg(equal, b, gmm).item() == pytest.approx(-1.0, abs=1e-12)
    assert distance_matrix(equal, b, gmm).abs().max().item() < 1e-12
    assert torch.allclose(cosine_matrix(equal, b, gmm), torch.ones(5, 5, dtype=F64), atol=1e-12)
    gen = torch.Generator().manual_seed(2)
    for _ in range(5):  # any perturbation of one row moves every regularizer strictly away from its minimum
        other = equal.clone()
        other[2] += 0.05 * torch.randn(7, dtype=F64, generator=gen)
        assert distance_reg(other, b, gmm).item() > 1e-6
        assert cosine_reg(other, b, gmm).item() > -1.0 + 1e-9
    # the gradient vanishes at the minimum
    x = equal.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(distance_reg(x, b, gmm) + cosine_reg(x, b, gmm), x)
    assert grad.abs().max().item() < 1e-10


def test_trace_norm_gradient_finite_at_zero():
    a = torch.zeros(4, 6, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(trace_norm_reg(a), a)
    assert torch.isfinite(g).all()
    a32 = torch.zeros(4, 6, requires_grad=True)
    (g32,) = torch.autograd.grad(trace_norm_reg(a32) + trace_norm_reg(a32, fidelity="taan_code"), a32)
    assert torch.isfinite(g32).all() and g32.dtype == torch.float32
    rank1 = torch.ones(3, 5, dtype=F64, requires_grad=True)  # repeated zero singular values
    (g1,) = torch.autograd.grad(trace_norm_reg(rank1), rank1)
    assert torch.isfinite(g1).all()


def test_regularizers_differentiable_in_alpha_and_b():
    b = torch.tensor([-1.2, -0.3, 0.6, 1.7], dtype=F64, requires_grad=True)
    a = alphas(3)[:, :4].requires_grad_(True)
    mix = [(0.4, 0.3, 0.7), (0.6, -0.5, 1.6)]
    assert torch.autograd.gradcheck(lambda a_, b_: distance_reg(a_, b_, mix), (a, b))
    assert torch.autograd.gradcheck(lambda a_, b_: distance_reg(a_, b_, None, 2), (a, b))
    assert torch.autograd.gradcheck(lambda a_, b_: cosine_reg(a_, b_, mix), (a, b))
    assert torch.autograd.gradcheck(lambda a_, b_: activation_inner(a_[0], a_[1], b_, mix), (a, b))
    assert torch.autograd.gradcheck(trace_norm_reg, (a,))


def test_moments_reject_bad_sigma_and_mixture():
    with pytest.raises(ValueError, match="sigma"):
        gaussian_moments(torch.zeros(2), 0.0, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        distance_reg(torch.zeros(2, 2), torch.zeros(2), [(1.0, 0.0, -1.0)])
