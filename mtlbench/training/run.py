"""Run every (method, seed) of a spec: skip runs already finished, resume interrupted ones from their state file,
train the rest, and write one record (and the selected weights) per run.

A run is finished when its record exists with the same run identity (results.py); a record of another identity
stops everything before training unless ``force``. While a run trains, its state is saved every
``training.checkpoint_every`` iterations to ``seed<k>.state.pt`` beside the record (removed once the record is
written); rerunning the command resumes from it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from mtlbench.config.loader import ResolvedSpec
from mtlbench.data.base import MTLData
from mtlbench.io import atomic_write
from mtlbench.results import RunRecord, write_record
from mtlbench.training.plan import RunCell, finished_runs, plan_cells
from mtlbench.training.state import load_state_file
from mtlbench.training.trainer import Progress, train_run

# (row label, seed, total iterations) -> progress callback for that run
ProgressFactory = Callable[[str, int, int], Progress]
Log = Callable[[str], None]


def load_data(resolved: ResolvedSpec) -> MTLData:
    d = resolved.spec.data
    return resolved.dataset.load(resolved.options, d.split_seed, d.path)


def run_spec(resolved: ResolvedSpec, seeds: list[int] | None = None, out_dir: Path | None = None,
             progress: ProgressFactory | None = None, data: MTLData | None = None, force: bool = False,
             log: Log | None = None) -> list[RunRecord]:
    """Every run's record, in spec order: finished ones read back, the others trained now. ``log`` gets one line
    per skipped, resumed or diverged run."""
    spec = resolved.spec
    log = log or (lambda line: None)
    cells = plan_cells(resolved, seeds if seeds is not None else spec.seeds, Path(out_dir or spec.output.dir))
    finished = finished_runs(cells, force)
    records = []
    for i, cell in enumerate(cells):
        if i in finished:
            log(f"{cell.row} seed {cell.seed}: finished, skipped ({cell.record_path})")
            cell.state_path.unlink(missing_ok=True)  # left by a kill between writing the record and removing it
            records.append(finished[i])
            continue
        data = data or load_data(resolved)
        records.append(train_cell(resolved, cell, data, progress, force, log))
    return records


def train_cell(resolved: ResolvedSpec, cell: RunCell, data: MTLData, progress: ProgressFactory | None,
               force: bool, log: Log) -> RunRecord:
    spec = resolved.spec
    resume = None if force else resume_state(cell, log)
    total = 1 if cell.method.cls.closed_form else spec.training.iterations
    cb = progress(cell.row, cell.seed, total) if progress else None
    record, model = train_run(resolved, cell, data, cb, resume, lambda state: state.save(cell.state_path, cell.identity))
    if record.status == "ok" and spec.output.save_checkpoint:
        atomic_write(cell.weights_path, lambda tmp: torch.save(model.state_dict(), tmp))
    else:
        cell.weights_path.unlink(missing_ok=True)  # an earlier run's weights would not match this record
    write_record(cell.record_path, record)
    cell.state_path.unlink(missing_ok=True)
    if record.status == "diverged":
        log(f"{cell.row} seed {cell.seed} {record.failure}; recorded as diverged, without a score")
    return record


def resume_state(cell: RunCell, log: Log) -> dict | None:
    state, why = load_state_file(cell.state_path, cell.identity)
    if state is not None:
        log(f"{cell.row} seed {cell.seed}: resuming from iteration {state['iteration']} ({cell.state_path})")
    elif cell.state_path.exists():
        log(f"{cell.row} seed {cell.seed}: not resuming from {cell.state_path} ({why}); training from the start")
    return state
