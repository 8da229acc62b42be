"""`mtlbench compare`: find the records of a spec (or of the benchmark spec behind a paper table) and build
its table."""
from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from mtlbench.errors import UsageError
from mtlbench.report.tables import Table, build_table, get_paper_table, paper_tables
from mtlbench.results import experiment_key, load_records

BENCHMARKS = Path("benchmarks")


def table_for(target: str, results: Path | None, metric: str | None, split: str) -> Table:
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.exists():
        from mtlbench.config.loader import load_spec
        resolved = load_spec(path, check_data=False)
        return table_for_spec(resolved.spec, path, results, metric, split)
    if target in paper_tables():
        return table_for_paper(target, results, metric, split)
    if difflib.get_close_matches(target, list(paper_tables()), n=1, cutoff=0.6):
        get_paper_table(target)  # raises the "did you mean" error for a near-miss table name
    raise UsageError(f"{target}: neither a spec file nor a paper table (mtlbench list tables)")


def table_for_spec(spec, file: Path, results: Path | None, metric: str | None, split: str) -> Table:
    if results is not None and not Path(results).is_dir():
        raise UsageError(f"--results: {results} is not a directory")
    root = Path(results or spec.output.dir) / spec.name
    records = load_records(root) if root.exists() else []
    rows = [m.row for m in spec.methods]
    current = spec.model_dump(mode="json")
    records = [r for r in records if r.row in rows]
    stale = [r for r in records if experiment_key(r.spec, r.row) != experiment_key(current, r.row)]
    records = [r for r in records if r not in stale]
    check_metric_stored(records, metric, split, root)
    paper = get_paper_table(spec.table) if spec.table else None
    if paper and metric and records and metric != records[0].primary_metric:
        paper = None  # the paper's numbers are of its own metric: never print them beside another one
    table = build_table(records, metric, split, paper, rows, spec_hint=str(file))
    if stale:
        table.notes.append(f"left out {len(stale)} record(s) made with other settings of the same rows "
                           f"(e.g. {stale[0].path}); re-run them or move them away")
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


def check_metric_stored(records, metric: str | None, split: str, root: Path) -> None:
    """A --metric the records do not hold would render a table of dashes: refuse it, naming what they hold."""
    scored = [r for r in records if r.metrics]
    held = sorted({m for r in scored for m in r.metrics.get(split, {})})
    if metric and scored and metric not in held:
        raise UsageError(f"--metric {metric}: the records under {root} hold {', '.join(held) or 'no metric'} "
                         f"on {split}, not {metric}")
