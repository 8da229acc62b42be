"""A spec's cells planned for a launcher: which cells to submit, what each waits for, in which waves -- what the
``local`` and ``slurm`` launchers run (``grid`` plans it)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mtlbench.config.launcher import LauncherSpec
from mtlbench.config.resolved import ResolvedSpec
from mtlbench.errors import UsageError
from mtlbench.launch.jobs_file import spec_dir
from mtlbench.launch.status import CellStatus
from mtlbench.training.run_plan import RunCell

Log = Callable[[str], None]


@dataclass
class Grid:
    resolved: ResolvedSpec
    seeds: list[int]
    out_dir: Path
    force: bool
    settings: LauncherSpec
    cells: list[RunCell]
    statuses: list[CellStatus]
    todo: list[int]  # cells to submit, in spec order
    deps: dict[int, list[int]]
    waves: list[int]

    @property
    def folder(self) -> Path:
        return spec_dir(self.out_dir, self.resolved.spec.name)

    @property
    def cpus(self) -> int:
        return self.settings.jobs_cpus(self.resolved.spec.training.threads)

    def name(self, i: int) -> str:
        return f"{self.cells[i].row} seed {self.cells[i].seed}"

    def job(self, i: int):
        from mtlbench.launch.job import CellJob
        return CellJob(self.resolved, i, self.seeds, self.out_dir, self.force, self.cpus)


def require_submitit():
    try:
        import submitit
    except ImportError:
        raise UsageError("--launcher local|slurm needs submitit: pip install 'mtlbench[slurm]'") from None
    return submitit
