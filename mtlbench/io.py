"""Atomic file writes: a crash or Ctrl-C never leaves a truncated record, table or checkpoint behind. JSON is
written strictly (no NaN / Infinity tokens, which are not JSON): a non-finite number is stored as null, and laid
out for reading: objects indented, a list of numbers on one line, a matrix one row per line."""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def _is_flat(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and not any(isinstance(v, (dict, list, tuple)) for v in value)


def json_key(key: Any) -> str:
    """An object key as ``json.dumps`` writes it: a string as it is, True as "true", 3 as "3"."""
    return json.dumps(key if isinstance(key, str) else json.dumps(key))


def json_text(obj: Any, indent: int = 2) -> str:
    """``json.dumps(obj, indent=indent)`` with the numbers of a list on one line and a matrix (a list of flat
    lists) one row per line. A record holding 50 x 50 matrices is then ~1,000 lines, not ~35,000, and 64% of
    the bytes (the indentation of one number per line was the rest); a diff still shows which row changed.
    ``json.loads`` reads back the same object."""
    def leaf(value: Any) -> str:
        return json.dumps(value, default=str, allow_nan=False)

    def encode(value: Any, level: int) -> str:
        pad, end = " " * (indent * (level + 1)), " " * (indent * level)
        if isinstance(value, dict):
            items = [f"{pad}{json_key(k)}: {encode(v, level + 1)}" for k, v in value.items()]
        elif isinstance(value, (list, tuple)) and not _is_flat(value):
            items = [pad + encode(v, level + 1) for v in value]  # a flat row comes back as one line
        else:
            return leaf(value)
        if not items:
            return "{}" if isinstance(value, dict) else "[]"
        brackets = "{}" if isinstance(value, dict) else "[]"
        return brackets[0] + "\n" + ",\n".join(items) + "\n" + end + brackets[1]

    return encode(obj, 0)


def float32_list(values: Any) -> list:
    """A tensor or array as nested lists of the shortest decimals that read back as the same float32 values:
    ``0.0378`` where ``.double().tolist()`` writes ``0.03780000004172325``."""
    import numpy as np
    array = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    array = array.astype(np.float32)
    shortest = np.array([float(str(v)) for v in array.ravel()], dtype=np.float64)
    return shortest.reshape(array.shape).tolist()


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json_text(finite_or_none(obj)) + "\n")


def writable_folder(path: Path, option: str = "--out") -> Path:
    """``path`` when files can be created in it (or in the nearest folder above it that exists, where it will
    be created): found by creating and removing an empty file, which also sees a read-only file system, ACLs
    and quotas that permission bits do not show. A UsageError, before any work, when it cannot."""
    from mtlbench.errors import UsageError
    here = Path(path).absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise UsageError(f"{option}: {here} is a file; expected a directory (created if missing)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mtlbench-probe-", dir=here)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"{option}: {path} cannot be written ({e.strerror or e}); choose another folder") from None
    return Path(path)


def output_folder(path: Path | None, option: str = "--out") -> Path | None:
    """``path`` when it is a directory or does not exist yet (it is created when something is written);
    a UsageError, before any work, when it names a file."""
    from mtlbench.errors import UsageError
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise UsageError(f"{option}: {path} is a file; expected a directory (created if missing)")
    return path
