"""Tensor factorisations used by DMTRL [yang2017]: last-axis flattening (LAF), Tucker and
tensor train (TT), each initialised from a given tensor with data-driven ranks.

A tensor here has its task axis last: [D1, ..., DN, T]. Each factorisation keeps its factors as parameters,
rebuilds the full tensor with ``full()`` (one call per training iteration) or one task's slice with
``task(t)`` (cheap, for evaluation), and knows its ``ranks`` and closed-form parameter count. A dense layer's
tensor [in, out, T] can instead be *applied*: ``apply_to(xs, tasks)`` gives every task's x_t W_t straight from
the factors (Tucker: ((x U1) G_t) U2^T; TT: (x G1) G2[t]), never building W -- the same function with far fewer
operations when the ranks are near full and the batch is small (Omniglot's fc1 [1024, 512, 50] at near-full
rank: ~41 G multiply-adds to rebuild, ~1.3 G to apply), in another order of float sums.

Rank selection (``eps_or_k``): a value >= 1 is an explicit rank (a list gives one per SVD); a value < 1 is a
relative error, read according to ``rule``:
- ``frobenius``: the whole factorisation reconstructs the tensor within ||W - W_hat||_F <= eps ||W||_F. Each
  of the n truncated SVDs gets the budget eps ||W||_F / sqrt(n), which bounds the total for LAF (n = 1),
  HOSVD-Tucker (n = N + 1; De Lathauwer et al. 2000) and TT-SVD (n = N; Oseledets 2011).
- ``spectral``: each truncated SVD separately keeps the smallest k with sigma_{k+1} <= eps sigma_1 of *that*
  matrix -- the reading of eps in the DMTRL toolbox (wOOL/DMTRL), computed with an exact SVD.
- ``interpolative``: the rank scipy's interpolative decomposition picks (``scipy.linalg.interpolative.svd(A,
  eps, rand=False)``), exactly what the toolbox and yingrliu/TAAN-MTL do; needs scipy. The factors are then
  the exact truncated SVD at that rank.
All SVDs run in float64 with torch.linalg, so ranks are deterministic for a given tensor.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

EpsOrK = float | int | Sequence[float | int]


# -- truncated SVD with the rank rules ------------------------------------------------------------------------
def per_svd(eps_or_k: EpsOrK, n: int) -> list[float | int]:
    if isinstance(eps_or_k, (int, float)):
        return [eps_or_k] * n
    if len(eps_or_k) != n:
        raise ValueError(f"eps_or_k lists {len(eps_or_k)} values but this factorisation makes {n} SVDs")
    return list(eps_or_k)


def choose_rank(a: torch.Tensor, s: torch.Tensor, eps_or_k: float | int, rule: str, frob_tol: float) -> int:
    if eps_or_k >= 1:
        return min(int(eps_or_k), len(s))
    if rule == "frobenius":
        tail = torch.cat([s.flip(0).square().cumsum(0).flip(0), s.new_zeros(1)]).sqrt()  # tail[k] = ||s[k:]||
        return max(1, int((tail > frob_tol).sum()))
    if rule == "spectral":
        return max(1, int((s > eps_or_k * s[0]).sum()))
    if rule == "interpolative":
        return interpolative_rank(a, eps_or_k)
    raise ValueError(f"unknown rank rule {rule!r}")


def interpolative_rank(a: torch.Tensor, eps: float) -> int:
    try:
        from scipy.linalg import interpolative
    except ImportError as e:  # scipy is an optional dependency of mtlbench
        raise ImportError("rank_rule: interpolative needs scipy (pip install scipy)") from e
    _, s, _ = interpolative.svd(a.detach().cpu().double().numpy(), eps, rand=False)
    return len(s)


def leading_svd(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left singular vectors and singular values (descending) of a float64 matrix, fast for the very
    rectangular unfoldings DMTRL makes (torch's SVD of a 1152 x 16384 matrix takes ~40 s on a CPU; this <1 s).
    Wide: eigh of the Gram matrix a a^T -- singular values below ~1e-8 sigma_1 are not resolved, which only
    matters for tolerances that small. Tall: QR first, then the SVD of the small triangular factor."""
    m, n = a.shape
    if m <= n:
        lam, u = torch.linalg.eigh(a @ a.T)
        return u.flip(1), lam.flip(0).clamp_min(0).sqrt()
    q, r = torch.linalg.qr(a)
    u, s, _ = torch.linalg.svd(r)
    return q @ u, s


