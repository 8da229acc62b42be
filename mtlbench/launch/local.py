"""The local launcher: cells in ``workers`` parallel processes on this machine (launch/worker.py: each worker
is a fresh spawned interpreter that trains cell after cell, the job pickled as on a cluster), each with
``cpus_per_job`` torch threads and, with ``gpus_per_job``, its own GPUs. A cell starts once the cells it
depends on are done; when one of those failed or diverged it is not started (``blocked``). A cell that runs
past ``time_min`` is stopped with its worker (a fresh one takes the slot). The command waits for every cell and
returns what became of each. Ctrl-C stops the workers (the cells' state files let the next run resume them)."""
from __future__ import annotations

import time

from mtlbench.launch.jobs_file import JOBS_DIR, add_jobs, cell_key, job_entry
from mtlbench.launch.planned import Grid, Log, require_submitit
from mtlbench.launch.status import cell_status, job_files
from mtlbench.launch.worker import Worker

POLL_S = 0.2


def run_local(grid: Grid, log: Log) -> dict[int, str]:
    require_submitit()  # its cloudpickle carries the jobs' classes (launch/job.py)
    jobs_dir = grid.folder / JOBS_DIR
    waiting = sorted(grid.todo, key=lambda i: grid.waves[i])
    slots = Slots(min(grid.settings.local_workers(), len(waiting)), grid.settings.gpus_per_job)
    running: dict[int, int] = {}  # cell -> its worker slot
    outcome: dict[int, str] = {}
    try:
        while waiting or running:
            for i in list(waiting):
                if not slots.idle:
                    break
                ready, why = readiness(grid, i, outcome, running, waiting)
                if why:
                    waiting.remove(i)
                    outcome[i] = "blocked"
                    log(f"{grid.name(i)}: not started, {why}")
                elif ready:
                    waiting.remove(i)
                    running[i] = slot = slots.idle.pop(0)
                    start(grid, i, slots.workers[slot], jobs_dir, log)
            for i, slot in list(running.items()):
                ended = slots.ended(slot, 60 * grid.settings.time_min)
                if ended:
                    del running[i]
                    outcome[i] = finished(grid, i, *ended, jobs_dir, log)
            time.sleep(POLL_S)
    finally:
        slots.stop()
    return outcome


class Slots:
    """``n`` workers, each with its own GPUs when ``gpus_per_job``, and which of them are idle."""

    def __init__(self, n: int, gpus_per_job: int):
        self.gpus_per_job = gpus_per_job
        self.workers = [self.spawn(slot) for slot in range(n)]
        self.idle = list(range(n))

    def spawn(self, slot: int) -> Worker:
        g = self.gpus_per_job
        return Worker({"CUDA_VISIBLE_DEVICES": ",".join(map(str, range(slot * g, (slot + 1) * g)))} if g else {})

    def ended(self, slot: int, limit_s: float) -> tuple[str, float, bool] | None:
        """(job id, seconds, stopped at the time limit) once the slot's cell has ended; None while it runs."""
        worker = self.workers[slot]
        job_id, seconds = worker.job_id, time.perf_counter() - worker.started
        stopped = False
        if not worker.done():
            if seconds <= limit_s:
                return None
            worker.stop(timeout_s=0)  # a job past its time is stopped, as a cluster stops it
            self.workers[slot] = self.spawn(slot)
            stopped = True
        self.idle.append(slot)
        return job_id, seconds, stopped

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


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


def start(grid: Grid, i: int, worker: Worker, jobs_dir, log: Log) -> None:
    job_id = worker.submit(grid.job(i), jobs_dir)
    depends = [cell_key(grid.cells[j]) for j in grid.deps.get(i, [])]
    add_jobs(grid.folder, {cell_key(grid.cells[i]): job_entry(grid.cells[i], "local", job_id, jobs_dir, depends)})
    log(f"{grid.name(i)}: started as local job {job_id} ({grid.cpus} thread(s); log "
        f"{job_files({'folder': jobs_dir, 'job_id': job_id})['out']})")


def finished(grid: Grid, i: int, job_id: str, seconds: float, stopped: bool, jobs_dir, log: Log) -> str:
    if stopped:
        log(f"{grid.name(i)}: failed after {seconds:.0f} s: stopped at the time limit ({grid.settings.time_min} "
            "min, --time); its state file lets the next run resume it")
        return "failed"
    entry = {"folder": str(jobs_dir), "job_id": job_id, "launcher": "local", "identity": grid.cells[i].identity}
    status = cell_status(grid.cells[i], entry)
    state = status.state if status.state in ("done", "diverged") else "failed"
    detail = f": {status.detail}" if status.detail else ""
    log(f"{grid.name(i)}: {state} after {seconds:.0f} s{detail}")
    return state
