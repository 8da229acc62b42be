"""The task weights a weighted run kept at each evaluation (``history[i].task_weights``: UW's 1/(2 sigma^2),
DWA's, FAMO's effective weights, an aggregator's row weights), for `mtlbench report`: the first and last ones
printed, and one line per task over the iterations drawn (PNG)."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from mtlbench.results import RunRecord


def weight_series(record: RunRecord) -> tuple[list[int], list[list[float]]]:
    """(iterations, weights[evaluation][task]) of the evaluations that stored task weights."""
    kept = [h for h in record.history if h.get("task_weights") is not None]
    return [h["iteration"] for h in kept], [h["task_weights"] for h in kept]


def print_task_weights(console: Console, record: RunRecord, plots: bool, figures: Path | None) -> None:
    iterations, weights = weight_series(record)
    if not iterations:
        return
    weighting = next((m.get("weighting") for m in record.spec.get("methods", [])
                      if (m.get("label") or m["name"]) == record.row), None) or {}
    head = f"{record.row} seed {record.seed}: task weights ({weighting.get('name', '?')})"
    first, last = (", ".join(f"{t} {w:.3g}" for t, w in zip(record.tasks, ws)) for ws in (weights[0], weights[-1]))
    console.print(f"{head} at iteration {iterations[0]}: {first}; at {iterations[-1]}: {last}", soft_wrap=True)
    if plots:
        path = Path(figures or Path(record.path).parent / "figures") / f"seed{record.seed}_task_weights.png"
        console.print(f"wrote {weights_png(iterations, weights, record.tasks, head, path)}")


def weights_png(iterations: list[int], weights: list[list[float]], names: list[str], title: str, path: Path) -> Path:
    from mtlbench.report.plots import pyplot, save
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    for t, name in enumerate(names):
        ax.plot(iterations, [w[t] for w in weights], marker="o" if len(iterations) < 30 else None, label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("task weight")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(names) <= 20:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
    return path
