"""`mtlbench export SPEC`: every stored score of a spec's current records as one tidy (long) CSV table, for
redoing the statistics elsewhere -- one row per (method row, seed, task, split, metric):

    spec, method, label, weighting, seed, task, split, metric, value, step, code_version, identity

``step`` is the selected iteration (the evaluation whose weights were kept; 0 for a closed-form fit),
``weighting`` the row's loss weighting (ew unless the spec says otherwise), ``identity`` the run identity.
Only per-task values: means over tasks are the reader's to take (pooled accuracy, which is not, has the task
``pooled``). Diverged runs have no scores and give no rows. ``pandas.read_csv`` reads it as it is.
"""
from __future__ import annotations

import pandas as pd

from mtlbench.results import RunRecord

COLUMNS = ["spec", "method", "label", "weighting", "seed", "task", "split", "metric", "value", "step",
           "code_version", "identity"]


def record_weighting(record: RunRecord) -> str:
    entry = next((m for m in record.spec.get("methods", []) if (m.get("label") or m["name"]) == record.row), {})
    return (entry.get("weighting") or {}).get("name", "ew")


def long_table(records: list[RunRecord]) -> pd.DataFrame:
    rows = []
    for r in records:
        common = {"spec": r.spec_name, "method": r.method, "label": r.row, "weighting": record_weighting(r),
                  "seed": r.seed, "step": r.best_iteration, "code_version": r.written_by, "identity": r.identity}
        for split, metrics in (r.metrics or {}).items():
            for metric, scores in metrics.items():
                values = {**scores.tasks, **({"pooled": scores.pooled} if scores.pooled is not None else {})}
                rows += [{**common, "task": task, "split": split, "metric": metric, "value": value}
                         for task, value in values.items()]
    return pd.DataFrame(rows, columns=COLUMNS)


def spec_long_table(resolved, results) -> pd.DataFrame:
    """The long table of a resolved spec's current records (a sweep spec's points)."""
    from mtlbench.report.compare import spec_records
    spec = resolved.spec
    if spec.sweep is not None:
        from mtlbench.config.sweep import expand_sweep
        spec = expand_sweep(resolved).spec
    records, _ = spec_records(spec, results)
    return long_table(records)
