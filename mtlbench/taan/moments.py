"""Gaussian moments of the TAAN basis functions (Liu et al., AAAI 2020, Lemma 1 -- corrected).

B0(x) = max(0, x), B_b(x) = max(0, b - x), X ~ N(mu, sigma^2). Every moment is a closed form in the standard
normal pdf/cdf, computed in float64 and differentiable in ``b`` (learned hinges get gradients from the
regularizers). The paper prints the last term of E[B0 B_b] as sigma (b - 3 mu) phi(mu/sigma); the correct term
is sigma (b - mu) phi(mu/sigma) (the two agree only at mu = 0). ``tests/test_taan_moments.py`` checks
every formula against quadrature and shows the printed one failing.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Number = float | int | torch.Tensor
# A Gaussian mixture as (weight, mu, sigma) components; None means the standard normal N(0, 1).
GMM = Sequence[Sequence[float]] | None

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def normal_pdf(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * z * z) * _INV_SQRT_2PI


def normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtr(z)


def cdf_difference(hi: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """Phi(hi) - Phi(lo). When both arguments are positive both cdfs are close to 1 and their difference
    cancels catastrophically; the upper tails Phi(-lo) - Phi(-hi) carry the same value without it."""
    upper = normal_cdf(-lo) - normal_cdf(-hi)
    lower = normal_cdf(hi) - normal_cdf(lo)
    return torch.where(torch.minimum(hi, lo) > 0, upper, lower)


def _as_f64(v: Number, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(v, dtype=torch.float64, device=like.device)


def gaussian_moments(b: torch.Tensor, mu: Number = 0.0, sigma: Number = 1.0, *, fidelity: str = "paper"
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(E[B0^2], E[B0 B_b], E[B_bi B_bj]) under N(mu, sigma^2): float64 tensors of shapes [], [M], [M, M].

    ``fidelity="taan_code"`` reproduces the released TAAN code's E[B0 B_b] (multiplied by relu(b) instead of
    the indicator 1[b > 0]); it exists only to explain differences from the published numbers.
    """
    b = torch.as_tensor(b).to(torch.float64)
    mu_t, sigma_t = _as_f64(mu, b), _as_f64(sigma, b)
    if not bool((sigma_t > 0).all()):
        raise ValueError(f"sigma must be positive, got {sigma}")
    m = mu_t / sigma_t
    e00 = (mu_t * mu_t + sigma_t * sigma_t) * normal_cdf(m) + mu_t * sigma_t * normal_pdf(m)
    return e00, _e0b(b, mu_t, sigma_t, fidelity), _ebb(b, mu_t, sigma_t)


def _e0b(b: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, fidelity: str) -> torch.Tensor:
    """E[X (b - X) 1[0 < X < b]]: zero for b <= 0 (the two ramps never overlap)."""
    hi, lo = (b - mu) / sigma, -mu / sigma
    value = ((b * mu - mu * mu - sigma * sigma) * cdf_difference(hi, lo)
             + sigma * mu * normal_pdf(hi) + sigma * (b - mu) * normal_pdf(mu / sigma))
    if fidelity == "taan_code":
        return torch.relu(b) * value
    if fidelity != "paper":
        raise ValueError(f"fidelity must be 'paper' or 'taan_code', got {fidelity!r}")
    return torch.where(b > 0, value, torch.zeros_like(value))


def _ebb(b: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """E[(b_i - X)+ (b_j - X)+] for every pair; valid for any signs and for b_i = b_j."""
    bi, bj = b[:, None], b[None, :]
    u = (torch.minimum(bi, bj) - mu) / sigma
    return (((bi - mu) * (bj - mu) + sigma * sigma) * normal_cdf(u)
            + sigma * (torch.maximum(bi, bj) - mu) * normal_pdf(u))


def mixture_components(gmm: GMM) -> list[tuple[float, float, float]]:
    """The (weight, mu, sigma) components of ``gmm``; None is the standard normal."""
    if gmm is None:
        return [(1.0, 0.0, 1.0)]
    comps = [tuple(float(v) for v in c) for c in gmm]
    for c in comps:
        if len(c) != 3:
            raise ValueError(f"a mixture component is (weight, mu, sigma), got {c}")
        if c[0] < 0 or c[2] <= 0:
            raise ValueError(f"mixture component {c} needs weight >= 0 and sigma > 0")
    if not comps:
        raise ValueError("a Gaussian mixture needs at least one component")
    return comps  # type: ignore[return-value]


def mixture_moments(b: torch.Tensor, gmm: GMM = None, *, fidelity: str = "paper"
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The moments of ``gaussian_moments`` averaged over the mixture's components with their weights (the
    inner product of Definition 1 is linear in the measure)."""
    total = None
    for weight, mu, sigma in mixture_components(gmm):
        moments = gaussian_moments(b, mu, sigma, fidelity=fidelity)
        scaled = tuple(weight * m for m in moments)
        total = scaled if total is None else tuple(a + s for a, s in zip(total, scaled))
    return total  # type: ignore[return-value]
