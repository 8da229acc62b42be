"""A sweep's table and figure (MTAL's Figure 9: accuracy and kernel-sharing ratio against delta) from the records
of its points: per value of the swept option, the metric's mean over tasks and per task (mean ± std over seeds)
and the scalars the method reports in ``summary["scalars"]`` (MTAL: its three sharing ratios over the network).
No torch; matplotlib only when a figure is asked for."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mtlbench.errors import MTLBenchError
from mtlbench.io import atomic_write
from mtlbench.report.cells import DASH, Table, fmt_cell
from mtlbench.results import RunRecord, sweep_row, tidy


@dataclass
class SweepPoint:
    value: Any
    label: str
    seeds: int = 0
    metric: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # "mean" / task -> (mean, std, n)
    scalars: dict[str, tuple[float, float, int]] = field(default_factory=dict)


def sweep_points(records: list[RunRecord], sweep: dict, metric: str, split: str) -> list[SweepPoint]:
    """One point per value (sorted when the values are numbers), with what its finished records say."""
    values = list(sweep["values"])
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        values = sorted(values)
    labels = [sweep_row(sweep["method"], sweep["param"], v) for v in values]
    points = {label: SweepPoint(v, label) for v, label in zip(values, labels)}
    ok = [r for r in records if r.row in points and r.status == "ok"]
    scores = tidy(ok, split)
    scores = scores[scores.metric == metric]
    for (row, col), s in scores.groupby(["row", "column"])["value"]:
        points[row].metric[col] = summarise(s)
    scalars = pd.DataFrame([{"row": r.row, "name": k, "value": v} for r in ok
                            for k, v in r.summary.get("scalars", {}).items()], columns=["row", "name", "value"])
    for (row, name), s in scalars.groupby(["row", "name"], sort=False)["value"]:
        points[row].scalars[name] = summarise(s)
    for r in ok:
        points[r.row].seeds += 1
    return list(points.values())


def summarise(s: pd.Series) -> tuple[float, float, int]:
    return float(s.mean()), float(s.std()) if len(s) > 1 else 0.0, len(s)


def sweep_table(points: list[SweepPoint], sweep: dict, tasks: list[str], metric: str, split: str) -> Table:
    scalars = list(dict.fromkeys(name for p in points for name in p.scalars))
    header = [sweep["param"], f"mean {metric}", *tasks, *scalars, "seeds"]
    table = Table(f"{sweep['method']}: {metric} on {split} and what it reports, against {sweep['param']}", header, [])
    for p in points:
        cells = [cell(p.metric, c) for c in ["mean", *tasks]] + [cell(p.scalars, s) for s in scalars]
        table.rows.append([str(p.value), *cells, str(p.seeds)])
    missing = [p.label for p in points if not p.seeds]
    if missing:
        table.notes.append(f"no result yet for {len(missing)} point(s) ({', '.join(missing[:3])}"
                           f"{', ...' if len(missing) > 3 else ''}): run `mtlbench sweep SPEC`")
    table.notes.append(f"each point is the row {sweep['method']!r} with {sweep['param']} set to the value; mean ± std "
                       "over seeds")
    return table


def cell(values: dict[str, tuple[float, float, int]], key: str) -> str:
    return fmt_cell(*values[key], 1.0) if key in values else DASH


def sweep_png(points: list[SweepPoint], sweep: dict, metric: str, path: Path) -> Path:
    """The metric (mean over tasks, bold; each task, thin) on the left axis and the method's scalars on the
    right, against the swept value (numeric values only)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MTLBenchError("the sweep figure needs matplotlib: pip install 'mtlbench[plot]' "
                            "(or use --no-plot)") from None
    done = [p for p in points if p.seeds]
    if not done or not all(isinstance(p.value, (int, float)) for p in done):
        raise MTLBenchError("the sweep figure needs finished points with numeric values")
    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    xs = [p.value for p in done]
    tasks = [c for c in done[0].metric if c not in ("mean", "pooled")]
    for t in tasks:
        ax.plot(xs, [p.metric.get(t, (float("nan"),))[0] for p in done], lw=0.8, alpha=0.6, label=t)
    ax.errorbar(xs, [p.metric["mean"][0] for p in done], yerr=[p.metric["mean"][1] for p in done], lw=2.2,
                color="black", capsize=3, label=f"mean {metric}")
    ax.set_xlabel(sweep["param"])
    ax.set_ylabel(metric)
    handles, labels = ax.get_legend_handles_labels()
    scalars = list(dict.fromkeys(name for p in done for name in p.scalars))
    if scalars:
        right = ax.twinx()
        for name, style in zip(scalars, ["s--", "^--", "o:", "v:"]):
            right.plot(xs, [p.scalars.get(name, (float("nan"),))[0] for p in done], style, label=name)
        right.set_ylabel(", ".join(scalars) if len(scalars) == 1 else "reported ratios")
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    # below the axes: inside, "best" sees only the left axis' lines and covers the right axis' ones
    rows = -(-len(labels) // 3)
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3, frameon=False)
    ax.set_title(f"{sweep['method']}: {metric} against {sweep['param']}")
    fig.tight_layout(rect=(0, 0.05 * rows + 0.02, 1, 1))
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return Path(path)
