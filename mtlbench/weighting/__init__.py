"""Loss weightings: how a training step combines the task losses (``weighting:`` of a spec's method row).

One file per family: ``loss.py`` (functions of the loss vector: ew, uw, dwa, famo, rlw, ...), ``gradient.py``
(aggregators of the per-task gradients of the shared parameters: pcgrad, mgda, upgrad, cagrad, nash_mtl, ...),
``gradnorm.py`` (GradNorm, the one written here). ``base.py`` is the contract; step.py runs them.
"""
from __future__ import annotations

import math

from mtlbench.weighting.base import StepContext, Weighting

DEFAULT = "ew"


def build_weighting(entry, n_tasks: int, train_sizes: list[int], batch_per_task: int) -> Weighting | None:
    """The weighting object of a method row; None for ``ew`` (the plain step: records unchanged)."""
    from mtlbench.registry import WEIGHTINGS
    if entry is None or entry.name == DEFAULT:
        return None
    cls = WEIGHTINGS.get(entry.name)
    epoch = max(1, max(math.ceil(n / batch_per_task) for n in train_sizes))
    return cls(cls.Options.model_validate(entry.options), StepContext(n_tasks, epoch))
