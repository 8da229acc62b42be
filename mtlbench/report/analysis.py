"""Task-relationship matrices stored in result records (TAAN's per-layer distance and cosine matrices, the
paper's Figures 2 and 4; MTAL's per-conv-layer mean kernel cosines) and how well they recover a planted task
grouping. Pure numpy: no torch."""
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
    distance: np.ndarray  # T x T: TAAN d(F_s, F_t) (a squared L2(G) distance); MTAL 1 - mean kernel cosine
    cosine: np.ndarray    # T x T
    name: str = ""        # the layer's name in the plan (fc1, conv3_2), where the record gives it

    @property
    def title(self) -> str:
        return f"layer {self.layer}" + (f" ({self.name})" if self.name else "")


@dataclass
class Isolation:
    """How far each task is from its nearest other task (TAAN's Figure 4 reading: an outlier is far from every
    other task). For a similarity matrix (cosine), "far" is a low similarity to the most similar task."""
    names: list[str]
    nearest: np.ndarray   # per task: the distance (or similarity) to its nearest other task
    neighbour: list[str]  # per task: that task
    order: list[int]      # task indices, the most isolated first

    def rank(self, task: str) -> int:
        """0 = the most isolated."""
        return self.order.index(self.names.index(task))


@dataclass
class SeedRanking:
    task: str
    mean_rank: float  # 1 = the most isolated, averaged over seeds
    first: int        # seeds in which it is the most isolated
    seeds: int


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
    return [LayerMatrices(entry["layer"], np.asarray(entry["distance"]), np.asarray(entry["cosine"]),
                          entry.get("name") or "")
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


def isolation(matrix: np.ndarray, names: list[str], similarity: bool = False) -> Isolation:
    """Each task's nearest other task and how far it is; tasks ordered the most isolated first (ties by name
    order). By the nearest task, not the mean: an outlier is far from *every* other task, even when its mean
    distance is moderate because it sits between two groups."""
    sign = -1.0 if similarity else 1.0  # similarities: the nearest task is the most similar one
    d = sign * np.asarray(matrix, dtype=float) + np.diag(np.full(len(names), np.inf))
    neighbour = d.argmin(1)
    nearest = sign * d[np.arange(len(names)), neighbour]
    order = sorted(range(len(names)), key=lambda i: (-sign * nearest[i], i))
    return Isolation(list(names), nearest, [names[j] for j in neighbour], order)


def isolation_rank(distance: np.ndarray, names: list[str], task: str) -> int:
    """Rank (0 = most isolated) of ``task`` by the distance to its nearest other task."""
    return isolation(distance, names).rank(task)


def isolation_over_seeds(per_seed: list[Isolation]) -> list[SeedRanking]:
    """Every task's isolation rank averaged over seeds (the same layer of runs that differ only in the seed),
    the most isolated first, with the number of seeds in which each task is the most isolated."""
    names = per_seed[0].names
    ranks = np.array([[iso.rank(t) + 1 for t in names] for iso in per_seed], dtype=float)
    firsts = (ranks == 1).sum(0)
    out = [SeedRanking(t, float(ranks[:, i].mean()), int(firsts[i]), len(per_seed)) for i, t in enumerate(names)]
    return sorted(out, key=lambda r: (r.mean_rank, -r.first))
