"""``mtlbench train SPEC --launcher local|slurm``: which cells still need a job, then the launcher runs them.

Finished cells (a record of the same run identity) are skipped, a record of other settings stops the command
before anything is submitted (exit 2, as in process; ``--force`` retrains everything), cells whose job is still
running are left alone, and failed or missing cells are (re)submitted -- a resubmitted cell resumes from its
state file. ``--dry-run`` prints what would be submitted and submits nothing."""
from __future__ import annotations

from pathlib import Path

from mtlbench.config.launcher import LauncherSpec
from mtlbench.config.resolved import ResolvedSpec
from mtlbench.errors import UsageError
from mtlbench.launch.cells import dependencies, waves
from mtlbench.launch.jobs_file import read_jobs, spec_dir
from mtlbench.launch.planned import Grid, Log
from mtlbench.launch.status import cell_statuses
from mtlbench.training.reuse import finished_runs
from mtlbench.training.run_plan import plan_cells, skipped_line


def plan_grid(resolved: ResolvedSpec, seeds: list[int] | None, out_dir: Path | None, force: bool,
              settings: LauncherSpec, log: Log) -> Grid:
    seeds = seeds if seeds is not None else resolved.spec.seeds
    out_dir = Path(out_dir or resolved.spec.output.dir)
    cells = plan_cells(resolved, seeds, out_dir)
    finished = finished_runs(cells, force)
    statuses = cell_statuses(cells, read_jobs(spec_dir(out_dir, resolved.spec.name)))
    todo = []
    for i, (cell, st) in enumerate(zip(cells, statuses)):
        if i in finished:
            log(skipped_line(cell, finished[i]))
        elif st.state == "running" and not force:
            log(f"{cell.row} seed {cell.seed}: still running as job {st.job}, left alone")
        else:
            todo.append(i)
    if not force:
        from mtlbench.training.run import refuse_foreign_states
        refuse_foreign_states([cells[i] for i in todo])
    deps = dependencies(cells)
    return Grid(resolved, seeds, out_dir, force, settings, cells, statuses, todo, deps, waves(len(cells), deps))


def dry_run(resolved: ResolvedSpec, seeds: list[int] | None, out_dir: Path | None, force: bool,
            settings: LauncherSpec, log: Log) -> list[str]:
    """What ``launch_grid`` would start, wave by wave (with the sbatch parameters for slurm)."""
    from mtlbench.launch.slurm import describe
    check_kind(settings)
    return describe(plan_grid(resolved, seeds, out_dir, force, settings, log))


def launch_grid(resolved: ResolvedSpec, seeds: list[int] | None, out_dir: Path | None, force: bool,
                settings: LauncherSpec, log: Log) -> dict[int, str]:
    """Run (local) or submit (slurm) the cells that need it. Returns {cell index: its state after this
    command}: local -> done / diverged / failed / blocked; slurm -> the submitted job id."""
    check_kind(settings)
    grid = plan_grid(resolved, seeds, out_dir, force, settings, log)
    if not grid.todo:
        return {}
    if settings.kind == "local":
        from mtlbench.launch.local import run_local
        return run_local(grid, log)
    from mtlbench.launch.slurm import submit_slurm
    return submit_slurm(grid, log)


def check_kind(settings: LauncherSpec) -> None:
    if settings.kind not in ("local", "slurm"):
        raise UsageError(f"--dry-run goes with --launcher local or slurm (the launcher is {settings.kind!r})")
