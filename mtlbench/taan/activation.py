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
Every element gets one code = k(x) + (M+1) 1[x > 0]; with its row's task it indexes small tables
(``layout.py``), so forward and backward are a fixed handful of gathers, multiply-adds and scatters:
device-agnostic, no host synchronisation, any float dtype, no [N, ..., M] tensor.

Kernels (``kernel=``): ``compiled`` fuses each pass into one loop with ``torch.compile`` (``compiled.py``);
``eager`` runs ATen ops over cache-sized chunks (``eager.py``), needing no compiler; ``auto`` (default) takes
the compiled kernels for inputs of at least ``compiled.MIN_ELEMENTS`` elements on CPU and CUDA (eager on CUDA
under deterministic algorithms, whose scatter must not use atomics) and falls back to eager, with one
warning, if compiling fails (no C++ compiler, no Triton). Both produce the same codes, so either can run the
backward of the other's forward. When no gradient is needed (``torch.no_grad()``, or no input requires one)
only F is computed and nothing is kept for a backward pass.
"""
from __future__ import annotations

import warnings

import torch
from torch.autograd.function import once_differentiable

from mtlbench.taan import compiled, eager
from mtlbench.taan.layout import Grid, Layout, Segments, bucket_index, row_blocks, uniform_grid  # noqa: F401

KERNELS = ("auto", "compiled", "eager")
_compile_failure: list[str] = []  # why torch.compile failed in this process: ``auto`` then stays eager


def use_compiled(kernel: str, x: torch.Tensor) -> bool:
    """Whether ``kernel`` runs the compiled kernels on x (see the module docstring for ``auto``)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel != "auto":
        return kernel == "compiled"
    if _compile_failure or x.numel() < compiled.MIN_ELEMENTS or x.device.type not in ("cpu", "cuda"):
        return False
    return not (x.is_cuda and torch.are_deterministic_algorithms_enabled())


def run_kernel(kernel: str, x: torch.Tensor, op: str, *args):
    """``op`` (values | forward | backward) of the kernels that ``kernel`` picks for x."""
    if not use_compiled(kernel, x):
        return getattr(eager, op)(*args)
    if kernel == "compiled":
        return getattr(compiled, op)(*args)
    try:
        return getattr(compiled, op)(*args)
    except Exception as e:
        reason = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
        _compile_failure.append(reason)
        warnings.warn(f"TAAN activation: torch.compile failed ({reason}); using the eager kernels from now "
                      "on (kernel: eager skips the attempt)", RuntimeWarning, stacklevel=2)
        return getattr(eager, op)(*args)


class _FastAdaptiveActivation(torch.autograd.Function):
    """x2 [N, D] (rows in task blocks), alpha [T, M], b [M] sorted -> F [N, D]. Saved for backward: x and the
    codes (1-2 bytes per element; never N*D*M)."""

    @staticmethod
    def forward(ctx, x2, alpha, b, lay, kernel):
        y, codes = run_kernel(kernel, x2, "forward", x2, lay)
        ctx.save_for_backward(x2, codes, alpha, b)
        ctx.lay, ctx.kernel = lay, kernel
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x2, codes, alpha, b = ctx.saved_tensors
        need_x, need_alpha, need_b = ctx.needs_input_grad[:3]
        dx, sums = run_kernel(ctx.kernel, x2, "backward", g.contiguous(), x2, codes, ctx.lay, need_x,
                              need_alpha or need_b)
        d_alpha, d_b = alpha_b_grads(sums, alpha, b, need_alpha, need_b)
        return dx, d_alpha, d_b, None, None


def alpha_b_grads(sums, alpha, b, need_alpha: bool, need_b: bool):
    """dL/dalpha, dL/db from the float64 [2, T, 2(M+1)] sums of g and g x per task and signed code."""
    if sums is None:
        return None, None
    n_tasks, m = alpha.shape
    folded = sums.view(2, n_tasks, 2, m + 1).sum(2)  # the sign of x does not matter to the hinges
    c_g, c_gx = folded.cumsum(2)[:, :, :m]  # prefix sums over buckets: elements with b_i > x
    d_alpha = (b.detach().to(torch.float64) * c_g - c_gx).to(alpha.dtype) if need_alpha else None
    d_b = (alpha.detach().to(torch.float64) * c_g).sum(0).to(b.dtype) if need_b else None
    return d_alpha, d_b


def adaptive_activation(z: torch.Tensor, alpha: torch.Tensor, b: torch.Tensor, segments: Segments,
                        grid: Grid = None, kernel: str = "auto") -> torch.Tensor:
    """F_t(z) for z [N, ...] whose rows come in task blocks ``segments`` = [(task, n rows), ...];
    alpha [T, M], b [M] sorted ascending (repeats allowed). ``grid`` = ``uniform_grid(b)`` enables
    arithmetic bucketing; ``kernel``: auto | compiled | eager (module docstring)."""
    if z.dim() == 0:
        raise ValueError("adaptive_activation needs a batch dimension")
    blocks = row_blocks(segments, z.shape[0], alpha.shape[0])
    if alpha.shape[-1] != b.numel():
        raise ValueError(f"alpha has {alpha.shape[-1]} coefficients per task but b has {b.numel()} hinges")
    x2, back = rows_of(z)
    lay = Layout.build(alpha, b, blocks, grid, x2.dtype, x2.device)
    if not (torch.is_grad_enabled() and (z.requires_grad or alpha.requires_grad or b.requires_grad)):
        return back(run_kernel(kernel, x2, "values", x2, lay))  # inference: nothing saved
    return back(_FastAdaptiveActivation.apply(x2, alpha, b, lay, kernel))


def rows_of(z: torch.Tensor):
    """(z as contiguous rows [N, D], the map from such rows back to z's shape and layout). A channels_last
    feature map is read in its own memory order (a view, no copy): F acts elementwise and its tables depend on
    the row's task only, so the order of a row's elements does not matter."""
    n = z.shape[0]
    if z.dim() == 4 and not z.is_contiguous() and z.is_contiguous(memory_format=torch.channels_last):
        nhwc = z.permute(0, 2, 3, 1)
        return nhwc.reshape(n, -1), lambda y: y.view(nhwc.shape).permute(0, 3, 1, 2)
    x2 = z.reshape(n, -1)
    return (x2 if x2.is_contiguous() else x2.contiguous()), lambda y: y.view(z.shape)


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
