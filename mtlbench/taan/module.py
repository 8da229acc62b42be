"""``AdaptiveActivation``: one TAAN layer's activations (Liu et al., AAAI 2020, Eq. 1) as a drop-in activation
for mtlbench.nn.backbone Blocks, called as ``act(z, segments)``.

Parameters: alpha [T, M] (per task) and hinges b [M] (shared by tasks and neurons): a buffer for
``b_mode="fixed"`` (default, a uniform grid bucketed arithmetically) or a parameter for ``"learned"``.
Learned b is kept sorted *in the forward pass*: b is sorted and alpha's columns are permuted with it, so
gradients land on the right entries and the optimizer's per-parameter state is never scrambled (sorting the
stored tensors in place after a step would misalign Adam's moments).
``kernel``: auto | compiled | eager, how the activation is computed (``mtlbench.taan.activation``: the
same function either way; ``auto`` fuses large inputs with torch.compile and falls back to eager).
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from mtlbench.taan.activation import KERNELS, Segments, adaptive_activation, uniform_grid
from mtlbench.taan.options import parse_alpha_init, parse_b_init


class AdaptiveActivation(nn.Module):
    elementwise = True  # acts on each element alone: the fast conv path runs it on the pool's winners (fast_conv)

    def __init__(self, n_tasks: int, M: int = 64, b_mode: Literal["fixed", "learned"] = "fixed",
                 b_init: Any = None, alpha_init: Any = None, kernel: str = "auto"):
        super().__init__()
        if n_tasks < 1 or M < 1:
            raise ValueError(f"AdaptiveActivation needs n_tasks >= 1 and M >= 1, got {n_tasks}, {M}")
        if b_mode not in ("fixed", "learned"):
            raise ValueError(f"b_mode must be 'fixed' or 'learned', got {b_mode!r}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.n_tasks, self.M, self.b_mode, self.kernel = n_tasks, M, b_mode, kernel
        b = parse_b_init(b_init if b_init is not None else "grid").sample(M)
        self.alpha = nn.Parameter(parse_alpha_init(alpha_init if alpha_init is not None else "zero")
                                  .sample(n_tasks, M))
        if b_mode == "learned":
            self.b = nn.Parameter(b)
        else:
            self.register_buffer("b", b)
        self._layout_key: tuple | None = None
        self._layout: tuple[bool, Any] = (True, None)

    def _fixed_layout(self) -> tuple[bool, Any]:
        """(b is sorted, uniform-grid parameters or None) for a fixed b, recomputed only when b changes
        (a new version after load_state_dict, a new tensor after .to()): one host sync per change."""
        b = self.b
        key = (b.data_ptr(), b._version, b.device, b.dtype)
        if key != self._layout_key:
            is_sorted = bool((b[1:] >= b[:-1]).all())
            self._layout = (is_sorted, uniform_grid(b.detach()) if is_sorted else None)
            self._layout_key = key
        return self._layout

    def ordered(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, b) with b ascending and alpha's columns permuted to match (differentiable)."""
        if self.b_mode == "fixed" and self._fixed_layout()[0]:
            return self.alpha, self.b
        b_sorted, order = torch.sort(self.b)
        return self.alpha[:, order], b_sorted

    def forward(self, z: torch.Tensor, segments: Segments | None = None) -> torch.Tensor:
        if segments is None:
            if self.n_tasks != 1:
                raise ValueError("AdaptiveActivation with several tasks needs the row segments")
            segments = [(0, z.shape[0])]
        alpha, b = self.ordered()
        grid = self._fixed_layout()[1] if self.b_mode == "fixed" else None
        return adaptive_activation(z, alpha.to(z.dtype), b.to(z.dtype), segments, grid, self.kernel)

    def extra_repr(self) -> str:
        return f"n_tasks={self.n_tasks}, M={self.M}, b_mode={self.b_mode}, kernel={self.kernel}"
