"""Task splits over stored arrays: compact in-memory tensors converted per batch, and lazy HDF5 rows; and
``read_arrays``, whole datasets read from a shard.

Both keep the ``TaskSplit.batch(rows)`` interface the trainer uses, so a method never knows whether its
examples sit in memory or on disk. Images are held as uint8 (a quarter of float32's memory: Omniglot's
32,460 105x105 drawings take 358 MB instead of 1.4 GB) and become float32 only one batch at a time.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from mtlbench.errors import DataError
from mtlbench.store.dataset import TaskSplit

STREAM_CACHE_BYTES = 64 << 20  # per open shard: a few dozen decompressed chunks stay hot between batches


@dataclass
class ScaledTaskSplit(TaskSplit):
    """``x`` holds stored values (uint8 pixels, or a lazy ``H5Rows``); ``batch`` returns float32 ``x * scale``.

    Use ``batch`` (not ``x``) to read inputs: ``x`` is the storage, not the model's input."""

    scale: float = 1.0

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        src = rows if self.index is None else self.index[rows]
        x = self.x[src]
        x = x.to(torch.float32) if x.dtype != torch.float32 else x
        return (x.mul_(self.scale) if self.scale != 1.0 else x), self.y[rows]


class H5Rows:
    """Rows of one dataset name across several HDF5 shards (concatenated in order), read on demand.

    Indexing with a tensor of row numbers reads just those rows (each shard once, in increasing order, as
    HDF5 wants) and returns a tensor in the order asked. Files are opened on first use, so an instance can be
    created in one process and used in a forked worker."""

    def __init__(self, files: list[Path], name: str):
        self.files, self.name = [Path(f) for f in files], name
        self._handles: list[h5py.Dataset] | None = None
        sizes, shapes, dtypes = [], set(), set()
        for f in self.files:
            with h5py.File(f, "r") as h5:
                ds = h5[name]
                sizes.append(ds.shape[0])
                shapes.add(ds.shape[1:])
                dtypes.add(ds.dtype)
        if len(shapes) > 1 or len(dtypes) > 1:
            raise DataError(f"{self.files[0].parent}: shards disagree on the shape or type of {name!r}")
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.row_shape: tuple[int, ...] = shapes.pop() if shapes else ()
        self.dtype = dtypes.pop() if dtypes else np.dtype(np.float32)

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.offsets[-1]), *self.row_shape)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _datasets(self) -> list[h5py.Dataset]:
        if self._handles is None:
            self._handles = [h5py.File(f, "r", rdcc_nbytes=STREAM_CACHE_BYTES)[self.name] for f in self.files]
        return self._handles

    def __getitem__(self, rows: torch.Tensor | np.ndarray) -> torch.Tensor:
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        uniq, inverse = np.unique(idx, return_inverse=True)
        out = np.empty((len(uniq), *self.row_shape), dtype=self.dtype)
        shard_of = np.searchsorted(self.offsets, uniq, side="right") - 1
        datasets = self._datasets()
        for s in np.unique(shard_of):
            mask = shard_of == s
            local = uniq[mask] - self.offsets[s]
            try:
                out[mask] = datasets[s][local] if len(local) > 1 else datasets[s][int(local[0])][None]
            except (OSError, ValueError) as e:
                raise DataError(f"{self.files[s]}: dataset {self.name!r} cannot be read: corrupt shard "
                                f"({str(e).splitlines()[0]}); re-run prepare with --force") from None
        return torch.from_numpy(out[inverse.reshape(-1)])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = None  # open handles do not pickle; reopen in the receiving process
        return state


def read_arrays(file: Path, names: list[str] | None = None,
                into: dict[str, Callable[[h5py.Dataset], np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """Read whole datasets from a shard; a failed fletcher32 check or a damaged file becomes a DataError
    naming the shard and the dataset."""
    out: dict[str, np.ndarray] = {}
    current = "(file header)"
    try:
        with h5py.File(file, "r") as h5:
            for current in names or list(h5.keys()):
                ds = h5[current]
                out[current] = into[current](ds) if into and current in into else ds[()]
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise DataError(f"{file}: dataset {current!r} cannot be read: corrupt shard ({first_line(e)}); "
                        f"re-run prepare with --force") from None
    return out


def first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
