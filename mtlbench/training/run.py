"""Run every (method, seed) of a spec: skip runs already finished, resume interrupted ones from their state file,
train the rest, and write one record (and the selected weights) per run.

A run is finished when its record exists with the same run identity (results.py); a record of another identity
stops everything before training unless ``force``. While a run trains, its state is saved every
``training.checkpoint_every`` iterations to ``seed<k>.state.pt`` beside the record (removed once the record is
written); rerunning the command resumes from it.

In a data-parallel run (``d``) every rank takes part in every run; rank 0 decides what is finished, reads the
state to resume from and shares both, and alone writes checkpoints, weights and records (the other ranks wait
at the end of each run, so a later run can read what rank 0 wrote, e.g. DMTRL's STL checkpoint)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from mtlbench.config.resolved import ResolvedSpec
from mtlbench.errors import MTLBenchError, UsageError
from mtlbench.io import atomic_write
from mtlbench.results import RunRecord, write_record
from mtlbench.store.dataset import MTLData
from mtlbench.training.distributed import SINGLE, Dist
from mtlbench.training.reuse import finished_runs
from mtlbench.training.run_plan import RunCell, plan_cells, skipped_line
from mtlbench.training.state import UnfitState, foreign_state, load_state_file
from mtlbench.training.trainer import Progress, train_run

# (row label, seed, total iterations) -> progress callback for that run
ProgressFactory = Callable[[str, int, int], Progress]
Log = Callable[[str], None]


def load_data(resolved: ResolvedSpec) -> MTLData:
    d = resolved.spec.data
    return resolved.dataset.load(resolved.options, d.split_seed, d.path)


def run_spec(resolved: ResolvedSpec, seeds: list[int] | None = None, out_dir: Path | None = None,
             progress: ProgressFactory | None = None, data: MTLData | None = None, force: bool = False,
             log: Log | None = None, d: Dist = SINGLE) -> list[RunRecord]:
    """Every run's record, in spec order: finished ones read back, the others trained now. ``log`` gets one line
    per skipped, resumed or diverged run (from rank 0 only)."""
    spec = resolved.spec
    log = (log or (lambda line: None)) if d.main else (lambda line: None)
    cells = plan_cells(resolved, seeds if seeds is not None else spec.seeds, Path(out_dir or spec.output.dir))
    finished = shared_plan(cells, force, d)
    records = []
    for i, cell in enumerate(cells):
        if i in finished:
            log(skipped_line(cell, finished[i]))
            if d.main:
                cell.state_path.unlink(missing_ok=True)  # left by a kill between writing the record and removing it
            records.append(finished[i])
            continue
        data = data or load_data(resolved)
        records.append(train_cell(resolved, cell, data, progress if d.main else None, force, log, d))
    return records


def shared_plan(cells: list[RunCell], force: bool, d: Dist) -> dict[int, RunRecord]:
    """finished_runs as rank 0 sees it, on every rank (a refusal stops every rank)."""
    if d.world == 1:
        return checked_plan(cells, force)
    try:
        outcome = (checked_plan(cells, force), None) if d.main else None
    except MTLBenchError as e:
        outcome = ({}, str(e))
    finished, refusal = d.broadcast(outcome)
    if refusal:
        raise UsageError(refusal)
    return finished


def checked_plan(cells: list[RunCell], force: bool) -> dict[int, RunRecord]:
    """finished_runs, and no cell to train has the saved state of another run in its place (unless force)."""
    finished = finished_runs(cells, force)
    if not force:
        refuse_foreign_states([c for i, c in enumerate(cells) if i not in finished])
    return finished


def refuse_foreign_states(cells: list[RunCell]) -> None:
    """UsageError (nothing trained yet) when a cell's state file was saved by another run: the spec edited
    between an interruption and the rerun, or another code or plugin version. Training would overwrite it at
    its first checkpoint, and with it the progress that restoring the spec would resume."""
    for cell in cells:
        what = foreign_state(cell.state_path, cell.identity, cell.key)
        if what is not None:
            raise UsageError(f"{cell.state_path}: the saved state of an interrupted run made with other settings "
                             f"({what}); restore the spec to resume it, or delete the file (or rerun with --force) "
                             "to train this run from the start")


def train_cell(resolved: ResolvedSpec, cell: RunCell, data: MTLData, progress: ProgressFactory | None,
               force: bool, log: Log, d: Dist = SINGLE) -> RunRecord:
    spec = resolved.spec
    if d.main:
        remove_stale_temporaries(cell)
    resume = d.broadcast(None if force or not d.main else resume_state(cell, log))
    total = 1 if cell.method.cls.closed_form else spec.training.iterations
    cb = progress(cell.row, cell.seed, total) if progress else None
    save = (lambda state: state.save(cell.state_path, cell.identity, cell.key)) if d.main else (lambda state: None)
    data = data.only_tasks(cell.method.entry.tasks)  # a row of some tasks (one run per task group)
    try:
        record, model = train_run(resolved, cell, data, cb, resume, save, d)
    except UnfitState as e:  # train_run seeds and builds everything anew: a clean start
        log(f"{cell.row} seed {cell.seed}: not resuming from {cell.state_path} ({e}); training from the start")
        record, model = train_run(resolved, cell, data, cb, None, save, d)
    if d.main:
        write_outputs(cell, record, model, spec.output.save_checkpoint)
    d.barrier()
    if record.status == "diverged":
        log(f"{cell.row} seed {cell.seed} {record.failure}; recorded as diverged, without a score")
    return record


def write_outputs(cell: RunCell, record: RunRecord, model, save_weights: bool) -> None:
    """The selected weights, then the record (the run's proof of completion), then the state file goes."""
    if record.status == "ok" and save_weights:
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}  # loadable without the GPU
        atomic_write(cell.weights_path, lambda tmp: torch.save(weights, tmp))
    else:
        cell.weights_path.unlink(missing_ok=True)  # an earlier run's weights would not match this record
    write_record(cell.record_path, record)
    cell.state_path.unlink(missing_ok=True)


def remove_stale_temporaries(cell: RunCell) -> None:
    """The half-written temporaries (io.atomic_write's ``.seed<k>.json.<random>.tmp``) a kill -9 left beside
    the cell's record, weights or state: never read, only in the way (a state's can take hundreds of MB)."""
    for tmp in cell.record_path.parent.glob(f".seed{cell.seed}.*.tmp"):
        tmp.unlink(missing_ok=True)


def resume_state(cell: RunCell, log: Log) -> dict | None:
    state, why = load_state_file(cell.state_path, cell.identity)
    if state is not None:
        log(f"{cell.row} seed {cell.seed}: resuming from iteration {state.get('iteration')} ({cell.state_path})")
    elif cell.state_path.exists():
        log(f"{cell.row} seed {cell.seed}: not resuming from {cell.state_path} ({why}); training from the start")
    return state
