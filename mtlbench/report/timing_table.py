"""TAAN's Table 2 from ``mtlbench time``'s measurements: seconds per 100 iterations, ratios to the reference
measured in the same run, the paper's seconds beside."""
from __future__ import annotations

from mtlbench.report.cells import DASH, Table, fmt_paper, fmt_params


def build_timing_table(timing: dict, paper: dict | None = None) -> Table:
    """Seconds per 100 iterations (median, [min-max] over blocks), ratios to the reference, paper beside."""
    title = (f"Seconds per 100 iterations on {timing['device']} ({timing['threads']} threads), "
             f"batch {timing['batch_per_task']} x {timing['n_tasks']} tasks")
    fits = any(r.get("fit_s") is not None for r in timing["results"])
    # measured since the cost table existed (timing.json files from before render as they did)
    peaks = any(r.get("train_peak_mb") is not None for r in timing["results"])
    passes = any(r.get("backward_passes") is not None for r in timing["results"])
    table = Table(title, timing_header(timing.get("reference"), fits, paper, peaks, passes), [])
    for r in timing["results"]:
        row = timing_row(r)
        row += [fmt_seconds(r.get("fit_s"))] if fits else []
        row += [DASH if r.get("train_peak_mb") is None else f"{r['train_peak_mb']:.0f}"] if peaks else []
        row += [DASH if r.get("backward_passes") is None else str(r["backward_passes"])] if passes else []
        if paper:
            row += [fmt_paper(v) for v in paper["rows"].get(r["row"], [None, None])]
        table.rows.append(row)
    table.notes += timing_notes(timing, fits, paper, peaks, passes)
    return table


def timing_header(ref: str | None, fits: bool, paper: dict | None, peaks: bool, passes: bool) -> list[str]:
    header = ["method", "train s", "train range", "infer s", "infer range", "data s",
              f"train / {ref}" if ref else "train ratio", f"infer / {ref}" if ref else "infer ratio", "params"]
    header += ["fit s"] if fits else []
    header += (["peak MB"] if peaks else []) + (["backward passes"] if passes else [])
    return header + (["paper train s", "paper infer s"] if paper else [])


def timing_row(r: dict) -> list[str]:
    return [r["row"], fmt_seconds(r["train_s"]), fmt_range(r["train_min"], r["train_max"]), fmt_seconds(r["infer_s"]),
            fmt_range(r["infer_min"], r["infer_max"]), f"{r['data_s']:.3f}", fmt_ratio(r["ratio_train"]),
            fmt_ratio(r["ratio_infer"]), fmt_params(r["n_params"])]


def timing_notes(timing: dict, fits: bool, paper: dict | None, peaks: bool, passes: bool) -> list[str]:
    notes = [f"median of {timing['blocks']} blocks of {timing['iterations_per_block']} iterations after "
             f"{timing['warmup']} warm-up; batches pre-staged (their drawing is the 'data' column)"]
    if fits:
        notes.append("fit s: seconds of one closed-form fit on the training splits, for methods trained "
                     "that way instead of by steps")
    notes += cost_notes(timing, peaks, passes)
    if env := timing.get("env"):
        notes.append(measured_on(timing, env))
    return notes + ([f"paper: {paper['metric']}"] if paper else [])


def cost_notes(timing: dict, peaks: bool, passes: bool) -> list[str]:
    """What the peak-memory and backward-pass columns measure."""
    notes = []
    kinds = {r.get("peak_kind") for r in timing["results"] if r.get("train_peak_mb") is not None}
    if peaks:
        notes.append("peak MB: " + ("the process's peak resident set during the method's warm-up steps "
                                    "(shared data and models included)" if kinds == {"process resident"}
                                    else "peak device memory of the method's training steps + its weights"))
    if passes:
        notes.append("backward passes: per training step (T where a gradient weighting needs per-task "
                     "gradients the method's graph cannot batch)")
    return notes


def measured_on(timing: dict, env: dict) -> str:
    """Where and with what code the timings were measured (their environment fingerprint)."""
    git = env.get("git") or {}
    commit = (git.get("commit") or "unknown")[:10] + (" (uncommitted changes)" if git.get("dirty") else "")
    return (f"measured on {timing.get('device_name') or env.get('device')}, commit {commit}, "
            f"torch {env.get('versions', {}).get('torch', '?')}")


def fmt_ratio(ratio: float | None) -> str:
    return DASH if ratio is None else f"{ratio:.2f}x"


def fmt_seconds(s: float | None) -> str:
    return DASH if s is None else f"{s:.3f}"


def fmt_range(low: float | None, high: float | None) -> str:
    return DASH if low is None else f"{low:.3f}-{high:.3f}"

