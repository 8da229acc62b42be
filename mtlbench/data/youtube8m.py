"""YouTube-8M, 16 vertical tasks (TAAN, Liu et al. AAAI 2020, Tables 1-2), read from ``mtlbench prepare
youtube8m``.

Shared input: every video is one 1152-d row of a single ``x`` (mean_rgb ++ mean_audio); each task's split
holds the indices of its videos in ``x`` and a {0,1} target matrix over the task's own classes. One split
assignment covers all tasks, so no test video is trained on by any task.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from mtlbench.errors import DataError
from mtlbench.registry import DATASETS
from mtlbench.store.dataset import SPLITS, MTLData, TaskSplit
from mtlbench.store.manifest_check import REPAIR, mismatch
from mtlbench.store.prepared import PreparedOptions, PreparedSource, data_info, split_scheme, use_stream
from mtlbench.store.rows import H5Rows, ScaledTaskSplit, read_arrays
from mtlbench.store.shards import verifying
from mtlbench.store.splits import CODES, TEST, compute_split


@DATASETS.register("youtube8m")
class YouTube8M(PreparedSource):
    """YouTube-8M video-level features, one multi-label task per top-level vertical (TAAN Table 1)."""

    description = "YouTube-8M video-level features, 16 vertical tasks, multi-label (TAAN Table 1)"
    kind = "youtube8m"
    primary_metric = "map@10"
    prepare_command = ("mtlbench prepare youtube8m --src ../shared/data/youtube8m/video_level "
                       "--vocabulary ../shared/data/youtube8m/vocabulary.csv --out prepared/youtube8m")

    @classmethod
    def load(cls, options: PreparedOptions, split_seed: int, path: Path | None) -> MTLData:
        manifest = cls.manifest(path)
        path = Path(path)
        info = data_info(cls, manifest, path, options, split_seed)
        with verifying([(path, manifest)], options.verify):
            splits = load_splits(path, manifest, options, split_seed)
        return MTLData(info, splits)

    @classmethod
    def check_shards(cls, folder: Path, manifest: dict[str, Any], mf: Path) -> None:
        """The store's manifest check, for shards shared by every task (``manifest_check.shards_hook``)."""
        check_shared_inputs(folder, manifest, mf)


def load_splits(path: Path, manifest: dict[str, Any], options: PreparedOptions,
                split_seed: int) -> dict[str, list[TaskSplit]]:
    """One input tensor for all videos; per task and split, the indices of its videos and their targets."""
    files = [path / s for s in manifest["inputs"]["shards"]]
    meta = read_video_meta(files)
    x = (H5Rows(files, "x") if use_stream(options, int(manifest["input_bytes"]))
         else torch.from_numpy(read_inputs(files, manifest)))
    codes = video_split(path, manifest, options.split, split_seed, meta)
    val_code = TEST if split_scheme(manifest, options.split, path).get("val_is_test") else CODES["val"]
    splits: dict[str, list[TaskSplit]] = {s: [] for s in SPLITS}
    for task in manifest["tasks"]:
        rows, targets = task_rows_targets(meta, task)
        for s in SPLITS:
            keep = codes[rows] == (val_code if s == "val" else CODES[s])
            index, y = torch.from_numpy(rows[keep]), torch.from_numpy(targets[keep])
            splits[s].append(TaskSplit(x=x, y=y, index=index) if isinstance(x, torch.Tensor)
                             else ScaledTaskSplit(x=x, y=y, index=index))
    return splits


def read_inputs(files: list[Path], manifest: dict[str, Any]) -> np.ndarray:
    """All videos' 1152-d inputs, read straight into one preallocated array (no concatenation copy)."""
    rows = manifest["inputs"]["rows"]
    x = np.empty((sum(rows), int(manifest["inputs"]["dim"])), dtype=np.float32)
    start = 0
    for f, n in zip(files, rows):
        def into(ds: h5py.Dataset, lo: int = start, hi: int = start + n, f: Path = f) -> np.ndarray:
            if ds.shape != (hi - lo, x.shape[1]):
                raise DataError(f"{f}: 'x' has shape {ds.shape}, the manifest says {(hi - lo, x.shape[1])}")
            if hi > lo:
                ds.read_direct(x, dest_sel=np.s_[lo:hi])
            return x[lo:hi]
        read_arrays(f, ["x"], into={"x": into})
        start += n
    return x


