"""What every ``prepare`` shares: source checksums and the writer for per-task-input datasets (one shard per
task holding its inputs ``x``, class ids ``y``, stable example keys ``key`` and one ``split/<scheme>`` array
per recorded split scheme)."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtlbench import __version__
from mtlbench.errors import DataError, InputError
from mtlbench.prepare import ProgressFactory, no_progress
from mtlbench.store.shards import FORMAT_VERSION, PreparedWriter, sha256_file
from mtlbench.store.splits import CODES, compute_split

MAX_LISTED_SOURCES = 256  # beyond this (image folders), the manifest records one digest over all files


def require(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist (expected {what})")
    return path


def sources_entry(files: list[Path], root: Path, progress: ProgressFactory = no_progress) -> dict[str, Any]:
    """sha256 of every source file; for long lists (image folders) one digest over "relpath sha256" lines."""
    advance = progress("Hashing sources", len(files))
    listed, tree = [], hashlib.sha256()
    total = 0
    for f in files:
        digest, size = sha256_file(f), f.stat().st_size
        rel = str(f.relative_to(root)) if f.is_relative_to(root) else f.name
        listed.append({"file": rel, "bytes": size, "sha256": digest})
        tree.update(f"{rel} {digest}\n".encode())
        total += size
        advance(1)
    entry: dict[str, Any] = {"root": str(Path(root).resolve()), "n_files": len(files), "bytes": total,
                             "tree_sha256": tree.hexdigest()}
    if len(files) <= MAX_LISTED_SOURCES:
        entry["files"] = listed
    return entry


@dataclass
class TaskArrays:
    """One task's examples as stored: ``float input = x * scale`` (then ``normalize`` at load, if set)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    key: np.ndarray
    class_names: list[str]
    scale: float = 1.0
    normalize: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        n = len(self.x)
        if len(self.y) != n or len(self.key) != n:
            raise DataError(f"task {self.name!r}: {n} inputs but {len(self.y)} labels / {len(self.key)} keys")
        if n == 0:
            raise DataError(f"task {self.name!r} has no examples")
        if len(np.unique(self.key)) != n:
            raise DataError(f"task {self.name!r}: example keys are not unique")
        if self.y.min() < 0 or self.y.max() >= len(self.class_names):
            raise DataError(f"task {self.name!r}: class ids outside 0..{len(self.class_names) - 1}")


@dataclass
class TaskJob:
    """A task to write; ``build`` runs only when its shard is not already done (resume)."""

    name: str
    build: Callable[[], TaskArrays]


def task_entry(ta: TaskArrays, shard: str, counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    return {"name": ta.name, "n_classes": len(ta.class_names), "class_names": list(ta.class_names),
            "target": "multiclass", "input_shape": list(ta.x.shape[1:]), "dtype": str(ta.x.dtype),
            "scale": ta.scale, "normalize": ta.normalize, "shard": shard, "n_examples": len(ta.x),
            "input_bytes": int(ta.x.nbytes), "counts": counts, **ta.extra}


def split_counts(codes: np.ndarray) -> dict[str, int]:
    return {name: int((codes == c).sum()) for name, c in CODES.items()}


def write_per_task(out: Path, dataset: str, jobs: list[TaskJob], schemes: dict[str, dict[str, Any]], seed: int,
                   sources: dict[str, Any], options: dict[str, Any], metadata: dict[str, Any], command: str,
                   force: bool = False, progress: ProgressFactory = no_progress) -> Path:
    """Write a per-task-input prepared dataset: one ``task-NN.h5`` per job, then the manifest."""
    request = {"dataset": dataset, "format_version": FORMAT_VERSION, "sources": sources.get("tree_sha256"),
               "seed": seed, "schemes": schemes, "tasks": [j.name for j in jobs], "options": options}
    with PreparedWriter(out, request, force=force) as writer:
        shards = write_task_shards(writer, jobs, schemes, seed, progress(f"Writing {dataset} shards", len(jobs)))
        tasks = [writer.shard_info(s)["info"]["task"] for s in shards]
        manifest = {"dataset": dataset, "mtlbench_version": __version__, "prepare_command": command,
                    "input_mode": "per_task", "sources": sources,
                    "split": {"seed": seed, "schemes": {name: {**s, "sizes": summed_counts(tasks, name)}
                                                        for name, s in schemes.items()}},
                    "options": options, "tasks": tasks, "metadata": metadata}
        return writer.finish(manifest, shards)


def write_task_shards(writer: PreparedWriter, jobs: list[TaskJob], schemes: dict[str, dict[str, Any]], seed: int,
                      advance) -> list[str]:
    """One shard per task (skipping those a resumed run already has); the task's manifest entry rides along
    in the progress record."""
    advance(writer.resumed)
    shards = []
    for t, job in enumerate(jobs):
        shard = f"task-{t:02d}.h5"
        shards.append(shard)
        if writer.has(shard):
            continue
        ta = job.build()
        ta.check()
        codes = {name: compute_split(s, seed, ta.name, keys=ta.key, labels=ta.y) for name, s in schemes.items()}
        arrays = {"x": ta.x, "y": ta.y.astype(np.int64), "key": ta.key.astype(np.int64),
                  **{f"split/{name}": c for name, c in codes.items()}}
        entry = task_entry(ta, shard, {name: split_counts(c) for name, c in codes.items()})
        writer.write_shard(shard, arrays, attrs={"task": ta.name}, info={"task": entry})
        advance(1)
    return shards


def summed_counts(tasks: list[dict[str, Any]], scheme: str) -> dict[str, int]:
    return {s: sum(t["counts"][scheme][s] for t in tasks) for s in CODES}


def mtal_scheme(test_fraction: float, val_fraction: float) -> dict[str, dict[str, Any]]:
    """MTAL's split: per class, ``test_fraction`` to test and ``val_fraction`` of the rest to validation."""
    if not (0 < test_fraction < 1 and 0 <= val_fraction < 1):
        raise InputError(f"split fractions must lie in (0, 1): test {test_fraction}, val {val_fraction}")
    return {"default": {"scheme": "stratified",
                        "params": {"test_fraction": test_fraction, "val_fraction": val_fraction}}}


def images_nchw(images: np.ndarray) -> np.ndarray:
    """(n, H, W) or (n, H, W, C) -> (n, C, H, W), contiguous."""
    if images.ndim == 3:
        return np.ascontiguousarray(images[:, None])
    if images.ndim == 4:
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    raise DataError(f"expected images of shape (n, H, W) or (n, H, W, C), got {images.shape}")


def load_mat(path: Path) -> dict[str, np.ndarray]:
    """Variables of a MATLAB file: v5/v7 through scipy.io.loadmat, v7.3 (HDF5 inside) through h5py (whose
    arrays come out transposed, MATLAB being column-major)."""
    require(path, "a MATLAB .mat file")
    with open(path, "rb") as f:
        header = f.read(128)
    if b"MATLAB 7.3" in header[:116] or header[:8] == b"\x89HDF\r\n\x1a\n":
        import h5py
        with h5py.File(path, "r") as h5:
            return {k: np.asarray(v).T for k, v in h5.items() if isinstance(v, h5py.Dataset)}
    from scipy.io import loadmat
    try:
        return {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
    except (ValueError, TypeError, OSError, NotImplementedError) as e:
        raise DataError(f"{path}: not a readable MATLAB file ({e})") from None


def need(arrays: dict[str, np.ndarray], name: str, path: Path) -> np.ndarray:
    if name not in arrays:
        raise DataError(f"{path}: no variable {name!r} (has: {', '.join(sorted(arrays)) or 'nothing'})")
    return arrays[name]
