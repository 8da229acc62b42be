"""Which runs of a spec still need training: each (method row, seed) cell has a run identity, and a record on
disk either finishes it (same identity: skipped), or belongs to another experiment (other identity: refused
before anything trains, unless ``--force``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from mtlbench.config.resolved import ResolvedMethod, ResolvedSpec
from mtlbench.config.schema import RunSpec
from mtlbench.plugins import row_plugins, with_plugins
from mtlbench.results import (
    RunRecord,
    code_version,
    identity_hash,
    key_differences,
    method_version,
    record_path,
    run_key,
)


@dataclass
class RunCell:
    method: ResolvedMethod
    seed: int
    record_path: Path
    key: dict  # results.run_key: what makes this run this run
    spec: dict  # the spec as its records store it
    spec_file: str

    @property
    def row(self) -> str:
        return self.method.entry.row

    @property
    def identity(self) -> str:
        return identity_hash(self.key)

    @property
    def state_path(self) -> Path:
        return self.record_path.with_name(f"seed{self.seed}.state.pt")

    @property
    def results_folder(self) -> Path:
        """The folder that holds every spec's runs: <folder>/<spec name>/<label>/seed<k>.json."""
        return self.record_path.parents[2]

    @property
    def weights_path(self) -> Path:
        return self.record_path.with_suffix(".pt")


def plan_cells(resolved: ResolvedSpec, seeds: list[int], out_dir: Path) -> list[RunCell]:
    spec, code = resolved.spec.model_dump(mode="json"), code_version()
    plugins = {m.entry.row: row_plugins(spec, m.entry.row, {"method": m.cls, "dataset": resolved.dataset})
               for m in resolved.methods}
    return [RunCell(m, seed, record_path(out_dir, resolved.spec.name, m.entry.row, seed),
                    with_plugins(run_key(spec, m.entry.row, seed, code, method_version(m.entry.name)),
                                 plugins[m.entry.row]), spec, str(resolved.file))
            for m in resolved.methods for seed in seeds_of(m, seeds)]


def seeds_of(method: ResolvedMethod, seeds: list[int]) -> list[int]:
    """The seeds a row trains: all, or the first alone for a method whose run no seed changes (MTDA's fit):
    more seeds would be identical copies, a spread of 0 and a p-value from nothing."""
    return seeds if method.cls.uses_seed else seeds[:1]


def stored_key(record: RunRecord) -> dict | None:
    """The run key of a stored record, its spec read through today's schema (so an option added later with
    its default does not make old records look different); None when that spec is no longer valid."""
    try:
        spec = RunSpec.model_validate(record.spec).model_dump(mode="json")
    except ValidationError:
        return None
    return with_plugins(run_key(spec, record.row, record.seed, record.written_by, record.method_version or 1),
                        record.plugins)


def skipped_line(cell: RunCell, record: RunRecord) -> str:
    """The log line of a cell that is not trained: finished, or copied from the same run elsewhere."""
    if record.reused_from:
        original = cell.results_folder / record.reused_from  # reused_from is relative to the folder
        return (f"{cell.row} seed {cell.seed}: the same run finished as {original}, reused "
                f"({cell.record_path})")
    return f"{cell.row} seed {cell.seed}: finished, skipped ({cell.record_path})"


def conflict_message(conflicts: list[tuple[RunCell, dict | None]]) -> str:
    cell, old = conflicts[0]
    if old is None:
        what = "its spec is not valid for this mtlbench version"
    else:
        diffs = [d.removeprefix("experiment.") for d in key_differences(old, cell.key)]
        what = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
    more = f" (and {len(conflicts) - 1} more record(s) of this spec)" if len(conflicts) > 1 else ""
    return (f"{cell.record_path}: holds a run made with other settings ({what}){more}; rerun with --force to "
            "retrain over it, or give the spec another name or output.dir")

