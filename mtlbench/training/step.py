"""One training iteration of every method: one mini-batch per task -> per-task losses, summed and
divided by the number of tasks T, + the method's regularizer -> one optimizer step -> the method's after_step.

``Objective`` is the module whose forward computes the loss (the module a data-parallel wrapper would wrap);
``train_step`` is the one function both the trainer and ``mtlbench timing`` call, so the timed step is the
trained step."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtlbench.config.loader import ResolvedSpec
from mtlbench.data.base import TaskInfo
from mtlbench.methods.base import MTLMethod
from mtlbench.training.optim import optimizer_groups


def task_loss(logits: torch.Tensor, y: torch.Tensor, task: TaskInfo) -> torch.Tensor:
    """Multi-label: BCE with logits summed over the task's classes, mean over the batch. Multi-class:
    cross-entropy."""
    if task.target == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="sum") / len(y)
    return F.cross_entropy(logits, y)


class Objective(nn.Module):
    """forward(batches) -> (mean task loss, the method's regularizer or None), one (x, y) batch per task."""

    def __init__(self, method: MTLMethod, tasks: list[TaskInfo]):
        super().__init__()
        self.method, self.tasks = method, tasks

    def forward(self, batches) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.method([x for x, _ in batches])
        loss = sum(task_loss(lg, y, task) for lg, (_, y), task in zip(logits, batches, self.tasks)) / len(self.tasks)
        return loss, self.method.regularizer()


def train_step(objective: Objective, optimizer: torch.optim.Optimizer, batches, step: int):
    """One iteration: loss + regularizer, one optimizer step, then the method's after_step hook.
    Returns the detached (mean task loss, regularizer)."""
    loss, reg = objective(batches)
    optimizer.zero_grad(set_to_none=True)
    (loss if reg is None else loss + reg).backward()
    optimizer.step()
    objective.method.after_step(step)
    return loss.detach(), None if reg is None else reg.detach()


def make_optimizer(resolved: ResolvedSpec, model: MTLMethod) -> torch.optim.Optimizer:
    """The spec's optimizer over the method's named parameter groups, each at its own lr and weight decay."""
    o = resolved.spec.optimizer
    groups = optimizer_groups(model, o)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
