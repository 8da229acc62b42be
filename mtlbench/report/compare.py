"""`mtlbench compare`: find the records of a spec (or of the benchmark spec behind a paper table) and build
its table -- a sweep spec's (``sweep:``) table and figure too."""
from __future__ import annotations

from pathlib import Path

import yaml

from mtlbench.errors import MTLBenchError, UsageError
from mtlbench.report.sharing import sharing_table
from mtlbench.report.tables import Table, build_table, get_paper_table, paper_tables
from mtlbench.results import RunRecord, experiment_key, load_records

BENCHMARKS = Path("benchmarks")


def table_for(target: str, results: Path | None, metric: str | None, split: str, plot: Path | None = None) -> Table:
    """The table of a spec file or a paper table; for a sweep spec, the sweep's (and its figure at ``plot``)."""
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.exists():
        from mtlbench.config.loader import load_spec
        resolved = load_spec(path, check_data=False)
        if resolved.spec.sweep is not None:
            return sweep_report(resolved, results, metric, split, plot)
        if plot is not None:
            raise UsageError(f"--plot: {path} has no sweep section (figures are drawn for sweeps)")
        return table_for_spec(resolved.spec, path, results, metric, split)
    if target in paper_tables():
        return table_for_paper(target, results, metric, split)
    get_paper_table(target)  # raises the "did you mean" error for a near-miss table name
    raise MTLBenchError(f"{target}: neither a spec file nor a paper table")


def spec_records(spec, results: Path | None) -> tuple[list[RunRecord], list[RunRecord]]:
    """(records of the spec's rows made with its current settings, records of its rows made with others)."""
    if results is not None and not Path(results).is_dir():
        raise MTLBenchError(f"--results: {results} is not a directory")
    root = Path(results or spec.output.dir) / spec.name
    records = load_records(root) if root.exists() else []
    rows = [m.row for m in spec.methods]
    current = spec.model_dump(mode="json")
    records = [r for r in records if r.row in rows]
    stale = [r for r in records if experiment_key(r.spec, r.row) != experiment_key(current, r.row)]
    return [r for r in records if r not in stale], stale


def stale_note(stale: list[RunRecord]) -> str:
    return (f"left out {len(stale)} record(s) made with other settings of the same rows (e.g. {stale[0].path}); "
            "re-run them or move them away")


def table_for_spec(spec, file: Path, results: Path | None, metric: str | None, split: str) -> Table:
    records, stale = spec_records(spec, results)
    rows = [m.row for m in spec.methods]
    paper = get_paper_table(spec.table) if spec.table else None
    if paper and metric and records and metric != records[0].primary_metric:
        paper = None  # the paper's numbers are of its own metric: never print them beside another one
    if paper and paper.get("layout") == "kernel_sharing":  # MTAL's Table 6: ratios from the records' summaries
        table = sharing_table(records, paper, rows, spec_hint=str(file))
    else:
        table = build_table(records, metric, split, paper, rows, spec_hint=str(file))
    if stale:
        table.notes.append(stale_note(stale))
    return table


def default_sweep_figure(spec, results: Path | None) -> Path:
    return Path(results or spec.output.dir) / spec.name / f"sweep_{spec.sweep.param}.png"


def sweep_report(resolved, results: Path | None, metric: str | None, split: str, plot: Path | None) -> Table:
    """The sweep's table from its points' records (never trains); its figure written to ``plot`` when given."""
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
    if plot is not None:
        table.notes.append(f"figure: {sweep_png(points, sweep, metric, Path(plot))}")
    return table


def table_for_paper(name: str, results: Path | None, metric: str | None, split: str) -> Table:
    """Render a paper table from the benchmark specs that name it; paper numbers alone when none has run."""
    specs = [p for p in sorted(BENCHMARKS.rglob("*.y*ml")) if spec_table_name(p) == name]
    if not specs:
        table = build_table([], metric, split, get_paper_table(name), [], "")
        table.notes.append(f"no spec under {BENCHMARKS}/ names table {name!r} yet")
        return table
    from mtlbench.config.loader import load_spec
    resolved = load_spec(specs[0], check_data=False)
    return table_for_spec(resolved.spec, specs[0], results, metric, split)


def spec_table_name(path: Path) -> str | None:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data.get("table") if isinstance(data, dict) else None
