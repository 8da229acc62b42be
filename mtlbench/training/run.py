"""Run every (method, seed) of a spec: load the data once, train, write one record (and checkpoint) per run."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from mtlbench.config.loader import ResolvedSpec
from mtlbench.data.base import MTLData
from mtlbench.io import atomic_write
from mtlbench.results import write_record
from mtlbench.training.trainer import Progress, train_run

# (row label, seed, total iterations) -> progress callback for that run
ProgressFactory = Callable[[str, int, int], Progress]


def load_data(resolved: ResolvedSpec) -> MTLData:
    d = resolved.spec.data
    return resolved.dataset.load(resolved.options, d.split_seed, d.path)


def run_spec(resolved: ResolvedSpec, seeds: list[int] | None = None, out_dir: Path | None = None,
             progress: ProgressFactory | None = None, data: MTLData | None = None) -> list[dict]:
    spec = resolved.spec
    seeds = seeds if seeds is not None else spec.seeds
    out_dir = Path(out_dir or spec.output.dir)
    data = data or load_data(resolved)
    records = []
    for method in resolved.methods:
        for seed in seeds:
            cb = progress(method.entry.row, seed, spec.training.iterations) if progress else None
            record, model = train_run(resolved, method, seed, data, cb)
            path = write_record(out_dir, record)
            if spec.output.save_checkpoint:
                atomic_write(path.with_suffix(".pt"), lambda tmp: torch.save(model.state_dict(), tmp))
            record["_path"] = str(path)
            records.append(record)
    return records
