"""``mtlbench prepare youtube8m``: video-level TFRecords + ``vocabulary.csv`` -> a shared-input prepared dataset.

TAAN (Liu et al., AAAI 2020, Table 1) turns YouTube-8M into 16 tasks, one per top-level vertical
(``Vertical1`` of the vocabulary), in the fixed order of ``VERTICALS``; a task's classes are its vertical's
labels renumbered in vocabulary-index order, and its examples the videos carrying at least one of them.
Each video is stored once (input = concat(mean_rgb, mean_audio), 1152 floats) with its full label list; the
loader derives every task's rows and targets from the label lists and the manifest's label spaces.

Shards: ``videos-NNN.h5`` (``x``, ``id``, ``label_ptr``/``label_idx`` (CSR label lists), ``partition``,
``source_file``, ``record``), one per group of input files (so a resumed run skips whole groups), and
``split.h5`` with the seeded split of all videos.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from mtlbench import __version__
from mtlbench.data.youtube8m import read_video_meta
from mtlbench.errors import DataError, InputError
from mtlbench.prepare import ProgressFactory, no_progress
from mtlbench.prepare.common import require, sources_entry, split_counts
from mtlbench.store.shards import FORMAT_VERSION, PreparedWriter
from mtlbench.store.splits import by_key_split, partition_split
from mtlbench.store.tfrecord import iter_examples

VERTICALS = ("Arts & Entertainment", "Games", "Autos & Vehicles", "Sports", "Food & Drink",
             "Computers & Electronics", "Business & Industrial", "Pets & Animals", "Hobbies & Leisure",
             "Beauty & Fitness", "Shopping", "Internet & Telecom", "Home & Garden", "Science", "Travel",
             "Law & Government")
RGB_DIM, AUDIO_DIM = 1024, 128
GROUP_BYTES = 32 << 20  # input bytes per output shard (~25 of the 1.3 MB validate shards)
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
PARTITIONS = {"train": 0, "validate": 1}


def read_vocabulary(path: Path) -> list[tuple[int, str, str]]:
    """(index, name, Vertical1) for every row of vocabulary.csv (or vocabulary_compact.csv)."""
    require(path, "the YouTube-8M vocabulary.csv")
    if path.is_dir():
        raise InputError(f"{path} is a directory (expected the YouTube-8M vocabulary.csv)")
    try:
        rows = vocabulary_rows(path)
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: not a YouTube-8M vocabulary ({e})") from None
    rows.sort()
    if [r[0] for r in rows] != list(range(len(rows))):
        raise InputError(f"{path}: vocabulary indices are not 0..{len(rows) - 1} without gaps")
    return rows


def vocabulary_rows(path: Path) -> list[tuple[int, str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"Index", "Name", "Vertical1"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{path}: not a YouTube-8M vocabulary (no column {', '.join(sorted(missing))})")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append((int(row["Index"]), row["Name"], row["Vertical1"]))
            except (TypeError, ValueError):
                raise InputError(f"{path}:{line}: Index {row.get('Index')!r} is not an integer") from None
    return rows


def label_spaces(vocab: list[tuple[int, str, str]], path: Path | str = "vocabulary") -> list[list[int]]:
    """Per task (VERTICALS order): the vocabulary indices of its classes, in index order. A vertical without
    labels is a vocabulary of another kind, refused before any TFRecord is read."""
    spaces = [[i for i, _, v in vocab if v == vertical] for vertical in VERTICALS]
    for vertical, space in zip(VERTICALS, spaces):
        if not space:
            raise InputError(f"{path}: no label with Vertical1 = {vertical!r} (a task of TAAN's Table 1); "
                             "expected the YouTube-8M vocabulary.csv")
    return spaces


def find_tfrecords(srcs: list[Path]) -> tuple[list[Path], Path]:
    """Every *.tfrecord under the given folders (or the files themselves), and their common folder."""
    files: list[Path] = []
    for src in srcs:
        require(src, "a directory of YouTube-8M video-level .tfrecord files")
        found = [src] if src.is_file() else sorted(p for p in src.rglob("*.tfrecord") if p.is_file())
        if not found:
            raise InputError(f"{src}: no *.tfrecord files found")
        files += found
    if len({f.resolve() for f in files}) != len(files):
        raise InputError("the same .tfrecord file is reachable twice through --src")
    return files, Path(os.path.commonpath([f.parent for f in files]))


def partition_of(path: Path) -> str:
    """train / validate from the file name (trainNNNN.tfrecord, validateNNNN.tfrecord) or, failing that,
    from its folder's name; 'other' when neither says."""
    for name in (path.name.lower(), path.parent.name.lower()):
        if name.startswith("train"):
            return "train"
        if name.startswith("valid"):
            return "validate"
        if name.startswith("test"):
            raise InputError(f"{path}: test-partition shards carry no labels; leave them out of --src")
    return "other"


