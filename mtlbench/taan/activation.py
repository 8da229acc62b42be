"""The task-adaptive piecewise-linear activation (Liu et al., AAAI 2020, Eq. 1), computed exactly and fast.

F_t(x) = max(0, x) + sum_{i<M} alpha[t, i] max(0, b_i - x), hinges b shared by all tasks and neurons of a layer.

The naive form expands x to [N, ..., M] (1 GiB per layer at the paper's batch). Because b is shared and sorted,
the sum only depends on the bucket k(x) = #{i : b_i <= x}: with suffix sums S_t[k] = sum_{i>=k} alpha[t, i] and
A_t[k] = sum_{i>=k} alpha[t, i] b_i,
    F_t(x) = relu(x) + A_t[k] - x S_t[k]                        (taan.md "Fast exact activation")
An x equal to a hinge goes to the bucket above, which reproduces relu'(0) = 0 for every hinge. Backward needs
only x and k (stored in 1-2 bytes), per-(task, bucket) sums of g and g x, and prefix sums over buckets:
    dx = g (1[x > 0] - S_t[k]),  dalpha[t, i] = b_i cG[t, i] - cGX[t, i],  db_i = sum_t alpha[t, i] cG[t, i].
Rows come in task blocks (``segments``, see mtlbench.methods.backbone), so every step is a loop over blocks of
plain tensor ops: device-agnostic, no host synchronisation, any float dtype.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.autograd.function import once_differentiable

Segments = Sequence[tuple[int, int]]
Grid = Optional[tuple[torch.Tensor, torch.Tensor]]  # (lo, 1 / step) of a uniform hinge grid


def index_dtype(m: int) -> torch.dtype:
    """Smallest integer type holding bucket indices 0..m (what is saved for backward)."""
    if m <= 255:
        return torch.uint8
    return torch.int16 if m <= 32767 else torch.int32


def uniform_grid(b: torch.Tensor) -> Grid:
    """(lo, 1/step) when sorted b is (close to) a uniform grid, else None. The arithmetic bucket is then within
    one of the true one and ``bucket_index``'s fix-up makes it exact against the real b. Synchronises with
    the device once: call it when b changes, not every step."""
    m = b.numel()
    if m < 2:
        return None
    step = (b[-1] - b[0]) / (m - 1)
    if not bool(step > 0):
        return None
    ideal = b[0] + step * torch.arange(m, dtype=b.dtype, device=b.device)
    if bool((b - ideal).abs().max() > 0.25 * step):
        return None
    return b[0].detach().clone(), (1.0 / step).detach()


def bucket_index(x: torch.Tensor, b: torch.Tensor, grid: Grid = None) -> torch.Tensor:
    """k(x) = #{i : b_i <= x} as int64 (b sorted). On a uniform grid: floor((x - lo) / step) + 1, then an exact
    +-1 fix-up by comparing x with the real neighbouring hinges; otherwise ``torch.bucketize``."""
    b = b.to(x.dtype)
    if grid is None:
        return torch.bucketize(x, b, right=True)
    m = b.numel()
    lo, inv_step = grid[0].to(x.dtype), grid[1].to(x.dtype)
    t = (x - lo).mul_(inv_step).add_(1.0)
    t = torch.nan_to_num_(t, nan=0.0).clamp_(0.0, float(m))  # NaN inputs must not become wild indices
    k = t.to(torch.int64).view(-1)
    inf = torch.full((1,), float("inf"), dtype=x.dtype, device=x.device)
    below = torch.cat([-inf, b]).index_select(0, k)  # b_{k-1} (-inf for k = 0)
    above = torch.cat([b, inf]).index_select(0, k)   # b_k (+inf for k = M)
    xf = x.reshape(-1)
    k = k - (below > xf).to(torch.int64) + (above <= xf).to(torch.int64)
    return k.view(x.shape)


def suffix_tables(alpha: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """S[t, k] = sum_{i>=k} alpha[t, i] and A[t, k] = sum_{i>=k} alpha[t, i] b_i, k = 0..M ([T, M+1]),
    accumulated in float64 (they are tiny) and returned in the activations' dtype."""
    a = alpha.detach().to(torch.float64)
    ab = a * b.detach().to(torch.float64)
    zero = a.new_zeros(a.shape[0], 1)
    s = torch.cat([a.flip(1).cumsum(1).flip(1), zero], 1)
    big_a = torch.cat([ab.flip(1).cumsum(1).flip(1), zero], 1)
    return s.to(dtype), big_a.to(dtype)


def row_blocks(segments: Segments, n_rows: int, n_tasks: int) -> tuple[tuple[int, int, int], ...]:
    """(task, first row, end row) per segment, checked against the batch and the number of tasks."""
    blocks, start = [], 0
    for task, n in segments:
        task, n = int(task), int(n)
        if not 0 <= task < n_tasks:
            raise ValueError(f"segment task index {task} is outside 0..{n_tasks - 1}")
        if n < 0:
            raise ValueError(f"segment ({task}, {n}) has a negative row count")
        blocks.append((task, start, start + n))
        start += n
    if start != n_rows:
        raise ValueError(f"segments cover {start} rows but the batch has {n_rows}")
    return tuple(blocks)


