"""Loading prepared datasets (the directories ``mtlbench prepare`` writes) into ``MTLData``.

``PreparedSource`` is the base of every registered dataset that reads such a directory: it checks the
manifest (``check_path``), describes the tasks from the manifest alone (``describe``), and loads per-task-input
data (one shard per task: Omniglot, Chars74K, COIL-20, Office-Caltech, image folders). YouTube-8M's
shared-input loading lives in ``youtube8m.py``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from mtlbench.errors import DataError
from mtlbench.store.dataset import SPLITS, DataInfo, DatasetSource, MTLData, TaskInfo, TaskSplit
from mtlbench.store.rows import H5Rows, ScaledTaskSplit, read_arrays
from mtlbench.store.shards import MANIFEST, Check, check_prepared, open_prepared, verifying
from mtlbench.store.splits import CODES, TEST, compute_split


class PreparedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    split: str = Field(default="default", description="which split scheme recorded in the manifest to use "
                                                      "(e.g. omniglot's 'paper_faithful')")
    memory: Literal["auto", "memory", "stream"] = Field(
        default="auto", description="hold shards in memory, stream rows from disk, or decide by memory_limit_mb")
    memory_limit_mb: int = Field(default=4096, gt=0, description="largest input size 'auto' holds in memory")
    verify: Literal["crc32c", "sha256", "none"] = Field(
        default="crc32c", description="whole-file checksum of every shard checked against the manifest while "
                                      "loading (HDF5 checks each chunk's fletcher32 in any case)")


class PreparedSource(DatasetSource):
    """Base of the registered datasets read from a prepared directory."""

    Options: ClassVar[type[BaseModel]] = PreparedOptions
    needs_path: ClassVar[bool] = True
    kind: ClassVar[str] = ""  # the manifest's "dataset" value this class reads
    primary_metric: ClassVar[str] = "accuracy"

    @classmethod
    def check_path(cls, path: Path) -> str | None:
        return check_prepared(Path(path), cls.kind)

    @classmethod
    def manifest(cls, path: Path | None, check: Check = "size") -> dict[str, Any]:
        if path is None:
            raise DataError(f"dataset {cls.kind!r} reads prepared data: set data.path "
                            f"(create it with `{cls.prepare_command}`)")
        return open_prepared(Path(path), cls.kind, check)

    @classmethod
    def describe(cls, options: PreparedOptions, split_seed: int, path: Path | None) -> DataInfo:
        return data_info(cls, cls.manifest(path), Path(path), options, split_seed)

    @classmethod
    def load(cls, options: PreparedOptions, split_seed: int, path: Path | None) -> MTLData:
        manifest = cls.manifest(path)
        info = data_info(cls, manifest, Path(path), options, split_seed)
        stream = use_stream(options, input_bytes(manifest))
        with verifying([(Path(path), manifest)], options.verify):
            per_task = [load_task(Path(path), manifest, t, options, split_seed, stream)
                        for t in range(len(manifest["tasks"]))]
        return MTLData(info, {s: [p[s] for p in per_task] for s in SPLITS})


def task_info(entry: dict[str, Any]) -> TaskInfo:
    names = entry.get("class_names")
    return TaskInfo(name=entry["name"], n_classes=int(entry["n_classes"]), target=entry["target"],
                    input_shape=tuple(int(s) for s in entry["input_shape"]),
                    class_names=tuple(names) if names else None)


def split_scheme(manifest: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    schemes = manifest["split"]["schemes"]
    if name not in schemes:
        raise DataError(f"{path}: no split {name!r} in the manifest (has: {', '.join(schemes)})")
    return schemes[name]


def data_info(cls: type[PreparedSource], manifest: dict[str, Any], path: Path, options: PreparedOptions,
              split_seed: int) -> DataInfo:
    scheme = split_scheme(manifest, options.split, path)
    meta = {**manifest.get("metadata", {}), "path": str(path), "split": options.split,
            "split_scheme": scheme["scheme"], "split_seed": split_seed,
            "val_is_test": bool(scheme.get("val_is_test", False)),
            "split_recomputed": split_seed != manifest["split"]["seed"]}
    checksum = hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest()
    return DataInfo(name=getattr(cls, "registry_name", manifest["dataset"]),
                    tasks=[task_info(t) for t in manifest["tasks"]], input_mode=manifest["input_mode"],
                    primary_metric=cls.primary_metric, metadata=meta, checksum=checksum)


def input_bytes(manifest: dict[str, Any]) -> int:
    return sum(int(t.get("input_bytes", 0)) for t in manifest["tasks"]) + int(manifest.get("input_bytes", 0))


def use_stream(options: PreparedOptions, nbytes: int) -> bool:
    if options.memory != "auto":
        return options.memory == "stream"
    return nbytes > options.memory_limit_mb * (1 << 20)


def split_codes(stored: dict[str, np.ndarray], manifest: dict[str, Any], scheme_name: str, split_seed: int,
                task: int, labels: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The stored assignment when the seed is the prepared one, else the same scheme re-drawn."""
    scheme = manifest["split"]["schemes"][scheme_name]
    if split_seed == manifest["split"]["seed"]:
        return stored[f"split/{scheme_name}"]
    return compute_split(scheme, split_seed, manifest["tasks"][task]["name"], keys=keys, labels=labels)


def load_task(path: Path, manifest: dict[str, Any], t: int, options: PreparedOptions, split_seed: int,
              stream: bool) -> dict[str, TaskSplit]:
    """One per-task-input task: its shard -> a TaskSplit per split (indices into one x per task)."""
    entry = manifest["tasks"][t]
    shard = path / entry["shard"]
    scheme = split_scheme(manifest, options.split, path)
    stream = stream and not entry.get("normalize")  # normalised vectors are small and need all rows at once
    names = ["y", "key", f"split/{options.split}"] + ([] if stream else ["x"])
    arrays = read_arrays(shard, names)
    y = arrays["y"].astype(np.int64)
    codes = split_codes(arrays, manifest, options.split, split_seed, t, y, arrays["key"])
    x = H5Rows([shard], "x") if stream else torch.from_numpy(prepare_inputs(arrays["x"], entry, codes))
    scale = float(entry.get("scale", 1.0))
    out: dict[str, TaskSplit] = {}
    for s in SPLITS:
        code = TEST if (s == "val" and scheme.get("val_is_test")) else CODES[s]
        rows = np.flatnonzero(codes == code)
        out[s] = ScaledTaskSplit(x=x, y=torch.from_numpy(y[rows]), index=torch.from_numpy(rows), scale=scale)
    return out


def prepare_inputs(x: np.ndarray, entry: dict[str, Any], codes: np.ndarray) -> np.ndarray:
    """Input normalisation recorded in the manifest. ``l1_zscore``: each row divided by its sum, then each
    feature standardised with the *training* rows' mean and population std (the SURF release's advice,
    without letting test rows into the statistics)."""
    norm = entry.get("normalize")
    if not norm:
        return x
    if norm != "l1_zscore":
        raise DataError(f"task {entry['name']!r}: unknown input normalisation {norm!r} in the manifest")
    f = x.astype(np.float64)
    f /= np.maximum(f.sum(axis=1, keepdims=True), 1e-12)
    train = f[codes == CODES["train"]]
    mean, std = train.mean(axis=0), train.std(axis=0)
    return ((f - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
