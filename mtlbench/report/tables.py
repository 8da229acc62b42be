"""Paper-style tables from stored result records: one row per method, one column per task, a mean column,
mean ± std over seeds, and -- where the spec names a paper table -- the paper's printed row beside ours.

Rendering never trains and never imports torch. A cell we have no result for renders as "—" and a footnote
says which spec fills it. A row with a diverged seed renders as "diverged" in every cell, never as a number
(a mean over the seeds that survived would flatter the method). A paper table may name our columns differently
(``column_aliases``: the paper's "Typographic" is our "Typographic*") and declare columns we cannot fill offline
(``unavailable``: Office-Home Art); those render "n/a" with a footnote saying how to prepare the data, unless
the records hold the task. A row whose records say the method is a reimplementation (``summary.reimplementation``:
MTDA, rebuilt without the paper's full text) is marked "†" with a footnote.
"""
from __future__ import annotations

import pandas as pd

from mtlbench.report.cells import (
    DASH,
    DIVERGED,
    FAITHFUL,
    NA,
    REIMPLEMENTED,
    Table,
    aggregate,
    cell,
    fmt_paper,
    fmt_params,
    our_column,
    our_paper_cell,
)
from mtlbench.report.paired_tests import add_tests
from mtlbench.results import RunRecord, tidy


def build_table(records: list[RunRecord], metric: str | None = None, split: str = "test",
                paper: dict | None = None, rows: list[str] | None = None, spec_hint: str = "",
                reference: str | None = None, correction: str = "none") -> Table:
    """``reference``: a row every other row is tested against (a paired t-test over seeds, significance.py);
    ``correction``: how the p-values are adjusted for their number ("none" | "holm")."""
    df = tidy(records, split)
    metric = metric or (records[0].primary_metric if records else "")
    agg = aggregate(df, metric) if len(df) else pd.DataFrame()
    params, seeds, diverged = per_row(records)
    ours = rows or list(dict.fromkeys(r.row for r in records))
    tasks = records[0].tasks if records else []
    table = build_layout(agg, params, {row: len(s) for row, s in seeds.items()}, ours, tasks, paper, metric, split,
                         spec_hint, set(diverged))
    add_record_notes(table, records, paper, diverged)
    if reference is not None:
        add_tests(table, df[df.metric == metric], paper, reference, set(diverged), correction)
    if not (paper and paper.get("grid")):  # a grid's cells are no per-task scores
        add_summary_columns(table, df[df.metric == metric], tasks, metric, records, set(diverged))
    return table


def add_summary_columns(table: Table, df: pd.DataFrame, tasks: list[str], metric: str, records: list[RunRecord],
                        diverged: set[str]) -> None:
    """Delta_m % against the single-task row (the first row trained by ``stl``) and the mean rank over tasks,
    as columns after the others (report/summary.py); a paper row or a row without results shows a dash."""
    from mtlbench.report.summary import summary_columns
    rows = [r for r in table.ours if r not in diverged]
    stl = next((r for r in table.ours if any(rec.row == r and rec.method == "stl" for rec in records)), None)
    for header, cells in summary_columns(df, tasks, metric, rows, stl).items():
        table.header.append(header)
        by_index = {i: cells.get(row, DASH) for row, i in table.ours.items()}
        for i, r in enumerate(table.rows):
            r.append(by_index.get(i, DASH))


def per_row(records: list[RunRecord]) -> tuple[dict[str, int], dict[str, set[int]], dict[str, list[int]]]:
    """Each row's parameter count, its seeds, and its diverged seeds (rows without any left out)."""
    params, seeds, diverged = {}, {}, {}
    for r in records:
        params.setdefault(r.row, r.n_params)
        seeds.setdefault(r.row, set()).add(r.seed)
        if r.status == "diverged":
            diverged.setdefault(r.row, []).append(r.seed)
    return params, seeds, diverged


