"""Prepared-dataset directories: HDF5 shards plus a JSON manifest, written atomically and verified on load.

Layout of a prepared directory::

    manifest.json      format version, sources (+ sha256), split (scheme, seed, sizes), tasks, shards (+ sha256,
                       crc32c)
    <shard>.h5         HDF5 (latest file format: checksummed metadata), every dataset chunked along examples,
                       gzip + shuffle, fletcher32 checksum on every chunk

Writing happens in ``<out>.partial/``: each shard is written under a temporary name and renamed when closed,
and ``progress.json`` records the finished shards (with their sha256) and the exact request. Only when every
shard is written does the manifest appear and ``<out>.partial`` become ``<out>`` by one rename, so a killed
``prepare`` never leaves a directory that loads as complete. Re-running the same request resumes from the
finished shards; a different request (other sources, seed or options) starts the partial directory afresh.

Integrity on reading, in three layers: HDF5 checks every chunk's fletcher32 and every metadata block's
checksum whenever it reads them; ``load`` checks each shard's whole-file CRC32C against the manifest (fast:
hardware CRC, ~10 ms for YouTube-8M's 115 MB); ``check_path`` (what ``validate`` runs) and
``mtlbench prepare verify`` check each shard's sha256. A shard that passed once and has not changed since is
not hashed again by ``load`` or ``check_path`` (verified.py); ``prepare verify`` always hashes. The manifest
itself is sealed (``manifest.sha256``, written last) and checked against its shards (``manifest_check.py``), so
a hand-edited manifest is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import crc32c
import h5py
import numpy as np

from mtlbench.errors import DataError, InputError
from mtlbench.store.manifest_check import check_against_shards, check_consistency, check_seal, write_seal
from mtlbench.store.rows import first_line, read_arrays
from mtlbench.store.verified import VerifiedShards

FORMAT = "mtlbench-prepared"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PROGRESS = "progress.json"
PARTIAL_SUFFIX = ".partial"
CHUNK_BYTES = 1 << 20  # ~1 MiB chunks: big enough to compress well, small enough for random row access
GZIP_LEVEL = 1  # level 1 + byte shuffle: ~3x faster to write than level 4 and within 1% of its size here


Check = Literal["size", "crc32c", "sha256"]


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def crc32c_file(path: Path, block: int = 1 << 22) -> str:
    value = 0
    with open(path, "rb") as f:
        while chunk := f.read(block):
            value = crc32c.crc32c(chunk, value)
    return f"{value:08x}"


def partial_dir(out: Path) -> Path:
    return out.with_name(out.name + PARTIAL_SUFFIX)


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def chunk_rows(shape: tuple[int, ...], itemsize: int) -> int:
    row_bytes = itemsize * int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else itemsize
    return max(1, min(max(shape[0], 1), CHUNK_BYTES // max(row_bytes, 1)))


def write_array(h5: h5py.File, name: str, arr: np.ndarray) -> None:
    """One dataset with the project's storage policy (chunked along rows, compressed, fletcher32)."""
    arr = np.asarray(arr)
    chunks = (chunk_rows(arr.shape, arr.dtype.itemsize), *arr.shape[1:]) if arr.ndim else None
    h5.create_dataset(name, data=arr, chunks=chunks, compression="gzip", compression_opts=GZIP_LEVEL,
                      shuffle=arr.ndim > 0 and arr.dtype.itemsize > 1, fletcher32=arr.ndim > 0)


