"""The task-adaptive piecewise-linear activation (Liu et al., AAAI 2020, Eq. 1), computed exactly and fast.

F_t(x) = max(0, x) + sum_{i<M} alpha[t, i] max(0, b_i - x), hinges b shared by the tasks and neurons of a
layer.

The naive form expands x to [N, ..., M] (1 GiB per layer at the paper's batch). Because b is shared and
sorted, the sum only depends on the bucket k(x) = #{i : b_i <= x}: with suffix sums
S_t[k] = sum_{i>=k} alpha[t, i] and A_t[k] = sum_{i>=k} alpha[t, i] b_i,
    F_t(x) = relu(x) + A_t[k] - x S_t[k]
An x equal to a hinge goes to the bucket above, which reproduces relu'(0) = 0 for every hinge. Backward needs
only x and the bucket (saved in 1-2 bytes), per-(task, bucket) sums G, GX of g and g x, and their prefix sums:
    dx = g (1[x > 0] - S_t[k]),  dalpha[t, i] = b_i cG[t, i] - cGX[t, i],  db_i = sum_t alpha[t, i] cG[t, i].
Implementation: the bucket, the sign of x and the row's task are packed in one integer code per element
indexing small tables, so forward and backward are a fixed handful of gathers, multiply-adds and scatters over
cache-sized chunks: device-agnostic, no host synchronisation, any float dtype, no [N, ..., M] tensor.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.autograd.function import once_differentiable

Segments = Sequence[tuple[int, int]]
Grid = Optional[tuple[torch.Tensor, torch.Tensor]]  # (lo, 1 / step) of a uniform hinge grid


def index_dtype(n_codes: int) -> torch.dtype:
    """Smallest integer type holding codes 0..n_codes-1 (what is saved for backward)."""
    if n_codes <= 256:
        return torch.uint8
    return torch.int16 if n_codes <= 32768 else torch.int32


def uniform_grid(b: torch.Tensor) -> Grid:
    """(lo, 1/step) when sorted b is (close to) a uniform grid, else None; ``bucket_index`` is then exact
    against the real b. Synchronises with the device once: call it when b changes, not every step."""
    m = b.numel()
    if m < 2:
        return None
    step = (b[-1] - b[0]) / (m - 1)
    if not bool(step > 0):
        return None
    ideal = b[0] + step * torch.arange(m, dtype=b.dtype, device=b.device)
    if bool((b - ideal).abs().max() > 0.1 * step):  # bucket_index relies on hinges near their grid points
        return None
    return b[0].detach().clone(), (1.0 / step).detach()


def bucket_index(x: torch.Tensor, b: torch.Tensor, grid: Grid = None) -> torch.Tensor:
    """k(x) = #{i : b_i <= x} as int64 (b sorted ascending).

    On a uniform grid, r = round((x - lo) / step) + 1 names the nearest hinge b_{r-1}; every other hinge is
    at least ~half a step away, on the side the arithmetic says, so k = r - 1[x < b_{r-1}] is exact against
    the real b (one comparison per element fixes the rounding). Otherwise ``torch.bucketize``."""
    b = b.to(x.dtype)
    if grid is None:
        return torch.bucketize(x, b, right=True)
    return _grid_bucket(x, _nearest_table(b), grid, b.numel())


def _nearest_table(b: torch.Tensor) -> torch.Tensor:
    """[M+1]: entry r is b_{r-1}, -inf for r = 0 (the hinge that bucket_index's rounding lands next to)."""
    return torch.cat([torch.full((1,), -float("inf"), dtype=b.dtype, device=b.device), b])


def _grid_bucket(x: torch.Tensor, nearest: torch.Tensor, grid: tuple[torch.Tensor, torch.Tensor], m: int
                 ) -> torch.Tensor:
    lo, inv_step = grid[0].to(x.dtype), grid[1].to(x.dtype)
    t = (x - lo).mul_(inv_step).add_(1.5)  # floor(t) = round((x - lo) / step) + 1
    t = torch.nan_to_num_(t, nan=0.0).clamp_(0.0, m + 0.5)  # NaN must not become a wild index
    r = t.to(torch.int64)
    return r.add_(x < nearest.index_select(0, r.view(-1)).view(x.shape), alpha=-1)


def code_tables(alpha: torch.Tensor, b: torch.Tensor, dtype: torch.dtype
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per task, intercept and slope of F on each signed bucket, indexed by the code c = k + (M+1) 1[x > 0]:
    A[t, c] = A_t[k] = sum_{i>=k} alpha[t, i] b_i and D[t, c] = 1[x > 0] - S_t[k],
    S_t[k] = sum_{i>=k} alpha[t, i]
    ([T, 2(M+1)]), so F = A[c] + x D[c] and dF/dx = D[c] (x = 0 takes slope -S: relu'(0) = 0).
    Accumulated in float64 (they are tiny) and returned in the activations' dtype."""
    a = alpha.detach().to(torch.float64)
    ab = a * b.detach().to(torch.float64)
    zero = a.new_zeros(a.shape[0], 1)
    s = torch.cat([a.flip(1).cumsum(1).flip(1), zero], 1)
    big_a = torch.cat([ab.flip(1).cumsum(1).flip(1), zero], 1)
    return torch.cat([big_a, big_a], 1).to(dtype), torch.cat([-s, 1.0 - s], 1).to(dtype)


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


# Elements per chunk: large enough that per-op overhead vanishes, small enough that the int64 temporaries
# stay in cache (measured on CPU: whole-tensor passes over 4M elements ~3x slower than 128K-256K chunks).
CHUNK_ELEMENTS = 1 << 18
CUDA_CHUNK_ELEMENTS = 1 << 22  # on a GPU, kernel launches cost more than the temporaries' traffic


def row_codes_offset(blocks, n_codes_per_task: int, device) -> torch.Tensor:
    """[N, 1] offset task * n_codes_per_task of every row, built on the device (no host round trip)."""
    parts = [torch.full((r1 - r0, 1), task * n_codes_per_task, dtype=torch.int64, device=device)
             for task, r0, r1 in blocks]
    return torch.cat(parts) if parts else torch.zeros(0, 1, dtype=torch.int64, device=device)


def row_chunks(n_rows: int, row_size: int, cuda: bool = False) -> list[tuple[int, int]]:
    step = max(1, (CUDA_CHUNK_ELEMENTS if cuda else CHUNK_ELEMENTS) // max(row_size, 1))
    return [(r, min(r + step, n_rows)) for r in range(0, n_rows, step)]


class _FastAdaptiveActivation(torch.autograd.Function):
    """x2 [N, D] (rows in task blocks), alpha [T, M], b [M] sorted -> F [N, D].

    Every element gets one code = task * 2(M+1) + (M+1) 1[x > 0] + k(x) into the flattened per-task tables of
    ``code_tables``: F = A[code] + x D[code]. Rows are processed in cache-sized chunks that ignore task
    boundaries. Saved for backward: x and the code (1-2 bytes per element; never N*D*M)."""

    @staticmethod
    def forward(ctx, x2, alpha, b, blocks, grid):
        n_tasks, m = alpha.shape
        a_tab, d_tab = (t.reshape(-1) for t in code_tables(alpha, b, x2.dtype))
        b_x = b.to(x2.dtype)
        nearest = _nearest_table(b_x)
        offsets = row_codes_offset(blocks, 2 * (m + 1), x2.device)
        out = torch.empty_like(x2)
        codes = torch.empty(x2.shape, dtype=index_dtype(a_tab.numel()), device=x2.device)
        for r0, r1 in row_chunks(x2.shape[0], x2.shape[1], x2.is_cuda):
            xs, o = x2[r0:r1], out[r0:r1]
            c = torch.bucketize(xs, b_x, right=True) if grid is None else _grid_bucket(xs, nearest, grid, m)
            c.add_(xs > 0, alpha=m + 1).add_(offsets[r0:r1])
            flat = c.view(-1)
            torch.index_select(a_tab, 0, flat, out=o.view(-1))
            o.addcmul_(xs, d_tab.index_select(0, flat).view_as(xs))
            codes[r0:r1].copy_(c)
        ctx.save_for_backward(x2, codes, alpha, b)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x2, codes, alpha, b = ctx.saved_tensors
        need_x, need_alpha, need_b = ctx.needs_input_grad[:3]
        n_tasks, m = alpha.shape
        n_codes = n_tasks * 2 * (m + 1)
        g = g.contiguous()
        d_tab = code_tables(alpha, b, x2.dtype)[1].reshape(-1)
        dx = torch.empty_like(x2) if need_x else None
        chunks = row_chunks(x2.shape[0], x2.shape[1], x2.is_cuda)
        partial = x2.new_zeros(len(chunks), 2, n_codes) if (need_alpha or need_b) else None
        for i, (r0, r1) in enumerate(chunks):
            c, gs = codes[r0:r1].reshape(-1).to(torch.int64), g[r0:r1].reshape(-1)
            if dx is not None:
                d = dx[r0:r1].view(-1)
                torch.index_select(d_tab, 0, c, out=d).mul_(gs)
            if partial is not None:
                scatter_sum(partial[i, 0], c, gs)
                scatter_sum(partial[i, 1], c, gs * x2[r0:r1].reshape(-1))
        d_alpha = d_b = None
        if partial is not None:
            # chunk histograms added in float64 in a fixed order: deterministic and accurate
            sums = partial.to(torch.float64).sum(0).view(2, n_tasks, 2, m + 1).sum(2)  # fold the sign halves
            c_g, c_gx = sums.cumsum(2)[:, :, :m]  # prefix sums over buckets: elements with b_i > x
            if need_alpha:
                d_alpha = (b.to(torch.float64) * c_g - c_gx).to(alpha.dtype)
            if need_b:
                d_b = (alpha.to(torch.float64) * c_g).sum(0).to(b.dtype)
        return dx, d_alpha, d_b, None, None


def scatter_sum(out: torch.Tensor, codes: torch.Tensor, weights: torch.Tensor) -> None:
    """out[code] += weight. On CPU a sequential (deterministic) scatter. CUDA's scatter_add uses atomics;
    under torch.use_deterministic_algorithms the sorted index_put_ path is taken instead."""
    if codes.is_cuda and torch.are_deterministic_algorithms_enabled():
        out.index_put_((codes,), weights, accumulate=True)
    else:
        out.scatter_add_(0, codes, weights)


def adaptive_activation(z: torch.Tensor, alpha: torch.Tensor, b: torch.Tensor, segments: Segments,
                        grid: Grid = None) -> torch.Tensor:
    """F_t(z) for z [N, ...] whose rows come in task blocks ``segments`` = [(task, n rows), ...];
    alpha [T, M], b [M] sorted ascending (repeats allowed). ``grid`` = ``uniform_grid(b)`` enables
    arithmetic bucketing."""
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