def truncated_svd(a: torch.Tensor, eps_or_k: float | int, rule: str, frob_tol: float):
    """(U_k, S_k V_k^T) of the rank-k truncated SVD, k by the rank rule; the second factor is U_k^T a, the
    exact projection (no division by small singular values)."""
    a = a.double()
    u, s = leading_svd(a)
    k = choose_rank(a, s, eps_or_k, rule, frob_tol)
    u = u[:, :k]
    return u, u.T @ a


# -- tensor helpers -------------------------------------------------------------------------------------------
def unfold(w: torch.Tensor, mode: int) -> torch.Tensor:
    return w.movedim(mode, 0).reshape(w.shape[mode], -1)


def mode_product(w: torch.Tensor, u: torch.Tensor, mode: int) -> torch.Tensor:
    """w x_mode u: contracts axis ``mode`` of w (size K) with the columns of u [D, K]."""
    return (w.movedim(mode, -1) @ u.T).movedim(-1, mode)


class Factorised(nn.Module):
    """Common interface; ``shape`` is the full tensor's shape [D1, ..., DN, T]."""

    shape: tuple[int, ...]
    ranks: list[int]

    def full(self) -> torch.Tensor:
        raise NotImplementedError

    def task(self, t: int) -> torch.Tensor:
        raise NotImplementedError

    @property
    def applicable(self) -> bool:
        """Whether ``apply_to`` exists: a dense layer's [in, out, T] tensor, in a factorisation where applying the
        factors is cheaper than building W (not LAF: its shared factor is as large as W per rank)."""
        return False

    def apply_to(self, xs: Sequence[torch.Tensor], tasks: Sequence[int]) -> list[torch.Tensor]:
        """xs[k] @ W[..., tasks[k]] straight from the factors (``applicable`` tensors only)."""
        raise NotImplementedError

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def closed_form_params(self) -> int:
        raise NotImplementedError


class LAF(Factorised):
    """W = reshape(L S): L [prod(D), K] shared, S [K, T] task-specific; init L = U_K, S = Sigma_K V_K^T."""

    def __init__(self, w: torch.Tensor, eps_or_k: EpsOrK, rule: str):
        super().__init__()
        self.shape = tuple(w.shape)
        flat = w.reshape(-1, w.shape[-1]).double()
        tol = (eps := per_svd(eps_or_k, 1)[0]) * flat.norm()
        u, proj = truncated_svd(flat, eps, rule, float(tol))
        self.L = nn.Parameter(u.float().contiguous())
        self.S = nn.Parameter(proj.float().contiguous())
        self.ranks = [u.shape[1]]

    def full(self) -> torch.Tensor:
        return (self.L @ self.S).reshape(self.shape)

    def task(self, t: int) -> torch.Tensor:
        return (self.L @ self.S[:, t]).reshape(self.shape[:-1])

    def closed_form_params(self) -> int:
        k = self.ranks[0]
        return k * (math.prod(self.shape[:-1]) + self.shape[-1])


class Tucker(Factorised):
    """W = S x_1 U1 ... x_N UN x_T UT (HOSVD init: leading left singular vectors of every unfolding, the task
    mode included; core = W x_n Un^T over all modes)."""

    def __init__(self, w: torch.Tensor, eps_or_k: EpsOrK, rule: str):
        super().__init__()
        self.shape = tuple(w.shape)
        w = w.double()
        eps = per_svd(eps_or_k, w.dim())
        tol = float(w.norm()) / math.sqrt(w.dim())
        factors = [truncated_svd(unfold(w, n), e, rule, e * tol)[0] for n, e in enumerate(eps)]
        core = w
        for n, u in enumerate(factors):
            core = mode_product(core, u.T, n)
        self.factors = nn.ParameterList(nn.Parameter(u.float().contiguous()) for u in factors)
        self.core = nn.Parameter(core.float().contiguous())
        self.ranks = [u.shape[1] for u in factors]

    def full(self) -> torch.Tensor:
        w = self.core
        for n, u in enumerate(self.factors):
            w = mode_product(w, u, n)
        return w

    def task(self, t: int) -> torch.Tensor:
        w = self.core @ self.factors[-1][t]  # contract the task mode first: [K1, ..., KN]
        for n, u in enumerate(self.factors[:-1]):
            w = mode_product(w, u, n)
        return w

    @property
    def applicable(self) -> bool:
        return len(self.shape) == 3

    def apply_to(self, xs: Sequence[torch.Tensor], tasks: Sequence[int]) -> list[torch.Tensor]:
        u_in, u_out, u_task = self.factors
        k_in, k_out, k_task = self.core.shape
        # the tasks' cores G_t, task-major [len(tasks), K_in, K_out]: one product, already in bmm's layout
        cores = (u_task[list(tasks)] @ self.core.reshape(k_in * k_out, k_task).T).reshape(-1, k_in, k_out)
        return per_task_chain(xs, u_in, cores, u_out.T)

    def closed_form_params(self) -> int:
        return math.prod(self.ranks) + sum(d * k for d, k in zip(self.shape, self.ranks))


