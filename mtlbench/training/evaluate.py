"""Scoring a model on a split: per-task predictions, then every asked-for metric per task, their mean over
tasks and (accuracy) the pooled value over all examples."""
from __future__ import annotations

import math

import numpy as np
import torch

from mtlbench.config.resolved import ResolvedSpec
from mtlbench.metrics import DEFAULT_METRICS, get_metric
from mtlbench.nn.method import MTLMethod
from mtlbench.store.dataset import MTLData, TaskSplit


@torch.no_grad()
def predict(model: MTLMethod, split: TaskSplit, task: int, batch: int, device: torch.device):
    scores, targets = [], []
    for start in range(0, len(split), batch):
        x, y = split.batch(torch.arange(start, min(start + batch, len(split))))
        scores.append(model.forward_task(x.to(device), task).float().cpu())
        targets.append(y)
    return torch.cat(scores), torch.cat(targets)


def evaluate(model: MTLMethod, data: MTLData, split: str, metrics: list[str], batch: int,
             device: torch.device) -> dict:
    """{metric: {"tasks": {name: value}, "mean": mean over tasks, "pooled": over all examples (accuracy)}}."""
    was_training = model.training
    model.eval()
    per_task = [predict(model, s, t, batch, device) for t, s in enumerate(data.split(split))]
    model.train(was_training)
    out = {}
    for name in metrics:
        fn = get_metric(name).fn
        values = [fn(scores, y) for scores, y in per_task]
        entry = {"tasks": dict(zip(data.info.task_names, values)), "mean": float(np.mean(values))}
        if name == "accuracy":  # TAAN's Omniglot table pools all test images of all tasks
            n = [len(y) for _, y in per_task]
            entry["pooled"] = float(np.average(values, weights=n))
        out[name] = entry
    return out


def improved(score: float, best: float, higher: bool) -> bool:
    """A NaN score never counts as an improvement."""
    if math.isnan(score):
        return False
    return score > best if higher else score < best


def metric_names(resolved: ResolvedSpec, data: MTLData) -> list[str]:
    names = [data.info.primary_metric]  # always stored: selection and tables use it
    if resolved.spec.evaluation.metrics:
        return names + [m for m in resolved.spec.evaluation.metrics if m not in names]
    for task in data.info.tasks:
        names += [m for m in DEFAULT_METRICS[task.target] if m not in names]
    return names
