"""``mtlbench prepare omniglot``: the 50 Omniglot alphabets as 50 classification tasks (TAAN Table 3).

Reads either the npz pair (``images_background.npz`` + ``images_evaluation.npz`` + ``alphabets.csv``: per
alphabet, its background/evaluation set and first and last global character id) or Omniglot's original layout
``images_{background,evaluation}/<Alphabet>/characterNN/XXXX_YY.png`` (folders, or the official
``images_*.zip`` files), where ``XXXX`` is the global character id and ``YY`` the drawing number. Either
source gives the same tasks: alphabets ordered by their first character id, classes by character id,
drawings by number; stored as uint8 with ink = 1, background = 0, shape (1, 105, 105).

Splits: ``default`` = per character, seeded, 20 drawings -> 14 train / 2 val / 4 test; ``paper_faithful`` =
each drawing to train with p = 0.9 (TAAN's code, unseeded there, seeded here), the rest to test, and model
selection on test (``val_is_test``), labelled so tables can footnote it.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mtlbench.errors import DataError, InputError
from mtlbench.prepare import ProgressFactory, no_progress
from mtlbench.prepare.common import TaskArrays, TaskJob, require, sources_entry, write_per_task

SIDE = 105
SETS = ("background", "evaluation")
FIRST_ID = {"background": 1, "evaluation": 965}  # global character id of row 0 of each npz
SCHEMES = {
    "default": {"scheme": "per_group_count", "params": {"counts": [14, 2, 4]},
                "description": "per character, seeded: 14 train / 2 val / 4 test drawings"},
    "paper_faithful": {"scheme": "bernoulli", "params": {"p_train": 0.9}, "val_is_test": True,
                       "description": "each drawing to train with p = 0.9, else test; selection on test "
                                      "(as the TAAN code did)"},
}
PNG_NAME = re.compile(r"^(\d+)_(\d+)\.png$")


def prepare_omniglot(src: Path, out: Path, seed: int = 0, force: bool = False,
                     progress: ProgressFactory = no_progress, command: str = "") -> Path:
    src = require(Path(src), "the Omniglot npz pair or Omniglot's images_background / images_evaluation")
    if (src / "images_background.npz").exists() or (src / "images_evaluation.npz").exists():
        jobs, files, layout = npz_jobs(src)
    else:
        jobs, files, layout = png_jobs(src)
    sources = sources_entry(files, src, progress)
    meta = {"source": "Omniglot (Lake et al., Science 2015)", "layout": layout, "ink": 1}
    return write_per_task(Path(out), "omniglot", jobs, SCHEMES, seed, sources, {"layout": layout}, meta,
                          command, force=force, progress=progress)


# -- the npz pair ----------------------------------------------------------------------------------------------

def read_alphabets(path: Path) -> list[dict]:
    require(path, "alphabets.csv (character-id range per alphabet)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    try:
        return sorted(({"set": r["set"], "name": r["alphabet"], "first": int(r["first_char_id"]),
                        "last": int(r["last_char_id"])} for r in rows), key=lambda a: a["first"])
    except (KeyError, ValueError) as e:
        raise DataError(f"{path}: expected columns set, alphabet, first_char_id, last_char_id ({e})") from None


def npz_jobs(src: Path) -> tuple[list[TaskJob], list[Path], str]:
    alphabets = read_alphabets(src / "alphabets.csv")
    files = [src / f"images_{s}.npz" for s in SETS]
    for f in files:
        require(f, "both Omniglot npz files (images_background.npz, images_evaluation.npz)")
    cache: dict[str, np.ndarray] = {}

    def images(which: str) -> np.ndarray:
        if which not in cache:
            try:
                cache[which] = np.load(src / f"images_{which}.npz")["images"]
            except (OSError, KeyError, ValueError) as e:
                raise DataError(f"{src / f'images_{which}.npz'}: cannot read 'images' ({e})") from None
        return cache[which]

    def job(a: dict) -> TaskJob:
        def build() -> TaskArrays:
            imgs = images(a["set"])
            lo, hi = a["first"] - FIRST_ID[a["set"]], a["last"] - FIRST_ID[a["set"]] + 1
            if lo < 0 or hi > len(imgs) or imgs.shape[2:] != (SIDE, SIDE):
                raise DataError(f"alphabet {a['name']}: ids {a['first']}-{a['last']} do not fit "
                                f"images_{a['set']}.npz of shape {imgs.shape}")
            block = imgs[lo:hi]  # (chars, drawings, 105, 105), True = background
            n_chars, n_draw = block.shape[:2]
            x = (~block).reshape(-1, 1, SIDE, SIDE).astype(np.uint8)
            y = np.repeat(np.arange(n_chars), n_draw)
            key = (np.repeat(np.arange(a["first"], a["last"] + 1), n_draw) * 100
                   + np.tile(np.arange(1, n_draw + 1), n_chars))
            return TaskArrays(a["name"], x, y, key, [f"character{c + 1:02d}" for c in range(n_chars)],
                              extra={"set": a["set"], "char_ids": [a["first"], a["last"]]})
        return TaskJob(a["name"], build)

    return [job(a) for a in alphabets], [*files, src / "alphabets.csv"], "npz"


# -- the original PNG layout (folders or zips) -------------------------------------------------------------

def png_index(src: Path) -> tuple[dict[str, dict], list[Path], dict[str, Callable[[str], bytes]]]:
    """alphabet -> {"set", "chars": {char id: {drawing: member}}}; the files to hash; a reader per container."""
    alphabets: dict[str, dict] = {}
    files: list[Path] = []
    readers: dict[str, Callable[[str], bytes]] = {}
    for which in SETS:
        folder = next((p for p in (src / f"images_{which}", src / "python" / f"images_{which}") if p.is_dir()), None)
        archive = src / f"images_{which}.zip"
        if folder is not None:
            members = [str(p.relative_to(folder)) for p in folder.rglob("*.png")]
            readers[which] = lambda m, root=folder: (root / m).read_bytes()
            files += sorted(folder.rglob("*.png"))
        elif archive.exists():
            zf = zipfile.ZipFile(archive)
            members = [m for m in zf.namelist() if m.endswith(".png")]
            readers[which] = zf.read
            files.append(archive)
        else:
            continue
        for m in members:
            parts = Path(m).parts
            match = PNG_NAME.match(parts[-1])
            if len(parts) < 3 or not match:
                raise DataError(f"{src}: {m} is not <Alphabet>/characterNN/XXXX_YY.png")
            entry = alphabets.setdefault(parts[-3], {"set": which, "chars": defaultdict(dict)})
            entry["chars"][int(match.group(1))][int(match.group(2))] = m
    if not alphabets:
        raise InputError(f"{src}: found neither the Omniglot npz pair nor images_background / images_evaluation "
                        f"(folders or .zip) with <Alphabet>/characterNN/XXXX_YY.png")
    return alphabets, files, readers


def png_jobs(src: Path) -> tuple[list[TaskJob], list[Path], str]:
    from PIL import Image

    alphabets, files, readers = png_index(src)
    order = sorted(alphabets, key=lambda name: min(alphabets[name]["chars"]))

    def job(name: str) -> TaskJob:
        def build() -> TaskArrays:
            a = alphabets[name]
            xs, ys, keys = [], [], []
            for c, char_id in enumerate(sorted(a["chars"])):
                for drawing, member in sorted(a["chars"][char_id].items()):
                    img = np.asarray(Image.open(io.BytesIO(readers[a["set"]](member))).convert("L"))
                    if img.shape != (SIDE, SIDE):
                        raise DataError(f"{src}: {member} is {img.shape[1]}x{img.shape[0]}, expected 105x105")
                    xs.append((img < 128).astype(np.uint8)[None])
                    ys.append(c)
                    keys.append(char_id * 100 + drawing)
            chars = sorted(a["chars"])
            return TaskArrays(name, np.stack(xs), np.array(ys), np.array(keys),
                              [f"character{c + 1:02d}" for c in range(len(chars))],
                              extra={"set": a["set"], "char_ids": [chars[0], chars[-1]]})
        return TaskJob(name, build)

    return [job(n) for n in order], files, "png"
