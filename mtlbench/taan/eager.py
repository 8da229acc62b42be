"""The adaptive activation's kernels in plain ATen ops (any device, no compiler): the fallback of the compiled
kernels (``compiled.py``) and their reference in the tests.

Every element gets a code c = k(x) + (M+1) 1[x > 0] (bucket and sign); with the row's task offset t 2(M+1) it
indexes the flattened per-task tables of ``code_tables``: F = A[code] + x D[code]. Rows are walked in
cache-sized chunks that ignore task boundaries, so every op's temporaries stay small.
The per-(task, code) sums of g and g x that the alpha and b gradients need are scattered into LANES copies of
the histogram, column j of a row into copy j mod LANES: images' flat backgrounds put long runs of equal codes
side by side, and a scatter into one copy then waits on its own previous add at every element (measured: 3x
slower).
"""
from __future__ import annotations

import torch

from mtlbench.taan.layout import Layout

# Elements per chunk: large enough that per-op overhead vanishes, small enough that the int64 temporaries
# stay in cache (measured on CPU: whole-tensor passes over 4M elements ~3x slower than 128K-256K chunks).
CHUNK_ELEMENTS = 1 << 18
CUDA_CHUNK_ELEMENTS = 1 << 22  # on a GPU, kernel launches cost more than the temporaries' traffic
LANES = 8  # histogram copies (see the module docstring)


def row_chunks(n_rows: int, row_size: int, cuda: bool = False) -> list[tuple[int, int]]:
    step = max(1, (CUDA_CHUNK_ELEMENTS if cuda else CHUNK_ELEMENTS) // max(row_size, 1))
    return [(r, min(r + step, n_rows)) for r in range(0, n_rows, step)]


def signed_codes(xs: torch.Tensor, lay: Layout) -> torch.Tensor:
    """int64 code k(x) + (M+1) 1[x > 0] of every element of a chunk (no task offset)."""
    c = lay.bucket(xs)
    return c.add_(xs > 0, alpha=lay.m + 1)


def values(x2: torch.Tensor, lay: Layout) -> torch.Tensor:
    """F [N, D]; nothing is kept for a backward pass."""
    return _forward(x2, lay, None)


def forward(x2: torch.Tensor, lay: Layout) -> tuple[torch.Tensor, torch.Tensor]:
    """(F, codes): the codes (1-2 bytes per element) are what the backward pass needs besides x."""
    codes = torch.empty(x2.shape, dtype=lay.code_dtype, device=x2.device)
    return _forward(x2, lay, codes), codes


def _forward(x2: torch.Tensor, lay: Layout, codes: torch.Tensor | None) -> torch.Tensor:
    out = torch.empty_like(x2)
    offsets = lay.offsets
    for r0, r1 in row_chunks(x2.shape[0], x2.shape[1], x2.is_cuda):
        xs, o = x2[r0:r1], out[r0:r1]
        c = signed_codes(xs, lay)
        if codes is not None:
            codes[r0:r1].copy_(c)
        flat = c.add_(offsets[r0:r1]).view(-1)
        torch.index_select(lay.a_tab, 0, flat, out=o.view(-1))
        o.addcmul_(xs, lay.d_tab.index_select(0, flat).view_as(xs))
    return out


def backward(g: torch.Tensor, x2: torch.Tensor, codes: torch.Tensor, lay: Layout, need_x: bool,
             need_sums: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(dL/dx or None, float64 [2, T, 2(M+1)] sums of g and g x per task and code, or None)."""
    dx = torch.empty_like(x2) if need_x else None
    n_codes = lay.n_tasks * lay.n_codes
    total = partial = None
    if need_sums:
        total = torch.zeros(2, LANES * n_codes, dtype=torch.float64, device=x2.device)
        partial = x2.new_empty(2, LANES * n_codes)
        lanes = lane_offsets(x2.shape[1], n_codes, x2.device)
    for r0, r1 in row_chunks(x2.shape[0], x2.shape[1], x2.is_cuda):
        c = codes[r0:r1].to(torch.int64).add_(lay.offsets[r0:r1])  # (a mixed-dtype add is 20x slower)
        gs = g[r0:r1].reshape(-1)
        if dx is not None:
            torch.index_select(lay.d_tab, 0, c.view(-1), out=dx[r0:r1].view(-1)).mul_(gs)
        if partial is not None:
            idx = c.add_(lanes).view(-1)
            partial.zero_()
            scatter_sum(partial[0], idx, gs)
            scatter_sum(partial[1], idx, gs * x2[r0:r1].reshape(-1))
            total.add_(partial)  # chunk sums added in float64 in a fixed order: deterministic and accurate
    sums = None if total is None else total.view(2, LANES, lay.n_tasks, lay.n_codes).sum(1)
    return dx, sums


def lane_offsets(row_size: int, n_codes: int, device) -> torch.Tensor:
    """[1, row_size]: (j mod LANES) * n_codes, the histogram copy that column j goes to."""
    return (torch.arange(row_size, device=device) % LANES * n_codes).view(1, -1)


def scatter_sum(out: torch.Tensor, codes: torch.Tensor, weights: torch.Tensor) -> None:
    """out[code] += weight. On CPU a sequential (deterministic) scatter. CUDA's scatter_add uses atomics;
    under torch.use_deterministic_algorithms the sorted index_put_ path is taken instead."""
    if codes.is_cuda and torch.are_deterministic_algorithms_enabled():
        out.index_put_((codes,), weights, accumulate=True)
    else:
        out.scatter_add_(0, codes, weights)
