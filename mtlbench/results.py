"""Result records: one JSON file per (spec, method row, seed), typed by ``RunRecord`` and written and read only
here (``write_record`` / ``read_record``), as strict JSON (a non-finite number is stored as null).

Layout: ``<output dir>/<spec name>/<row>/seed<k>.json``, beside it ``seed<k>.pt`` (the selected weights) and,
while a run is unfinished, ``seed<k>.state.pt`` (its resumable training state). A record holds the resolved
spec, the metrics per split / metric / task, how the run ended (``status``) and the environment.

Run identity: two runs are the same run when their ``run_key`` is equal -- the parts of the resolved spec that
shape this row's result (data, the method entry, its backbone, optimizer, training minus how-to-run fields,
the metrics asked for), the seed, and the code version (``code_version``). ``mtlbench train`` skips a run whose record
has the same identity and refuses to overwrite one whose identity differs.

This module does not import torch, so ``compare`` renders tables without it.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

from mtlbench import __version__
from mtlbench.errors import InputError
from mtlbench.io import atomic_write_json

# Layout of a record file. 1: records written before status / identity existed (read with their defaults).
RECORD_SCHEMA = 2
# Bumped when a change alters what a run trains or stores, so that older records stop counting as finished
# runs of the current code. Part of the code version, with the package version.
TRAINING_VERSION = 1
# Per-method computation versions, bumped when what one method computes changes, so that its older records
# stop counting as finished runs of the current code while every other row keeps its identity (the package's
# TRAINING_VERSION would change them all). Above 1 a version is part of the run key and stored in the record;
# `compare` marks a row's records of an older version. Kept here, not on the method classes, so that reading
# records needs no torch.
# DMTRL 2: the SVD factors train at 0.03 x lr by default (``factors_lr_mult``; version 1 trained them at lr),
# and the dense layers apply their factors to the inputs (the [in, out, T] tensor is never rebuilt).
METHOD_VERSIONS = {"dmtrl_laf": 2, "dmtrl_tucker": 2, "dmtrl_tt": 2}
# training.* fields that say how a run is executed, not what is trained: not part of a run's identity.
HOW_TO_RUN = ("threads", "device", "eval_batch", "checkpoint_every", "sync_batchnorm", "kernel")
# training.* fields added after records existed, with the value every earlier run had: left out of the key at
# that value, so earlier records and state files keep their identity (and compare keeps their rows).
ADDED_LATER = {"amp": "none"}


def code_version(package: str | None = __version__) -> str:
    return f"{package}+t{TRAINING_VERSION}"


def method_version(method: str) -> int:
    """The computation version of a registered method name (``METHOD_VERSIONS``; 1 unless it was bumped)."""
    return METHOD_VERSIONS.get(method, 1)


class MetricScores(BaseModel):
    """One metric on one split: per task, the mean over tasks, and (accuracy only) pooled over all examples."""

    model_config = ConfigDict(extra="forbid")
    tasks: dict[str, float | None]
    mean: float | None
    pooled: float | None = None

    @model_serializer(mode="wrap")
    def _without_absent_pooled(self, handler):
        out = handler(self)
        if out.get("pooled") is None:
            out.pop("pooled", None)
        return out


class RunRecord(BaseModel):
    """What one (method row, seed) run produced. ``status: diverged`` runs carry no metrics (null)."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = 1
    spec_name: str
    row: str
    method: str
    seed: int
    status: Literal["ok", "diverged"] = "ok"
    failure: str | None = None  # why a diverged run stopped (the line printed when it stopped)
    trained_by: Literal["steps", "fit"] = "steps"  # optimizer steps, or the method's closed-form fit
    identity: str | None = None  # hash of run_key when written (absent in schema-1 records)
    code_version: str | None = None
    spec_file: str
    spec: dict[str, Any]
    params: dict[str, Any]
    dataset: str
    tasks: list[str]
    data_metadata: dict[str, Any] = Field(default_factory=dict)
    primary_metric: str
    selected_on: str
    paper_faithful: bool = False
    deterministic: bool | None = None
    metrics: dict[str, dict[str, MetricScores]] | None  # split -> metric -> scores
    best_iteration: int | None
    iterations_run: int
    history: list[dict[str, Any]]  # one entry per evaluation: iteration, loss, reg, <split>_<metric>, task_loss
    n_params: int
    train_time_s: float
    wall_time_s: float
    data_checksum: str | None = None
    env: dict[str, Any] = Field(default_factory=dict)
    summary: dict[str, Any] = Field(default_factory=dict)
    # the record this one was copied from: the same run (experiment, seed, code version) finished under another
    # spec or row label, so training it again would repeat it bit for bit (training/reuse.py); its path
    # relative to the results folder that holds both, e.g. "taan_table3_omniglot_cpu5/TAAN/seed0.json"
    reused_from: str | None = None
    # sha256 of the code of each of the row's entries from outside the package, e.g. {"method": "1f0c..."}
    # (mtlbench/plugins.py); absent for a row of built-ins only
    plugins: dict[str, str] | None = None
    # the method's computation version when it was > 1 (METHOD_VERSIONS); absent: version 1
    method_version: int | None = None
    path: Path | None = Field(default=None, exclude=True)  # where it was read from or written to

    @model_serializer(mode="wrap")
    def _without_absent_reuse(self, handler):
        out = handler(self)  # a record trained here stores no reused_from at all (the layout records always had)
        for key in ("reused_from", "plugins", "method_version"):
            if out.get(key) is None:
                out.pop(key, None)
        return out

    @property
    def written_by(self) -> str:
        """The code version; schema-1 records predate the field and count as training version 1."""
        return self.code_version or f"{self.env.get('versions', {}).get('mtlbench')}+t1"


