"""Tables and figures of a swept option (TAAN Figure 3: each functional regularizer x its coefficient c).

A paper table that is a sweep declares a ``grid`` in paper_tables.yaml: its columns are values of the swept
option, each with the x it is plotted at and the suffix our row labels carry for it::

    grid:
      x_label: regularization coefficient c
      ours: pooled                      # which of our columns a cell shows (else the mean over tasks)
      columns:
        c_0.0: {x: 0.0, suffix: ""}      # (TAAN, c_0.0) is our row "TAAN"
        c_0.1: {x: 0.1, suffix: " c=0.1"} # (TAAN+L_dis, c_0.1) is our row "TAAN+L_dis c=0.1"

so the cell (paper row R, column C) is filled by our row labelled R + suffix(C): the same matching by label as
every other table. Each cell shows mean ± std over seeds, the paper's row beside ours. With a reference row
(the grid's ``reference``, or ``compare --vs``), a "p vs <reference>" line under each of our rows tests every
cell against the reference cell, paired over seeds (significance.py); rich drops those lines and marks the cells.
``grid_series`` gives the same numbers to ``plots.grid_png`` (a line per row, error bars = std over seeds; the
paper's dashed).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from mtlbench.report.cells import DASH, DIVERGED, Table, cell, fmt_paper, p_cell

PAPER_CELL = re.compile(r"^\s*([-+0-9.eE]+)\s*(?:±\s*([0-9.eE]+))?\s*$")


@dataclass
class Series:
    row: str
    source: str  # "ours" | "paper"
    x: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    level: bool = False  # a single point by design (the paper prints one cell: the unregularised TAAN at c = 0)


def our_label(paper_row: str, grid: dict, column: str) -> str:
    return paper_row + grid["columns"][column].get("suffix", "")


def summary_column(agg: pd.DataFrame, grid: dict) -> str:
    want = grid.get("ours", "mean")
    return want if agg.empty or want in agg.index.get_level_values(1) else "mean"


def grid_layout(agg: pd.DataFrame, seeds: dict, ours: list[str], paper: dict, spec_hint: str,
                diverged: set[str]) -> Table:
    grid, cols = paper["grid"], list(paper["grid"]["columns"])
    col = summary_column(agg, grid)
    table = Table(paper["title"], ["method", "source", *cols], [], notes=[f"metric: {paper.get('metric', '')}"],
                  summary=col)
    for row, printed in paper["rows"].items():
        table.rows.append(our_grid_row(agg, seeds, ours, row, [our_label(row, grid, c) for c in cols], col, diverged))
        table.rows.append([row, "paper", *[fmt_paper(v) for v in printed]])
    table.notes += grid_notes(seeds, ours, paper, col, spec_hint)
    return table


def our_grid_row(agg: pd.DataFrame, seeds: dict, ours: list[str], row: str, labels: list[str], col: str,
                 diverged: set[str]) -> list[str]:
    """Paper row ``row``'s line of ours: per column, the cell of our row labelled for it."""
    n = sorted({seeds[lab] for lab in labels if lab in seeds})
    return [row, f"ours (n={'/'.join(map(str, n)) or 0})",
            *[DIVERGED if lab in diverged else cell(agg, lab, col, 1.0) if lab in ours else DASH for lab in labels]]


def grid_notes(seeds: dict, ours: list[str], paper: dict, col: str, spec_hint: str) -> list[str]:
    """How our cells are labelled and summarised, which have no result yet, which paper cells have no row."""
    grid, cols = paper["grid"], list(paper["grid"]["columns"])
    summary = "pooled accuracy" if col == "pooled" else "mean over tasks"
    notes = [f"ours: mean ± sample std over seeds of the {summary}; "
             f"our row for (R, c) is labelled R + the column's suffix (e.g. "
             f"{our_label(list(paper['rows'])[-1], grid, cols[-1])!r})"]
    labels = [our_label(row, grid, c) for row in paper["rows"] for c in cols]
    missing = [lab for lab in labels if lab in ours and lab not in seeds]
    if missing:
        notes.append(f"no result yet for {', '.join(missing)}: run `mtlbench train {spec_hint}`")
    absent = absent_cells(paper, ours)
    if absent:
        notes.append(f"paper cells without a row in this spec: {', '.join(absent)}")
    return notes


