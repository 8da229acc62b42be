"""One training iteration of every method: one mini-batch per task -> per-task losses, summed and
divided by the number of tasks T, + the method's regularizer -> one optimizer step -> the method's after_step.
A row with another loss weighting than ew (``weighting:``) takes weighted.py's step instead (same contract).

``Objective`` is the module whose forward computes the loss (the module DDP wraps in a data-parallel run, see
distributed.py); ``train_step`` is the one function both the trainer and ``mtlbench timing`` call, so the timed
step is the trained step. Mixed precision (autocast, the fp16 loss scaler) is precision.py's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtlbench.config.resolved import ResolvedSpec
from mtlbench.nn.method import MTLMethod
from mtlbench.store.dataset import TaskInfo
from mtlbench.training.distributed import SINGLE, Dist, unwrap
from mtlbench.training.optim import optimizer_groups
from mtlbench.training.precision import Precision
from mtlbench.training.weighted import weighted_step
from mtlbench.weighting.base import Weighting


def task_loss(logits: torch.Tensor, y: torch.Tensor, task: TaskInfo, total: int | None = None) -> torch.Tensor:
    """Multi-label: BCE with logits summed over the task's classes, mean over the batch. Multi-class:
    cross-entropy. In float32 whatever the logits' type. ``total``: a data-parallel rank's share -- its rows'
    losses summed and divided by the task's global batch size (None: the mean over these rows)."""
    logits = logits.float()
    if task.target == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="sum") / (total or len(y))
    return F.cross_entropy(logits, y) if total is None else F.cross_entropy(logits, y, reduction="sum") / total


class Objective(nn.Module):
    """forward(batches, totals) -> (mean task loss, the method's regularizer or None), one (x, y) batch per
    task; ``totals`` (data-parallel runs) are the tasks' global batch sizes. The forward runs under the run's
    autocast; the regularizer, a function of the weights, in float32."""

    def __init__(self, method: MTLMethod, tasks: list[TaskInfo], precision: Precision | None = None,
                 weighting: Weighting | None = None):
        super().__init__()
        self.method, self.tasks = method, tasks
        self.precision = precision or Precision()
        self.weighting = weighting  # None: ew, the mean of the task losses (this forward)

    def task_losses(self, batches, totals: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the vector of task losses [T] -- a data-parallel rank's shares with ``totals`` --, the regularizer)."""
        totals = totals or [None] * len(self.tasks)
        with self.precision.autocast():
            logits = self.method([x for x, _ in batches])
        losses = [task_loss(lg, y, task, n) for lg, (_, y), task, n in zip(logits, batches, self.tasks, totals)]
        self.last_task_losses = [t.detach() for t in losses]  # this step's loss of each task (history keeps them)
        return torch.stack(losses), self.method.regularizer()

    def forward(self, batches, totals: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        totals = totals or [None] * len(self.tasks)
        with self.precision.autocast():
            logits = self.method([x for x, _ in batches])
        losses = [task_loss(lg, y, task, n) for lg, (_, y), task, n in zip(logits, batches, self.tasks, totals)]
        self.last_task_losses = [t.detach() for t in losses]  # this step's loss of each task (history keeps them)
        return sum(losses) / len(self.tasks), self.method.regularizer()


def train_step(objective: nn.Module, optimizer: torch.optim.Optimizer, batches, step: int,
               d: Dist = SINGLE, totals: list[int] | None = None):
    """One iteration: loss + regularizer, one optimizer step, then the method's after_step hook. Returns the
    detached (mean task loss over all ranks, regularizer, whether the optimizer stepped -- False when the fp16
    loss scaler skipped it). Across ``d.world`` ranks each back-propagates ``world x`` its share of the task
    loss plus the regularizer: DDP's gradient average is then the one-process gradient (distributed.py)."""
    inner = unwrap(objective)
    if inner.weighting is not None:
        return weighted_step(inner, optimizer, batches, step, d, totals)
    loss, reg = objective(batches, totals) if d.world > 1 else objective(batches)
    optimizer.zero_grad(set_to_none=True)
    task_part = loss * d.world if d.world > 1 else loss
    stepped = inner.precision.backward_step(task_part if reg is None else task_part + reg, optimizer)
    inner.method.after_step(step)
    return d.sum(loss.detach()), None if reg is None else reg.detach(), stepped


def make_optimizer(resolved: ResolvedSpec, model: MTLMethod, weighting: Weighting | None = None
                   ) -> torch.optim.Optimizer:
    """The spec's optimizer over the method's named parameter groups, each at its own lr and weight decay; a
    weighting's learned parameters (UW's log-variances, GradNorm's weights) in one more group at the spec's lr,
    without weight decay."""
    o = resolved.spec.optimizer
    groups = optimizer_groups(model, o)
    own = weighting.trained_parameters() if weighting is not None else []
    if own:
        groups.append({"params": own, "lr": o.lr, "weight_decay": 0.0, "groups": ["weighting"]})
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
