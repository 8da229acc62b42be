"""MTAL's two task sets (Feng & Chen, arXiv 2101.12431, Tables 2-5), assembled from prepared directories.

``path`` is a folder holding the prepared datasets by name (``<path>/chars74k``, ``<path>/coil20``,
``<path>/office_caltech``, ``<path>/office_home``); the ``tasks`` option lists ``<folder>/<task>`` references,
so any prepared task can join a set. Defaults:

* ``mtal_related``: HD, a, Typographic*, A (all from chars74k; relation groups {HD, a}, {Typographic*, A}).
* ``mtal_unrelated``: HD, COIL-20, Art, Amazon (groups {HD, COIL-20}, {Art, Amazon}); Office-Home Art is not
  available offline, so it joins only when ``<path>/office_home`` holds a task ``Art``
  (``mtlbench prepare image-folder --src OfficeHomeDataset --task Art --size 64 --out <path>/office_home``);
  otherwise ``info.metadata["missing_tasks"]`` lists it and tables render its column as n/a.

Each task keeps its own input shape (per-task inputs); the relation groups are in ``info.metadata["groups"]``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from mtlbench.errors import DataError
from mtlbench.registry import DATASETS
from mtlbench.store.dataset import SPLITS, DataInfo, DatasetSource, MTLData
from mtlbench.store.prepared import PreparedOptions, input_bytes, load_task, split_scheme, task_info, use_stream
from mtlbench.store.shards import MANIFEST, open_prepared, verifying

KINDS = ("chars74k", "coil20", "office_caltech", "image_folder", "omniglot")


class MTALOptions(PreparedOptions):
    tasks: list[str] | None = Field(default=None, min_length=2, description=(
        "tasks as '<folder under path>/<task name>', e.g. ['chars74k/HD', 'coil20/COIL-20']; "
        "default: the paper's set"))


class MTALSet(DatasetSource):
    Options: ClassVar = MTALOptions
    needs_path: ClassVar[bool] = True
    default_tasks: ClassVar[list[str]] = []
    optional_tasks: ClassVar[set[str]] = set()  # default tasks skipped (and reported) when not prepared
    groups: ClassVar[list[list[str]]] = []

    @classmethod
    def resolve(cls, path: Path | None, refs: list[str] | None, deep: bool):
        """[(folder, manifest, task index)] for the requested tasks, plus the default tasks left out."""
        if path is None:
            raise DataError(f"dataset {cls.registry_name!r} needs data.path (a folder of prepared datasets)")
        path, out, missing, manifests = Path(path), [], [], {}
        for ref in refs or cls.default_tasks:
            folder, _, task = ref.partition("/")
            if not task:
                raise DataError(f"task reference {ref!r} is not '<folder>/<task>'")
            sub = path / folder
            if refs is None and ref in cls.optional_tasks and not (sub / MANIFEST).exists():
                missing.append(task)
                continue
            if folder not in manifests:
                manifests[folder] = open_prepared(sub, KINDS, "sha256" if deep else "size")
            names = [t["name"] for t in manifests[folder]["tasks"]]
            if task not in names:
                raise DataError(f"{sub} has no task {task!r} (has: {', '.join(names)})")
            out.append((sub, manifests[folder], names.index(task)))
        return out, missing

    @classmethod
    def check_path(cls, path: Path) -> str | None:
        try:
            cls.resolve(Path(path), None, deep=True)
        except DataError as e:
            return str(e)
        return None

    @classmethod
    def describe(cls, options: MTALOptions, split_seed: int, path: Path | None) -> DataInfo:
        parts, missing = cls.resolve(path, options.tasks, deep=False)
        return cls.info(parts, missing, options, split_seed)

    @classmethod
    def info(cls, parts, missing: list[str], options: MTALOptions, split_seed: int) -> DataInfo:
        tasks = [task_info(m["tasks"][t]) for _, m, t in parts]
        names = {t.name for t in tasks}
        if len(names) != len(tasks):
            raise DataError(f"two tasks share a name in {[t.name for t in tasks]}")
        for sub, m, _ in parts:
            split_scheme(m, options.split, sub)
        digest = hashlib.sha256(b"".join((sub / MANIFEST).read_bytes() for sub in dict.fromkeys(p[0] for p in parts)))
        groups = [[g for g in grp if g in names] for grp in cls.groups]
        meta = {"groups": [g for g in groups if g], "missing_tasks": missing, "split": options.split,
                "split_seed": split_seed, "sources": {t.name: str(sub) for t, (sub, _, _) in zip(tasks, parts)},
                "stand_ins": {k: v for _, m, _ in parts for k, v in m.get("metadata", {}).get("stand_ins", {}).items()
                              if k in names}}
        return DataInfo(name=cls.registry_name, tasks=tasks, input_mode="per_task", primary_metric="accuracy",
                        metadata=meta, checksum=digest.hexdigest())

    @classmethod
    def load(cls, options: MTALOptions, split_seed: int, path: Path | None) -> MTLData:
        parts, missing = cls.resolve(path, options.tasks, deep=False)
        info = cls.info(parts, missing, options, split_seed)
        folders = {sub: m for sub, m, _ in parts}
        stream = use_stream(options, sum(input_bytes(m) for m in folders.values()))
        with verifying(list(folders.items()), options.verify):
            per_task = [load_task(sub, m, t, options, split_seed, stream) for sub, m, t in parts]
        return MTLData(info, {s: [p[s] for p in per_task] for s in SPLITS})


@DATASETS.register("mtal_related")
class MTALRelated(MTALSet):
    """MTAL related tasks HD, a, Typographic*, A (Tables 2-3); Typographic* is a font-digit stand-in."""

    description = "MTAL related set: HD, a, Typographic*, A (Chars74K; MTAL Tables 2-3)"
    prepare_command = "mtlbench prepare chars74k --src ../shared/data/chars74k --out prepared/chars74k"
    default_tasks = ["chars74k/HD", "chars74k/a", "chars74k/Typographic*", "chars74k/A"]
    groups = [["HD", "a"], ["Typographic*", "A"]]


@DATASETS.register("mtal_unrelated")
class MTALUnrelated(MTALSet):
    """MTAL unrelated tasks HD, COIL-20, Art, Amazon (Tables 4-5); Art only when prepared by the user."""

    description = "MTAL unrelated set: HD, COIL-20, Art (if prepared), Amazon (MTAL Tables 4-5)"
    prepare_command = ("mtlbench prepare chars74k --src ../shared/data/chars74k --out prepared/chars74k && "
                       "mtlbench prepare coil20 --src ../shared/data/coil20 --out prepared/coil20 && "
                       "mtlbench prepare office-caltech --src ../shared/data/office_caltech10 "
                       "--out prepared/office_caltech")
    default_tasks = ["chars74k/HD", "coil20/COIL-20", "office_home/Art", "office_caltech/Amazon"]
    optional_tasks = {"office_home/Art"}
    groups = [["HD", "COIL-20"], ["Art", "Amazon"]]
