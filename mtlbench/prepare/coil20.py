"""``mtlbench prepare coil20``: COIL-20 (Nene, Nayar & Murase 1996) as one MTAL task (Feng & Chen, Tables 4-5).

Sources: the processed set at 32x32 (``COIL20_32x32.mat``: ``X`` uint8 (1440, 1024) column-major, ``Y``
1..20), the 5-object unprocessed set (``coil20_unproc.npz``), or COIL's own folders of ``objO__P.png``
(``coil-20-proc`` / ``coil-20-unproc``). The task ``COIL-20`` classifies ``--objects`` objects (default 10),
a seeded choice recorded in the manifest; all objects when fewer exist (the unprocessed copy has 5). Images
kept at their size, uint8 (1, H, W). Split: per class 70/30 train/test, 10% of train for validation.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from mtlbench.errors import DataError, InputError
from mtlbench.prepare import ProgressFactory, no_progress
from mtlbench.prepare.common import (
    TaskArrays,
    TaskJob,
    images_nchw,
    load_mat,
    mtal_scheme,
    need,
    require,
    sources_entry,
    write_per_task,
)

PNG_NAME = re.compile(r"^obj(\d+)__(\d+)\.png$", re.IGNORECASE)
VARIANT_FILES = {"processed": "COIL20_32x32.mat", "unprocessed": "coil20_unproc.npz"}


def find_source(src: Path, variant: str) -> list[Path]:
    if src.is_file():
        return [src]
    if variant not in VARIANT_FILES:
        raise InputError(f"--variant must be processed or unprocessed (got {variant!r})")
    packed = src / VARIANT_FILES[variant]
    if packed.exists():
        return [packed]
    pngs = sorted(p for p in src.rglob("*.png") if PNG_NAME.match(p.name))
    if not pngs:
        raise InputError(f"{src}: neither {VARIANT_FILES[variant]} nor obj<O>__<P>.png images found")
    return pngs


def read_images(files: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (n, H, W) uint8, object ids, pose indices) from whichever source format."""
    f = files[0]
    if f.suffix == ".mat":
        mat = load_mat(f)
        x, y = need(mat, "X", f), need(mat, "Y", f).reshape(-1).astype(np.int64)
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1] or len(x) != len(y):
            raise DataError(f"{f}: X {x.shape} is not n square images matching Y {y.shape}")
        images = x.reshape(-1, side, side).transpose(0, 2, 1)  # the .mat stores each image column-major
        pose = np.concatenate([np.arange((y == o).sum()) for o in np.unique(y)])
        return np.ascontiguousarray(images.astype(np.uint8)), y, pose
    if f.suffix == ".npz":
        try:
            with np.load(f) as z:
                return z["images"], z["object_id"].astype(np.int64), z["pose_index"].astype(np.int64)
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"{f}: cannot read images / object_id / pose_index ({e})") from None
    from PIL import Image
    imgs, objs, poses = [], [], []
    for p in files:
        m = PNG_NAME.match(p.name)
        imgs.append(np.asarray(Image.open(p).convert("L")))
        objs.append(int(m.group(1)))
        poses.append(int(m.group(2)))
    if len({i.shape for i in imgs}) > 1:
        raise DataError(f"{files[0].parent}: COIL images differ in size")
    order = np.lexsort((poses, objs))
    return np.stack(imgs)[order], np.array(objs)[order], np.array(poses)[order]


def choose_objects(available: np.ndarray, n: int, seed: int) -> list[int]:
    if n >= len(available):
        return sorted(int(o) for o in available)
    picked = np.random.default_rng([seed, 20]).choice(available, n, replace=False)
    return sorted(int(o) for o in picked)


def prepare_coil20(src: Path, out: Path, seed: int = 0, objects: int = 10, object_seed: int = 0,
                   variant: str = "processed", test_fraction: float = 0.3, val_fraction: float = 0.1,
                   force: bool = False, progress: ProgressFactory = no_progress, command: str = "") -> Path:
    src = require(Path(src), "COIL20_32x32.mat, coil20_unproc.npz or a folder of obj<O>__<P>.png")
    files = find_source(src, variant)
    if objects < 2:
        raise InputError(f"--objects must be at least 2 (got {objects})")
    images, objs, poses = read_images(files)
    chosen = choose_objects(np.unique(objs), objects, object_seed)

    def build() -> TaskArrays:
        rows = np.flatnonzero(np.isin(objs, chosen))
        y = np.searchsorted(np.array(chosen), objs[rows])
        return TaskArrays("COIL-20", images_nchw(images[rows]), y, objs[rows] * 1000 + poses[rows],
                          [f"obj{o}" for o in chosen], scale=1 / 255,
                          extra={"objects": chosen, "objects_available": len(np.unique(objs))})

    root = src if src.is_dir() else src.parent
    sources = sources_entry(files, root, progress)
    options = {"objects": objects, "object_seed": object_seed, "variant": variant}
    meta = {"source": "COIL-20 (Nene, Nayar & Murase 1996)", "objects": chosen,
            "objects_available": len(np.unique(objs))}
    return write_per_task(Path(out), "coil20", [TaskJob("COIL-20", build)], mtal_scheme(test_fraction, val_fraction),
                          seed, sources, options, meta, command, force=force, progress=progress)
