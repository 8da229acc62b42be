"""Table rows joined from several runs: a spec's rows that name one ``table_row`` (MTAL's Tables 2 and 4 train each
baseline as one joint run per task group) render as that one row, each run filling its own tasks' cells. Per
seed, the joined record holds every part's task scores and their mean over all the tasks (what a paired test
compares); a seed that lacks one part's record is left out, never shown as a mean over fewer tasks. Pure
pandas-free bookkeeping on records: no torch."""
from __future__ import annotations

from mtlbench.results import MetricScores, RunRecord


def table_rows(spec) -> list[str]:
    """The rows of the rendered table, in spec order: each label, a joined row once (at its first part)."""
    return list(dict.fromkeys(m.shown_as for m in spec.methods))


def joined_parts(spec) -> dict[str, list[str]]:
    """joined row -> the labels of the runs it joins, in spec order."""
    parts: dict[str, list[str]] = {}
    for m in spec.methods:
        if m.table_row is not None:
            parts.setdefault(m.table_row, []).append(m.row)
    return parts


def join_records(spec, records: list[RunRecord]) -> tuple[list[RunRecord], list[str]]:
    """(the records with each joined row's parts merged per seed, notes saying what was joined or left out)."""
    parts = joined_parts(spec)
    if not parts:
        return records, []
    order = max((r.tasks for r in records), key=len, default=[])
    by_row: dict[str, dict[int, RunRecord]] = {}
    for r in records:
        by_row.setdefault(r.row, {})[r.seed] = r
    member = {label: row for row, labels in parts.items() for label in labels}
    out = [r for r in records if r.row not in member]
    lacking_notes = []
    for row, labels in parts.items():
        seeds = sorted({s for label in labels for s in by_row.get(label, {})})
        complete = [s for s in seeds if all(s in by_row.get(label, {}) for label in labels)]
        out += [merged(row, [by_row[label][s] for label in labels], order) for s in complete]
        if lacking := [s for s in seeds if s not in complete]:
            lacking_notes.append(f"{row}: seed(s) {', '.join(map(str, lacking))} left out (a group's run is missing)")
    return out, [*grouping_notes(spec), *lacking_notes]


def grouping_notes(spec) -> list[str]:
    """One line per grouping: 'Multi-task, MTDA: one joint run per task group (HD, a | Typographic*, A), ...'."""
    groups: dict[str, list[str]] = {}
    for m in spec.methods:
        if m.table_row is not None:
            groups.setdefault(m.table_row, []).append(", ".join(m.tasks))
    by_grouping: dict[str, list[str]] = {}
    for row, parts in groups.items():
        by_grouping.setdefault(" | ".join(parts), []).append(row)
    return [f"{', '.join(rows)}: one joint run per task group ({grouping}), each filling its own tasks' cells; "
            "mean and paired test over all the tasks, per seed" for grouping, rows in by_grouping.items()]


def merged(row: str, parts: list[RunRecord], order: list[str]) -> RunRecord:
    """One record of ``row`` for one seed from the runs of its task groups."""
    tasks = sorted({t for p in parts for t in p.tasks}, key=lambda t: order.index(t) if t in order else len(order))
    first = parts[0]
    diverged = any(p.status != "ok" for p in parts)
    meta = {**first.data_metadata,
            "missing_tasks": sorted({t for p in parts for t in p.data_metadata.get("missing_tasks", [])})}
    return first.model_copy(update={
        "row": row, "tasks": tasks, "status": "diverged" if diverged else "ok",
        "metrics": None if diverged else merged_metrics(parts),
        "n_params": sum(p.n_params for p in parts), "data_metadata": meta})


def merged_metrics(parts: list[RunRecord]) -> dict[str, dict[str, MetricScores]]:
    """Per split and metric (those every part holds): the parts' task scores side by side and their mean over all
    tasks (no pooled accuracy: the parts' example counts are not in the records)."""
    out: dict[str, dict[str, MetricScores]] = {}
    for split in parts[0].metrics or {}:
        for metric in parts[0].metrics[split]:
            if not all(metric in (p.metrics or {}).get(split, {}) for p in parts):
                continue
            tasks = {t: v for p in parts for t, v in p.metrics[split][metric].tasks.items()}
            values = [v for v in tasks.values() if v is not None]
            out.setdefault(split, {})[metric] = MetricScores(
                tasks=tasks, mean=sum(values) / len(values) if values else None)
    return out