class TensorTrain(Factorised):
    """W[d1, ..., dN, t] = G1[d1] ... GN[dN] GT[t], cores Gn [r_{n-1}, Dn, r_n], r_0 = r_{N+1} = 1 (TT-SVD init)."""

    def __init__(self, w: torch.Tensor, eps_or_k: EpsOrK, rule: str):
        super().__init__()
        self.shape = tuple(w.shape)
        w = w.double()
        eps = per_svd(eps_or_k, w.dim() - 1)
        tol = float(w.norm()) / math.sqrt(w.dim() - 1)
        cores, rest, r = [], w, 1
        for n, e in enumerate(eps):
            rest = rest.reshape(r * self.shape[n], -1)
            u, rest = truncated_svd(rest, e, rule, e * tol)
            r_next = u.shape[1]
            cores.append(u.reshape(r, self.shape[n], r_next))
            r = r_next
        cores.append(rest.reshape(r, self.shape[-1], 1))
        self.cores = nn.ParameterList(nn.Parameter(c.float().contiguous()) for c in cores)
        self.ranks = [c.shape[2] for c in cores[:-1]]

    def _chain(self, cores: Sequence[torch.Tensor]) -> torch.Tensor:
        x = cores[0].reshape(-1, cores[0].shape[2])
        for core in cores[1:]:
            r, d, r_next = core.shape
            x = (x @ core.reshape(r, d * r_next)).reshape(-1, r_next)
        return x

    def full(self) -> torch.Tensor:
        return self._chain(list(self.cores)).reshape(self.shape)

    def task(self, t: int) -> torch.Tensor:
        # from the task end: each step shrinks to [r_{n-1}, Dn ... DN] (from the first core, the chain would
        # build [D1 ... Dn, r_n] at full width -- Omniglot's fc1: ~1,000x more operations)
        w = self.cores[-1][:, t, 0]  # [r_N]
        for core in reversed(self.cores[:-1]):
            w = core.reshape(-1, core.shape[2]) @ w.reshape(core.shape[2], -1)
        return w.reshape(self.shape[:-1])

    @property
    def applicable(self) -> bool:
        return len(self.shape) == 3

    def apply_to(self, xs: Sequence[torch.Tensor], tasks: Sequence[int]) -> list[torch.Tensor]:
        first, middle, last = self.cores  # [1, in, r1], [r1, out, r2], [r2, T, 1]
        r1, out, r2 = middle.shape
        # G2 G3[t] per task, task-major [len(tasks), r1, out]
        ends = (last[:, list(tasks), 0].T @ middle.reshape(r1 * out, r2).T).reshape(-1, r1, out)
        return per_task_chain(xs, first[0], ends)

    def closed_form_params(self) -> int:
        r = [1, *self.ranks, 1]
        return sum(r[n] * d * r[n + 1] for n, d in enumerate(self.shape))


def per_task_chain(xs: Sequence[torch.Tensor], left: torch.Tensor, cores: torch.Tensor,
                   right: torch.Tensor | None = None) -> list[torch.Tensor]:
    """xs[k] @ left @ cores[k] (@ right): a shared matrix, one task-specific matrix per input (``cores``
    [len(xs), a, b]), optionally another shared one; one batched product when the inputs have one shape (a
    training step), else one chain per input."""
    if len({x.shape for x in xs}) == 1:
        z = torch.bmm(torch.stack(list(xs)) @ left, cores)
        return list((z if right is None else z @ right).unbind(0))
    out = [x @ left @ core for x, core in zip(xs, cores.unbind(0))]
    return out if right is None else [z @ right for z in out]


FACTORISATIONS: dict[str, type[Factorised]] = {"LAF": LAF, "Tucker": Tucker, "TT": TensorTrain}
