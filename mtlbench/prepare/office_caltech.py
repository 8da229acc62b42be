"""``mtlbench prepare office-caltech``: Office-Caltech10 SURF features (Gong et al. GFK release, CVPR 2012),
one 10-class task per domain. MTAL (Feng & Chen, Tables 4-5) uses Amazon.

Each ``<domain>_SURF_L10.mat`` holds ``fts`` (n, 800) SURF visual-word counts and ``labels`` 1..10. The raw
counts are stored; the loader divides each row by its sum and standardises each feature with the training
rows' mean and population std (the release's advice, minus the test rows in the statistics).
Split: per class 70/30 train/test, 10% of train for validation, seeded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlbench.errors import DataError, InputError
from mtlbench.prepare import ProgressFactory, no_progress
from mtlbench.prepare.common import (
    TaskArrays,
    TaskJob,
    load_mat,
    mtal_scheme,
    need,
    require,
    sources_entry,
    write_per_task,
)

DOMAINS = {"amazon": ("Amazon", "amazon_SURF_L10.mat"), "caltech": ("Caltech", "Caltech10_SURF_L10.mat"),
           "dslr": ("DSLR", "dslr_SURF_L10.mat"), "webcam": ("Webcam", "webcam_SURF_L10.mat")}
CLASSES = ["back_pack", "bike", "calculator", "headphones", "keyboard", "laptop_computer", "monitor", "mouse",
           "mug", "projector"]  # labels 1..10, the release's alphabetical Office folder order


def domain_job(domain: str, path: Path) -> TaskJob:
    name = DOMAINS[domain][0]

    def build() -> TaskArrays:
        mat = load_mat(path)
        x, y = need(mat, "fts", path), need(mat, "labels", path).reshape(-1).astype(np.int64) - 1
        if x.ndim != 2 or len(x) != len(y) or y.min() < 0 or y.max() >= len(CLASSES):
            raise DataError(f"{path}: expected fts (n, d) and labels 1..10 of the same length")
        dtype = np.uint8 if x.dtype == np.uint8 else np.float32
        return TaskArrays(name, np.ascontiguousarray(x.astype(dtype)), y, np.arange(len(y)), CLASSES,
                          normalize="l1_zscore", extra={"source_file": path.name})
    return TaskJob(name, build)


def prepare_office_caltech(src: Path, out: Path, domains: list[str] | None = None, seed: int = 0,
                           test_fraction: float = 0.3, val_fraction: float = 0.1, force: bool = False,
                           progress: ProgressFactory = no_progress, command: str = "") -> Path:
    src = require(Path(src), "the folder of Office-Caltech10 *_SURF_L10.mat files")
    if domains is None:
        domains = [d for d, (_, f) in DOMAINS.items() if (src / f).exists()]
        if not domains:
            raise InputError(f"{src}: none of {', '.join(f for _, f in DOMAINS.values())} found")
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown:
        raise InputError(f"unknown domain(s) {', '.join(unknown)}; choose from {', '.join(DOMAINS)}")
    files = [require(src / DOMAINS[d][1], f"the {d} SURF file") for d in domains]
    sources = sources_entry(files, src, progress)
    meta = {"source": "Office-Caltech10 SURF (Gong et al., CVPR 2012)", "features": "SURF 800-bin BoW",
            "normalize": "row / row sum, then z-score with training statistics"}
    return write_per_task(Path(out), "office_caltech", [domain_job(d, f) for d, f in zip(domains, files)],
                          mtal_scheme(test_fraction, val_fraction), seed, sources, {"domains": domains}, meta,
                          command, force=force, progress=progress)
