"""What was submitted for a spec: ``<output dir>/<spec name>/jobs.json``, one entry per cell (its job id, the
launcher, the folder of the job's pickles and logs, the run identity it was submitted for, what it waits for),
written atomically by the command that submits. The jobs' own files (submitit's: ``<job id>_submitted.pkl``,
``<job id>_0_result.pkl``, ``<job id>_0_log.out`` / ``.err``) are in ``<output dir>/<spec name>/jobs/``."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mtlbench.io import atomic_write_json
from mtlbench.training.plan import RunCell

JOBS_FILE = "jobs.json"
JOBS_DIR = "jobs"


def spec_dir(out_dir: Path, spec_name: str) -> Path:
    return Path(out_dir) / spec_name


def cell_key(cell: RunCell) -> str:
    return f"{cell.record_path.parent.name}/seed{cell.seed}"


def read_jobs(folder: Path) -> dict[str, dict[str, Any]]:
    """The cells' entries of a spec folder's jobs file ({} when there is none or it is unreadable)."""
    try:
        data = json.loads((Path(folder) / JOBS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    cells = data.get("cells") if isinstance(data, dict) else None
    return cells if isinstance(cells, dict) else {}


def add_jobs(folder: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Put ``entries`` (cell key -> entry) into the jobs file, over older entries of the same cells."""
    cells = {**read_jobs(folder), **entries}
    atomic_write_json(Path(folder) / JOBS_FILE, {"cells": cells})


def job_entry(cell: RunCell, launcher: str, job_id: str, jobs_dir: Path, depends_on: list[str]) -> dict[str, Any]:
    return {"launcher": launcher, "job_id": str(job_id), "folder": str(Path(jobs_dir).absolute()),
            "identity": cell.identity, "row": cell.row, "seed": cell.seed, "depends_on": depends_on,
            "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")}
