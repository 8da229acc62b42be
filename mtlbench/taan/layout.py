"""What the adaptive activation's kernels share: hinge bucketing, per-task code tables and the rows' tasks.

Because the hinges b are shared and sorted, F_t(x) = relu(x) + sum_i alpha[t, i] max(0, b_i - x) only depends
on the bucket k(x) = #{i : b_i <= x}: with suffix sums S_t[k] = sum_{i>=k} alpha[t, i] and
A_t[k] = sum_{i>=k} alpha[t, i] b_i,  F_t(x) = relu(x) + A_t[k] - x S_t[k]. An x equal to a hinge goes to the
bucket above, which reproduces relu'(0) = 0 for every hinge.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import torch

Segments = Sequence[tuple[int, int]]
Grid = Optional[tuple[torch.Tensor, torch.Tensor]]  # (lo, 1 / step) of a uniform hinge grid  # noqa: UP045


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
    return grid_bucket(x, nearest_table(b), grid, b.numel())


def nearest_table(b: torch.Tensor) -> torch.Tensor:
    """[M+1]: entry r is b_{r-1}, -inf for r = 0 (the hinge that bucket_index's rounding lands next to)."""
    return torch.cat([torch.full((1,), -float("inf"), dtype=b.dtype, device=b.device), b])


def grid_bucket(x: torch.Tensor, nearest: torch.Tensor, grid: tuple[torch.Tensor, torch.Tensor], m: int
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


@lru_cache(maxsize=64)
def row_tasks(blocks, device) -> torch.Tensor:
    """[N, 1] int64: the task of every row. Cached: a training run repeats the same few batch layouts, and
    building it costs a host-to-device copy (a synchronisation on CUDA) and, measured on a 16-core machine,
    milliseconds in repeat_interleave. Callers only read it."""
    rows = [task for task, r0, r1 in blocks for _ in range(r1 - r0)]
    return torch.tensor(rows, dtype=torch.int64).view(-1, 1).to(device)


@dataclass
class Layout:
    """One call's tables and bucketing, in the activations' dtype and device: flat per-task intercepts
    ``a_tab`` and slopes ``d_tab`` ([T * 2(M+1)], task t's codes from t * 2(M+1)), the sorted hinges, the
    uniform grid (or None: bucketize), every row's task and its offset t * 2(M+1) into the tables."""

    a_tab: torch.Tensor
    d_tab: torch.Tensor
    b: torch.Tensor
    nearest: torch.Tensor
    grid: Grid
    tasks: torch.Tensor
    offsets: torch.Tensor
    n_tasks: int
    m: int

    @classmethod
    def build(cls, alpha: torch.Tensor, b: torch.Tensor, blocks, grid: Grid, dtype: torch.dtype, device
              ) -> Layout:
        n_tasks, m = alpha.shape
        a_tab, d_tab = (t.reshape(-1) for t in code_tables(alpha, b, dtype))
        b_x = b.detach().to(dtype)
        if grid is not None:
            grid = (grid[0].to(dtype), grid[1].to(dtype))
        tasks = row_tasks(blocks, torch.device(device))
        return cls(a_tab, d_tab, b_x, nearest_table(b_x), grid, tasks, tasks * (2 * (m + 1)), n_tasks, m)

    @property
    def n_codes(self) -> int:
        """Codes per task: M+1 buckets times the sign of x."""
        return 2 * (self.m + 1)

    @property
    def code_dtype(self) -> torch.dtype:
        return index_dtype(self.n_codes)

    def bucket(self, x: torch.Tensor) -> torch.Tensor:
        if self.grid is None:
            return torch.bucketize(x, self.b, right=True)
        return grid_bucket(x, self.nearest, self.grid, self.m)
