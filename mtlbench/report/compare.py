"""`mtlbench compare`: find the records of a spec (or of the benchmark spec behind a paper table) and build
its table, each row tested against a reference row (``--vs``; default: the spec's Hard-Share row) -- a sweep
spec's (``sweep:``) table and figure too."""
from __future__ import annotations

import difflib
from pathlib import Path

import pandas as pd
import yaml

from mtlbench.config.paper_tables import get_paper_table, paper_tables, timing_paper_table
from mtlbench.errors import UsageError
from mtlbench.report.cells import Table, aggregate
from mtlbench.report.joined import join_records, table_rows
from mtlbench.report.sharing import sharing_table
from mtlbench.report.tables import build_table
from mtlbench.results import RunRecord, experiment_key, load_records, method_version, tidy

BENCHMARKS = Path("benchmarks")


def table_for(target: str, results: Path | None, metric: str | None, split: str, plot: Path | None = None,
              vs: str | None = None, correction: str = "none") -> Table:
    """The table of a spec file or a paper table; for a sweep spec, the sweep's. ``plot``: where to draw the
    figure of a sweep spec or of a paper table with a grid (refused, before anything is drawn, for others)."""
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.exists():
        from mtlbench.config.loader import load_spec
        resolved = load_spec(path, check_data=False)
        if resolved.spec.sweep is not None:
            return sweep_report(resolved, results, metric, split, plot)
        spec, note = resolved.spec, None
    elif target in paper_tables():
        found = spec_naming(target, results)
        if found is None and plot is not None:
            raise UsageError(f"--plot: no spec under {BENCHMARKS}/ names table {target!r}: nothing to draw")
        if found is None:
            table = build_table([], metric, split, get_paper_table(target), [], "")
            table.notes.append(f"no spec under {BENCHMARKS}/ names table {target!r} yet")
            return table
        path, spec, note = found
    else:
        if difflib.get_close_matches(target, list(paper_tables()), n=1, cutoff=0.6):
            get_paper_table(target)  # raises the "did you mean" error for a near-miss table name
        raise UsageError(f"{target}: neither a spec file nor a paper table (mtlbench list tables)")
    drawn = table_plot(spec, target, results, split, plot) if plot is not None else None
    table = table_for_spec(spec, path, results, metric, split, vs, correction)
    if note:
        table.notes.append(note)
    return with_figure(table, drawn)


def with_figure(table: Table, figure: Path | None) -> Table:
    if figure is not None:
        table.notes.append(f"figure: {figure}")
    return table


def reference_row(spec, vs: str | None, paper: dict | None = None) -> str | None:
    """The row every other row is tested against: ``vs`` (a row label; '' for none), by default the row of the
    spec's hard_share method, else the reference a sweep table's grid names (TAAN Figure 3: the unregularised
    TAAN) when the spec has that row; none otherwise."""
    rows = table_rows(spec)
    if vs is None:
        grid_ref = ((paper or {}).get("grid") or {}).get("reference")
        return next((m.shown_as for m in spec.methods if m.name == "hard_share"),
                    grid_ref if grid_ref in rows else None)
    if vs and vs not in rows:
        raise UsageError(f"--vs: {spec.name} has no row {vs!r} (rows: {', '.join(rows)}; '' for no test)")
    return vs or None


def spec_records(spec, results: Path | None) -> tuple[list[RunRecord], list[RunRecord]]:
    """(the records of the spec's rows made with its current settings, those made with other settings)."""
    if results is not None and not Path(results).is_dir():
        raise UsageError(f"--results: {results} is not a directory")
    root = Path(results or spec.output.dir) / spec.name
    records = load_records(root) if root.exists() else []
    rows = [m.row for m in spec.methods]
    current = spec.model_dump(mode="json")
    records = [r for r in records if r.row in rows]
    stale = [r for r in records if experiment_key(r.spec, r.row) != experiment_key(current, r.row)]
    return one_run_of_seed_free_rows(spec, [r for r in records if r not in stale]), stale


def seed_free_rows(spec) -> list[str]:
    """The rows of methods whose run no seed changes (MTAL's MTDA: a deterministic fit on the fixed split)."""
    from mtlbench.registry import METHODS
    return [m.row for m in spec.methods if m.name in METHODS and not METHODS.get(m.name).uses_seed]


def one_run_of_seed_free_rows(spec, records: list[RunRecord]) -> list[RunRecord]:
    """A seed-free row's records are copies of one run (records written before `train` knew it): its lowest
    seed's stands for the row, so it renders n = 1, without a spread or a paired test."""
    free = set(seed_free_rows(spec))
    first = {}
    for r in records:
        if r.row in free:
            first[r.row] = min(first.get(r.row, r.seed), r.seed)
    return [r for r in records if r.row not in free or r.seed == first[r.row]]