def read_video_meta(files: list[Path]) -> dict[str, np.ndarray]:
    """Video ids, CSR label lists and partitions of all shards, concatenated."""
    parts = [read_arrays(f, ["id", "label_ptr", "label_idx", "partition"]) for f in files]
    ptrs, base = [], 0
    for p in parts:
        ptrs.append(p["label_ptr"][:-1] + base)
        base += int(p["label_ptr"][-1])
    width = max(p["id"].dtype.itemsize for p in parts)
    return {"id": np.concatenate([p["id"].astype(f"S{width}") for p in parts]),
            "label_ptr": np.concatenate([*ptrs, np.array([base])]).astype(np.int64),
            "label_idx": np.concatenate([p["label_idx"] for p in parts]).astype(np.int64),
            "partition": np.concatenate([p["partition"] for p in parts])}


def video_split(path: Path, manifest: dict[str, Any], name: str, split_seed: int,
                meta: dict[str, np.ndarray]) -> np.ndarray:
    scheme = split_scheme(manifest, name, path)
    if split_seed != manifest["split"]["seed"]:
        return compute_split(scheme, split_seed, keys=meta["id"], partition=meta["partition"] == 0)
    codes = read_arrays(path / manifest["split"]["file"], [f"split/{name}"])[f"split/{name}"]
    if len(codes) != len(meta["id"]):
        raise DataError(f"{path / manifest['split']['file']}: {len(codes)} split codes for "
                        f"{len(meta['id'])} videos")
    return codes


def task_rows_targets(meta: dict[str, np.ndarray], task: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The videos carrying at least one of the task's labels (sorted row numbers) and their {0,1} targets
    over the task's classes (vocabulary indices renumbered 0..C-1 in index order)."""
    space = np.asarray(task["vocab_index"], dtype=np.int64)
    labels = meta["label_idx"]
    class_of = np.full(max(int(labels.max(initial=0)), int(space.max())) + 1, -1, dtype=np.int64)
    class_of[space] = np.arange(len(space))
    video_of = np.repeat(np.arange(len(meta["label_ptr"]) - 1), np.diff(meta["label_ptr"]))
    c = class_of[labels]
    hit = c >= 0
    rows = np.unique(video_of[hit])
    targets = np.zeros((len(rows), len(space)), dtype=np.float32)
    targets[np.searchsorted(rows, video_of[hit]), c[hit]] = 1.0
    return rows, targets


def check_shared_inputs(folder: Path, manifest: dict[str, Any], mf: Path) -> None:
    """The tasks' vocabulary indices and video counts against the labels stored with the videos (the store's
    manifest check calls it as ``YouTube8M.check_shards``)."""
    files = [folder / s for s in manifest["inputs"]["shards"]]
    meta = read_video_meta(files)
    n_vocab = int(manifest.get("n_vocabulary", 0)) or None
    split_file = folder / manifest["split"]["file"]
    codes = read_arrays(split_file, ["split/default"])["split/default"] if "default" in manifest["split"]["schemes"] \
        else None
    for t, task in enumerate(manifest["tasks"]):
        space = np.asarray(task["vocab_index"], dtype=np.int64)
        if n_vocab and len(space) and (space.min() < 0 or space.max() >= n_vocab):
            raise DataError(f"{mf}: tasks[{t}] ({task['name']!r}) vocab_index: indices outside the vocabulary "
                            f"(0..{n_vocab - 1}); {REPAIR}")
        rows, _ = task_rows_targets(meta, task)
        said = task.get("counts", {}).get("default", {})
        held = {"all": len(rows)}
        if codes is not None and len(codes) == len(meta["id"]):
            held.update({s: int((codes[rows] == c).sum()) for s, c in CODES.items()})
        if {k: said.get(k) for k in held} != held:
            raise mismatch(mf, t, task, "counts.default", {k: said.get(k) for k in held}, f"the shards hold {held}")
