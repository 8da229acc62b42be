"""A local worker: one long-lived process per ``--workers`` slot that trains the cells it is sent one after
another, so that a grid pays Python's and torch's start (about 3 s here) once per worker instead of once per
cell, and each worker keeps the last dataset it loaded for the next cell of the same spec.

A cell's job travels pickled (``CellJob``, the resolved spec inside) exactly as a submitted job would, and
leaves the files ``status`` reads for any job: ``<job id>_0_log.out`` / ``.err`` (the cell's output) and
``<job id>_0_result.pkl`` (``("success", value)`` or ``("error", traceback)``, written atomically when the
cell ends). A local job id is ``<worker pid>-<n>``: the n-th cell of that worker; while it has no result the
job runs as long as the worker's process lives. Workers are spawned, not forked: a fresh interpreter, as a
cluster job has, with ``CUDA_VISIBLE_DEVICES`` set before torch is imported. They ignore Ctrl-C; the command
that started them stops them (its cells keep their state files, and the next ``train`` resumes them)."""
from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout, suppress
from pathlib import Path
from typing import Any


class Worker:
    """One worker process and the cell it is training (``job_id``, None while idle)."""

    def __init__(self, env: dict[str, str] | None = None):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child, dict(env or {})), name="mtlbench-worker")
        self.process.start()
        child.close()
        self.cells = 0
        self.job_id: str | None = None
        self.started = 0.0

    def submit(self, job: Any, folder: Path) -> str:
        self.cells += 1
        self.job_id = f"{self.process.pid}-{self.cells}"
        self.started = time.perf_counter()
        self._conn.send((pickle.dumps(job), str(folder), self.job_id))
        return self.job_id

    def done(self) -> bool:
        """The cell has ended: its result is written, or the worker died under it."""
        if self.job_id is None:
            return False
        try:
            ended = self._conn.poll()
        except (OSError, EOFError):
            ended = True
        if ended or not self.process.is_alive():
            if ended:
                with suppress(OSError, EOFError):
                    self._conn.recv()
            self.job_id = None
            return True
        return False

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the worker: asked when idle, killed when it is training (or does not end in time)."""
        if self.job_id is None and self.process.is_alive():
            with suppress(OSError):
                self._conn.send(None)
            self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._conn.close()


def serve(conn, env: dict[str, str]) -> None:
    """The worker's loop: (pickled job, jobs folder, job id) in; the job's files written; its outcome out."""
    os.environ.update(env)  # before anything imports torch (CUDA_VISIBLE_DEVICES)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the command's to handle: it stops the workers
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        payload, folder, job_id = message
        conn.send(run_one(payload, Path(folder), job_id))


def run_one(payload: bytes, folder: Path, job_id: str) -> str:
    files = {name: folder / f"{job_id}_0_{name}" for name in ("log.out", "log.err", "result.pkl")}
    folder.mkdir(parents=True, exist_ok=True)
    with open(files["log.out"], "w") as out, open(files["log.err"], "w") as err, \
            redirect_stdout(out), redirect_stderr(err):
        try:
            outcome = ("success", pickle.loads(payload)())
        except BaseException:  # any failure of the cell is its job's result, as submitit keeps it
            text = traceback.format_exc()
            print(text, file=err, flush=True)
            outcome = ("error", text)
    tmp = files["result.pkl"].with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(outcome))
    os.replace(tmp, files["result.pkl"])
    return outcome[0]
