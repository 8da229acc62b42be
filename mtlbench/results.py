"""Result records: one JSON file per (spec, method row, seed), written atomically, read back as a tidy table.

Layout: ``<output dir>/<spec name>/<row>/seed<k>.json`` (and ``seed<k>.pt``, the selected weights). A record
holds the resolved spec, the metrics per split / metric / task, and the environment (see trainer.py).
This module does not import torch, so ``compare`` renders tables without it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from mtlbench.errors import MTLBenchError
from mtlbench.io import atomic_write_json


def slug(row: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", row).strip("_") or "run"


def run_dir(out_dir: Path, spec_name: str, row: str) -> Path:
    return Path(out_dir) / spec_name / slug(row)


def record_path(out_dir: Path, spec_name: str, row: str, seed: int) -> Path:
    return run_dir(out_dir, spec_name, row) / f"seed{seed}.json"


def write_record(out_dir: Path, record: dict) -> Path:
    path = record_path(out_dir, record["spec_name"], record["row"], record["seed"])
    atomic_write_json(path, record)
    return path


REQUIRED = ("spec", "row", "method", "seed", "tasks", "metrics", "n_params")


def read_record(path: Path) -> dict:
    """One record, checked to be one: a stray or truncated JSON file is a one-line error, not a traceback."""
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MTLBenchError(f"{path}: not a readable result record ({e})") from None
    missing = [k for k in REQUIRED if not isinstance(rec, dict) or k not in rec]
    if missing:
        raise MTLBenchError(f"{path}: not a mtlbench result record (missing {', '.join(missing)})")
    rec["_path"] = str(path)
    return rec


def load_records(root: Path) -> list[dict]:
    """Every record under ``root`` (a spec's folder or a whole output dir), sorted by path."""
    return [read_record(path) for path in sorted(Path(root).rglob("seed*.json"))]


def run_identity(spec: dict, row: str) -> dict:
    """What must match for two records of a row to be seeds of the same experiment: the data, the row's
    method entry and backbone, the optimizer and the training settings (not the seeds or output folder)."""
    entry = next((m for m in spec["methods"] if (m.get("label") or m["name"]) == row), None)
    backbone = (entry or {}).get("backbone") or spec.get("backbone")
    return {"data": spec.get("data"), "method": entry, "backbone": backbone,
            "optimizer": spec.get("optimizer"), "training": spec.get("training")}


def tidy(records: list[dict], split: str = "test") -> pd.DataFrame:
    """One row per (method row, seed, metric, column) where column is a task name, 'mean' or 'pooled'."""
    rows = []
    for rec in records:
        for metric, entry in rec["metrics"].get(split, {}).items():
            cols = {**entry["tasks"], "mean": entry["mean"], **({"pooled": entry["pooled"]} if "pooled" in entry else {})}
            rows += [{"row": rec["row"], "method": rec["method"], "seed": rec["seed"], "metric": metric,
                      "column": c, "value": v, "n_params": rec["n_params"]} for c, v in cols.items()]
    return pd.DataFrame(rows, columns=["row", "method", "seed", "metric", "column", "value", "n_params"])
