"""A spec resolved against the registries: each method row with its class and validated params, the dataset
class with its options and what the data hold (``load_spec`` builds it; training, launch and report read it)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mtlbench.config.schema import RunSpec
from mtlbench.nn.method import MethodParams, MTLMethod
from mtlbench.store.dataset import DataInfo, DatasetSource


@dataclass
class ResolvedMethod:
    entry: Any  # MethodEntry
    cls: type[MTLMethod]
    params: MethodParams

    def params_for(self, seed: int) -> MethodParams:
        """The params with ``{seed}`` in any string option replaced by the run's seed, so that e.g. DMTRL's
        ``stl_checkpoint: .../STL/seed{seed}.pt`` factorises the STL run of the same seed."""
        return with_seed(self.params, seed)


def with_seed(params: MethodParams, seed: int) -> MethodParams:
    update = {k: v.replace("{seed}", str(seed)) for k, v in params if isinstance(v, str) and "{seed}" in v}
    return params.model_copy(update=update) if update else params


@dataclass
class ResolvedSpec:
    spec: RunSpec
    file: Path
    dataset: type[DatasetSource]
    options: BaseModel
    methods: list[ResolvedMethod]
    info: DataInfo | None  # None when the data could not be described (then validation failed)
