"""A memory of shards already checksummed, so that many jobs reading one prepared directory hash it once.

Every job of a grid (60 for TAAN Table 1 at five seeds) opens the same prepared directory; hashing its shards
(sha256 at validation, CRC32C while loading) would cost each job the same seconds. After a shard's checksum
matches the manifest, its *stamp* -- size, modification time, inode change time and inode number -- is
recorded with the check that passed, keyed by the sha256 of ``manifest.json``. The next job skips hashing a
shard whose stamp is unchanged under the same manifest (a sha256 pass also answers a CRC32C request); any
change of the stamp (a rewrite, a ``touch``, a copy, a chmod) or of the manifest makes it hash again. HDF5's
own per-chunk checksums are verified on every read in any case, so damage that keeps a file's stamp
(bit rot on disk) still stops a job when it reads the damaged chunk.

Where the memory lives: ``<prepared dir>/.mtlbench-verified.json`` when the directory is writable, so every
node of a cluster sharing the directory benefits; otherwise (a read-only data directory) a file in the user's
cache directory -- ``$MTLBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/mtlbench``, else ``~/.cache/mtlbench`` --
named by a hash of the directory's absolute path. Written atomically; a cache that cannot be read or written
is ignored (the shards are then hashed as before), never an error. ``mtlbench prepare verify`` always hashes.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from mtlbench.io import atomic_write_json

CACHE_NAME = ".mtlbench-verified.json"
CACHE_FORMAT = 1
STRENGTH = {"crc32c": 1, "sha256": 2}  # a check answers any request of equal or lower strength


def stamp(file: Path) -> list[int]:
    st = file.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def user_cache_dir() -> Path:
    if os.environ.get("MTLBENCH_CACHE_DIR"):
        return Path(os.environ["MTLBENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mtlbench"


def cache_locations(folder: Path) -> list[Path]:
    """Beside the data first, then the user's cache directory."""
    folder = Path(folder).absolute()
    key = hashlib.sha256(str(folder).encode()).hexdigest()[:24]
    return [folder / CACHE_NAME, user_cache_dir() / "verified" / f"{key}.json"]


class VerifiedShards:
    """The verification memory of one prepared directory under its current manifest."""

    def __init__(self, folder: Path, manifest_sha256: str):
        self.folder, self.manifest_sha256 = Path(folder), manifest_sha256
        self.entries: dict[str, dict[str, Any]] = {}
        self.changed = False
        for where in cache_locations(folder):
            stored = read_cache(where)
            if stored.get("format") == CACHE_FORMAT and stored.get("manifest_sha256") == manifest_sha256:
                self.entries = dict(stored.get("shards") or {})
                break

    @classmethod
    def of(cls, folder: Path, manifest_file: str) -> VerifiedShards | None:
        try:
            digest = hashlib.sha256((Path(folder) / manifest_file).read_bytes()).hexdigest()
        except OSError:
            return None
        return cls(folder, digest)

    def passed(self, file: Path, check: str) -> bool:
        """True when ``file`` passed ``check`` (or a stronger one) and has not changed since."""
        entry = self.entries.get(file.name)
        try:
            return (isinstance(entry, dict) and entry.get("stamp") == stamp(file)
                    and STRENGTH.get(entry.get("check"), 0) >= STRENGTH[check])
        except OSError:
            return False

    def add(self, file: Path, check: str) -> None:
        if self.passed(file, check) and self.entries[file.name]["check"] != check:
            return  # keep the stronger check already on record
        self.entries[file.name] = {"stamp": stamp(file), "check": check}
        self.changed = True

    def save(self) -> Path | None:
        """Write the memory to the first location that accepts it; None when none does."""
        if not self.changed:
            return None
        payload = {"format": CACHE_FORMAT, "manifest_sha256": self.manifest_sha256, "shards": self.entries}
        for where in cache_locations(self.folder):
            try:
                atomic_write_json(where, payload)
                return where
            except OSError:
                continue
        return None


def read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
