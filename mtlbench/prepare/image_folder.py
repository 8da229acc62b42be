"""``mtlbench prepare image-folder``: any image set laid out as ``<src>/<task>/<class>/<image>`` -- a folder
per task, a sub-folder per class. This is how a user brings Office-Home (``OfficeHomeDataset/Art/<class>``:
``--task Art``, MTAL Tables 4-5) or any other collection.

Images are stored uint8 (n, C, H, W). Within a task all images must share a size unless ``--size`` resizes
them (tasks may differ from each other). Channels: ``--mode L`` (grey), ``RGB``, or ``auto`` (grey when every
image of the task is grey, else RGB). Split: per class 70/30 train/test with 10% of train for validation
(MTAL's protocol), seeded; the fractions are options.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlbench.errors import DataError, InputError
from mtlbench.prepare import ProgressFactory, no_progress
from mtlbench.prepare.common import TaskArrays, TaskJob, mtal_scheme, require, sources_entry, write_per_task

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
GREY_MODES = {"1", "L", "I", "I;16", "F"}


def parse_size(size: str | None) -> tuple[int, int] | None:
    """``"64"`` -> (64, 64); ``"48x64"`` -> (48, 64) as (height, width)."""
    if not size:
        return None
    try:
        parts = [int(p) for p in size.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise InputError(f"--size must be N or HxW with positive integers (got {size!r})")
    return (parts[0], parts[-1])


def scan(src: Path, tasks: list[str] | None) -> dict[str, dict[str, list[Path]]]:
    """task -> class -> sorted image paths."""
    found = sorted(p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    chosen = tasks or found
    missing = [t for t in chosen if t not in found]
    if missing:
        raise InputError(f"{src}: no task folder {', '.join(missing)} (found: {', '.join(found) or 'none'})")
    layout: dict[str, dict[str, list[Path]]] = {}
    for task in chosen:
        classes = sorted(p for p in (src / task).iterdir() if p.is_dir() and not p.name.startswith("."))
        layout[task] = {c.name: sorted(f for f in c.rglob("*") if f.suffix.lower() in EXTENSIONS and f.is_file())
                        for c in classes}
        empty = [c for c, fs in layout[task].items() if not fs]
        if len(layout[task]) < 2 or empty:
            raise InputError(f"{src / task}: needs at least 2 class sub-folders, each with images "
                            f"(empty: {', '.join(empty) or 'none'}; found {len(layout[task])} classes)")
    return layout


def open_image(path: Path):
    from PIL import Image, UnidentifiedImageError
    try:
        return Image.open(path)
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None


def read_task(task: str, classes: dict[str, list[Path]], size: tuple[int, int] | None, mode: str) -> TaskArrays:
    """Two passes: headers first (mode and size, cheap), then pixels one image at a time."""
    from PIL import Image
    files = [f for fs in classes.values() for f in fs]
    labels = np.repeat(np.arange(len(classes)), [len(fs) for fs in classes.values()])
    headers = []
    for f in files:
        with open_image(f) as img:
            headers.append((img.mode, img.size))
    if mode == "auto":
        mode = "L" if all(m in GREY_MODES for m, _ in headers) else "RGB"
    sizes = {s for _, s in headers}
    if size is None and len(sizes) > 1:
        eg = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:3])
        raise DataError(f"task {task}: images have {len(sizes)} different sizes (e.g. {eg}); "
                        f"pass --size N or --size HxW to resize them")
    h, w = size if size else (next(iter(sizes))[1], next(iter(sizes))[0])
    x = np.empty((len(files), 1 if mode == "L" else 3, h, w), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with open_image(f) as img:
                img = img.convert(mode)
                if img.size != (w, h):
                    img = img.resize((w, h), Image.BILINEAR)
                arr = np.asarray(img)
        except OSError as e:
            raise DataError(f"{f}: not a readable image ({e})") from None
        x[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return TaskArrays(task, x, labels, np.arange(len(files)), list(classes), scale=1 / 255,
                      extra={"mode": mode})


def prepare_image_folder(src: Path, out: Path, tasks: list[str] | None = None, size: str | None = None,
                         mode: str = "auto", seed: int = 0, test_fraction: float = 0.3, val_fraction: float = 0.1,
                         force: bool = False, progress: ProgressFactory = no_progress, command: str = "") -> Path:
    src = require(Path(src), "a folder with one sub-folder per task and one sub-sub-folder per class")
    if mode not in ("auto", "L", "RGB"):
        raise InputError(f"--mode must be auto, L or RGB (got {mode!r})")
    hw = parse_size(size)
    layout = scan(src, tasks)
    files = [f for classes in layout.values() for fs in classes.values() for f in fs]
    sources = sources_entry(files, src, progress)
    jobs = [TaskJob(t, lambda t=t: read_task(t, layout[t], hw, mode)) for t in layout]
    options = {"tasks": list(layout), "size": list(hw) if hw else None, "mode": mode}
    meta = {"source": f"image folder {src.resolve()}", "tasks": list(layout)}
    return write_per_task(Path(out), "image_folder", jobs, mtal_scheme(test_fraction, val_fraction), seed,
                          sources, options, meta, command, force=force, progress=progress)
