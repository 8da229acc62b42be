"""Closed-form functional geometry of task-adaptive activations and the three TAAN regularizers
(Liu et al., AAAI 2020, Definitions 1-2, Eq. 4, Section "Functional regularization").

F_t(x) = max(0, x) + sum_i alpha[t, i] max(0, b_i - x); the metric is L2(G) with G a Gaussian mixture
(None = N(0, 1)). With the moments of ``moments.py`` under each component k:
  <F_s, F_t> = sum_k pi_k [E00 + (alpha_s + alpha_t) . E0b + alpha_s^T Ebb alpha_t]
  d(F_s, F_t) = sum_k pi_k (alpha_s - alpha_t)^T Ebb (alpha_s - alpha_t)   (already a *squared* distance)
Everything is O(T M^2 + T^2 M), in float64, differentiable in alpha and b; results come back in alpha's dtype.
"""
from __future__ import annotations

import torch

from mtlbench.taan.moments import GMM, mixture_moments

FIDELITIES = ("paper", "taan_code")


def _tensor(v) -> torch.Tensor:
    """Tensors pass through (keeping autograd); lists and arrays from a notebook become float64 tensors."""
    return v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=torch.float64)


def _check_fidelity(fidelity: str) -> None:
    if fidelity not in FIDELITIES:
        raise ValueError(f"fidelity must be one of {FIDELITIES}, got {fidelity!r}")


def activation_inner(alpha_s: torch.Tensor, alpha_t: torch.Tensor, b: torch.Tensor, gmm: GMM = None, *,
                     fidelity: str = "paper") -> torch.Tensor:
    """<F_s, F_t> in L2(G) for coefficient vectors [..., M] (broadcast) sharing the hinges b [M]."""
    alpha_s, alpha_t = _tensor(alpha_s), _tensor(alpha_t)
    e00, e0b, ebb = mixture_moments(b, gmm, fidelity=fidelity)
    a_s, a_t = alpha_s.to(torch.float64), alpha_t.to(torch.float64)
    value = e00 + (a_s + a_t) @ e0b + ((a_s @ ebb) * a_t).sum(-1)
    return value.to(alpha_s.dtype)


def activation_distance(alpha_s: torch.Tensor, alpha_t: torch.Tensor, b: torch.Tensor, gmm: GMM = None
                        ) -> torch.Tensor:
    """d(F_s, F_t) = integral of (F_s - F_t)^2 dG: the ReLU part cancels, leaving a quadratic form in the
    coefficient difference. It is already the squared L2(G) distance."""
    alpha_s, alpha_t = _tensor(alpha_s), _tensor(alpha_t)
    _, _, ebb = mixture_moments(b, gmm)
    diff = (alpha_s - alpha_t).to(torch.float64)
    return ((diff @ ebb) * diff).sum(-1).to(alpha_s.dtype)


def inner_matrix(alpha: torch.Tensor, b: torch.Tensor, gmm: GMM = None, *, fidelity: str = "paper"
                 ) -> torch.Tensor:
    """K[s, t] = <F_s, F_t> for every pair of tasks (alpha [T, M]), in float64."""
    alpha = _tensor(alpha)
    _check_fidelity(fidelity)
    e00, e0b, ebb = mixture_moments(b, gmm, fidelity=fidelity)
    if fidelity == "taan_code":  # the released code detaches the moments in its cosine loss
        e0b, ebb = e0b.detach(), ebb.detach()
    a = alpha.to(torch.float64)
    lin = a @ e0b
    return e00 + lin[:, None] + lin[None, :] + a @ ebb @ a.T


def cosine_matrix(alpha: torch.Tensor, b: torch.Tensor, gmm: GMM = None, *, fidelity: str = "paper"
                  ) -> torch.Tensor:
    """C[s, t] = <F_s, F_t> / (||F_s|| ||F_t||), float64 [T, T]. ||F||^2 > 0 always (F(x) = x beyond the
    last hinge and G has full support); the clamp only guards against round-off."""
    k = inner_matrix(alpha, b, gmm, fidelity=fidelity)
    norms = k.diagonal().clamp_min(torch.finfo(torch.float64).tiny).sqrt()
    if fidelity == "taan_code":  # ... and its normaliser
        norms = norms.detach()
    return k / (norms[:, None] * norms[None, :])


def distance_matrix(alpha: torch.Tensor, b: torch.Tensor, gmm: GMM = None, *, power: int = 1) -> torch.Tensor:
    """D[s, t] = d(F_s, F_t) ** power, float64 [T, T]. Rows are centred first (d only depends on
    differences), which keeps the Gram-matrix form Q_ss + Q_tt - 2 Q_st from cancelling badly."""
    alpha = _tensor(alpha)
    _, _, ebb = mixture_moments(b, gmm)
    a = alpha.to(torch.float64)
    a = a - a.mean(0, keepdim=True)
    q = a @ ebb @ a.T
    diag = q.diagonal()
    d = (diag[:, None] + diag[None, :] - 2.0 * q).clamp_min(0.0)
    return d if power == 1 else d ** power


def trace_norm_reg(alpha: torch.Tensor, *, fidelity: str = "paper") -> torch.Tensor:
    """L_tn: the nuclear norm of alpha [T, M] (sum of singular values). ``svdvals``' backward is U V^T, which
    is finite at alpha = 0 (an eigh-then-sqrt route gives NaN there). ``taan_code``: sum of row norms, as the
    released code computes it (a group lasso, not a trace norm)."""
    alpha = _tensor(alpha)
    _check_fidelity(fidelity)
    a = alpha.to(torch.float64)
    value = torch.linalg.vector_norm(a, dim=1).sum() if fidelity == "taan_code" else torch.linalg.svdvals(a).sum()
    return value.to(alpha.dtype)


def cosine_reg(alpha: torch.Tensor, b: torch.Tensor, gmm: GMM = None, *, fidelity: str = "paper"
               ) -> torch.Tensor:
    """L_cos = -(1/T^2) sum_{s,t} C[s, t]; minimal (= -1) exactly when every task has the same activation."""
    alpha = _tensor(alpha)
    t = alpha.shape[0]
    return (-cosine_matrix(alpha, b, gmm, fidelity=fidelity).sum() / (t * t)).to(alpha.dtype)


def distance_reg(alpha: torch.Tensor, b: torch.Tensor, gmm: GMM = None, power: int = 1) -> torch.Tensor:
    """L_dis = (1/T^2) sum_{s,t} d(F_s, F_t)^power (power 1 by default, as the released code; the paper's
    "d^2" read literally is power 2). Minimal (= 0) exactly when all alpha rows are equal (for positive-
    definite Ebb, i.e. distinct hinges)."""
    alpha = _tensor(alpha)
    if power not in (1, 2):
        raise ValueError(f"power must be 1 or 2, got {power}")
    t = alpha.shape[0]
    if power == 1:
        # sum_{s,t} d_st = 2 T sum_s (a_s - mean)^T Ebb (a_s - mean): O(T M^2) and never negative
        _, _, ebb = mixture_moments(b, gmm)
        a = alpha.to(torch.float64)
        a = a - a.mean(0, keepdim=True)
        value = 2.0 * ((a @ ebb) * a).sum() / t
    else:
        value = distance_matrix(alpha, b, gmm, power=2).sum() / (t * t)
    return value.to(alpha.dtype)
