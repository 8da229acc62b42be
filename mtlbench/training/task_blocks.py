"""Per-task gradients of shared layers from ONE ordinary backward pass, where the tasks' rows are disjoint.

Hard-Share and TAAN run every task's batch through each shared layer in one call, the rows in task blocks, and
nothing mixes rows (no BatchNorm): row i of task t then influences only task t's loss, so the gradient that one
backward of sum_t L_t leaves at a layer's output, G, holds in task t's rows exactly dL_t/dY. A shared affine
layer's per-task weight gradient is then its rows' share of the usual product:

    dL_t/dW = G_t^T X_t (Linear),  conv2d_weight(X_t, G_t) (Conv2d),  dL_t/db = sum of G_t's rows

-- the cost of one more weight-gradient computation, instead of T backward passes (or a batched backward that
does T times the work). Used when the method says its shared layers see task blocks (``MTLMethod.task_blocks``),
every shared parameter is the weight or bias of an nn.Linear / nn.Conv2d called on all tasks' rows, and the
captured inputs have as many rows as the batch; otherwise the step falls back to the Jacobian
(weighted.per_task_gradients).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn.grad import conv2d_weight


def shared_affines(method, named) -> list[tuple[nn.Module, list[str]]] | None:
    """[(module, its shared parameter names 'weight'/'bias')] covering every shared parameter, or None when the
    method's shared parameters are not all weights and biases of Linear / Conv2d layers seeing task blocks."""
    if not getattr(method, "task_blocks", False):
        return None
    shared = {n for n, _ in named if method.is_shared(n)}
    covered, out = set(), []
    for name, mod in method.named_modules():
        own = [pn for pn, p in mod.named_parameters(recurse=False) if f"{name}.{pn}" in shared]
        if not own:
            continue
        if not isinstance(mod, (nn.Linear, nn.Conv2d)) or (isinstance(mod, nn.Conv2d) and (
                isinstance(mod.padding, str) or mod.padding_mode != "zeros")):
            return None
        out.append((mod, own))
        covered |= {f"{name}.{pn}" for pn in own}
    return out if covered == shared and out else None


class Capture:
    """The inputs and output gradients of the shared affine layers during one forward and backward."""

    def __init__(self, affines):
        self.affines = affines
        self.inputs: dict[nn.Module, torch.Tensor] = {}
        self.grads: dict[nn.Module, torch.Tensor] = {}
        self.calls: dict[nn.Module, int] = {}

    @contextlib.contextmanager
    def forward(self):
        handles = [mod.register_forward_hook(self._hook) for mod, _ in self.affines]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def _hook(self, mod, inputs, output):
        self.calls[mod] = self.calls.get(mod, 0) + 1
        self.inputs[mod] = inputs[0].detach()
        if output.requires_grad:
            output.register_hook(lambda g, mod=mod: self.grads.__setitem__(mod, g.detach()))

    def usable(self, rows: int) -> bool:
        """Each layer called once on all the batch's rows (a layer called twice, or on other rows, is not
        a task-block layer in this forward)."""
        return all(self.calls.get(mod) == 1 and self.inputs[mod].shape[0] == rows for mod, _ in self.affines)

    def task_rows(self, sizes: list[int], names_in_order) -> torch.Tensor:
        """[T, n] per-task gradients of the shared parameters, in ``names_in_order`` (the module, parameter
        name pairs as the step lays its shared columns out)."""
        per_param = {}
        for mod, own in self.affines:
            x, g = self.inputs[mod].float(), self.grads[mod].float()
            xs, gs = x.split(sizes), g.split(sizes)
            if "weight" in own:
                if isinstance(mod, nn.Linear):
                    rows = [gt.reshape(-1, gt.shape[-1]).t() @ xt.reshape(-1, xt.shape[-1]) for xt, gt in zip(xs, gs)]
                else:
                    rows = [conv2d_weight(xt, mod.weight.shape, gt, mod.stride, mod.padding, mod.dilation, mod.groups)
                            for xt, gt in zip(xs, gs)]
                per_param[(mod, "weight")] = torch.stack([r.reshape(-1) for r in rows])
            if "bias" in own:
                dims = (0,) if isinstance(mod, nn.Linear) else (0, 2, 3)
                per_param[(mod, "bias")] = torch.stack([gt.sum(dims).reshape(-1) for gt in gs])
        return torch.cat([per_param[key] for key in names_in_order], dim=1)