def seed_free_note(spec, records: list[RunRecord]) -> str | None:
    shown = {m.row: m.shown_as for m in spec.methods}
    rows = list(dict.fromkeys(shown[row] for row in seed_free_rows(spec) if any(r.row == shown[row] for r in records)))
    if not rows:
        return None
    return (f"{', '.join(rows)}: deterministic (no random numbers, and the split is data.split_seed's): one run "
            "stands for every seed, n = 1, no spread and no paired test")


def old_version_note(records: list[RunRecord]) -> str | None:
    """A note naming the rows whose records were made by an older computation of their method
    (results.METHOD_VERSIONS): they are shown, marked; `train` refuses to skip or overwrite them without --force."""
    old = [r for r in records if (r.method_version or 1) < method_version(r.method)]
    if not old:
        return None
    rows = ", ".join(sorted({r.row for r in old}))
    by_version: dict[tuple[int, int], set[str]] = {}
    for r in old:
        by_version.setdefault((r.method_version or 1, method_version(r.method)), set()).add(r.method)
    versions = "; ".join(f"{', '.join(sorted(names))} version {was}, now {now}"
                         for (was, now), names in sorted(by_version.items()))
    return (f"old computation: {len(old)} record(s) of {rows} were made by an older version of their method "
            f"({versions}); shown as made; `mtlbench train --force --rows ROW` retrains them")


def stale_note(stale: list[RunRecord]) -> str:
    return (f"left out {len(stale)} record(s) made with other settings of the same rows (e.g. {stale[0].path}); "
            "re-run them or move them away")


def table_for_spec(spec, file: Path, results: Path | None, metric: str | None, split: str,
                   vs: str | None = None, correction: str = "none") -> Table:
    timing = timing_paper_table(spec)
    if timing:  # TAAN's Table 2: seconds, not scores
        return timing_table(spec, file, results, timing)
    paper = get_paper_table(spec.table) if spec.table else None
    records, stale = spec_records(spec, results)
    check_metric_stored(records, metric, split, Path(results or spec.output.dir) / spec.name)
    records, joined = join_records(spec, records)
    rows = table_rows(spec)
    if paper and metric and records and metric != records[0].primary_metric:
        paper = None  # the paper's numbers are of its own metric: never print them beside another one
    if paper and paper.get("layout") == "kernel_sharing":  # MTAL's Table 6: ratios from the records' summaries
        table = sharing_table(records, paper, rows, spec_hint=str(file))
    else:
        table = build_table(records, metric, split, paper, rows, spec_hint=str(file),
                            reference=reference_row(spec, vs, paper), correction=correction)
    table.notes += joined
    if note := seed_free_note(spec, records):
        table.notes.append(note)
    if stale:
        table.notes.append(stale_note(stale))
    if (note := old_version_note(records)) is not None:
        table.notes.append(note)
    return table


def timing_table(spec, file: Path, results: Path | None, paper: dict) -> Table:
    """A timing spec's table from its stored timing.json (the table `mtlbench timing` printed); before that
    file exists, the paper's seconds alone."""
    from mtlbench.report.cells import fmt_paper
    from mtlbench.report.check import load_timing
    from mtlbench.report.timing_table import build_timing_table
    path = Path(results or spec.output.dir) / spec.name / "timing.json"
    if not path.exists():
        rows = [[row, *(fmt_paper(v) for v in values)] for row, values in paper["rows"].items()]
        return Table(paper["title"], ["method", "paper train s", "paper infer s"], rows,
                     notes=[f"no {path} yet: `mtlbench timing {file}` measures it", f"paper: {paper['metric']}"])
    return build_timing_table(load_timing(path), paper)


def default_sweep_figure(spec, results: Path | None) -> Path:
    return Path(results or spec.output.dir) / spec.name / f"sweep_{spec.sweep.param}.png"


def sweep_report(resolved, results: Path | None, metric: str | None, split: str, plot: Path | None) -> Table:
    """A sweep spec's table from its points' records (never trains); its figure written to ``plot`` when given."""
    from mtlbench.config.sweep import expand_sweep
    from mtlbench.report.sweep import sweep_png, sweep_points, sweep_table
    spec = resolved.spec
    records, stale = spec_records(expand_sweep(resolved).spec, results)
    sweep = spec.sweep.model_dump(mode="json")
    metric = metric or (records[0].primary_metric if records else "accuracy")
    points = sweep_points(records, sweep, metric, split)
    table = sweep_table(points, sweep, records[0].tasks if records else [], metric, split)
    if stale:
        table.notes.append(stale_note(stale))
    if (note := old_version_note(records)) is not None:
        table.notes.append(note)
    if plot is not None:
        table.notes.append(f"figure: {sweep_png(points, sweep, metric, Path(plot))}")
    return table


