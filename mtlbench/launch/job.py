"""The job that trains one cell in its own process (a local worker or a Slurm job).

``CellJob`` is pickled by submitit with the resolved spec inside, so a job trains exactly what was validated
when it was submitted, even if the spec file changes while it waits in a queue. It trains the cell the way
``mtlbench train`` does in process -- skip when finished, resume from the cell's state file, write the
weights and the record atomically -- with its torch threads set to the job's CPU cores (``threads`` is a
how-to-run field, not part of the run's identity). Its progress lines go to the job's log.

Plugins travel with the job: submitit pickles classes by reference, and a class of a ``--plugin`` file lives in
a module only that file's loading creates. So the job pickles as (the plugin files, the pickled job): the
worker loads the files first, then unpickles the spec whose classes they define."""
from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from pathlib import Path

from mtlbench.config.resolved import ResolvedSpec
from mtlbench.results import read_record


@dataclass
class CellJob:
    resolved: ResolvedSpec
    index: int  # of the cell in plan_cells(resolved, seeds, out_dir)
    seeds: list[int]
    out_dir: Path
    force: bool
    threads: int | None

    def __reduce__(self):
        import cloudpickle  # submitit's own pickler (classes defined in a test or __main__ travel by value)

        from mtlbench.plugins import loaded_files
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        return rebuild_job, (loaded_files(), cloudpickle.dumps(state))

    def __call__(self) -> dict:
        from mtlbench.training.run import train_cell
        from mtlbench.training.run_plan import plan_cells, stored_key
        resolved = with_threads(self.resolved, self.threads)
        cell = plan_cells(resolved, self.seeds, self.out_dir)[self.index]
        if not self.force and cell.record_path.exists() and stored_key(read_record(cell.record_path)) == cell.key:
            log(f"{cell.row} seed {cell.seed}: finished, skipped ({cell.record_path})")
            return {"row": cell.row, "seed": cell.seed, "status": read_record(cell.record_path).status}
        record = train_cell(resolved, cell, cached_data(resolved), log_progress, self.force, log)
        log(f"{cell.row} seed {cell.seed}: {record.status}, record {cell.record_path}")
        return {"row": cell.row, "seed": cell.seed, "status": record.status}


_last_data: list = []  # [(the spec's data section, its MTLData)]: a local worker's last dataset


def cached_data(resolved: ResolvedSpec):
    """The cell's dataset, loaded once per worker for a run of cells of one spec (launch/worker.py) -- as the
    in-process run loads it once for all its cells; a cell of other data loads its own."""
    from mtlbench.training.run import load_data
    key = (resolved.dataset, str(resolved.file), resolved.spec.data.model_dump_json(),
           resolved.options.model_dump_json())
    if not _last_data or _last_data[0][0] != key:
        _last_data[:] = [(key, load_data(resolved))]
    return _last_data[0][1]


def rebuild_job(plugin_files: dict[str, str], pickled: bytes) -> CellJob:
    """The worker's side of ``CellJob.__reduce__``: the plugin files (as they were at submission), then the job."""
    import pickle

    from mtlbench.plugins import load_as_submitted
    load_as_submitted(plugin_files)
    return CellJob(**pickle.loads(pickled))


def with_threads(resolved: ResolvedSpec, threads: int | None) -> ResolvedSpec:
    if not threads:
        return resolved
    spec = resolved.spec
    training = spec.training.model_copy(update={"threads": threads})
    return ResolvedSpec(spec.model_copy(update={"training": training}), resolved.file, resolved.dataset,
                        resolved.options, resolved.methods, resolved.info)


def log(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


def log_progress(row: str, seed: int, total: int):
    def update(it: int, _total: int, info: dict) -> None:
        if "select" in info:
            log(f"{row} seed {seed}: iteration {it}/{total} loss {info['loss']:.4f} selection score "
                f"{info['select']:.4f}")
    return update
