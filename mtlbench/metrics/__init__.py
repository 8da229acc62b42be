"""Metrics: each takes one task's scores [n, C] and targets (class ids [n] or a {0,1} matrix [n, C]) and returns
a float; ``higher_is_better`` drives model selection and table rendering.

mAP@10 is exactly the metric of the code behind TAAN's Table 1: per example, AP over the top
K = 10 classes with the denominator counting only the true labels *inside* the top 10 -- a lenient metric: an
example whose only true label ranks first scores 1 even when it has nine more true labels ranked below 10.
GAP@20 and Hit@1 are YouTube-8M's official metrics, reported beside it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mtlbench.registry import UnknownNameError, unknown_name_message


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], float]
    targets: str  # "multiclass" | "multilabel" | "any"
    higher_is_better: bool = True


def accuracy(scores: torch.Tensor, y: torch.Tensor) -> float:
    return (scores.argmax(1) == y).double().mean().item()


def map_at_k(scores: torch.Tensor, y: torch.Tensor, k: int = 10) -> float:
    """Mean over examples of AP@k = sum_j r_j P@j / sum_j r_j over the top k (0 when no true label is there)."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    r = y.gather(1, top).double()  # [n, k] relevance of the ranked classes
    hits = r.cumsum(1)
    precision = hits / torch.arange(1, k + 1, dtype=torch.float64)
    n_rel = r.sum(1)
    ap = (r * precision).sum(1) / n_rel.clamp_min(1)
    return ap.mean().item()


def gap_at_k(scores: torch.Tensor, y: torch.Tensor, k: int = 20) -> float:
    """Global average precision (YouTube-8M): pool every example's top-k (score, relevant) pairs, sort by score,
    AP over the pooled list with the total number of true labels as denominator."""
    k = min(k, scores.shape[1])
    top_scores, top = scores.topk(k, dim=1)
    relevant = y.gather(1, top).flatten().double()
    order = top_scores.flatten().argsort(descending=True, stable=True)
    relevant = relevant[order]
    precision = relevant.cumsum(0) / torch.arange(1, len(relevant) + 1, dtype=torch.float64)
    n_pos = y.sum().double().clamp_min(1)
    return ((precision * relevant).sum() / n_pos).item()


def hit_at_1(scores: torch.Tensor, y: torch.Tensor) -> float:
    return y.gather(1, scores.argmax(1, keepdim=True)).double().mean().item()


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("accuracy", accuracy, "multiclass"),
    Metric("map@10", map_at_k, "multilabel"),
    Metric("gap@20", gap_at_k, "multilabel"),
    Metric("hit@1", hit_at_1, "multilabel"),
]}

DEFAULT_METRICS = {"multiclass": ["accuracy"], "multilabel": ["map@10", "gap@20", "hit@1"]}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise UnknownNameError(unknown_name_message("metric", name, METRICS))
    return METRICS[name]
