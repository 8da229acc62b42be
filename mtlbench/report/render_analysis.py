"""Terminal rendering of the task matrices of a record (used by `mtlbench report`)."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from mtlbench.results import RunRecord
from mtlbench.report.analysis import group_separation, isolation_rank, layer_matrices


def matrix_table(title: str, names: list[str], m) -> Table:
    t = Table(title=title, show_header=True)
    t.add_column("")
    for n in names:
        t.add_column(n, justify="right")
    for name, row in zip(names, m):
        t.add_row(name, *[f"{v:.3g}" for v in row])
    return t


def print_record_analysis(console: Console, record: RunRecord, kinds, plots: bool, figures: Path | None) -> None:
    names, path = record.tasks, Path(record.path)
    layers = layer_matrices(record)
    head = f"{record.row} seed {record.seed} ({path})"
    if not layers:
        console.print(f"{head}: method {record.method!r} stores no task matrices")
        return
    meta = record.data_metadata
    for lm in layers:
        for kind in kinds:
            m = getattr(lm, kind)
            console.print(matrix_table(f"{head}: {lm.title} task {kind}", names, m))
            if plots:
                from mtlbench.report.plots import heatmap_png
                out = (figures or path.parent / "figures") / f"{path.stem}_layer{lm.layer}_{kind}.png"
                heatmap_png(m, names, f"{record.row} {lm.title}: task {kind}", out)
                console.print(f"wrote {out}")
        if len(meta.get("groups", [])) > 1:
            sep = group_separation(lm.distance, names, meta["groups"])
            line = (f"{lm.title}: planted groups -- mean distance within {sep['within']:.4g}, "
                    f"across {sep['across']:.4g} (ratio {sep['ratio']:.2f})")
            for o in meta.get("outliers", []):
                rank = isolation_rank(lm.distance, names, o) + 1
                line += f"; outlier {o} is the #{rank} most isolated task (distance to its nearest task)"
            console.print(line)
