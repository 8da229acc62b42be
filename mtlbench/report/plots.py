"""Figures: heat maps of per-layer task matrices (TAAN Figures 2 and 4) and line plots with error bars of a
swept option (TAAN Figure 3). matplotlib is the optional [plot] extra and is imported only here, lazily, with
the Agg backend (no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlbench.errors import UsageError
from mtlbench.io import atomic_write


def pyplot(flag: str = "--plots", what: str = "heat maps", instead: str = "pass --no-plots"):
    """matplotlib.pyplot on the Agg backend; without matplotlib a UsageError naming the option that asked for a
    figure (``report`` asks before any work)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(f"{flag}: {what} need matplotlib: pip install 'mtlbench[plot]' (in a checkout: "
                         f"pip install -e '.[plot]'), or {instead}") from None
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


def grid_png(series, title: str, x_label: str, y_label: str, path: Path) -> Path:
    """One line per row of a sweep with error bars (ours solid, the paper's dashed in the same colour); a row
    that is a single point by design (the unregularised TAAN at c = 0) is also a dotted level across the plot --
    not a row that has run at one value so far."""
    plt = pyplot("--plot", "figures", "leave out --plot")
    fig, ax = plt.subplots(figsize=(10, 5.5))
    colours = {}
    xs = sorted({x for s in series for x in s.x})
    for s in series:
        colour = colours.setdefault(s.row, f"C{len(colours)}")
        ours = s.source == "ours"
        label = f"{s.row} ({'ours' if ours else 'paper'})"
        ax.errorbar(s.x, s.mean, yerr=s.std, color=colour, linestyle="-" if ours else "--", marker="o" if ours else "s",
                    capsize=4, label=label, alpha=1.0 if ours else 0.7)
        if s.level and len(xs) > 1:
            ax.hlines(s.mean[0], xs[0], xs[-1], colors=colour, linestyles=":" if ours else (0, (1, 4)), alpha=0.6)
    ax.set_xticks(xs)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
    return path


def task_spread_png(series, title: str, y_label: str, path: Path) -> Path:
    """MTAL Figure 8: per method, the mean over tasks of its task scores with their spread over tasks (std) as
    an error bar -- ours and, where given, the paper's beside it. ``series``: (method, source, [task scores])."""
    plt = pyplot("--plot", "figures", "leave out --plot")
    methods = list(dict.fromkeys(m for m, _, _ in series))
    sources = list(dict.fromkeys(s for _, s, _ in series))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(methods) + 2), 4.5))
    width = 0.8 / max(1, len(sources))
    for k, source in enumerate(sources):
        xs, means, stds = [], [], []
        for m, s, scores in series:
            if s == source and scores:
                xs.append(methods.index(m) + (k - (len(sources) - 1) / 2) * width)
                means.append(float(np.mean(scores)))
                stds.append(float(np.std(scores)))
        ax.bar(xs, means, width=width * 0.9, yerr=stds, capsize=4, label=source, color=f"C{k}",
               alpha=1.0 if source == "ours" else 0.6)
    ax.set_xticks(range(len(methods)), methods, rotation=20)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
    return path


def task_loss_png(history: list[dict], tasks: list[str], title: str, path: Path) -> Path:
    """MTAL Figure 12: each task's training loss at every evaluation of one run (the records' ``task_loss``)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, task in enumerate(tasks):
        points = [(h["iteration"], h["task_loss"][task]) for h in history
                  if task in (h.get("task_loss") or {}) and h["task_loss"][task] is not None]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, color=f"C{k}", label=task)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (the step's batch)")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
    return path


def pair_maps_png(pairs, title: str, path: Path) -> Path:
    """MTAL Figures 10-11: one row per kernel pair -- task i's image and its filter's activation map, then task j's."""
    plt = pyplot()
    rows = max(1, len(pairs))
    fig, axes = plt.subplots(rows, 4, figsize=(10, 2.6 * rows), squeeze=False)
    for r, p in enumerate(pairs):
        state = "shared" if p.shared else "not shared"
        for c, (image, kind) in enumerate([(p.images[0], "input"), (p.maps[0], "map"),
                                            (p.images[1], "input"), (p.maps[1], "map")]):
            side = c // 2
            ax = axes[r][c]
            ax.imshow(image.detach().cpu().numpy(), cmap="gray" if kind == "input" else "viridis")
            name = p.tasks[side]
            ax.set_title(f"{name} image" if kind == "input" else
                         f"{name} filter {p.filters[side]} ({state}, cos {p.cosine:.2f})", fontsize=8)
            ax.axis("off")
    if not pairs:
        axes[0][0].set_title("no kernel pair to show", fontsize=9)
        for ax in axes[0]:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
    return path