def slug(row: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", row).strip("_") or "run"


def sweep_row(row: str, param: str, value: Any) -> str:
    """The row label of a sweep's point: the method row with one option set, e.g. ``MTAL delta=0.4``."""
    return f"{row} {param}={value}"


def run_dir(out_dir: Path, spec_name: str, row: str) -> Path:
    return Path(out_dir) / spec_name / slug(row)


def record_path(out_dir: Path, spec_name: str, row: str, seed: int) -> Path:
    return run_dir(out_dir, spec_name, row) / f"seed{seed}.json"


def write_record(path: Path, record: RunRecord) -> Path:
    atomic_write_json(path, record.model_dump(mode="json"))
    record.path = path
    return path


def read_record(path: Path) -> RunRecord:
    """One record, checked to be one: a stray or truncated JSON file is a one-line error, not a traceback."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a readable result record ({e})") from None
    versioned = isinstance(data, dict) and isinstance(data.get("schema_version"), int)
    if versioned and data["schema_version"] > RECORD_SCHEMA:
        raise InputError(f"{path}: record schema {data['schema_version']} is newer than this mtlbench reads "
                            f"({RECORD_SCHEMA}); upgrade mtlbench")
    try:
        record = RunRecord.model_validate(data)
    except ValidationError as e:
        raise InputError(f"{path}: not a mtlbench result record ({validation_reason(e)})") from None
    record.path = Path(path)
    return record


def validation_reason(e: ValidationError) -> str:
    errors = e.errors()
    missing = [str(err["loc"][0]) for err in errors if err["type"] == "missing" and len(err["loc"]) == 1]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        return f"missing {', '.join(missing[:3])}{more}"
    first = errors[0]
    return f"{'.'.join(map(str, first['loc'])) or 'top level'}: {first['msg']}"


def load_records(root: Path) -> list[RunRecord]:
    """Every record under ``root`` (a spec's folder or a whole output dir), sorted by path."""
    return [read_record(path) for path in sorted(Path(root).rglob("seed*.json"))]


# -- run identity -----------------------------------------------------------------------------------------------
def experiment_key(spec: dict, row: str) -> dict:
    """What must match for two records of a row to be seeds of the same experiment: the data, the row's
    method entry and backbone, the optimizer, the training settings (less how-to-run fields) and the metrics
    stored."""
    entry = next((m for m in spec["methods"] if (m.get("label") or m["name"]) == row), None)
    backbone = (entry or {}).get("backbone") or spec.get("backbone")
    training = {k: v for k, v in (spec.get("training") or {}).items()
                if k not in HOW_TO_RUN and not (k in ADDED_LATER and v == ADDED_LATER[k])}
    return {"data": spec.get("data"), "method": entry, "backbone": backbone, "optimizer": spec.get("optimizer"),
            "training": training, "metrics": (spec.get("evaluation") or {}).get("metrics")}


def run_key(spec: dict, row: str, seed: int, code: str, method_version: int = 1) -> dict:
    """``method_version`` (the method's ``MTLMethod.version``) enters the key only above 1, so a method whose
    computation changed gets new identities while every other row keeps its own."""
    key = {"experiment": experiment_key(spec, row), "seed": seed, "code": code}
    return key if method_version <= 1 else {**key, "method_version": method_version}


def identity_hash(key: dict) -> str:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def key_differences(old: Any, new: Any, where: str = "") -> list[str]:
    """``field: old -> new`` for every leaf that differs between two keys."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in dict.fromkeys([*old, *new])
                for d in key_differences(old.get(k), new.get(k), f"{where}.{k}" if where else str(k))]
    return [] if old == new else [f"{where}: {json.dumps(old, default=str)} -> {json.dumps(new, default=str)}"]


# -- tables -----------------------------------------------------------------------------------------------------
def tidy(records: list[RunRecord], split: str = "test") -> pd.DataFrame:
    """One row per (method row, seed, metric, column) where column is a task name, 'mean' or 'pooled'.
    Diverged records have no metrics and give no rows."""
    rows = []
    for rec in records:
        for metric, entry in (rec.metrics or {}).get(split, {}).items():
            cols = {**entry.tasks, "mean": entry.mean, **({"pooled": entry.pooled} if entry.pooled is not None else {})}
            rows += [{"row": rec.row, "method": rec.method, "seed": rec.seed, "metric": metric,
                      "column": c, "value": v, "n_params": rec.n_params} for c, v in cols.items()]
    return pd.DataFrame(rows, columns=["row", "method", "seed", "metric", "column", "value", "n_params"])
