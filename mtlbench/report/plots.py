"""Figures: heat maps of per-layer task matrices (TAAN Figures 2 and 4) and line plots with error bars of a
swept option (TAAN Figure 3). matplotlib is the optional [plot] extra and is imported only here, lazily, with
the Agg backend (no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlbench.errors import MTLBenchError
from mtlbench.io import atomic_write


def pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MTLBenchError("figures need matplotlib: pip install 'mtlbench[plot]' (or use --no-plots)") from None
    return plt


def save(fig, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    fig.clf()
    return path


def heatmap_png(matrix: np.ndarray, names: list[str], title: str, path: Path,
                highlight: list[str] | None = None) -> Path:
    """One T x T matrix with the task names on both axes; ``highlight`` names are drawn in bold red."""
    plt = pyplot()
    size = max(4.0, 0.3 * len(names) + 3)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(matrix, cmap="viridis")
    font = 8 if len(names) > 20 else 9
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=font)
    ax.set_yticks(range(len(names)), names, fontsize=font)
    for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        if label.get_text() in (highlight or []):
            label.set_color("red"), label.set_fontweight("bold")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
    return path
