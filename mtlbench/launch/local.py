"""The local launcher: cells as parallel processes on this machine through submitit's local executor (real
subprocesses, the job pickled as on a cluster), ``workers`` at a time, each with ``cpus_per_job`` torch
threads and, with ``gpus_per_job``, its own GPUs. A cell starts once the cells it depends on are done; when one
of those failed or diverged it is not started (``blocked``). The command waits for every job and returns what
became of each cell. Ctrl-C stops the running jobs (their state files let the next run resume them)."""
from __future__ import annotations

import time

from mtlbench.launch.jobs_file import JOBS_DIR, add_jobs, cell_key, job_entry
from mtlbench.launch.planned import Grid, Log, require_submitit
from mtlbench.launch.status import cell_status, job_files

POLL_S = 0.2


def run_local(grid: Grid, log: Log) -> dict[int, str]:
    submitit = require_submitit()
    jobs_dir = grid.folder / JOBS_DIR
    executor = submitit.LocalExecutor(folder=jobs_dir)
    executor.update_parameters(timeout_min=grid.settings.time_min)
    waiting = sorted(grid.todo, key=lambda i: grid.waves[i])
    slots = list(range(grid.settings.local_workers()))
    running: dict[int, tuple] = {}
    outcome: dict[int, str] = {}
    try:
        while waiting or running:
            for i in list(waiting):
                if not slots:
                    break
                ready, why = readiness(grid, i, outcome, running, waiting)
                if why:
                    waiting.remove(i)
                    outcome[i] = "blocked"
                    log(f"{grid.name(i)}: not started, {why}")
                elif ready:
                    waiting.remove(i)
                    running[i] = start(grid, i, executor, slots.pop(0), jobs_dir, log)
            for i, (job, slot, started) in list(running.items()):
                if job.done():
                    del running[i]
                    slots.append(slot)
                    outcome[i] = finished(grid, i, job, time.perf_counter() - started, log)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        for job, _, _ in running.values():
            job.cancel()
        raise
    return outcome


def readiness(grid: Grid, i: int, outcome: dict[int, str], running: dict, waiting: list[int]) -> tuple[bool, str]:
    """(can start now, why it never will -- "" while it may)."""
    for j in grid.deps.get(i, []):
        if j in outcome:
            if outcome[j] != "done":
                return False, f"{grid.name(j)}, whose weights it reads, is {outcome[j]}"
        elif j in running or j in waiting:
            return False, ""
        elif (state := grid.statuses[j].state) != "done":
            return False, f"{grid.name(j)}, whose weights it reads, is {state}"
    return True, ""


def start(grid: Grid, i: int, executor, slot: int, jobs_dir, log: Log) -> tuple:
    g = grid.settings.gpus_per_job
    if g:  # each worker slot owns its own GPUs
        executor.update_parameters(gpus_per_node=g, visible_gpus=tuple(range(slot * g, (slot + 1) * g)))
    job = executor.submit(grid.job(i))
    depends = [cell_key(grid.cells[j]) for j in grid.deps.get(i, [])]
    add_jobs(grid.folder, {cell_key(grid.cells[i]): job_entry(grid.cells[i], "local", job.job_id, jobs_dir, depends)})
    log(f"{grid.name(i)}: started as local job {job.job_id} ({grid.cpus} thread(s); log "
        f"{job_files({'folder': jobs_dir, 'job_id': job.job_id})['out']})")
    return job, slot, time.perf_counter()


def finished(grid: Grid, i: int, job, seconds: float, log: Log) -> str:
    entry = {"folder": str(job.paths.folder), "job_id": job.job_id, "launcher": "local",
             "identity": grid.cells[i].identity}
    status = cell_status(grid.cells[i], entry)
    state = status.state if status.state in ("done", "diverged") else "failed"
    detail = f": {status.detail}" if status.detail else ""
    log(f"{grid.name(i)}: {state} after {seconds:.0f} s{detail}")
    return state
