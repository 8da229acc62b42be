"""Seeded train/val/test assignments, shared by ``prepare`` (which stores them) and ``load`` (which re-derives
them for a spec whose ``split_seed`` differs from the one the data were prepared with).

Every function returns one int8 code per row: ``TRAIN``, ``VAL`` or ``TEST``. They depend only on their
arguments -- never on global random state -- so a seed gives the same split on every machine, and
``compute_split`` can rebuild any recorded scheme from the manifest alone.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from mtlbench.errors import DataError

TRAIN, VAL, TEST = 0, 1, 2
CODES = {"train": TRAIN, "val": VAL, "test": TEST}


def task_stream(name: str) -> int:
    """A task's random stream is keyed by its name, so its split is the same in every set it joins (an
    alphabet prepared alone or with the other 49, HD inside mtal_related or mtal_unrelated)."""
    return zlib.crc32(name.encode("utf-8"))


def _rng(seed: int, *stream: int) -> np.random.Generator:
    # A separate stream per task, so a task's split does not depend on how many tasks precede it.
    return np.random.default_rng([int(seed), *map(int, stream)])


def _round(x: float) -> int:
    """Half up (Python's round() goes half to even, which would make 16.5 and 17.5 both 16 and 18)."""
    return int(np.floor(x + 0.5 + 1e-9))


def _sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    n_train = _round(fractions[0] * n)
    n_val = min(n - n_train, _round(fractions[1] * n))
    return n_train, n_val, n - n_train - n_val


def fraction_split(n: int, seed: int, fractions: Sequence[float], stream: int = 0) -> np.ndarray:
    """Seeded permutation of ``n`` units cut at the given train/val(/test) fractions (exact sizes)."""
    n_train, n_val, _ = _sizes(n, fractions)
    codes = np.full(n, TEST, dtype=np.int8)
    order = _rng(seed, stream).permutation(n)
    codes[order[:n_train]] = TRAIN
    codes[order[n_train:n_train + n_val]] = VAL
    return codes


def by_key_split(keys: np.ndarray, seed: int, fractions: Sequence[float]) -> np.ndarray:
    """Split by key (YouTube-8M: the video id): rows sharing a key always land in the same split. Keys are
    sorted first, so the result does not depend on the order the rows were read in."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    return fraction_split(len(uniq), seed, fractions)[inverse.reshape(-1)]


def partition_split(keys: np.ndarray, is_train_partition: np.ndarray, seed: int) -> np.ndarray:
    """The TAAN paper's split: the official train partition trains; the validate partition is halved
    (seeded, by key) into validation and test."""
    codes = np.full(len(keys), TRAIN, dtype=np.int8)
    held = ~is_train_partition.astype(bool)
    half = by_key_split(keys[held], seed, (0.0, 0.5))  # 0 train, half val, rest test
    codes[held] = half
    return codes


def per_group_count_split(groups: np.ndarray, seed: int, counts: Sequence[int], stream: int = 0) -> np.ndarray:
    """Within every group (an Omniglot character), a seeded draw of ``counts`` = (train, val, test) rows,
    e.g. 14/2/4 of 20 drawings. A group of another size is cut at the same proportions."""
    codes = np.empty(len(groups), dtype=np.int8)
    total = float(sum(counts))
    rng = _rng(seed, stream)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        if len(rows) == total:
            n_train, n_val = counts[0], counts[1]
        else:
            n_train, n_val, _ = _sizes(len(rows), (counts[0] / total, counts[1] / total))
        perm = rows[rng.permutation(len(rows))]
        codes[perm] = TEST
        codes[perm[:n_train]] = TRAIN
        codes[perm[n_train:n_train + n_val]] = VAL
    return codes


def stratified_split(labels: np.ndarray, seed: int, test_fraction: float, val_fraction: float,
                     stream: int = 0) -> np.ndarray:
    """Per class: ``test_fraction`` of the rows to test, then ``val_fraction`` of the rest to validation
    (MTAL's 70/30 train/test with 10% of train held out)."""
    codes = np.empty(len(labels), dtype=np.int8)
    rng = _rng(seed, stream)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        perm = rows[rng.permutation(len(rows))]
        n_test = _round(test_fraction * len(rows))
        n_val = _round(val_fraction * (len(rows) - n_test))
        codes[perm] = TRAIN
        codes[perm[:n_test]] = TEST
        codes[perm[n_test:n_test + n_val]] = VAL
    return codes


def bernoulli_split(n: int, seed: int, p_train: float, stream: int = 0) -> np.ndarray:
    """Each row to train with probability ``p_train``, else to test; there is no validation split (TAAN's
    Omniglot code did this, unseeded, and selected its model on the test images). Seeded here."""
    return np.where(_rng(seed, stream).random(n) < p_train, TRAIN, TEST).astype(np.int8)


def compute_split(scheme: dict[str, Any], seed: int, task: str = "", *, keys: np.ndarray | None = None,
                  labels: np.ndarray | None = None, partition: np.ndarray | None = None) -> np.ndarray:
    """Re-derive a split recorded in a manifest (``{"scheme": name, "params": {...}}``) for another seed."""
    name, params, stream = scheme["scheme"], scheme.get("params", {}), task_stream(task)
    if name == "by_key":
        return by_key_split(keys, seed, params["fractions"])
    if name == "partition":
        return partition_split(keys, partition, seed)
    if name == "per_group_count":
        return per_group_count_split(labels, seed, params["counts"], stream=stream)
    if name == "stratified":
        return stratified_split(labels, seed, params["test_fraction"], params["val_fraction"], stream=stream)
    if name == "bernoulli":
        return bernoulli_split(len(labels), seed, params["p_train"], stream=stream)
    raise DataError(f"unknown split scheme {name!r} in the manifest (this mtlbench cannot re-derive it)")
