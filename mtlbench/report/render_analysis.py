"""Terminal rendering of the task matrices of records (used by `mtlbench report`).

A matrix that fits the terminal is printed whole. A wider one (Omniglot's 50 x 50) is summarised by what a
reader wants from it: the most isolated tasks with their distance to their nearest task, each task's nearest
neighbour, and the path of the heat map. Over the seeds of one row, each layer's most isolated task and the
ranking by mean isolation rank are printed, so "Braille is the outlier (TAAN Figure 4)" is a computed statement.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mtlbench.report.analysis import (
    Isolation,
    LayerMatrices,
    group_separation,
    isolation,
    isolation_over_seeds,
    layer_matrices,
)
from mtlbench.report.weights import print_task_weights
from mtlbench.results import RunRecord

TOP = 5  # most isolated tasks listed per matrix and per layer over seeds
CELL = 9  # characters a printed matrix entry takes ("0.000123" + padding)


def matrix_table(title: str, names: list[str], m) -> Table:
    t = Table(title=title, show_header=True)
    t.add_column("")
    for n in names:
        t.add_column(n, justify="right")
    for name, row in zip(names, m):
        t.add_row(name, *[f"{v:.3g}" for v in row])
    return t


def fits(console: Console, names: list[str]) -> bool:
    return console.width >= max(map(len, names)) + 4 + CELL * len(names)


def print_record_analysis(console: Console, record: RunRecord, kinds, plots: bool, figures: Path | None,
                          top: int = TOP, neighbours: bool = True) -> None:
    """One record's matrices per layer; a matrix too wide to print is summarised by its most isolated tasks and,
    with ``neighbours``, each task's nearest task (left out when several records are reported: 50 rows per
    layer and seed bury the summary over seeds)."""
    names, path = record.tasks, Path(record.path)
    print_task_weights(console, record, plots, figures)
    layers = layer_matrices(record)
    head = f"{record.row} seed {record.seed} ({path})"
    if not layers:
        console.print(f"{head}: method {record.method!r} stores no task matrices")
        return
    for lm in layers:
        for kind in kinds:
            m, title = getattr(lm, kind), f"{head}: {lm.title} task {kind}"
            iso = isolation(m, names, similarity=kind == "cosine")
            png = heat_map(record, lm, kind, iso, figures, top) if plots else None
            if fits(console, names):
                console.print(matrix_table(title, names, m))
                print_most_isolated(console, iso, kind, top)
            else:
                console.print(f"{title}: {len(names)} x {len(names)}, too wide to print here -- "
                              f"{'heat map ' + str(png) if png else 'no heat map (--no-plots)'}", soft_wrap=True)
                print_most_isolated(console, iso, kind, top)
                if neighbours:
                    console.print(neighbour_table(iso, kind, console.width))
            if png and fits(console, names):
                console.print(f"wrote {png}")
        print_planted(console, record, lm)


def heat_map(record: RunRecord, lm: LayerMatrices, kind: str, iso: Isolation, figures: Path | None, top: int) -> Path:
    from mtlbench.report.plots import heatmap_png
    path = Path(record.path)
    out = (figures or path.parent / "figures") / f"{path.stem}_layer{lm.layer}_{kind}.png"
    highlight = [iso.names[i] for i in iso.order[:min(top, 3)]]
    return heatmap_png(getattr(lm, kind), iso.names, f"{record.row} seed {record.seed}, {lm.title}: task {kind}",
                       out, highlight=highlight)


def nearness(kind: str) -> str:
    return "cosine to the most similar task" if kind == "cosine" else "distance to the nearest task"


def print_most_isolated(console: Console, iso: Isolation, kind: str, top: int) -> None:
    items = [f"{k + 1}. {iso.names[i]} {iso.nearest[i]:.3g} (nearest: {iso.neighbour[i]})"
             for k, i in enumerate(iso.order[:top])]
    console.print(f"most isolated ({nearness(kind)}): " + ", ".join(items), highlight=False, soft_wrap=True)


def neighbour_table(iso: Isolation, kind: str, width: int) -> Table:
    """Each task's nearest task, laid out in as many column groups as the terminal holds."""
    name_w = max(map(len, iso.names))
    groups = max(1, min(3, width // (2 * name_w + 16)))
    rows = -(-len(iso.names) // groups)
    t = Table(title=f"nearest task of each task ({nearness(kind)})", show_header=True)
    for _ in range(groups):
        t.add_column("task"), t.add_column("nearest"), t.add_column(kind[:4], justify="right")
    for r in range(rows):
        cells = []
        for g in range(groups):
            i = g * rows + r
            cells += [iso.names[i], iso.neighbour[i], f"{iso.nearest[i]:.3g}"] if i < len(iso.names) else ["", "", ""]
        t.add_row(*cells)
    return t


def print_planted(console: Console, record: RunRecord, lm: LayerMatrices) -> None:
    meta, names = record.data_metadata, record.tasks
    if len(meta.get("groups", [])) < 2:
        return
    sep = group_separation(lm.distance, names, meta["groups"])
    line = (f"{lm.title}: planted groups -- mean distance within {sep['within']:.4g}, "
            f"across {sep['across']:.4g} (ratio {sep['ratio']:.2f})")
    iso = isolation(lm.distance, names)
    for o in meta.get("outliers", []):
        line += f"; outlier {o} is the #{iso.rank(o) + 1} most isolated task (distance to its nearest task)"
    console.print(line)


def print_over_seeds(console: Console, records: list[RunRecord], top: int = TOP) -> None:
    """For every row with several seeds: per layer, the most isolated task by mean rank over the seeds."""
    by_row: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        if layer_matrices(r):
            by_row[(r.spec_name, r.row)].append(r)
    for (_, row), runs in by_row.items():
        if len(runs) < 2:
            continue
        t = Table(title=f"{row}, {len(runs)} seeds ({', '.join(str(r.seed) for r in runs)}): the most isolated task "
                        f"per layer (rank by distance to the nearest task, 1 = most isolated, mean over seeds)")
        for col in ("layer", "most isolated", "most isolated in", f"ranking (mean rank), top {top}"):
            t.add_column(col)
        for lms in zip(*(layer_matrices(r) for r in runs)):
            ranking = isolation_over_seeds([isolation(lm.distance, runs[0].tasks) for lm in lms])
            best = ranking[0]
            t.add_row(lms[0].title, best.task, f"{best.first}/{best.seeds} seeds",
                      ", ".join(f"{r.task} {r.mean_rank:.1f}" for r in ranking[:top]))
        console.print(t)


def task_loss_figure(record: RunRecord, figures: Path | None) -> Path | None:
    """MTAL Figure 12 for one run: each task's training loss at every evaluation; None for a record whose history
    holds no per-task losses (written before they were kept, or a closed-form fit)."""
    if not any(h.get("task_loss") for h in record.history):
        return None
    from mtlbench.report.plots import task_loss_png
    path = Path(record.path)
    out = (figures or path.parent / "figures") / f"{path.stem}_task_loss.png"
    return task_loss_png(record.history, record.tasks, f"{record.row} seed {record.seed}: training loss per task",
                         out)
