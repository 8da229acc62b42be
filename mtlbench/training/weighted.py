"""The training step of a row whose losses are combined by a weighting other than ew (mtlbench/weighting/).

Same contract as step.train_step (returns the mean task loss over all ranks, the regularizer, whether the
optimizer stepped), in three parts:

1. the task-loss vector: each rank's shares (its rows' losses over the task's global batch), and their sum over
   ranks -- the one-process loss vector, which every weighting reads;
2. the gradients:
   - a loss weighting s(L): its weights w = ds/dL (and the gradients of its own parameters) from the global L,
     then one backward of sum_t w_t L_t^rank (+ the regularizer / world) and a sum over ranks;
   - a gradient weighting: the per-task gradients of the shared parameters from ONE ordinary backward pass
     where the tasks' rows are disjoint in the shared layers (task_blocks.py: Hard-Share, TAAN without
     BatchNorm), else the Jacobian of every parameter in one batched backward (``is_grads_batched``) where the
     graph allows it, else one pass per task; summed over ranks (the one-process Jacobian), unscaled under fp16, then
     the shared parameters' rows aggregated (``MTLMethod.shared_params``) and each other parameter given its own task's
     gradient; the regularizer's gradient is added after;
3. the optimizer step (the fp16 scaler skips it when a gradient is not finite), the method's after_step, and
   the weighting's (FAMO recomputes the batch's losses for it: one more forward, no backward).

No DistributedDataParallel here: under torchrun the gradients are summed explicitly (DDP's reducer averages
a scalar loss's gradients, which is not what a per-task Jacobian needs). Weights start identical on every rank
(same seed) and get identical updates, as with DDP.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
import torch.distributed as dist

from mtlbench.training.distributed import Dist
from mtlbench.training.task_blocks import Capture, shared_affines


def weighted_step(obj, optimizer: torch.optim.Optimizer, batches, step: int, d: Dist, totals):
    w = obj.weighting
    optimizer.zero_grad(set_to_none=True)
    named = [(n, p) for n, p in obj.method.named_parameters() if p.requires_grad]
    affines = shared_affines(obj.method, named) if w.kind == "gradient" and not w.weighs_task_parameters else None
    capture = Capture(affines) if affines else None
    with capture.forward() if capture else contextlib.nullcontext():
        local, reg = obj.task_losses(batches, totals if d.world > 1 else None)
    losses = d.sum(local.detach())
    if w.kind == "loss":
        w.backward_passes = loss_gradients(w, local, losses, reg, [p for _, p in named], obj.precision, d)
    else:
        sizes = [len(x) for x, _ in batches]
        blocks = capture if capture is not None and capture.usable(sum(sizes)) else None
        w.backward_passes = gradient_gradients(w, obj.method, local, losses, reg, named, obj.precision, d,
                                               blocks, sizes)
    stepped = obj.precision.step(optimizer)
    obj.method.after_step(step)
    after = None
    if w.needs_losses_after:
        with torch.no_grad():
            after = d.sum(obj.task_losses(batches, totals if d.world > 1 else None)[0])
    w.after_step(after)
    return losses.mean(), None if reg is None else reg.detach(), stepped


def loss_gradients(w, local, losses, reg, params, precision, d: Dist) -> int:
    """A loss weighting's gradients in ``.grad`` (times the fp16 loss scale); returns the backward passes (1)."""
    combined_in = local - local.detach() + losses  # the global losses' values, this rank's shares' gradients
    own = w.trained_parameters()
    weights, *own_grads = torch.autograd.grad(w.combine(combined_in), [combined_in, *own])
    w.last_weights = weights.detach()
    total = (weights.detach() * local).sum()
    if reg is not None:
        total = total + reg / d.world  # a function of the (identical) weights: counted once over the ranks
    precision.scaled(total).backward()
    sum_over_ranks([p.grad for p in params if p.grad is not None], d)
    scale = precision.scale()
    for p, g in zip(own, own_grads):  # from the global losses: identical on every rank
        p.grad = g * scale
    return 1


