"""The adaptive activation's kernels fused by ``torch.compile`` (Inductor: C++ on CPU, Triton on CUDA).

Same formula, codes and sums as ``eager.py``, but each pass is one loop over the elements: bucket, sign, the
two table gathers and the multiply-add in the forward; the x-gradient gather and both histograms in the
backward, accumulated in float64. Compiled once per process and dtype (dynamic shapes; Inductor's on-disk
cache makes later processes quick), on first use.

The histograms are a scatter. On CPU the backward loop runs on one thread, so the sums are added in one fixed
order (deterministic, bit for bit, whatever the thread count); a multi-threaded loop would need atomic adds in
a racing order. On CUDA the scatter uses atomics: under ``torch.use_deterministic_algorithms`` the ``auto``
choice takes the eager kernels there.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from mtlbench.taan.eager import LANES
from mtlbench.taan.layout import Layout

MIN_ELEMENTS = 1 << 15  # ``auto`` keeps smaller inputs eager: a compiled call's fixed cost would dominate


def _codes(x, b, nearest, lo, inv, use_grid: bool):
    """int32 k(x) + (M+1) 1[x > 0], as ``layout.grid_bucket`` / ``torch.bucketize`` (exact against b). Index
    arithmetic is int32 throughout: Inductor's int64 vectors are emulated in pairs (measured: the backward
    pass 25% slower)."""
    m = b.shape[0]
    if use_grid:
        t = (x - lo) * inv + 1.5
        # NaN must not become a wild index (t == t, not isnan: Inductor vectorizes the comparison)
        t = torch.where(t == t, t, 0.0).clamp(0.0, m + 0.5)
        r = t.to(torch.int32)
        k = r - (x < nearest[r]).to(torch.int32)
    else:
        k = torch.bucketize(x, b, right=True, out_int32=True)
    return k + (x > 0).to(torch.int32) * (m + 1)


def _values(x, off, a_tab, d_tab, b, nearest, lo, inv, use_grid: bool):
    i = off.to(torch.int32) + _codes(x, b, nearest, lo, inv, use_grid)
    return a_tab[i] + x * d_tab[i]


def _forward(x, off, a_tab, d_tab, b, nearest, lo, inv, use_grid: bool, code_dtype: torch.dtype):
    c = _codes(x, b, nearest, lo, inv, use_grid)
    i = off.to(torch.int32) + c
    return a_tab[i] + x * d_tab[i], c.to(code_dtype)


def _dx(g, codes, off, d_tab):
    return g * d_tab[off.to(torch.int32) + codes.to(torch.int32)]


def _backward(g, x, codes, tasks, d_tab, slots, n_codes: int, need_x: bool):
    """(dx or None, float64 [2, T, LANES * 2(M+1)] histograms of g and g x). Element (row, j) of task t is
    added at (t, slots[j] + code): slots[j] = (j mod LANES) 2(M+1) picks one of LANES copies of the histogram
    (``eager.py`` says why). Indexing by (row's task, column's slot) keeps the loop two-dimensional: no
    per-element division by the row length."""
    c = codes.to(torch.int32)
    tasks = tasks.to(torch.int32)
    g64 = g.to(torch.float64)
    zeros = torch.zeros(d_tab.shape[0] // n_codes, LANES * n_codes, dtype=torch.float64, device=x.device)
    hist_g = zeros.index_put((tasks, slots + c), g64, accumulate=True)
    hist_gx = zeros.index_put((tasks, slots + c), g64 * x.to(torch.float64), accumulate=True)
    dx = g * d_tab[tasks * n_codes + c] if need_x else None
    return dx, torch.stack([hist_g, hist_gx])


_SOURCES = {"values": _values, "forward": _forward, "dx": _dx, "backward": _backward}
# Indices are in range by construction (the bucket is clamped to 0..M, codes come from the forward, tasks
# were checked against T), so Inductor's per-element bounds checks are dropped (measured ~10% of a pass).
_UNCHECKED = {"assert_indirect_indexing": False}
# Inductor's CPU scatter-add would otherwise fall back to ATen's (a second pass); one thread: see above.
_OPTIONS = {"values": _UNCHECKED, "forward": _UNCHECKED, "dx": _UNCHECKED,
            "backward": {**_UNCHECKED, "cpp.fallback_scatter_reduce_sum": False, "cpp.threads": 1}}
_compiled: dict[str, object] = {}


def _kernel(name: str):
    fn = _compiled.get(name)
    if fn is None:
        fn = _no_grad(torch.compile(_SOURCES[name], dynamic=True, fullgraph=True, options=_OPTIONS[name]))
        _compiled[name] = fn
    return fn


def _no_grad(fn):
    """Called without autograd and on detached tensors (the kernels are the autograd Function's insides): one
    grad mode and no view bases for Dynamo to guard on, so it compiles once per dtype and bucketing."""
    def call(*args):
        with torch.no_grad():
            return fn(*(a.detach() if isinstance(a, torch.Tensor) else a for a in args))
    return call


def _lo_inv(lay: Layout) -> tuple[torch.Tensor, torch.Tensor]:
    if lay.grid is not None:
        return lay.grid
    zero = lay.b.new_zeros(())
    return zero, zero


def values(x2: torch.Tensor, lay: Layout) -> torch.Tensor:
    return _kernel("values")(x2, lay.offsets, lay.a_tab, lay.d_tab, lay.b, lay.nearest, *_lo_inv(lay),
                             lay.grid is not None)


def forward(x2: torch.Tensor, lay: Layout) -> tuple[torch.Tensor, torch.Tensor]:
    return _kernel("forward")(x2, lay.offsets, lay.a_tab, lay.d_tab, lay.b, lay.nearest, *_lo_inv(lay),
                              lay.grid is not None, lay.code_dtype)


def backward(g: torch.Tensor, x2: torch.Tensor, codes: torch.Tensor, lay: Layout, need_x: bool,
             need_sums: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if not need_sums:
        return (_kernel("dx")(g, codes, lay.offsets, lay.d_tab) if need_x else None), None
    with _sequential_scatter(x2.device):
        columns = torch.arange(x2.shape[1], dtype=torch.int32, device=x2.device)
        slots = (columns % LANES * lay.n_codes).view(1, -1)
        dx, hist = _kernel("backward")(g, x2, codes, lay.tasks, lay.d_tab, slots, lay.n_codes, need_x)
    return dx, hist.view(2, lay.n_tasks, LANES, lay.n_codes).sum(2)


@contextmanager
def _sequential_scatter(device: torch.device):
    """Under ``torch.use_deterministic_algorithms`` Inductor replaces any scatter-add by ATen's sort-based
    index_put (measured 10x slower here). On CPU the backward kernel runs on one thread, so its scatter is
    sequential and deterministic already: the flag is lifted for that one call and restored."""
    if device.type != "cpu" or not torch.are_deterministic_algorithms_enabled():
        yield
        return
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(True, warn_only=warn_only)
