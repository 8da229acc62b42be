"""Heat maps of per-layer task matrices (TAAN Figures 2 and 4). matplotlib is the optional [plot] extra and is
imported only here, with the Agg backend (no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlbench.errors import UsageError
from mtlbench.io import atomic_write


def pyplot():
    """matplotlib.pyplot on the Agg backend; without matplotlib a UsageError (``report`` asks before any work)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plots: heat maps need matplotlib: pip install 'mtlbench[plot]' (in a checkout: "
                         "pip install -e '.[plot]'), or pass --no-plots") from None
    return plt


def heatmap_png(matrix: np.ndarray, names: list[str], title: str, path: Path) -> Path:
    plt = pyplot()
    size = max(4.0, 0.35 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path
