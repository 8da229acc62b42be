"""The ``Table`` every layout fills and every renderer prints, and what its cells show: mean ± std over seeds,
the paper's printed numbers, markers for diverged, unavailable, reimplemented and paper-faithful rows."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

DASH = "—"
DIVERGED = "diverged"
NA = "n/a"
REIMPLEMENTED = "†"  # a method rebuilt without the paper's full text
FAITHFUL = "‡"  # a paper_faithful row (selected on test, as the original code did)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    best: set[tuple[int, int]] = field(default_factory=set)  # (row, column) cells to emphasise
    notes: list[str] = field(default_factory=list)
    ours: dict[str, int] = field(default_factory=dict)  # our row label -> its row index
    summary: str = "mean"  # the column a run is summarised by (tested against the reference row)
    summary_at: int = 0  # the header index showing it (0: not shown; markers then go on the row name)
    p_column: int | None = None  # the p-value column; rich drops it and marks ``marks`` instead
    marks: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column) -> * / **
    p_rows: set[int] = field(default_factory=set)  # a sweep table's p-value rows; rich drops them, like p_column


def fmt_params(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:,.0f}K"


def fmt_paper(v) -> str:
    """A printed number as the paper printed it: YAML reads .770 as 0.77, so fractions get three decimals."""
    if v is None:
        return DASH
    return f"{v:.3f}" if isinstance(v, float) and abs(v) < 1 else str(v)


def fmt_cell(mean: float, std: float, n: int, scale: float) -> str:
    if n > 1:
        return f"{mean * scale:.3f} ± {std * scale:.3f}" if scale == 1 else f"{mean * scale:.2f} ± {std * scale:.2f}"
    return f"{mean * scale:.3f}" if scale == 1 else f"{mean * scale:.2f}"


def aggregate(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Index (row, column) -> mean, std (sample std over seeds; 0 for one seed), n seeds."""
    sub = df[df.metric == metric]
    agg = sub.groupby(["row", "column"], sort=False)["value"].agg(["mean", "std", "count"])
    return agg.fillna({"std": 0.0})


def our_column(paper_col: str, tasks: list[str], aliases: dict | None = None) -> str:
    """Which of our columns a paper column shows: a task of the same name (after the table's aliases), the
    i-th task for 't<i>', the mean, or the pooled accuracy for the Omniglot table's single 'accuracy' column."""
    paper_col = (aliases or {}).get(paper_col, paper_col)
    if paper_col in tasks:
        return paper_col
    if paper_col[:1] == "t" and paper_col[1:].isdigit() and int(paper_col[1:]) <= len(tasks):
        return tasks[int(paper_col[1:]) - 1]
    return {"accuracy": "pooled"}.get(paper_col, paper_col)


def cell(agg: pd.DataFrame, row: str, col: str, scale: float) -> str:
    if (row, col) not in agg.index:
        return DASH
    m = agg.loc[(row, col)]
    return fmt_cell(m["mean"], m["std"], int(m["count"]), scale)


def p_cell(test, is_reference: bool, untested: str = "") -> str:
    """What a p column (or a grid's p line) shows: the p-value ("—" when the test gave none), "ref" for the
    reference, ``untested`` for a row or cell not tested."""
    from mtlbench.report.significance import fmt_p
    if test is not None:
        return fmt_p(test.p) or DASH
    return "ref" if is_reference else untested


def our_paper_cell(agg, params, row: str, col: str, ours: str, scale: float, diverged: bool) -> str:
    if col == "params":
        return fmt_params(params[row]) if row in params else DASH
    return DIVERGED if diverged else cell(agg, row, ours, scale)