def resolve_split(mode: str, files: list[Path]) -> str:
    parts = {partition_of(f) for f in files}
    if mode == "auto":
        return "paper" if {"train", "validate"} <= parts else "by-id"
    if mode == "paper" and not {"train", "validate"} <= parts:
        raise InputError("--split paper needs train*.tfrecord and validate*.tfrecord files under --src "
                        f"(found partitions: {', '.join(sorted(parts))})")
    if mode not in ("paper", "by-id"):
        raise InputError(f"--split must be auto, by-id or paper (got {mode!r})")
    return mode


def group_files(files: list[Path]) -> list[list[int]]:
    """Consecutive input files grouped into ~GROUP_BYTES per output shard (indices into ``files``)."""
    groups: list[list[int]] = [[]]
    size = 0
    for i, f in enumerate(files):
        if groups[-1] and size >= GROUP_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += f.stat().st_size
    return groups


def _feature(ex: dict, name: str, kind: str, where: str, length: int | None = None):
    if name not in ex:
        raise DataError(f"{where}: no {name!r} feature (expected a video-level YouTube-8M record)")
    got_kind, values = ex[name]
    if got_kind != kind:
        raise DataError(f"{where}: feature {name!r} is a {got_kind}, expected {kind}")
    if length is not None and len(values) != length:
        raise DataError(f"{where}: feature {name!r} has {len(values)} values, expected {length}")
    return values


def read_group(files: list[Path], indices: list[int], n_vocab: int, advance) -> dict[str, np.ndarray]:
    """Every video of some input files -> the arrays of one output shard (CRCs checked per record)."""
    xs, ids, labels, ptr, part, src, rec = [], [], [], [0], [], [], []
    for fi in indices:
        partition = PARTITIONS.get(partition_of(files[fi]), 1)
        for r, offset, ex in iter_examples(files[fi]):
            where = f"{files[fi]}: record {r} at byte offset {offset}"
            vid = _feature(ex, "id", "bytes_list", where, 1)[0]
            lab = _feature(ex, "labels", "int64_list", where)
            if len(lab) and (lab.min() < 0 or lab.max() >= n_vocab):
                raise DataError(f"{where}: label {int(lab.max())} is outside the vocabulary (0..{n_vocab - 1})")
            xs.append(np.concatenate([_feature(ex, "mean_rgb", "float_list", where, RGB_DIM),
                                      _feature(ex, "mean_audio", "float_list", where, AUDIO_DIM)]))
            ids.append(vid)
            labels.append(lab)
            ptr.append(ptr[-1] + len(lab))
            part.append(partition)
            src.append(fi)
            rec.append(r)
        advance(1)
    width = max((len(i) for i in ids), default=1)
    return {"x": np.stack(xs).astype(np.float32) if xs else np.zeros((0, RGB_DIM + AUDIO_DIM), np.float32),
            "id": np.array(ids, dtype=f"S{width}"), "label_ptr": np.array(ptr, dtype=np.int64),
            "label_idx": (np.concatenate(labels) if labels else np.zeros(0)).astype(np.int32),
            "partition": np.array(part, dtype=np.int8), "source_file": np.array(src, dtype=np.int32),
            "record": np.array(rec, dtype=np.int32)}


def task_membership(label_ptr: np.ndarray, label_idx: np.ndarray, spaces: list[list[int]],
                    n_vocab: int) -> np.ndarray:
    """Boolean [videos, tasks]: does the video carry a label of the task's vertical?"""
    task_of = np.full(n_vocab, -1, dtype=np.int64)
    for t, space in enumerate(spaces):
        task_of[space] = t
    rows = np.repeat(np.arange(len(label_ptr) - 1), np.diff(label_ptr))
    t = task_of[label_idx]
    member = np.zeros((len(label_ptr) - 1, len(spaces)), dtype=bool)
    member[rows[t >= 0], t[t >= 0]] = True
    return member