def absent_cells(paper: dict, ours: list[str]) -> list[str]:
    """The labels of printed paper cells that no row of the spec fills."""
    grid, cols = paper["grid"], list(paper["grid"]["columns"])
    return [our_label(r, grid, c) for r, printed in paper["rows"].items() for c, v in zip(cols, printed)
            if v is not None and our_label(r, grid, c) not in ours]


def grid_series(agg: pd.DataFrame, paper: dict) -> list[Series]:
    """Ours and the paper's numbers of every row of the grid, as plotted."""
    grid, out = paper["grid"], []
    col = summary_column(agg, grid)
    for row, printed in paper["rows"].items():
        level = sum(parse_paper_cell(v) is not None for v in printed) == 1
        ours, theirs = Series(row, "ours", level=level), Series(row, "paper", level=level)
        for c, value in zip(grid["columns"], printed):
            x, lab = grid["columns"][c]["x"], our_label(row, grid, c)
            if (lab, col) in agg.index:
                m = agg.loc[(lab, col)]
                ours.x.append(x), ours.mean.append(float(m["mean"])), ours.std.append(float(m["std"]))
            parsed = parse_paper_cell(value)
            if parsed:
                theirs.x.append(x), theirs.mean.append(parsed[0]), theirs.std.append(parsed[1])
        out += [s for s in (ours, theirs) if s.x]
    return out


def parse_paper_cell(value) -> tuple[float, float] | None:
    """'0.8412±0.0077' -> (0.8412, 0.0077); a bare number has std 0; None / '—' -> None."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value), 0.0
    m = PAPER_CELL.match(str(value))
    return (float(m.group(1)), float(m.group(2) or 0.0)) if m else None


def add_grid_paired_tests(table: Table, df: pd.DataFrame, paper: dict, reference: str, diverged: set[str],
                          correction: str = "none") -> None:
    """Under each of our rows a "p vs <reference>" line: each cell's runs against the reference's, paired over
    seeds, on the grid's summary column ("ref" in the reference's own cell, "" where the cell has no runs, "—"
    where it has too few seeds shared with the reference). The cells tested are many (Figure 3: 12): the
    footnote says how many marks chance alone would give, or ``correction`` adjusts them as one family."""
    from mtlbench.report.significance import marker, p_label, seed_values, test_family, test_notes
    grid, cols = paper["grid"], list(paper["grid"]["columns"])
    values = seed_values(df, table.summary)
    labels = {(i, j): our_label(cells[0], grid, c) for i, cells in enumerate(table.rows)
              if cells[1].startswith("ours") for j, c in enumerate(cols)}
    tested = {at: label for at, label in labels.items()
              if label != reference and label not in diverged and label in values}
    tests = test_family(tested, values, reference, correction)
    rows = []
    for i, cells in enumerate(table.rows):
        rows.append(cells)
        if not cells[1].startswith("ours"):
            continue
        line = [cells[0], p_label(reference, correction)]
        for j in range(len(cols)):
            line.append(p_cell(tests.get((i, j)), labels[(i, j)] == reference))
            if (i, j) in tests and marker(tests[(i, j)].p):
                table.marks[(len(rows) - 1, 2 + j)] = marker(tests[(i, j)].p)
        if any(v not in ("", "ref") for v in line[2:]):
            table.p_rows.add(len(rows))
            rows.append(line)
    table.rows = rows
    table.notes += test_notes(reference, table.summary, [(tested[at], t) for at, t in tests.items()], "cell",
                              correction)
