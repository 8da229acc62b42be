"""``mtlbench prepare chars74k``: MTAL's character tasks (Feng & Chen, Tables 2-3) from Chars74K English.

Tasks (MTAL's character sets; data_prep/README.md): **HD** = handwritten digits 0-9 (``hnd_64x64.npz``);
**A** / **a** = 10 upper- / lower-case handwritten letters, a seeded choice recorded in the manifest (the
paper picked 10 at random); **Typographic*** = computer-font digits 0-9 (``fnt_28x28.npz``), the stand-in
for MTAL's typographic digit set, which is not obtainable (tables footnote the asterisk). Images are stored
uint8 with ink high (255 - the source's black-on-white), shape (1, H, W), sizes kept as they are.
Split: per class 70/30 train/test with 10% of train held out for validation, seeded.
"""
from __future__ import annotations

import string
from pathlib import Path

import numpy as np

from mtlbench.errors import DataError, InputError
from mtlbench.prepare import ProgressFactory, no_progress
from mtlbench.prepare.common import (
    TaskArrays,
    TaskJob,
    images_nchw,
    mtal_scheme,
    require,
    sources_entry,
    write_per_task,
)

CHARS = string.digits + string.ascii_uppercase + string.ascii_lowercase  # Sample001..062 -> label 0..61
N_LETTERS = 10


def choose_letters(seed: int, letters: str | None) -> tuple[str, str]:
    """The 10 upper- and 10 lower-case letters: given explicitly, or a seeded draw per case."""
    if letters:
        chosen = sorted(set(letters.lower()))
        if len(chosen) != N_LETTERS or not all(c in string.ascii_lowercase for c in chosen):
            raise InputError(f"--letters needs {N_LETTERS} distinct letters a-z (got {letters!r})")
        return "".join(chosen).upper(), "".join(chosen)
    upper = np.random.default_rng([seed, 1]).choice(26, N_LETTERS, replace=False)
    lower = np.random.default_rng([seed, 2]).choice(26, N_LETTERS, replace=False)
    return ("".join(string.ascii_uppercase[i] for i in sorted(upper)),
            "".join(string.ascii_lowercase[i] for i in sorted(lower)))


def read_npz(path: Path, index_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    require(path, "a Chars74K npz (hnd_64x64.npz or fnt_28x28.npz)")
    try:
        with np.load(path) as z:
            return z["images"], z["labels"].astype(np.int64), z[index_name].astype(np.int64)
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: cannot read images / labels / {index_name} ({e})") from None


def subset_task(name: str, path: Path, index_name: str, chars: str, key_base: int) -> TaskJob:
    """The rows of ``chars`` (in that order, renumbered 0..k-1), ink high."""
    def build() -> TaskArrays:
        images, labels, sample = read_npz(path, index_name)
        wanted = [CHARS.index(c) for c in chars]
        rows = np.flatnonzero(np.isin(labels, wanted))
        lut = np.full(len(CHARS), -1)
        lut[wanted] = np.arange(len(wanted))
        y = lut[labels[rows]]
        missing = sorted(set(wanted) - set(labels[rows].tolist()))
        if missing:
            raise DataError(f"{path}: no images of {', '.join(CHARS[m] for m in missing)} (task {name})")
        x = images_nchw(255 - images[rows])
        return TaskArrays(name, x, y, labels[rows] * key_base + sample[rows], list(chars),
                          scale=1 / 255, extra={"source_file": path.name, "characters": chars})
    return TaskJob(name, build)


def prepare_chars74k(src: Path, out: Path, seed: int = 0, letter_seed: int = 0, letters: str | None = None,
                     test_fraction: float = 0.3, val_fraction: float = 0.1, force: bool = False,
                     progress: ProgressFactory = no_progress, command: str = "") -> Path:
    src = require(Path(src), "the Chars74K folder with hnd_64x64.npz and fnt_28x28.npz")
    hnd, fnt = src / "hnd_64x64.npz", src / "fnt_28x28.npz"
    upper, lower = choose_letters(letter_seed, letters)
    jobs = [subset_task("HD", hnd, "sample_index", string.digits, 100),
            subset_task("A", hnd, "sample_index", upper, 100),
            subset_task("a", hnd, "sample_index", lower, 100),
            subset_task("Typographic*", fnt, "font_index", string.digits, 10_000)]
    sources = sources_entry([require(hnd, "hnd_64x64.npz"), require(fnt, "fnt_28x28.npz")], src, progress)
    options = {"letter_seed": letter_seed, "letters": letters, "upper": upper, "lower": lower}
    meta = {"source": "Chars74K English (de Campos et al., VISAPP 2009)", "letters": {"A": upper, "a": lower},
            "groups": [["HD", "a"], ["Typographic*", "A"]],
            "stand_ins": {"Typographic*": "Chars74K computer-font digits (MTAL's typographic set is not "
                                          "obtainable offline)"}}
    return write_per_task(Path(out), "chars74k", jobs, mtal_scheme(test_fraction, val_fraction), seed, sources,
                          options, meta, command, force=force, progress=progress)
