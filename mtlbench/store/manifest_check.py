"""A prepared directory's manifest checked for its own content, so that a hand-edited manifest (a class count,
a class name, a split count) is refused in one line before anything trains, instead of training a model with
the wrong number of outputs or crashing mid-run.

Two checks, both cheap:

- **The seal.** ``prepare`` writes ``manifest.sha256`` (``sha256sum`` format) beside ``manifest.json``, last,
  and every read of the manifest compares the two: any edit of the manifest -- a class name included, which
  nothing else could catch -- is refused. Directories prepared before the seal existed have none; they get
  the next check only (``prepare verify`` says so), and ``prepare --force`` seals them.
- **The manifest against its shards** (``validate``, ``train`` before training, ``prepare verify``): per task,
  the class count against the class names and the class ids stored in the shard, the example and per-split
  counts against the shard's labels and split codes, the task name against the one stored in its shard, the
  input shape against the stored inputs; a dataset laid out otherwise adds its own check (YouTube-8M: the
  vocabulary indices and the per-task video counts against the labels stored with the videos).

Each problem names the manifest, the task and the field, and says what to do: re-run the prepare command.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from mtlbench.errors import DataError

SEAL = "manifest.sha256"
REPAIR = "re-run the prepare command recorded in it with --force"


def write_seal(folder: Path, manifest_name: str = "manifest.json") -> None:
    digest = hashlib.sha256((folder / manifest_name).read_bytes()).hexdigest()
    (folder / SEAL).write_text(f"{digest}  {manifest_name}\n")


def is_sealed(folder: Path) -> bool:
    return (Path(folder) / SEAL).exists()


def check_seal(folder: Path, manifest_name: str = "manifest.json") -> None:
    seal = Path(folder) / SEAL
    if not seal.exists():
        return
    recorded = seal.read_text().split()[:1]
    actual = hashlib.sha256((Path(folder) / manifest_name).read_bytes()).hexdigest()
    if recorded != [actual]:
        raise DataError(f"{Path(folder) / manifest_name}: edited after prepare wrote it (its sha256 no longer "
                        f"matches {SEAL}); {REPAIR}")


def check_consistency(mf: Path, manifest: dict[str, Any]) -> None:
    """What the manifest says about each task agrees with itself (no shard is read)."""
    for t, task in enumerate(manifest["tasks"]):
        n, names = task.get("n_classes"), task.get("class_names")
        where = f"{mf}: tasks[{t}] ({task.get('name')!r})"
        if not isinstance(n, int) or n < 1:
            raise DataError(f"{where} n_classes: expected a positive integer, got {n!r}; {REPAIR}")
        if names is not None and len(names) != n:
            raise DataError(f"{where} n_classes: says {n} classes but class_names lists {len(names)}; {REPAIR}")
        if "vocab_index" in task and len(task["vocab_index"]) != n:
            raise DataError(f"{where} n_classes: says {n} classes but vocab_index lists "
                            f"{len(task['vocab_index'])}; {REPAIR}")


def mismatch(mf: Path, t: int, task: dict[str, Any], field: str, said: Any, held: str) -> DataError:
    return DataError(f"{mf}: tasks[{t}] ({task['name']!r}) {field}: the manifest says {said}, {held}; {REPAIR}")


def check_against_shards(folder: Path, manifest: dict[str, Any], mf: Path) -> None:
    """The manifest's tasks against what their shards hold (reads labels and split codes, not inputs). A dataset
    whose shards hold something else (YouTube-8M: one input shard shared by every task) checks them itself: its
    registered class's ``check_shards`` hook."""
    hook = shards_hook(manifest["dataset"])
    if hook is not None:
        hook(Path(folder), manifest, mf)
    else:
        for t, task in enumerate(manifest["tasks"]):
            check_task_shard(Path(folder), t, task, manifest, mf)


def shards_hook(kind: str):
    """The ``check_shards(folder, manifest, mf)`` classmethod of the registered dataset reading manifests of
    ``kind``, or None. Found through the registry: the store never imports a dataset module."""
    from mtlbench.registry import DATASETS

    return next((cls.check_shards for _, cls in DATASETS
                 if getattr(cls, "kind", None) == kind and hasattr(cls, "check_shards")), None)


def check_task_shard(folder: Path, t: int, task: dict[str, Any], manifest: dict[str, Any], mf: Path) -> None:
    import h5py

    from mtlbench.store.rows import read_arrays
    from mtlbench.store.splits import CODES
    shard = folder / task["shard"]
    schemes = list(manifest["split"]["schemes"])
    with h5py.File(shard, "r") as h5:
        stored_name, x_shape = h5.attrs.get("task"), h5["x"].shape
    arrays = read_arrays(shard, ["y", *[f"split/{s}" for s in schemes]])
    y = arrays["y"]
    if stored_name is not None and str(stored_name) != task["name"]:
        raise mismatch(mf, t, task, "name", repr(task["name"]), f"{shard.name} holds task {str(stored_name)!r}")
    if list(x_shape[1:]) != list(task["input_shape"]):
        raise mismatch(mf, t, task, "input_shape", list(task["input_shape"]),
                       f"{shard.name} holds inputs of {list(x_shape[1:])}")
    if "n_examples" in task and task["n_examples"] != len(y):
        raise mismatch(mf, t, task, "n_examples", task["n_examples"], f"{shard.name} holds {len(y)}")
    if len(y) and int(y.max()) >= task["n_classes"]:
        raise mismatch(mf, t, task, "n_classes", task["n_classes"],
                       f"{shard.name} holds class ids up to {int(y.max())}")
    for scheme in schemes:
        held = {s: int((arrays[f"split/{scheme}"] == c).sum()) for s, c in CODES.items()}
        said = {s: task.get("counts", {}).get(scheme, {}).get(s) for s in CODES}
        if said != held:
            raise mismatch(mf, t, task, f"counts.{scheme}", said, f"{shard.name} holds {held}")
