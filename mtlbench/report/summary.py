"""The two summary numbers MTL papers print beside per-task scores, per row of a table:

- Delta_m % (Maninis et al., CVPR 2019): the mean over tasks of (-1)^l_t (M_m,t - M_stl,t) / M_stl,t x 100,
  l_t = 1 where lower is better -- a row's average relative gain over the single-task row. M_stl,t is the
  single-task row's mean over its seeds; each seed of row m gives one Delta_m, shown as mean ± std over seeds.
- mean rank: per seed and task the rows are ranked (1 = best; ties share their mean rank) among the rows that
  have that seed, averaged over tasks; mean ± std over seeds.

The single-task row is the table's row trained by the ``stl`` method (the first, when there are several); a
table without one shows mean rank only.
"""
from __future__ import annotations

import pandas as pd

# the metrics' directions, known here so that rendering needs no torch (mtlbench.metrics is asked otherwise)
HIGHER_IS_BETTER = {"accuracy": True, "map@10": True, "gap@20": True, "hit@1": True}
DELTA = "Δm % vs {ref}"
RANK = "mean rank"


def higher_is_better(metric: str) -> bool:
    if metric in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[metric]
    from mtlbench.metrics import get_metric
    return get_metric(metric).higher_is_better


def per_seed_values(df: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """(row, seed) x task: one metric's per-task values (``df``: results.tidy rows of that metric)."""
    sub = df[df.column.isin(tasks)]
    return sub.pivot_table(index=["row", "seed"], columns="column", values="value", aggfunc="first")[tasks]


def delta_m(values: pd.DataFrame, reference: str, higher: bool) -> pd.Series:
    """(row, seed) -> Delta_m % of that seed against the reference row's per-task means over its seeds."""
    base = values.xs(reference, level="row").mean()
    sign = 1.0 if higher else -1.0
    return (sign * (values - base) / base).mean(axis=1) * 100.0


def mean_rank(values: pd.DataFrame, higher: bool) -> pd.Series:
    """(row, seed) -> the row's rank averaged over tasks, ranked among the rows of the same seed."""
    ranks = values.groupby(level="seed").rank(ascending=not higher, method="average")
    return ranks.mean(axis=1)


def summary_columns(df: pd.DataFrame, tasks: list[str], metric: str, rows: list[str],
                    reference: str | None) -> dict[str, dict[str, str]]:
    """{column header: {row: cell}} for Delta_m (when ``reference`` is given) and mean rank."""
    if df.empty or not tasks:
        return {}
    values = per_seed_values(df, tasks).dropna()
    values = values[values.index.get_level_values("row").isin(rows)]
    if values.empty:
        return {}
    higher = higher_is_better(metric)
    out = {}
    if reference is not None and reference in values.index.get_level_values("row"):
        out[DELTA.format(ref=reference)] = cells(delta_m(values, reference, higher), rows, signed=True,
                                                 reference=reference)
    if len(set(values.index.get_level_values("row"))) > 1:
        out[RANK] = cells(mean_rank(values, higher), rows)
    return out


def cells(per_seed: pd.Series, rows: list[str], signed: bool = False, reference: str | None = None
          ) -> dict[str, str]:
    out = {}
    for row in rows:
        if row == reference:
            out[row] = "ref"
            continue
        if row not in per_seed.index.get_level_values("row"):
            continue
        v = per_seed.xs(row, level="row")
        mean = f"{v.mean():+.2f}" if signed else f"{v.mean():.2f}"
        out[row] = f"{mean} ± {v.std():.2f}" if len(v) > 1 else mean
    return out