def prepare_youtube8m(src: Path | list[Path], vocabulary: Path, out: Path, seed: int = 0, split: str = "auto",
                      force: bool = False, progress: ProgressFactory = no_progress, command: str = "") -> Path:
    """``src``: one or more folders (or files); the official train and validate partitions may sit in
    separate folders -- a file's partition comes from its name (train*, validate*) or its folder's name."""
    srcs = [Path(s) for s in (src if isinstance(src, (list, tuple)) else [src])]
    vocabulary, out = Path(vocabulary), Path(out)
    vocab = read_vocabulary(vocabulary)
    spaces = label_spaces(vocab, vocabulary)
    files, root = find_tfrecords(srcs)
    split = resolve_split(split, files)
    sources = sources_entry([*files, vocabulary], root, progress)
    request = {"dataset": "youtube8m", "format_version": FORMAT_VERSION, "sources": sources["tree_sha256"],
               "seed": seed, "split": split, "group_bytes": GROUP_BYTES}
    with PreparedWriter(out, request, force=force) as writer:
        shards = write_video_shards(writer, files, root, len(vocab), progress("Reading TFRecords", len(files)))
        return finish(writer, shards, vocab, spaces, sources, seed, split, command)


def write_video_shards(writer: PreparedWriter, files: list[Path], root: Path, n_vocab: int, advance) -> list[str]:
    """One ``videos-NNN.h5`` per group of input files; groups a resumed run already has are skipped."""
    shards = []
    for g, indices in enumerate(group_files(files)):
        name = f"videos-{g:03d}.h5"
        shards.append(name)
        if writer.has(name):
            advance(len(indices))
            continue
        arrays = read_group(files, indices, n_vocab, advance)
        records = {str(files[i].relative_to(root)): int((arrays["source_file"] == i).sum()) for i in indices}
        writer.write_shard(name, arrays, info={"rows": len(arrays["x"]), "records": records})
    return shards


def split_scheme(split: str) -> dict[str, Any]:
    if split == "paper":
        return {"scheme": "partition", "params": {}, "description": "official train partition -> train; "
                "validate partition halved by video id (seeded) into val / test (TAAN's setup)"}
    return {"scheme": "by_key", "params": {"fractions": list(DEFAULT_FRACTIONS)},
            "description": "seeded 70/10/20 split by video id, the same for every task"}


def finish(writer: PreparedWriter, shards: list[str], vocab, spaces, sources, seed: int, split: str,
           command: str) -> Path:
    allv = read_video_meta([writer.partial / s for s in shards])
    scheme = split_scheme(split)
    codes = (partition_split(allv["id"], allv["partition"] == 0, seed) if split == "paper"
             else by_key_split(allv["id"], seed, DEFAULT_FRACTIONS))
    if "split.h5" not in writer.done:
        writer.write_shard("split.h5", {"split/default": codes})
    member = task_membership(allv["label_ptr"], allv["label_idx"], spaces, len(vocab))
    tasks = [{"name": VERTICALS[t], "n_classes": len(space), "class_names": [vocab[i][1] for i in space],
              "vocab_index": space, "target": "multilabel", "input_shape": [RGB_DIM + AUDIO_DIM],
              "counts": {"default": {"all": int(member[:, t].sum()), **split_counts(codes[member[:, t]])}}}
             for t, space in enumerate(spaces)]
    n = len(codes)
    records = {k: v for s in shards for k, v in writer.shard_info(s)["info"]["records"].items()}
    manifest = {"dataset": "youtube8m", "mtlbench_version": __version__, "prepare_command": command,
                "input_mode": "shared", "sources": sources, "records_per_file": records,
                "videos_read": n, "videos_in_no_task": int((~member.any(axis=1)).sum()),
                "n_vocabulary": len(vocab), "input_bytes": n * (RGB_DIM + AUDIO_DIM) * 4,
                "inputs": {"shards": shards, "rows": [writer.shard_info(s)["info"]["rows"] for s in shards],
                           "dim": RGB_DIM + AUDIO_DIM},
                "split": {"seed": seed, "file": "split.h5",
                          "schemes": {"default": {**scheme, "sizes": split_counts(codes)}}},
                "tasks": tasks, "metadata": {"source": "YouTube-8M video-level features", "split_mode": split}}
    return writer.finish(manifest, [*shards, "split.h5"])
