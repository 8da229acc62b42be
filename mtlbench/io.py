"""Atomic file writes: a crash or Ctrl-C never leaves a truncated record, table or checkpoint behind. JSON is
written strictly (no NaN / Infinity tokens, which are not JSON): a non-finite number is stored as null."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, +-inf) replaced by None, through dicts, lists and tuples."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(finite_or_none(obj), indent=2, sort_keys=False, default=str, allow_nan=False)
    atomic_write_text(path, text + "\n")


def output_folder(path: Path | None, option: str = "--out") -> Path | None:
    """``path`` when it is a directory or does not exist yet (it is created when something is written);
    a UsageError, before any work, when it names a file."""
    from mtlbench.errors import UsageError
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise UsageError(f"{option}: {path} is a file; expected a directory (created if missing)")
    return path