def add_record_notes(table: Table, records: list[RunRecord], paper: dict | None,
                     diverged: dict[str, list[int]]) -> None:
    """What the records say beyond their scores: tasks without data, paper_faithful and reimplemented rows,
    diverged seeds, the methods' own warnings."""
    missing = sorted({t for r in records for t in r.data_metadata.get("missing_tasks", [])})
    if missing and not paper:
        table.notes.append(f"not in these runs (data not prepared): {', '.join(missing)}")
    mark_faithful(table, sorted({r.row for r in records if r.paper_faithful}))
    mark_reimplementations(table, {r.row: r.summary["reimplementation"] for r in records
                                   if r.summary.get("reimplementation")})
    for row, bad in diverged.items():
        table.notes.append(f"{row} diverged (non-finite loss or weights; no score) for seed(s) "
                           f"{', '.join(map(str, sorted(bad)))}")
    for (row, warning), warned in method_warnings(records).items():
        table.notes.append(f"{row} seed(s) {', '.join(map(str, sorted(warned)))}: {warning}")


def mark_faithful(table: Table, faithful: list[str]) -> None:
    if not faithful:
        return
    for row in faithful:  # the row's name carries the label too, wherever the table is pasted
        if row in table.ours:
            table.rows[table.ours[row]][0] += f" {FAITHFUL}"
    table.notes.append(f"{FAITHFUL} paper_faithful (selected on test rows, as the original code did): "
                       f"{', '.join(faithful)}")


def method_warnings(records: list[RunRecord]) -> dict[tuple[str, str], list[int]]:
    """{(row, warning): seeds} for the warnings methods put in their records' summaries (e.g. a DMTRL run that
    factorised random tensors because its STL checkpoint was missing): a table must not mix such seeds with the
    others unsaid."""
    warned: dict[tuple[str, str], list[int]] = {}
    for r in records:
        for part in r.summary.values():
            if isinstance(part, dict) and part.get("warning"):
                warned.setdefault((r.row, part["warning"]), []).append(r.seed)
    return warned


def mark_reimplementations(table: Table, why: dict[str, str]) -> None:
    """Our rows of a method rebuilt without the paper's full text (its record's summary says so) get a dagger
    and a footnote saying what the reimplementation rests on."""
    paper = table.header[1:2] == ["source"]
    for cells in table.rows:
        if cells[0] in why and (not paper or cells[1].startswith("ours")):
            table.notes.append(f"{REIMPLEMENTED} {cells[0]}: reimplementation, {why[cells[0]]}")
            cells[0] = f"{cells[0]} {REIMPLEMENTED}"


def build_layout(agg, params, seeds, ours, tasks, paper, metric, split, spec_hint, diverged) -> Table:
    if diverged:  # such rows have no numbers to show or to rank
        agg = agg[~agg.index.get_level_values(0).isin(list(diverged))] if not agg.empty else agg
    if paper and paper.get("grid"):  # a sweep (TAAN Figure 3): rows x swept values
        from mtlbench.report.grid import grid_layout
        return grid_layout(agg, seeds, ours, paper, spec_hint, diverged)
    if paper:
        return paper_layout(agg, params, seeds, ours, tasks, paper, metric, spec_hint, diverged)
    return task_layout(agg, params, seeds, ours, tasks, metric, split, spec_hint, diverged)


def task_layout(agg, params, seeds, ours, tasks, metric, split, spec_hint, diverged) -> Table:
    """No paper table: one column per task, the mean (and the pooled accuracy where recorded)."""
    cols = tasks + ["mean"] + (["pooled"] if (not agg.empty and "pooled" in agg.index.get_level_values(1)) else [])
    short = len(tasks) > 8 and max(map(len, tasks)) > 10  # e.g. YouTube-8M's verticals: t1..t16 + a legend
    heads = [f"t{i + 1}" for i in range(len(tasks))] + cols[len(tasks):] if short else cols
    table = Table(f"{metric} on {split}", ["method", *heads, "params", "seeds"], [])
    if short:
        table.notes.append("tasks: " + ", ".join(f"t{i + 1} = {t}" for i, t in enumerate(tasks)))
    for row in ours:
        table.ours[row] = len(table.rows)
        table.rows.append([row, *[DIVERGED if row in diverged else cell(agg, row, c, 1.0) for c in cols],
                           fmt_params(params[row]) if row in params else DASH, str(seeds.get(row, 0))])
    mark_best(table, agg, ours, cols, offset=1)
    table.summary_at = 1 + cols.index("mean")
    note_missing(table, ours, seeds, spec_hint)
    return table


