"""The Slurm launcher: one job per cell, each wave of cells one job array (``--array=0-N%max_parallel``);
a later wave's array starts each job only after the jobs of the cells it reads ended well
(``--dependency=afterok:<job ids>``, ``--kill-on-invalid-dep=yes``). Submits and returns: ``mtlbench status
SPEC`` follows the jobs, ``mtlbench compare SPEC`` renders the table once they are done, and rerunning the
same ``mtlbench train`` command resubmits the failed ones.

The jobs' pickles and logs go to ``<output dir>/<spec name>/jobs/``, which (like the data and the output
directory) must be on a file system the compute nodes see. ``describe`` prints what would be submitted
(``--dry-run``); it needs neither sbatch nor submitit."""
from __future__ import annotations

import shlex
from typing import Any

from mtlbench.errors import MTLBenchError
from mtlbench.launch.jobs_file import JOBS_DIR, add_jobs, cell_key, job_entry
from mtlbench.launch.planned import Grid, Log, require_submitit


def slurm_parameters(grid: Grid, dependency: list[str]) -> dict[str, Any]:
    """Keyword arguments of submitit's ``SlurmExecutor.update_parameters`` for one wave."""
    s = grid.settings
    params: dict[str, Any] = {"job_name": f"mtlbench-{grid.resolved.spec.name}", "time": s.time_min,
                              "cpus_per_task": grid.cpus, "array_parallelism": s.max_parallel}
    if s.partition:
        params["partition"] = s.partition
    if s.gpus_per_job:
        params["gpus_per_node"] = s.gpus_per_job
    if s.mem_gb:
        params["mem"] = f"{int(s.mem_gb)}GB" if s.mem_gb == int(s.mem_gb) else f"{int(s.mem_gb * 1024)}MB"
    if s.setup:
        params["setup"] = list(s.setup)
    extra = dict(s.sbatch)
    if dependency:
        params["dependency"] = "afterok:" + ":".join(dependency)
        extra["kill-on-invalid-dep"] = "yes"
    if extra:
        params["additional_parameters"] = extra
    return params


def sbatch_lines(params: dict[str, Any], n_jobs: int) -> list[str]:
    """The #SBATCH header lines ``params`` stand for (as submitit writes them)."""
    flat = {k: v for k, v in params.items() if k not in ("additional_parameters", "setup", "array_parallelism")}
    if n_jobs > 1:
        flat["array"] = f"0-{n_jobs - 1}%{min(n_jobs, params['array_parallelism'])}"
    flat.update(params.get("additional_parameters", {}))
    lines = []
    for key in sorted(flat):
        name, value = key.replace("_", "-"), flat[key]
        lines.append(f"#SBATCH --{name}" if value is True else f"#SBATCH --{name}={shlex.quote(str(value))}")
    return lines + [f"# setup: {line}" for line in params.get("setup", [])]


def wave_members(grid: Grid) -> list[list[int]]:
    return [[i for i in grid.todo if grid.waves[i] == w] for w in sorted({grid.waves[i] for i in grid.todo})]


def describe(grid: Grid) -> list[str]:
    """What ``--launcher`` would do, wave by wave, without doing it."""
    kind = grid.settings.kind
    lines = [f"dry run ({kind}): {len(grid.todo)} job(s) in {len(wave_members(grid))} wave(s); nothing started"]
    if kind == "local":
        lines.append(f"{grid.settings.local_workers()} worker(s), {grid.cpus} thread(s) per job, "
                     f"{grid.settings.gpus_per_job} GPU(s) per job, time limit {grid.settings.time_min} min")
    for members in wave_members(grid):
        needs = [f"<job of {grid.name(j)}>" for i in members for j in grid.deps.get(i, []) if j in grid.todo]
        lines.append(f"wave {grid.waves[members[0]]}: {len(members)} job(s)"
                     + (" as one array" if len(members) > 1 else ""))
        if kind == "slurm":
            lines += ["  " + line for line in sbatch_lines(slurm_parameters(grid, sorted(set(needs))), len(members))]
        for k, i in enumerate(members):
            after = [grid.name(j) for j in grid.deps.get(i, [])]
            lines.append(f"  job {k}: {grid.name(i)} -> {grid.cells[i].record_path}"
                         + (f" (after {', '.join(after)})" if after else ""))
    return lines


def submit_slurm(grid: Grid, log: Log) -> dict[int, str]:
    submitit = require_submitit()
    jobs_dir = grid.folder / JOBS_DIR
    try:
        executor = submitit.SlurmExecutor(folder=jobs_dir)
    except RuntimeError as e:
        raise MTLBenchError(f"--launcher slurm: {e} (--dry-run shows what would be submitted)") from None
    ids = {i: st.job for i, st in enumerate(grid.statuses) if st.state == "running" and i not in grid.todo}
    for members in wave_members(grid):
        needs = sorted({ids[j] for i in members for j in grid.deps.get(i, []) if j in ids})
        executor.update_parameters(**slurm_parameters(grid, needs))
        with executor.batch():
            jobs = [executor.submit(grid.job(i)) for i in members]
        entries = {}
        for i, job in zip(members, jobs):
            ids[i] = job.job_id
            depends = [cell_key(grid.cells[j]) for j in grid.deps.get(i, [])]
            entries[cell_key(grid.cells[i])] = job_entry(grid.cells[i], "slurm", job.job_id, jobs_dir, depends)
            log(f"{grid.name(i)}: submitted as slurm job {job.job_id}")
        add_jobs(grid.folder, entries)
    return {i: ids[i] for i in grid.todo}