class PreparedWriter:
    """Writes one prepared dataset. ``request`` identifies the job (dataset, source checksums, options): a
    partial directory left by the same request is resumed, one left by another request is discarded."""

    def __init__(self, out: Path, request: dict[str, Any], force: bool = False):
        self.out, self.request, self.force = Path(out), request, force
        self.partial = partial_dir(self.out)
        self._refuse_to_clobber()
        self._lock()
        self.done: dict[str, dict[str, Any]] = self._resume_or_restart()

    def _lock(self) -> None:
        """One writer per output: a second concurrent prepare into the same OUT is refused. A lock left by a
        dead process (or by an earlier, failed writer of this process) is taken over."""
        self.lock = self.out.with_name(self.out.name + ".lock")
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = _lock_holder(self.lock)
                if holder is not None:
                    raise DataError(f"{self.out}: another prepare (process {holder}) is writing it; wait for "
                                    f"it or remove {self.lock} if that process is gone") from None
                self.lock.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return
        raise DataError(f"{self.out}: cannot take the lock {self.lock}")

    def release(self) -> None:
        self.lock.unlink(missing_ok=True)

    def __enter__(self) -> PreparedWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.release()  # also when the prepare failed: the partial directory stays, for the next run

    def _refuse_to_clobber(self) -> None:
        refuse_to_clobber(self.out, self.force)

    def _resume_or_restart(self) -> dict[str, dict[str, Any]]:
        progress = self.partial / PROGRESS
        if progress.exists():
            try:
                state = json.loads(progress.read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("request") == self.request:
                return self._verified_shards(state.get("shards", {}))
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        write_json_atomic(progress, {"request": self.request, "shards": {}})
        return {}

    def _verified_shards(self, shards: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Keep the shards of an interrupted run whose bytes still match what was recorded."""
        kept = {}
        for name, entry in shards.items():
            p = self.partial / name
            if p.exists() and p.stat().st_size == entry["bytes"] and sha256_file(p) == entry["sha256"]:
                kept[name] = entry
        for p in self.partial.iterdir():  # half-written temporaries and unrecorded files
            if p.name != PROGRESS and p.name not in kept:
                p.unlink()
        return kept

    @property
    def resumed(self) -> int:
        return len(self.done)

    def has(self, name: str) -> bool:
        return name in self.done

    def write_shard(self, name: str, arrays: dict[str, np.ndarray], attrs: dict[str, Any] | None = None,
                    info: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write ``name`` (an .h5 file) from ``arrays``. ``info`` (e.g. the task's counts) is kept in the
        progress record, so a resumed run knows it without re-reading the shard."""
        final, tmp = self.partial / name, self.partial / (name + ".tmp")
        with h5py.File(tmp, "w", libver="latest") as h5:  # the 1.8+ format checksums its metadata
            for key, arr in arrays.items():
                write_array(h5, key, arr)
            for key, value in (attrs or {}).items():
                h5.attrs[key] = value
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        entry = {"file": name, "bytes": final.stat().st_size, "sha256": sha256_file(final),
                 "crc32c": crc32c_file(final), "info": info or {}}
        self.done[name] = entry
        write_json_atomic(self.partial / PROGRESS, {"request": self.request, "shards": self.done})
        return entry

    def shard_info(self, name: str) -> dict[str, Any]:
        return self.done[name]

    def finish(self, manifest: dict[str, Any], shard_order: list[str]) -> Path:
        """Write the manifest (listing ``shard_order`` with their checksums) and publish the directory."""
        missing = [n for n in shard_order if n not in self.done]
        if missing:
            raise DataError(f"internal error: shards {missing} were never written")
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest,
                "shards": [{k: v for k, v in self.done[n].items() if k != "info"} for n in shard_order]}
        write_json_atomic(self.partial / MANIFEST, full)
        write_seal(self.partial, MANIFEST)  # lets every reader refuse a manifest edited by hand
        (self.partial / PROGRESS).unlink()
        old = self.out.with_name(self.out.name + ".old")
        if self.out.exists():  # --force, or an empty directory the user created
            if old.exists():
                shutil.rmtree(old)
            os.replace(self.out, old)
        os.replace(self.partial, self.out)
        if old.exists():
            shutil.rmtree(old)
        self.release()
        return self.out


def refuse_to_clobber(out: Path, force: bool) -> None:
    """InputError unless ``out`` can become a prepared directory: absent, empty, or (with ``force``) one that
    mtlbench wrote. ``prepare`` checks this before reading any source, and again when it starts writing."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"{out} exists and is not a directory")
    is_ours = (out / MANIFEST).exists()
    if is_ours and not force:
        raise InputError(f"{out} already holds a prepared dataset; pass --force to rebuild it")
    if not is_ours and any(out.iterdir()):
        raise InputError(f"{out} exists, is not empty and holds no {MANIFEST}; "
                         f"choose another --out (mtlbench only replaces directories it wrote)")


def _lock_holder(lock: Path) -> int | None:
    """The pid holding ``lock`` if that process is alive and is not this one; None for a stale lock."""
    try:
        pid = int(lock.read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0 or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


# -- reading and verification ---------------------------------------------------------------------------------

def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a complete prepared dataset (structure checked), or DataError saying why not."""
    path = Path(path)
    if not path.exists():
        if partial_dir(path).exists():
            raise DataError(f"{path} does not exist; an interrupted prepare left {partial_dir(path)}: "
                            f"run the same prepare command again to finish it")
        raise DataError(f"{path} does not exist")
    if not path.is_dir():
        raise DataError(f"{path} is not a directory (expected a prepared dataset directory)")
    mf = path / MANIFEST
    if not mf.exists():
        raise DataError(f"{path} has no {MANIFEST}: not a complete prepared dataset")
    try:
        manifest = json.loads(mf.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{mf}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{mf}: not an mtlbench manifest (no \"format\": \"{FORMAT}\")")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{mf}: format version {manifest.get('format_version')} is not {FORMAT_VERSION}, "
                        f"the one this mtlbench reads; re-run prepare")
    for key in ("dataset", "tasks", "shards", "split", "input_mode"):
        if key not in manifest:
            raise DataError(f"{mf}: manifest lacks the {key!r} entry")
    for i, entry in enumerate(manifest["shards"]):
        missing = [k for k in ("file", "bytes", "sha256", "crc32c") if k not in entry]
        if missing:
            raise DataError(f"{mf}: shard entry {i} lacks {', '.join(missing)}; re-run prepare with --force")
    check_seal(path, MANIFEST)
    check_consistency(mf, manifest)
    return manifest


def verify_shards(path: Path, manifest: dict[str, Any], check: Check = "sha256", remember: bool = True) -> None:
    """Every shard the manifest lists exists with its recorded size and (``check``) CRC32C or sha256. With
    ``remember``, a shard whose checksum already passed and that has not changed since is not hashed again
    (verified.py says how that is known)."""
    memory = VerifiedShards.of(Path(path), MANIFEST) if remember and check != "size" else None
    try:
        for entry in manifest["shards"]:
            p = Path(path) / entry["file"]
            if not p.exists():
                raise DataError(f"{p}: shard listed in the manifest is missing; re-run prepare with --force")
            if p.stat().st_size != entry["bytes"]:
                raise DataError(f"{p}: shard is {p.stat().st_size} bytes, the manifest says {entry['bytes']} "
                                f"(truncated or replaced); re-run prepare with --force")
            if check == "size" or (memory is not None and memory.passed(p, check)):
                continue
            if check == "sha256" and sha256_file(p) != entry["sha256"]:
                raise DataError(f"{p}: shard sha256 does not match the manifest (corrupt); re-run prepare with --force")
            if check == "crc32c" and crc32c_file(p) != entry["crc32c"]:
                raise DataError(f"{p}: shard CRC32C does not match the manifest (corrupt); re-run prepare with --force")
            if memory is not None:
                memory.add(p, check)
    finally:  # what passed before a failure is remembered too
        if memory is not None:
            memory.save()


def start_verification(path: Path, manifest: dict[str, Any], check: Check) -> Callable[[], None]:
    """Check every shard's checksum in a background thread (hashing releases the GIL, so this overlaps with
    decompressing the shards); call the returned function before handing out any data -- it raises the
    DataError, if any."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtlbench-verify")
    future = pool.submit(verify_shards, path, manifest, check)
    pool.shutdown(wait=False)
    return future.result


@contextmanager
def verifying(folders: list[tuple[Path, dict[str, Any]]], check: Check | Literal["none"]) -> Iterator[None]:
    """Run the body (reading the shards) while their checksums are verified in the background; a checksum
    mismatch is reported in preference to the read error it explains."""
    checks = [start_verification(path, m, check) for path, m in folders] if check != "none" else []
    try:
        yield
    except DataError:
        for check in checks:
            check()
        raise
    for check in checks:
        check()


def open_prepared(path: Path, dataset: str | tuple[str, ...], check: Check = "sha256") -> dict[str, Any]:
    """Read and verify a prepared dataset of kind ``dataset``; returns the manifest. With ``check="size"``
    only the presence and sizes of the shards are checked (``verifying`` then checks their contents)."""
    manifest = read_manifest(path)
    kinds = (dataset,) if isinstance(dataset, str) else dataset
    if manifest["dataset"] not in kinds:
        raise DataError(f"{path} holds a prepared {manifest['dataset']!r} dataset, not {' or '.join(kinds)}")
    verify_shards(path, manifest, check)
    if check == "sha256":  # the thorough check (validate): the manifest's tasks against their shards too
        check_against_shards(Path(path), manifest, Path(path) / MANIFEST)
    return manifest


def verify_prepared(path: Path) -> dict[str, Any]:
    """The most thorough check: manifest, sha256 of every shard, and every dataset of every shard read in
    full (so HDF5 verifies each chunk's fletcher32). Returns the manifest."""
    manifest = read_manifest(Path(path))
    verify_shards(Path(path), manifest, "sha256", remember=False)
    check_against_shards(Path(path), manifest, Path(path) / MANIFEST)
    for entry in manifest["shards"]:
        file = Path(path) / entry["file"]
        try:
            with h5py.File(file, "r") as h5:
                names = dataset_names(h5)
        except OSError as e:
            raise DataError(f"{file}: not a readable HDF5 file ({first_line(e)})") from None
        read_arrays(file, names)
    return manifest


def dataset_names(h5: h5py.Group) -> list[str]:
    names: list[str] = []
    h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def check_prepared(path: Path, dataset: str | tuple[str, ...]) -> str | None:
    try:
        open_prepared(Path(path), dataset, "sha256")
    except DataError as e:
        return str(e)
    return None
