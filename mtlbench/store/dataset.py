"""The data contract every dataset satisfies, whatever its raw format.

A dataset is a list of tasks. Each task has its own label space (``TaskInfo``) and, per split, a
``TaskSplit``: the rows of an input tensor that belong to the task and their targets. Shared-input data
(one YouTube-8M video feeds every task it belongs to) keep one input tensor and give each task an index
into it, so no input row is copied per task; per-task-input data (Omniglot, the MTAL sets) give each task
its own tensor, possibly of its own shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict

SPLITS = ("train", "val", "test")
Target = Literal["multiclass", "multilabel"]


@dataclass(frozen=True)
class TaskInfo:
    name: str
    n_classes: int
    target: Target
    input_shape: tuple[int, ...]  # per example: (D,) for vectors, (C, H, W) for images
    class_names: tuple[str, ...] | None = None

    @property
    def input_kind(self) -> str:
        return "vector" if len(self.input_shape) == 1 else "image"


@dataclass
class DataInfo:
    name: str
    tasks: list[TaskInfo]
    input_mode: Literal["shared", "per_task"]
    primary_metric: str  # a key of mtlbench.metrics.METRICS; drives model selection and the table
    metadata: dict = field(default_factory=dict)  # e.g. the planted task groups of generated data
    checksum: str = ""  # sha256 of the manifest (prepared data) or of the generator options

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def input_kinds(self) -> set[str]:
        return {t.input_kind for t in self.tasks}

    @property
    def same_input_shape(self) -> bool:
        return len({t.input_shape for t in self.tasks}) == 1

    def only_tasks(self, names: list[str] | None) -> DataInfo:
        """This description narrowed to ``names`` (a row that trains some tasks: MethodEntry.tasks), in the data's
        order, with the prior task groups among them; all of it for None."""
        if names is None:
            return self
        keep = set(names)
        meta = dict(self.metadata)
        if "groups" in meta:  # MTAL_R's candidate pairs
            meta["groups"] = [g for g in ([n for n in grp if n in keep] for grp in meta["groups"]) if g]
        return replace(self, tasks=[t for t in self.tasks if t.name in keep], metadata=meta)


@dataclass
class TaskSplit:
    """One task's examples in one split: ``x[index]`` (or all of ``x``) with targets ``y``.

    ``y`` is int64 class ids [n] for multi-class tasks and a {0,1} float matrix [n, C] for multi-label.
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        src = rows if self.index is None else self.index[rows]
        return self.x[src], self.y[rows]


@dataclass
class MTLData:
    info: DataInfo
    splits: dict[str, list[TaskSplit]]

    def split(self, name: str) -> list[TaskSplit]:
        return self.splits[name]

    def only_tasks(self, names: list[str] | None) -> MTLData:
        """The data of ``names`` alone: each task's splits are its own (drawn per task), so they do not change."""
        if names is None:
            return self
        index = [i for i, t in enumerate(self.info.tasks) if t.name in set(names)]
        return MTLData(self.info.only_tasks(names), {s: [parts[i] for i in index] for s, parts in self.splits.items()})


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DatasetSource:
    """Base of every registered dataset: an options model (validated from the spec's ``data.options``), and
    ``load``. ``needs_path`` datasets read a directory written by ``mtlbench prepare``; ``prepare_command``
    is what the error for a missing path tells the user to run."""

    Options: ClassVar[type[BaseModel]] = NoOptions
    needs_path: ClassVar[bool] = False
    prepare_command: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @classmethod
    def load(cls, options: BaseModel, split_seed: int, path: Path | None) -> MTLData:
        raise NotImplementedError

    @classmethod
    def describe(cls, options: BaseModel, split_seed: int, path: Path | None) -> DataInfo:
        """The task list without the examples; prepared datasets override this to read only the manifest."""
        return cls.load(options, split_seed, path).info

    @classmethod
    def check_path(cls, path: Path) -> str | None:
        """Return why ``path`` cannot be loaded (None when it can). Prepared datasets override this to
        check the manifest."""
        return None if path.exists() else f"{path} does not exist"
