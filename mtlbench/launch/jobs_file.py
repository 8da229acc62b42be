"""What was submitted for a spec: ``<output dir>/<spec name>/jobs.json``, one entry per cell (its job id, the
launcher, the folder of the job's pickles and logs, the run identity it was submitted for, what it waits for),
written atomically by the command that submits. The jobs' own files (``<job id>_0_result.pkl``,
``<job id>_0_log.out`` / ``.err``, as submitit names them; a local job's id is ``<worker pid>-<n>``, the n-th cell
of that worker) are in ``<output dir>/<spec name>/jobs/``."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from mtlbench.errors import InputError
from mtlbench.io import atomic_write_json
from mtlbench.training.run_plan import RunCell

JOBS_FILE = "jobs.json"
JOBS_DIR = "jobs"


def spec_dir(out_dir: Path, spec_name: str) -> Path:
    return Path(out_dir) / spec_name


def cell_key(cell: RunCell) -> str:
    return f"{cell.record_path.parent.name}/seed{cell.seed}"


def read_jobs(folder: Path) -> dict[str, dict[str, Any]]:
    """The cells' entries of a spec folder's jobs file ({} when there is none). A file that is not one
    mtlbench wrote is refused (InputError), not read as "no jobs": jobs it lists may still be running, and
    submitting their cells again would train them twice."""
    path = Path(folder) / JOBS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, dict) or not all(map(valid_entry, cells.values())):
        raise InputError(f"{path}: not a jobs file mtlbench wrote (hand-edited or damaged); delete it once no job "
                         "of this spec is running (`mtlbench train --launcher` writes a new one)")
    return cells


def valid_entry(entry: Any) -> bool:
    """What status and the launchers read of an entry, of the types job_entry writes."""
    return (isinstance(entry, dict) and entry.get("launcher") in ("local", "slurm")
            and all(isinstance(entry.get(k), str) for k in ("job_id", "folder", "identity"))
            and (entry["launcher"] != "local" or re.fullmatch(r"\d+(-\d+)?", entry["job_id"]) is not None))


def add_jobs(folder: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Put ``entries`` (cell key -> entry) into the jobs file, over older entries of the same cells."""
    cells = {**read_jobs(folder), **entries}
    atomic_write_json(Path(folder) / JOBS_FILE, {"cells": cells})


def job_entry(cell: RunCell, launcher: str, job_id: str, jobs_dir: Path, depends_on: list[str]) -> dict[str, Any]:
    return {"launcher": launcher, "job_id": str(job_id), "folder": str(Path(jobs_dir).absolute()),
            "identity": cell.identity, "row": cell.row, "seed": cell.seed, "depends_on": depends_on,
            "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")}
