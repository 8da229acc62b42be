"""Helpers for the data tests: where the shared real data live, a TFRecord/Example *writer* (independent of
the reader under test), and tiny generated per-task datasets for the shard-format tests."""
from __future__ import annotations

import re
import struct
from pathlib import Path

import crc32c
import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
YT = SHARED_DATA / "youtube8m"


def shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"real data {path} not present (clone the repo beside a copy of shared/)")
    return path


def provenance_table(folder: str, first_col_pattern: str, col: int) -> dict[str, int]:
    """{first cell: int(cell col)} for the Markdown table rows of a PROVENANCE.md whose first cell matches."""
    out = {}
    for line in (shared(folder) / "PROVENANCE.md").read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) > col and re.fullmatch(first_col_pattern, cells[0]):
            out[cells[0]] = int(cells[col].replace(",", ""))
    return out


# -- an independent TFRecord / protobuf writer (so the reader is not tested against itself) -----------------

def masked(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked(length)) + payload + struct.pack("<I", masked(payload))


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def field(num: int, wire: int, body: bytes) -> bytes:
    key = varint(num << 3 | wire)
    return key + (varint(len(body)) + body if wire == 2 else body)


def feature(value, packed: bool = True) -> bytes:
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return field(1, 2, b"".join(field(1, 2, v) for v in value))
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        raw = arr.astype("<f4")
        body = field(1, 2, raw.tobytes()) if packed else b"".join(field(1, 5, x.tobytes()) for x in raw)
        return field(2, 2, body)
    body = field(1, 2, b"".join(varint(int(v)) for v in arr)) if packed else \
        b"".join(field(1, 0, varint(int(v))) for v in arr)
    return field(3, 2, body)


def example(features: dict, packed: bool = True) -> bytes:
    entries = b"".join(field(1, 2, field(1, 2, k.encode()) + field(2, 2, feature(v, packed)))
                       for k, v in features.items())
    return field(1, 2, entries)


def video(vid: bytes, labels: list[int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return example({"id": [vid], "labels": labels, "mean_rgb": rng.normal(size=1024).astype(np.float32),
                    "mean_audio": rng.normal(size=128).astype(np.float32)})


def record_offsets(path: Path) -> list[int]:
    """Byte offset of every record, from the framing alone."""
    data, pos, out = path.read_bytes(), 0, []
    while pos < len(data):
        out.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    return out


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def link_subset(src: Path, dst: Path, names: list[str]) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        (dst / n).symlink_to(src / n)
    return dst


# -- tiny generated per-task data ------------------------------------------------------------------------

def toy_jobs(n_tasks: int = 3, per_class: int = 20, n_classes: int = 3, side: int = 8, seed: int = 0):
    from mtlbench.prepare.common import TaskArrays, TaskJob

    def job(t: int):
        def build():
            rng = np.random.default_rng([seed, t])
            n = per_class * n_classes
            x = rng.integers(0, 256, size=(n, 1, side + t, side), dtype=np.uint8)  # sizes differ by task
            y = np.repeat(np.arange(n_classes), per_class)
            return TaskArrays(f"T{t}", x, y, np.arange(n) + 1000 * t, [f"c{c}" for c in range(n_classes)],
                              scale=1 / 255)
        return TaskJob(f"T{t}", build)
    return [job(t) for t in range(n_tasks)]


def write_toy(out: Path, seed: int = 0, force: bool = False, n_tasks: int = 3, **kw) -> Path:
    from mtlbench.prepare.common import mtal_scheme, write_per_task
    sources = {"tree_sha256": "toy", "n_files": 0}
    return write_per_task(out, "image_folder", toy_jobs(n_tasks, **kw), mtal_scheme(0.3, 0.1), seed, sources, {},
                          {"source": "toy"}, "toy", force=force)


EXPECTED = Path(__file__).resolve().parents[1] / "data_prep"


def expected(name: str) -> dict:
    import yaml
    return yaml.safe_load((EXPECTED / f"{name}.yaml").read_text())


def assert_matches_expected(manifest: dict, name: str) -> None:
    """A prepared manifest against data_prep/<name>.yaml (tasks, counts, split sizes, source checksums)."""
    want = expected(name)
    assert manifest["dataset"] == want["dataset"]
    got_tasks = [{"name": t["name"], "classes": t["n_classes"], "examples": t["n_examples"],
                  "input_shape": t["input_shape"], **{k: t["counts"]["default"][k] for k in ("train", "val", "test")}}
                 for t in manifest["tasks"]]
    assert got_tasks == want["tasks"]
    assert {k: v["sizes"] for k, v in manifest["split"]["schemes"].items()} == want["split_sizes"]
    assert {f["file"]: f["sha256"] for f in manifest["sources"]["files"]} == want["sources_sha256"]