class _FastAdaptiveActivation(torch.autograd.Function):
    """x2 [N, D] (rows in task blocks), alpha [T, M], b [M] sorted -> F [N, D]. Saves x and a small bucket
    index; nothing of size N*D*M is ever formed."""

    @staticmethod
    def forward(ctx, x2, alpha, b, blocks, grid):
        s_tab, a_tab = suffix_tables(alpha, b, x2.dtype)
        out = torch.empty_like(x2)
        kstore = torch.empty(x2.shape, dtype=index_dtype(b.numel()), device=x2.device)
        for task, r0, r1 in blocks:
            xs, o = x2[r0:r1], out[r0:r1]
            k = bucket_index(xs, b, grid)
            kflat = k.view(-1)
            torch.index_select(a_tab[task], 0, kflat, out=o.view(-1))
            o.addcmul_(xs, s_tab[task].index_select(0, kflat).view_as(xs), value=-1.0)
            o.add_(torch.relu(xs))
            kstore[r0:r1].copy_(k)
        ctx.save_for_backward(x2, kstore, alpha, b)
        ctx.blocks = blocks
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x2, kstore, alpha, b = ctx.saved_tensors
        g = g.contiguous()
        need_x, need_alpha, need_b = ctx.needs_input_grad[:3]
        n_tasks, m = alpha.shape
        s_tab, _ = suffix_tables(alpha, b, x2.dtype)
        dx = torch.empty_like(x2) if need_x else None
        sums = x2.new_zeros(2, n_tasks, m + 1, dtype=torch.float64) if (need_alpha or need_b) else None
        for task, r0, r1 in ctx.blocks:
            xs, gs, ks = x2[r0:r1], g[r0:r1], kstore[r0:r1].reshape(-1)
            if dx is not None:
                d = dx[r0:r1]
                torch.index_select(s_tab[task], 0, ks.to(torch.int64), out=d.view(-1))
                d.neg_().add_(xs > 0).mul_(gs)
            if sums is not None and r1 > r0:
                sums[0, task] += torch.bincount(ks, weights=gs.reshape(-1), minlength=m + 1).to(torch.float64)
                sums[1, task] += torch.bincount(ks, weights=(gs * xs).reshape(-1), minlength=m + 1).to(torch.float64)
        d_alpha = d_b = None
        if sums is not None:
            c_g, c_gx = sums.cumsum(2)[:, :, :m]  # prefix sums over buckets: elements with b_i > x
            b64 = b.to(torch.float64)
            if need_alpha:
                d_alpha = (b64 * c_g - c_gx).to(alpha.dtype)
            if need_b:
                d_b = (alpha.to(torch.float64) * c_g).sum(0).to(b.dtype)
        return dx, d_alpha, d_b, None, None


def adaptive_activation(z: torch.Tensor, alpha: torch.Tensor, b: torch.Tensor, segments: Segments,
                        grid: Grid = None) -> torch.Tensor:
    """F_t(z) for z [N, ...] whose rows come in task blocks ``segments`` = [(task, n rows), ...]; alpha [T, M],
    b [M] sorted ascending (repeats allowed). ``grid`` = ``uniform_grid(b)`` enables arithmetic bucketing."""
    if z.dim() == 0:
        raise ValueError("adaptive_activation needs a batch dimension")
    blocks = row_blocks(segments, z.shape[0], alpha.shape[0])
    if alpha.shape[-1] != b.numel():
        raise ValueError(f"alpha has {alpha.shape[-1]} coefficients per task but b has {b.numel()} hinges")
    x2 = z.reshape(z.shape[0], -1)
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    return _FastAdaptiveActivation.apply(x2, alpha, b, blocks, grid).view(z.shape)


def naive_adaptive_activation(z: torch.Tensor, alpha: torch.Tensor, b: torch.Tensor, segments: Segments
                              ) -> torch.Tensor:
    """The defining formula with an [N, ..., M] intermediate: the test oracle only (b need not be sorted)."""
    blocks = row_blocks(segments, z.shape[0], alpha.shape[0])
    rows = torch.cat([torch.full((r1 - r0,), t, dtype=torch.int64, device=z.device) for t, r0, r1 in blocks]
                     or [torch.zeros(0, dtype=torch.int64, device=z.device)])
    coef = alpha.to(z.dtype)[rows].view(z.shape[0], *([1] * (z.dim() - 1)), -1)
    hinges = torch.relu(b.to(z.dtype) - z.unsqueeze(-1))
    return torch.relu(z) + (hinges * coef).sum(-1)


def apl(x: torch.Tensor, alpha_row: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One task's activation F(x) = relu(x) + sum_i alpha_row[i] relu(b_i - x), elementwise on x of any shape
    (b in any order; differentiable in x, alpha_row and b)."""
    b_sorted, order = torch.sort(b)
    flat = x.reshape(1, -1)
    out = adaptive_activation(flat, alpha_row[order].unsqueeze(0), b_sorted, [(0, 1)])
    return out.view(x.shape)