def gradient_gradients(w, method, local, losses, reg, named, precision, d: Dist, blocks: Capture | None = None,
                       batch_sizes: list[int] | None = None) -> int:
    """A gradient weighting's gradients in ``.grad`` (times the fp16 loss scale); returns the backward passes.
    ``blocks``: the shared layers' captured inputs, for the one-backward task-block path (task_blocks.py)."""
    params = [p for _, p in named]
    sizes = [p.numel() for p in params]
    shared = torch.tensor([method.is_shared(n) for n, _ in named], dtype=torch.bool)
    cols = torch.repeat_interleave(shared, torch.tensor(sizes)).to(local.device)
    jac = None
    if blocks is not None:  # one backward of the summed losses, the shared layers' rows split by task
        grads = torch.autograd.grad(precision.scaled(local).sum(), params, allow_unused=True, materialize_grads=True)
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        order = [key for mod, own in blocks.affines for key in [(mod, pn) for pn in own]]
        by_param = {id(getattr(mod, pn)): (mod, pn) for mod, pn in order}
        rows = blocks.task_rows(batch_sizes, [by_param[id(p)] for n, p in named if method.is_shared(n)])
        passes = 1
    else:
        per_param, passes = per_task_gradients(w, precision.scaled(local), params)
        jac = torch.cat([r.reshape(len(local), -1) for r in per_param], dim=1)
    sum_over_ranks([flat, rows] if jac is None else [jac], d)
    if jac is not None:
        flat, rows = jac.sum(0), jac[:, cols]
    scale = precision.scale()
    flat, rows = flat / scale, rows / scale  # each parameter's sum of task gradients: a task-specific one's
    w.last_weights = None
    if bool(torch.isfinite(rows).all()):  # else: the fp16 scaler skips the step, or the NaN guard stops the run
        if getattr(w, "last_layer", False) is None:
            w.last_layer = last_shared_weight([(n, p) for n, p in named if method.is_shared(n)])
        direction, weights = w.aggregate(rows, losses)
        if weights is not None:
            w.last_weights = weights.detach()
            if w.weighs_task_parameters:  # (never on the task-block path: it keeps no per-task rows of these)
                flat = weights.to(jac.dtype) @ (jac / scale)
        flat[cols] = direction.to(flat.dtype)
    reg_grads = (torch.autograd.grad(reg, params, allow_unused=True, materialize_grads=True)
                 if reg is not None else [None] * len(params))
    for p, g, rg in zip(params, flat.split(sizes), reg_grads):
        g = g.view_as(p)
        p.grad = (g if rg is None else g + rg) * scale
    for p in w.trained_parameters():
        if p.grad is not None:
            p.grad = p.grad * scale
    return passes


def per_task_gradients(w, losses: torch.Tensor, params) -> tuple[list[torch.Tensor], int]:
    """The gradient of each task's loss with respect to each parameter, [T, *shape] per parameter (zeros where a
    task does not reach it), and the backward passes taken: 1 batched pass (vmap over the backward), or T where
    the graph does not vmap (a custom kernel's backward: TAAN's fused activation) -- found once per run."""
    n = len(losses)
    if getattr(w, "batched", True):
        eye = torch.eye(n, device=losses.device, dtype=losses.dtype)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "performance drop": vmap's fallback for an op, still exact
                grads = torch.autograd.grad(losses, params, eye, is_grads_batched=True, retain_graph=True,
                                            allow_unused=True, materialize_grads=True)
            return list(grads), 1
        except RuntimeError:
            w.batched = False
    per_task = [torch.autograd.grad(losses[t], params, retain_graph=t < n - 1, allow_unused=True,
                                    materialize_grads=True) for t in range(n)]
    return [torch.stack(g) for g in zip(*per_task)], n


def last_shared_weight(shared_named) -> slice | None:
    """The columns, among the shared parameters', of the last one with two or more dimensions (GradNorm's W)."""
    start, found = 0, None
    for _, p in shared_named:
        if p.dim() >= 2:
            found = slice(start, start + p.numel())
        start += p.numel()
    return found


def sum_over_ranks(tensors: list[torch.Tensor], d: Dist) -> None:
    """Sum each tensor over the ranks, in place (one all-reduce of their concatenation)."""
    if d.world == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(part.view_as(t))
