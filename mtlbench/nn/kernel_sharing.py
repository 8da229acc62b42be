"""The arithmetic of MTAL's kernel-pair sharing ([feng2021], eqs. 3-6), vectorised over tasks and filters.

A layer's kernels are stacked filter-major as ``w`` [m, T, d]: ``w[k, i]`` is task i's filter k flattened
(d = C_in * k * k), so filter k of every task sits in one [T, d] block (index pairing compares those blocks).
- ``select``: the cosine of every compared kernel pair (eq. 3) -- ``index`` pairing compares i's filter k with
  j's filter k; ``best_match`` with j's filter of highest cosine, kept only where the match is mutual -- and
  which pairs are shared: cosine >= delta (eq. 4), candidate task pairs only; no gradient (the threshold is not
  differentiated).
- ``phi_matrix``: phi_ij = sigmoid(theta_ij) for i < j and phi_ji = 1 - phi_ij (one theta per unordered pair).
- ``effective``: task i's filter k is the mean over its selected pairs of w_ij = phi_ij w_i + phi_ji w_j (eqs.
  5-6), or its own w_i where nothing is selected: one coefficient tensor [m, T, T] (tiny) and one batched
  matrix product over the kernels, for all tasks and filters of a layer at once.
- ``layer_stats``: what a record reports per layer (cosines, shared counts, the three sharing ratios).

(The leading underscore keeps the registry's discovery from importing this as a method module.)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

RATIOS = ("pair_entries", "filters_with_partner", "compression")


@dataclass
class Selection:
    cosine: torch.Tensor  # [m, T, T]: cosine of i's filter k with its partner in j
    partner: torch.Tensor | None  # [m, T, T] long: j's filter paired with i's filter k; None = k itself (index)
    mask: torch.Tensor  # [m, T, T] bool: the pair is shared (symmetric under the pairing; False off-candidates)


def index_cosines(w: torch.Tensor) -> torch.Tensor:
    """[m, T, T]: cos(w_i,k, w_j,k) from the Gram matrices of the [T, d] blocks."""
    gram = torch.bmm(w, w.transpose(1, 2))
    norm = gram.diagonal(dim1=1, dim2=2).clamp_min(1e-24).sqrt()
    return gram / (norm[:, :, None] * norm[:, None, :])


def best_match_cosines(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cosine, partner, mutual), each [m, T, T]: for i's filter k, j's filter of highest cosine; mutual where
    that filter's own best match in i is k."""
    m, T, _ = w.shape
    u = F.normalize(w, dim=-1).reshape(m * T, -1)
    full = (u @ u.t()).view(m, T, m, T).permute(0, 1, 3, 2)  # [k, i, j, l]: i's filter k with j's filter l
    cos, partner = full.max(-1)
    back = partner.permute(0, 2, 1).gather(0, partner)  # back[k, i, j] = partner[partner[k, i, j], j, i]
    return cos, partner, back == torch.arange(m, device=w.device)[:, None, None]


@torch.no_grad()
def select(w: torch.Tensor, candidates: torch.Tensor, delta: float, pairing: str) -> Selection:
    """Which kernel pairs of a layer are shared; ``candidates`` [T, T] bool (symmetric, False on the diagonal)."""
    w = w.detach()
    if pairing == "index":
        cos = index_cosines(w)
        return Selection(cos, None, (cos >= delta) & candidates)
    cos, partner, mutual = best_match_cosines(w)
    return Selection(cos, partner, (cos >= delta) & mutual & candidates)