def table_plot(spec, target: str, results: Path | None, split: str, path: Path) -> Path:
    """The figure a paper table has: MTAL Figure 8 for a table with ``figure: task_spread``, else the line plot of
    a table with a grid."""
    paper = get_paper_table(spec.table) if spec.table else None
    if paper and paper.get("figure") == "task_spread":
        return spread_plot(spec, paper, results, split, path)
    return grid_plot(spec, target, results, split, path)


def spread_plot(spec, paper: dict, results: Path | None, split: str, path: Path) -> Path:
    """MTAL Figure 8 from a table's records: per method the mean over tasks of its task means over seeds, the
    spread over tasks as an error bar; the paper's printed row beside it (a column it prints as n/a is left out)."""
    from mtlbench.report.cells import our_column
    from mtlbench.report.plots import task_spread_png
    records, _ = spec_records(spec, results)
    records, _ = join_records(spec, records)
    metric = records[0].primary_metric if records else "accuracy"
    agg = aggregate(tidy(records, split), metric) if records else pd.DataFrame()
    tasks = max((r.tasks for r in records), key=len, default=[])
    series = []
    for row in table_rows(spec):
        columns = [our_column(c, tasks, paper.get("column_aliases")) for c in paper["columns"]]
        ours = [agg.loc[(row, c), "mean"] for c in columns if (row, c) in agg.index]
        series.append((row, "ours", ours))
        series.append((row, "paper", [v for v in map(paper_number, paper["rows"].get(row, [])) if v is not None]))
    return task_spread_png(series, f"{paper['title']} (MTAL Figure 8: mean and spread over tasks)",
                           f"{metric} on {split}, mean over tasks ± std over tasks", path)


def paper_number(text) -> float | None:
    """A printed cell as a number: '0.76±0.025' -> 0.76, '1' -> 1.0, None for a cell it does not print."""
    if text is None:
        return None
    try:
        return float(str(text).split("±")[0])
    except ValueError:
        return None


def grid_plot(spec, target: str, results: Path | None, split: str, path: Path) -> Path:
    """The line plot of a paper table with a ``grid`` (e.g. TAAN Figure 3): ours beside the paper's, error
    bars = std over seeds."""
    from mtlbench.report.grid import grid_series
    from mtlbench.report.plots import grid_png
    paper = get_paper_table(spec.table) if spec.table else None
    if not paper or not paper.get("grid"):
        raise UsageError(f"--plot: {target} renders {spec.table or 'no paper table'}, not a sweep (a spec with a "
                         f"`sweep:` section, or a paper table with a grid such as taan_figure3_omniglot_regularizers)")
    records, _ = spec_records(spec, results)
    metric = records[0].primary_metric if records else ""
    agg = aggregate(tidy(records, split), metric) if records else pd.DataFrame()
    column = "pooled accuracy" if paper["grid"].get("ours") == "pooled" else f"mean {metric} over tasks"
    return grid_png(grid_series(agg, paper), paper["title"], paper["grid"].get("x_label", ""),
                    f"{column} on {split}", path)


def spec_naming(table: str, results: Path | None):
    """(path, spec, note) of the benchmark spec that renders a paper table: of several naming it, the one with
    the most finished rows, else the one closest to the paper's rows; None when no spec names it."""
    from mtlbench.config.loader import load_spec
    loaded = [(path, load_spec(path, check_data=False).spec) for path in specs_naming(table)]
    if not loaded:
        return None
    path, spec = max(loaded, key=lambda ps: coverage(ps[1], results, get_paper_table(table)))
    note = None
    if len(loaded) > 1:
        others = ", ".join(str(p) for p, _ in loaded if p != path)
        note = (f"rendered from {path} (the spec naming this table with the most finished rows; also naming it: "
                f"{others})")
    return path, spec, note


def coverage(spec, results: Path | None, paper: dict) -> tuple[int, int]:
    """(rows with current records, rows that are paper rows): which of several specs naming a table to render --
    the one that has run, else the one closest to the paper's rows (a one-row spec loses to the full table)."""
    records, _ = spec_records(spec, results)
    rows = {m.row for m in spec.methods}
    return len({r.row for r in records}), len(rows & set(paper.get("rows", {})))


def specs_naming(table: str) -> list[Path]:
    return [p for p in sorted(BENCHMARKS.rglob("*.y*ml")) if spec_table_name(p) == table]


def spec_table_name(path: Path) -> str | None:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data.get("table") if isinstance(data, dict) else None


def check_metric_stored(records, metric: str | None, split: str, root: Path) -> None:
    """A --metric the records do not hold would render a table of dashes: refuse it, naming what they hold."""
    scored = [r for r in records if r.metrics]
    held = sorted({m for r in scored for m in r.metrics.get(split, {})})
    if metric and scored and metric not in held:
        raise UsageError(f"--metric {metric}: the records under {root} hold {', '.join(held) or 'no metric'} "
                         f"on {split}, not {metric}")