def note_missing(table: Table, ours: list[str], seeds: dict, spec_hint: str) -> None:
    missing = [r for r in ours if r not in seeds]
    if missing:
        table.notes.append(f"no result yet for {', '.join(missing)}: run `mtlbench train {spec_hint}`")


def mark_best(table: Table, agg: pd.DataFrame, rows: list[str], cols: list[str], offset: int,
              row_index: dict[str, int] | None = None) -> None:
    for j, c in enumerate(cols):
        vals = {r: agg.loc[(r, c), "mean"] for r in rows if (r, c) in agg.index}
        if len(vals) > 1:
            best = max(vals, key=vals.get)
            table.best.add(((row_index or {r: i for i, r in enumerate(rows)})[best], j + offset))


def paper_layout(agg, params, seeds, ours, tasks, paper, metric, spec_hint, diverged) -> Table:
    """Our rows beside the paper's: per paper column, our task it shows (``column_aliases``), or n/a."""
    cols = list(paper["columns"])
    aliases = paper.get("column_aliases") or {}
    mapped = [our_column(c, tasks, aliases) for c in cols]
    unavailable = unavailable_columns(paper, tasks, aliases)
    table = Table(paper["title"], ["method", "source", *cols], [], notes=[f"metric: {paper.get('metric', metric)}"])
    scale = 100.0 if "(%)" in paper.get("metric", "") else 1.0
    index = {}
    for row in dict.fromkeys([*ours, *paper["rows"]]):
        if row in ours:
            index[row] = len(table.rows)
            table.rows.append([row, f"ours (n={seeds.get(row, 0)})",
                               *our_paper_cells(agg, params, row, zip(cols, mapped), unavailable, scale,
                                                row in diverged)])
        if row in paper["rows"]:
            table.rows.append([row, "paper", *[fmt_paper(v) for v in paper["rows"][row]]])
    mark_best(table, agg, [r for r in ours if r in seeds], mapped, offset=2, row_index=index)
    table.ours, table.summary = index, "pooled" if "pooled" in mapped else "mean"
    table.summary_at = 2 + mapped.index(table.summary) if table.summary in mapped else 0
    add_paper_notes(table, paper, cols, unavailable, ours, seeds, spec_hint)
    return table


def unavailable_columns(paper: dict, tasks: list[str], aliases: dict) -> dict[str, str]:
    """{paper column: how to get its data} for the columns the paper declares unavailable offline and the
    records do not hold."""
    return {c: how for c, how in paper.get("unavailable", {}).items() if our_column(c, tasks, aliases) not in tasks}


def our_paper_cells(agg, params, row: str, columns, unavailable: dict, scale: float, diverged: bool) -> list[str]:
    return [NA if c in unavailable else our_paper_cell(agg, params, row, c, m, scale, diverged) for c, m in columns]


def add_paper_notes(table: Table, paper: dict, cols: list[str], unavailable: dict[str, str], ours: list[str],
                    seeds: dict, spec_hint: str) -> None:
    """Unavailable and renamed columns, rows without results, paper rows the spec does not run, the setup."""
    table.notes += [f"{NA}: {c} -- {how}" for c, how in unavailable.items()]
    renamed = {c: a for c, a in (paper.get("column_aliases") or {}).items() if c in cols}
    if renamed:
        table.notes.append("paper columns shown with our tasks: "
                           + ", ".join(f"{c} = our {a}" for c, a in renamed.items()))
    note_missing(table, ours, seeds, spec_hint)
    absent = [r for r in paper["rows"] if r not in ours]
    if absent:
        table.notes.append(f"paper rows not in this spec: {', '.join(absent)}")
    if "setup" in paper:
        table.notes.append(f"paper setup: {paper['setup']}")

