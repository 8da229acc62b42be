"""Where each cell of a spec stands: ``done`` (its record, same run identity), ``diverged`` (its record says
so), ``running`` (its job is queued or running), ``failed`` (its job ended without a record; the last line of
its log says why) or ``missing`` (never submitted, or submitted for other settings). ``mtlbench status`` prints
it; rerunning ``mtlbench train --launcher ...`` leaves running cells alone and resubmits failed and missing
ones.

A job's state is read from its files (submitit's result pickle and logs) and, while it has no result, from the
process table (local jobs: the job id starts with its worker's process id) or from ``squeue`` (Slurm jobs)."""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlbench.errors import MTLBenchError
from mtlbench.launch.jobs_file import cell_key
from mtlbench.results import read_record
from mtlbench.training.run_plan import RunCell, stored_key

SLURM_ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED",
                "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED"}


@dataclass
class CellStatus:
    cell: RunCell
    state: str  # done | diverged | running | failed | missing
    job: str | None = None  # the job id of its latest submission
    detail: str = ""


def cell_statuses(cells: list[RunCell], jobs: dict[str, dict[str, Any]]) -> list[CellStatus]:
    return [cell_status(cell, jobs.get(cell_key(cell))) for cell in cells]


def with_reuse_hints(statuses: list[CellStatus]) -> list[CellStatus]:
    """A missing run that `train` would copy from the same run finished elsewhere says so (training/reuse.py)."""
    from mtlbench.training.reuse import same_run_elsewhere
    out, seen = [], {}
    for st in statuses:
        same = (same_run_elsewhere(st.cell, seen)
                if st.state == "missing" and not st.detail and not st.cell.record_path.exists() else None)
        out.append(st if same is None else CellStatus(st.cell, "missing", st.job, f"the same run finished as "
                                                      f"{same.path}: `mtlbench train` reuses it"))
    return out


def with_progress_hints(statuses: list[CellStatus]) -> list[CellStatus]:
    """A missing run that has a saved training state says how far it got: it was interrupted (or is training
    now, in another process), and `train` resumes it from there instead of starting again."""
    return [CellStatus(st.cell, st.state, st.job, saved_progress(st.cell) or st.detail)
            if st.state == "missing" and not st.detail else st for st in statuses]


def saved_progress(cell: RunCell, now: float | None = None) -> str:
    """``state saved at iteration 400 of 1000, 12 min ago: `mtlbench train` resumes it``, or "" without one."""
    from mtlbench.training.state import foreign_state, load_state_file
    path = cell.state_path
    state, why = load_state_file(path, cell.identity, mmap=True)  # what `train` would resume from
    if state is None and foreign_state(path, cell.identity, cell.key) is not None:
        return (f"{path.name} saved by a run of other settings: `mtlbench train` refuses to train over it "
                "(restore the spec, or delete it)")
    if state is None:
        return "" if not path.exists() else f"{path.name} {why}: `mtlbench train` starts this run from the beginning"
    total = (cell.spec.get("training") or {}).get("iterations")
    age = ago((now or time.time()) - path.stat().st_mtime)
    return (f"state saved at iteration {state['iteration']}{f' of {total}' if total else ''}, {age} ago: "
            f"`mtlbench train` resumes it")


def ago(seconds: float) -> str:
    minutes = max(0, round(seconds / 60))
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes / 60
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"


def cell_status(cell: RunCell, entry: dict[str, Any] | None) -> CellStatus:
    job = entry.get("job_id") if entry else None
    if cell.record_path.exists():
        try:
            record = read_record(cell.record_path)
        except MTLBenchError as e:
            return CellStatus(cell, "missing", job, str(e))
        if stored_key(record) == cell.key:
            return CellStatus(cell, "done" if record.status == "ok" else "diverged", job,
                              record.failure or "")
        other = "a record of other settings is in its place"
        if not (entry and entry.get("identity") == cell.identity):
            return CellStatus(cell, "missing", job, other)
    if not entry or entry.get("identity") != cell.identity:
        return CellStatus(cell, "missing", None, "submitted for other settings" if entry else "")
    state, detail = job_state(entry)
    if state == "ended":  # the job returned but wrote no record (the record was removed since)
        return CellStatus(cell, "missing", job, "its job ended, but there is no record")
    return CellStatus(cell, state, job, detail)


def job_files(entry: dict[str, Any]) -> dict[str, Path]:
    folder, jid = Path(entry["folder"]), entry["job_id"]
    return {"result": folder / f"{jid}_0_result.pkl", "err": folder / f"{jid}_0_log.err",
            "out": folder / f"{jid}_0_log.out"}


def job_state(entry: dict[str, Any]) -> tuple[str, str]:
    """("running" | "failed" | "ended", detail) of a submitted job."""
    files = job_files(entry)
    if files["result"].exists():
        outcome = read_result(files["result"])
        if outcome[0] == "error":
            return "failed", last_line(str(outcome[1])) or last_log_line(files)
        return "ended", ""
    active, detail = job_active(entry)
    if active:
        return "running", detail
    return "failed", last_log_line(files) or "the job ended without a result"


def read_result(path: Path) -> tuple[str, Any]:
    try:
        with open(path, "rb") as f:
            outcome = pickle.load(f)
    except Exception as e:
        return "error", f"unreadable job result {path.name} ({type(e).__name__})"
    return outcome if isinstance(outcome, tuple) and len(outcome) == 2 else ("error", "unexpected job result")


def job_active(entry: dict[str, Any]) -> tuple[bool, str]:
    if entry.get("launcher") == "local":
        return pid_alive(int(entry["job_id"].split("-")[0])), ""  # <worker pid>-<n> (or a pid, before)
    if shutil.which("squeue") is None:
        return True, "no squeue on this machine to ask"
    try:
        state = subprocess.run(["squeue", "-h", "-j", str(entry["job_id"]), "-o", "%T"], capture_output=True,
                               text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return True, "squeue did not answer"
    return state in SLURM_ACTIVE, state.lower()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def last_log_line(files: dict[str, Path]) -> str:
    for name in ("err", "out"):
        try:
            line = last_line(files[name].read_text(errors="replace"))
        except OSError:
            continue
        if line:
            return line
    return ""


def spec_statuses(resolved, seeds: list[int] | None, out_dir: Path | None) -> list[CellStatus]:
    """Every cell of a spec with its status (``mtlbench status``)."""
    from mtlbench.launch.jobs_file import read_jobs, spec_dir
    from mtlbench.training.run_plan import plan_cells
    out = Path(out_dir or resolved.spec.output.dir)
    cells = plan_cells(resolved, seeds if seeds is not None else resolved.spec.seeds, out)
    return with_progress_hints(with_reuse_hints(cell_statuses(cells, read_jobs(spec_dir(out, resolved.spec.name)))))
