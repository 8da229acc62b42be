"""Task-relationship matrices stored in result records (TAAN's per-layer distance and cosine matrices, the
paper's Figures 2 and 4) and how well they recover a planted task grouping. Pure numpy: no torch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtlbench.errors import InputError
from mtlbench.results import RunRecord, load_records, read_record

KINDS = ("distance", "cosine")


@dataclass
class LayerMatrices:
    layer: int
    distance: np.ndarray  # T x T, d(F_s, F_t) (a squared L2(G) distance)
    cosine: np.ndarray    # T x T


def records_at(path: Path) -> list[RunRecord]:
    """A record file, a run folder (one method's seeds), or a spec's results folder."""
    path = Path(path)
    if path.is_file():
        return [read_record(path)]
    if not path.exists():
        raise InputError(f"{path} does not exist (expected a result record or a folder of them)")
    records = load_records(path)
    if not records:
        raise InputError(f"{path}: no result records (seed*.json) found")
    return records


def layer_matrices(record: RunRecord) -> list[LayerMatrices]:
    layers = record.summary.get("layers") or []
    return [LayerMatrices(entry["layer"], np.asarray(entry["distance"]), np.asarray(entry["cosine"]))
            for entry in layers if "distance" in entry and "cosine" in entry]


def group_separation(distance: np.ndarray, names: list[str], groups: list[list[str]]) -> dict:
    """Mean distance between tasks of the same planted group, between tasks of different groups, and their
    ratio (across / within; > 1 means the grouping is recovered)."""
    index = {n: i for i, n in enumerate(names)}
    label = {index[n]: g for g, members in enumerate(groups) for n in members if n in index}
    within, across = [], []
    for i in label:
        for j in label:
            if i < j:
                (within if label[i] == label[j] else across).append(distance[i, j])
    w, a = float(np.mean(within)) if within else float("nan"), float(np.mean(across)) if across else float("nan")
    return {"within": w, "across": a, "ratio": a / w if w > 0 else float("inf")}


def isolation_rank(distance: np.ndarray, names: list[str], task: str) -> int:
    """Rank (0 = most isolated) of ``task`` by the distance to its nearest other task: an outlier is far from
    *every* other task, even when its mean distance is moderate because it sits between two groups."""
    d = distance + np.diag(np.full(len(names), np.inf))
    nearest = d.min(1)
    return list(np.argsort(-nearest)).index(names.index(task))