def phi_matrix(theta: torch.Tensor | None, pairs: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """[T, T] with phi[i, j] = sigmoid(theta_ij) and phi[j, i] = 1 - phi[i, j] for each candidate pair (i < j)
    in ``pairs`` [P, 2]; ``theta`` None = fixed 0.5. Entries of other pairs are 0.5 and never used."""
    device = pairs.device if theta is None else theta.device
    phi = torch.full((n_tasks, n_tasks), 0.5, device=device, dtype=torch.float32 if theta is None else theta.dtype)
    if theta is None or len(pairs) == 0:
        return phi
    s = torch.sigmoid(theta)
    i, j = pairs[:, 0], pairs[:, 1]
    return phi.index_put((i, j), s).index_put((j, i), 1 - s)


def coefficients(sel: Selection, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(partner coefficients [m, T, T]: phi_ji / n for each selected pair of i's filter k, own coefficients
    [m, T]: sum_j phi_ij / n over the selected pairs, or 1 where none is selected), n = the selected pairs."""
    s = sel.mask.to(phi.dtype)
    n = s.sum(2)
    inv = 1.0 / n.clamp(min=1)
    own = torch.where(n > 0, (s * phi).sum(2) * inv, torch.ones_like(n))
    return s * phi.t() * inv[:, :, None], own


def effective(w: torch.Tensor, sel: Selection, phi: torch.Tensor) -> torch.Tensor:
    """Every task's effective kernels [m, T, d]: the mean over the selected pairs j of phi_ij w_i + phi_ji w_j'
    (j' = j's partner filter), or w_i itself where no pair is selected (then exactly w_i: its coefficient is 1
    and every other is 0)."""
    partner, own = coefficients(sel, phi)
    m, T, d = w.shape
    if sel.partner is None:  # filter k mixes only the T tasks' filters k: a [T, T] matrix per filter
        mix = partner + torch.diag_embed(own)
        # built transposed and made contiguous: bmm's backward then multiplies by a contiguous matrix, which
        # CPU BLAS does several times faster than by a transposed view of a small one
        return torch.bmm(mix.transpose(1, 2).contiguous().transpose(1, 2), w)
    # best match: (i, k) mixes j's partner filter l, a [m T, m T] matrix over all filters of the layer
    chosen = sel.partner[..., None] == torch.arange(m, device=w.device)  # [k, i, j, l] one-hot, no host sync
    pick = chosen.to(w.dtype) * partner[..., None]
    mix = pick.permute(0, 1, 3, 2).reshape(m * T, m * T) + torch.diag(own.reshape(-1))
    return (mix @ w.reshape(m * T, d)).view(m, T, d)


# -- what a record reports ------------------------------------------------------------------------------------------
def mean_pair_cosine(sel: Selection) -> torch.Tensor:
    """[T, T]: the mean cosine over the compared pairs of each task pair (best_match: both directions averaged)."""
    c = sel.cosine.mean(0)
    return (c + c.t()) / 2


@torch.no_grad()
def distinct_count(kernels: torch.Tensor, rtol: float = 1e-5) -> int:
    """How many different kernels ``kernels`` [n, d] holds (equal within ``rtol`` of the larger norm)."""
    k = kernels.double().flatten(1)
    norms = k.norm(dim=1)
    close = torch.cdist(k, k) <= rtol * torch.maximum(norms[:, None], norms[None, :])
    earlier = torch.tril(close, diagonal=-1).any(1)  # a copy of an earlier kernel
    return int(len(k) - earlier.sum())


@torch.no_grad()
def layer_stats(w: torch.Tensor, sel: Selection, phi: torch.Tensor, eff: torch.Tensor, candidates: torch.Tensor,
                names: list[str]) -> dict:
    """Per task pair: filters compared, shared count, mean cosine, phi; the three sharing ratios of the layer:
    (a) shared (filter, unordered task pair) entries / all entries, (b) filters with at least one partner / (T m),
    (c) 1 - distinct effective kernels / (T m); and the task-by-task mean-cosine matrix (distance = 1 - cosine)."""
    m, T = w.shape[:2]
    cos = mean_pair_cosine(sel).cpu().double()
    cos.fill_diagonal_(1.0)
    pairs, shared_entries = [], 0
    for i in range(T):
        for j in range(i + 1, T):
            shared = int(sel.mask[:, i, j].sum())
            shared_entries += shared
            pairs.append({"tasks": [names[i], names[j]], "candidate": bool(candidates[i, j]), "filters": m,
                          "shared": shared, "mean_cosine": float(cos[i, j]), "phi": float(phi[i, j])})
    distinct = distinct_count(eff.reshape(m * T, -1))
    entries = m * T * (T - 1) // 2
    ratios = {"pair_entries": shared_entries / entries if entries else 0.0,
              "filters_with_partner": float(sel.mask.any(2).sum()) / (T * m),
              "compression": 1.0 - distinct / (T * m)}
    return {"filters": m, "kernel_params": int(w.shape[-1]), "shared_entries": shared_entries, "entries": entries,
            "distinct_kernels": distinct, "ratios": ratios, "pairs": pairs, "cosine": cos.tolist(),
            "distance": (1.0 - cos).tolist()}


def totals(layers: list[dict]) -> dict:
    """Each ratio over the network: the simple mean over layers, weighted by filters, and weighted by kernel
    parameters (filters x kernel size)."""
    out = {}
    for r in RATIOS:
        values = [layer["ratios"][r] for layer in layers]
        by_filters = [layer["filters"] for layer in layers]
        by_params = [layer["filters"] * layer["kernel_params"] for layer in layers]
        out[r] = {"mean": sum(values) / len(values) if values else 0.0,
                  "by_filters": weighted(values, by_filters), "by_params": weighted(values, by_params)}
    return out


def weighted(values: list[float], weights: list[int]) -> float:
    total = sum(weights)
    return sum(v * w for v, w in zip(values, weights)) / total if total else 0.0
