"""The ``mtlbench`` command line. Only argument parsing and printing live here; the work is in the library.
Exit codes: 0 success, 1 a failure while running (bad data, missing file), 2 bad input (a spec or an option)."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mtlbench.cli.console import OneLineUsageErrors, err, error_line, out, takes_plugins
from mtlbench.cli.console import user_errors as _user_errors
from mtlbench.cli.launcher_options import with_launcher_options
from mtlbench.errors import UsageError

app = typer.Typer(
    help="Benchmark multi-task-learning methods on the TAAN and MTAL papers' data and render their tables.\n\n"
         "Typical flow: `mtlbench validate SPEC.yaml`, `mtlbench train SPEC.yaml`, `mtlbench compare SPEC.yaml`.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, cls=OneLineUsageErrors)
user_errors = _user_errors("interrupted: finished runs are saved; run the same command again to resume the "
                           "interrupted run from its last checkpoint")


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise UsageError(f"--seeds: expected comma-separated integers such as 0,1,2 (got {text!r})")
    from mtlbench.seeds import SEED_MAX
    if bad := [s for s in seeds if not 0 <= s <= SEED_MAX]:
        raise UsageError(f"--seeds: a seed is an integer from 0 to {SEED_MAX} (got {bad[0]})")
    return seeds


def parse_rows(text: str | None) -> list[str] | None:
    if text is None:
        return None
    rows = [r.strip() for r in text.split(",") if r.strip()]
    if not rows:
        raise UsageError(f"--rows: expected comma-separated row labels or globs such as 'TAAN*,STL' (got {text!r})")
    return rows


ROWS_HELP = ("only these method rows: comma-separated labels or shell globs, e.g. 'STL,DMTRL-*' (default: all); "
             "a row's records are the same whether it trains alone or with the others")


@contextmanager
def progress_bars(enabled: bool):
    if not enabled:
        yield None
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[status]}")]
    with Progress(*columns, console=err, transient=False) as bars:
        def factory(row: str, seed: int, total: int):
            task = bars.add_task(f"{row} seed {seed}", total=total, status="")
            def update(it: int, _total: int, info: dict) -> None:
                status = (f"loss {info['loss']:.4f}" if "loss" in info else "") + \
                    (f"  sel {info['select']:.4f}" if "select" in info else "")
                bars.update(task, completed=it, status=status)
            return update
        yield factory


@app.command()
@user_errors
@takes_plugins
@with_launcher_options
def train(spec: Path = typer.Argument(..., metavar="SPEC.yaml",
                                      help="a run spec (YAML), e.g. benchmarks/quickstart.yaml"),
          seeds: str | None = typer.Option(None, help="comma-separated seeds overriding the spec's, e.g. 0,1,2"),
          rows: str | None = typer.Option(None, help=ROWS_HELP),
          out_dir: Path | None = typer.Option(None, "--out", help="results directory (default: the spec's output.dir)"),
          progress: bool = typer.Option(True, help="show progress bars"),
          fmt: str = typer.Option("rich", "--format", help="table format after training: rich|markdown|latex|csv"),
          force: bool = typer.Option(False, "--force", help="retrain every run from scratch, over finished records, "
                                     "records of other settings and saved training states"),
          launcher_flags: dict | None = None,  # --launcher, --workers, ...: cli/launcher_options.py
          dry_run: bool = typer.Option(False, "--dry-run", help="with --launcher: print the jobs it would start "
                                       "(and their sbatch parameters) and start nothing")):
    """Train every method of SPEC for every seed, write one result record per run, and print the table.

    Runs whose record exists for the same run identity are skipped; an interrupted run resumes from its last
    checkpoint; a record of other settings at a run's place stops the command before training (exit 2) unless
    --force. A run whose loss or weights become non-finite is recorded as diverged and the command exits 1.

    --launcher local|slurm runs each (method, seed) as its own job (settings from the flags over the spec's
    `launcher:` section); `mtlbench status SPEC` shows where each job stands. Under `torchrun --nproc_per_node
    N -m mtlbench train SPEC` every run is trained data-parallel by the N processes."""
    from mtlbench.cli.rows import only_rows
    from mtlbench.config.launcher import with_flags
    from mtlbench.config.loader import load_spec
    from mtlbench.io import output_folder
    check_format(fmt)
    seed_list, row_patterns = parse_seeds(seeds), parse_rows(rows)
    output_folder(out_dir)
    whole = load_spec(spec)
    resolved = only_rows(whole, row_patterns)
    if not dry_run:
        results_folder(resolved, out_dir)
    settings = with_flags(resolved.spec.launcher, launcher_flags)
    log = lambda line: err.print(line, highlight=False, soft_wrap=True, markup=False)  # noqa: E731
    if settings.kind != "inprocess" or dry_run:
        return train_as_jobs(resolved, seed_list, out_dir, force, settings, dry_run, fmt, log, whole)
    from mtlbench.training.distributed import session
    from mtlbench.training.run import run_spec
    with (session(resolved.spec.training.device) as d,
          progress_bars(progress and err.is_terminal and d.main) as factory):
        records = run_spec(resolved, seed_list, out_dir, factory or plain_progress(), force=force, log=log, d=d)
    if d.main:
        print_table(spec_table(whole, out_dir), fmt)  # the whole table: rows trained now beside the others
        err.print(f"{len(records)} run(s) under {Path(out_dir or resolved.spec.output.dir) / resolved.spec.name}",
                  markup=False)
    exit_if_diverged(records, say=d.main)


def results_folder(resolved, out_dir: Path | None) -> Path:
    """Where the runs' files go (--out, else the spec's output.dir), refused before any work when it cannot
    be written (a read-only folder or file system)."""
    from mtlbench.io import writable_folder
    if out_dir is not None:
        return writable_folder(out_dir)
    return writable_folder(resolved.spec.output.dir, f"{resolved.file}: output.dir")


def exit_if_diverged(records, say: bool = True) -> None:
    diverged = [f"{r.row} seed {r.seed}" for r in records if r.status == "diverged"]
    if diverged:
        if say:
            error_line(f"{len(diverged)} run(s) diverged: {', '.join(diverged)}")
        raise typer.Exit(1)


def train_as_jobs(resolved, seeds, out_dir, force, settings, dry_run, fmt, log, whole) -> None:
    from mtlbench.config.launcher import env_world
    from mtlbench.launch.grid import dry_run as describe
    from mtlbench.launch.grid import launch_grid
    if env_world() > 1:
        raise UsageError("--launcher: under torchrun every process trains the same runs together; "
                         "start jobs without torchrun")
    if dry_run:
        for line in describe(resolved, seeds, out_dir, force, settings, log):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    outcome = launch_grid(resolved, seeds, out_dir, force, settings, log)
    if settings.kind == "slurm":
        where = Path(out_dir or resolved.spec.output.dir) / resolved.spec.name
        log(f"{len(outcome)} job(s) submitted; `mtlbench status {resolved.file}` follows them, "
            f"`mtlbench compare {resolved.file}` renders the table from {where} once they are done")
        return
    print_table(spec_table(whole, out_dir), fmt)
    bad = {i: state for i, state in outcome.items() if state != "done"}
    if bad:
        error_line(f"{len(bad)} run(s) did not finish: " + ", ".join(sorted(set(bad.values())))
                   + f"; `mtlbench status {resolved.file}` says why")
        raise typer.Exit(1)


@app.command()
@user_errors
@takes_plugins
def status(spec: Path = typer.Argument(..., metavar="SPEC.yaml", help="a run spec (YAML)"),
           seeds: str | None = typer.Option(None, help="comma-separated seeds overriding the spec's"),
           rows: str | None = typer.Option(None, help=ROWS_HELP),
           out_dir: Path | None = typer.Option(None, "--out",
                                               help="results directory (default: the spec's output.dir)")):
    """Where each (method, seed) run of SPEC stands: done, running, failed (with the last line of its job's
    log), missing or diverged, and the id of its latest job (from `mtlbench train --launcher ...`). A missing
    run with a saved training state says at which iteration it was saved: `mtlbench train` resumes it."""
    from rich.table import Table

    from mtlbench.cli.rows import only_rows
    from mtlbench.config.loader import load_spec
    from mtlbench.launch.status import spec_statuses
    row_patterns = parse_rows(rows)
    resolved = only_rows(load_spec(spec, check_data=False), row_patterns)
    table = Table(title=f"{resolved.spec.name}")
    for col in ("method", "seed", "status", "job", "detail"):
        table.add_column(col)
    colours = {"done": "green", "running": "cyan", "failed": "red", "diverged": "red", "missing": "yellow"}
    for st in spec_statuses(resolved, parse_seeds(seeds), out_dir):
        table.add_row(st.cell.row, str(st.cell.seed), f"[{colours[st.state]}]{st.state}[/]", st.job or "",
                      st.detail)
    out.print(table)


@app.command()
@user_errors
@takes_plugins
def sweep(spec: Path = typer.Argument(..., metavar="SPEC.yaml", help="a spec with a `sweep:` section, e.g. "
                                      "benchmarks/mtal_delta_sweep_cpu.yaml"),
          seeds: str | None = typer.Option(None, help="comma-separated seeds overriding the spec's, e.g. 0,1,2"),
          out_dir: Path | None = typer.Option(None, "--out", help="results directory (default: the spec's output.dir)"),
          progress: bool = typer.Option(True, help="show progress bars"),
          fmt: str = typer.Option("rich", "--format", help="table format: rich|markdown|latex|csv"),
          force: bool = typer.Option(False, "--force", help="retrain every point from scratch"),
          plot: Path | None = typer.Option(None, help="where to write the figure (default: "
                                              "<out>/<spec name>/sweep_<param>.png)"),
          no_plot: bool = typer.Option(False, "--no-plot", help="write no figure (no matplotlib needed)")):
    """Train every point of SPEC's sweep (its method row with one option set to each value, e.g. MTAL's delta),
    then print the metric and the method's reported scalars against the value and draw them (PNG).

    Each point is a normal run with its own record and run identity: finished points are skipped, an interrupted
    one resumes. `mtlbench compare SPEC [--plot PNG]` re-renders the table and figure without training."""
    from mtlbench.config.loader import load_spec
    from mtlbench.config.sweep import expand_sweep, require_sweep
    from mtlbench.report.compare import default_sweep_figure, sweep_report
    from mtlbench.training.run import run_spec
    check_format(fmt)
    seed_list = parse_seeds(seeds)
    resolved = require_sweep(load_spec(spec))
    results_folder(resolved, out_dir)
    log = lambda line: err.print(line, highlight=False, soft_wrap=True, markup=False)  # noqa: E731
    with progress_bars(progress and err.is_terminal) as factory:
        records = run_spec(expand_sweep(resolved), seed_list, out_dir, factory or plain_progress(), force=force,
                           log=log)
    figure = None if no_plot else plot or default_sweep_figure(resolved.spec, out_dir)
    print_table(sweep_report(resolved, out_dir, None, "test", figure), fmt)
    exit_if_diverged(records)


def plain_progress():
    """Without a terminal (CI logs), one line per evaluation instead of a redrawn bar."""
    def factory(row: str, seed: int, total: int):
        def update(it: int, _total: int, info: dict) -> None:
            if "select" in info and "loss" in info:
                err.print(f"{row} seed {seed}: iteration {it}/{total} loss {info['loss']:.4f} "
                          f"selection score {info['select']:.4f}", highlight=False, markup=False)
        return update
    return factory


@app.command()
@user_errors
@takes_plugins
def validate(spec: Path = typer.Argument(..., metavar="SPEC.yaml", help="a run spec (YAML)")):
    """Check SPEC without training: keys, types, method and dataset names, method options, data paths, and
    whether each method can run on the dataset. Exit 2 with one line per problem."""
    from mtlbench.config.loader import load_spec
    r = load_spec(spec)
    s = r.spec
    out.print(f"{spec}: ok -- {len(s.methods)} method(s) x {len(s.seeds)} seed(s) on {s.data.dataset} "
              f"({r.info.n_tasks} tasks, {r.info.input_mode} inputs, metric {r.info.primary_metric})")


class ListWhat(str, Enum):
    methods = "methods"
    datasets = "datasets"
    tables = "tables"
    weightings = "weightings"


@app.command("list")
@user_errors
@takes_plugins
def list_(what: ListWhat = typer.Argument(..., metavar="methods|datasets|tables|weightings",
                                         help="methods | datasets | tables | weightings"),
          pattern: str = typer.Option("*", help="glob filter on names, e.g. 'dmtrl*'"),
          params: Path | None = typer.Option(None, "--params", metavar="SPEC.yaml",
                                                help="with `methods`: parameter counts of every method of SPEC, "
                                                     "built for its dataset (per-task stems apart), beside the "
                                                     "paper's '# of params'")):
    """List registered methods, datasets or loss weightings, or the paper tables `compare` can render."""
    from rich.table import Table
    if params is not None:
        if what != ListWhat.methods:
            raise UsageError("--params goes with `mtlbench list methods`")
        return print_param_counts(params)
    table = Table(show_header=True)
    if what == ListWhat.tables:
        from mtlbench.config.paper_tables import paper_tables
        table.add_column("table"), table.add_column("title")
        for name, t in paper_tables().items():
            table.add_row(name, t["title"])
    else:
        from mtlbench.registry import DATASETS, METHODS, WEIGHTINGS
        reg = {ListWhat.methods: METHODS, ListWhat.datasets: DATASETS, ListWhat.weightings: WEIGHTINGS}[what]
        table.add_column(what.value[:-1]), table.add_column("description" if what == ListWhat.datasets else "paper")
        if what == ListWhat.methods:
            table.add_column("optimizer groups")
        if what == ListWhat.weightings:
            table.add_column("acts on")
        table.add_column("from")
        for name in reg.names(pattern):
            obj = reg.get(name)
            extra = ([", ".join(obj.group_names())] if what == ListWhat.methods else
                     [weighting_acts_on(obj)] if what == ListWhat.weightings else [])
            table.add_row(name, entry_summary(obj), *extra, reg.origin(name).label)
    out.print(table)


def entry_summary(obj) -> str:
    """A method's or a weighting's paper in short form (from the bibliography), else a dataset's description or
    the first line of its doc."""
    from mtlbench.config.bibliography import cited_by
    ref = cited_by(obj)
    return (ref.short() if ref else getattr(obj, "description", "")
            or (obj.__doc__ or "").strip().split("\n")[0])


def weighting_acts_on(cls) -> str:
    """'losses' or 'per-task gradients of the shared parameters', and the install line a solver-based one needs
    when its solver is missing."""
    what = "losses" if cls.kind == "loss" else "per-task gradients of the shared parameters"
    return what + (f" (needs: {cls.install})" if cls.missing() else "")


def print_param_counts(spec: Path) -> None:
    from rich.table import Table

    from mtlbench.config.loader import load_spec
    from mtlbench.config.paper_tables import get_paper_table
    from mtlbench.report.cells import fmt_params
    from mtlbench.report.sizes import counts_for_spec
    resolved = load_spec(spec)
    paper = get_paper_table(resolved.spec.table) if resolved.spec.table else None
    has_params = paper is not None and "params" in paper["columns"]
    table = Table(title=f"parameters of {resolved.spec.name} ({resolved.info.n_tasks} tasks)")
    for col in ["method", "row", "trainable", "", "of which stems", "buffers"] + (["paper"] if has_params else []):
        table.add_column(col, justify="left" if col in ("method", "row") else "right")
    for r in counts_for_spec(resolved):
        paper_cell = paper["rows"].get(r["row"], ["—"])[0] if has_params else None
        table.add_row(r["method"], r["row"], f"{r['trainable']:,}", fmt_params(r["trainable"]), f"{r['stems']:,}",
                      f"{r['buffers']:,}", *([str(paper_cell or "—")] if has_params else []))
    out.print(table)


@app.command()
@user_errors
@takes_plugins
def compare(target: str = typer.Argument(..., metavar="SPEC_OR_TABLE",
                                         help="a run spec (YAML) or a paper table name (mtlbench list tables)"),
            fmt: str = typer.Option("rich", "--format", help="rich | markdown | latex | csv"),
            results: Path | None = typer.Option(None, help="results directory (default: the spec's output.dir)"),
            metric: str | None = typer.Option(None, help="metric to show (default: the dataset's primary metric)"),
            split: str = typer.Option("test", help="split to show: test | val"),
            vs: str | None = typer.Option(None, "--vs", metavar="ROW", help="reference row of the paired test "
                                             "(default: the spec's hard_share row, for TAAN Figure 3 "
                                             "the TAAN row; '' for none)"),
            correction: str = typer.Option("none", "--correct", help="none | holm: adjust the p-values for the "
                                           "number of rows (a sweep's cells) tested, Holm's step-down method, so "
                                           "a marker holds for the table as a whole"),
            plot: Path | None = typer.Option(None, "--plot", metavar="PNG", help="also draw the figure of a "
                                                "sweep: a spec's `sweep:` (e.g. MTAL's delta) or a paper table with "
                                                "a grid (TAAN Figure 3), error bars = std over seeds")):
    """Render a table from stored result records (never retrains): mean ± std over seeds per method and task,
    with the paper's printed numbers beside ours when the spec names a paper table (MTAL's Table 6: the
    kernel-sharing ratios per conv layer), and each row's p-value against the reference row (two-sided paired
    t-test over seeds of the table's summary column; `--correct holm` adjusts them for their number). A spec
    with a `sweep:` section renders its sweep (the metric and the method's reported scalars against the swept
    value)."""
    from mtlbench.report.compare import table_for
    check_format(fmt)
    if split not in ("test", "val"):
        raise UsageError(f"--split: expected test or val (got {split!r})")
    if metric is not None:
        get_metric_or_usage(metric)
    from mtlbench.report.significance import CORRECTIONS
    if correction not in CORRECTIONS:
        raise UsageError(f"--correct: expected {' or '.join(CORRECTIONS)} (got {correction!r})")
    print_table(table_for(target, results, metric, split, plot, vs, correction), fmt)


@app.command()
@user_errors
@takes_plugins
def export(spec: Path = typer.Argument(..., metavar="SPEC.yaml", help="a run spec (YAML) whose records are exported"),
           results: Path | None = typer.Option(None, help="results directory (default: the spec's output.dir)"),
           out_file: Path | None = typer.Option(None, "--out", metavar="CSV", help="write here (default: stdout)")):
    """Every stored score of SPEC's records as one long CSV table: one row per method, label, weighting, seed,
    task, split and metric, with the selected step and the code version and run identity (pandas.read_csv reads
    it as it is). Never trains."""
    from mtlbench.config.loader import load_spec
    from mtlbench.io import atomic_write_text
    from mtlbench.report.export import spec_long_table
    if out_file is not None and out_file.is_dir():
        raise UsageError(f"--out: {out_file} is a directory; expected a CSV file name")
    text = spec_long_table(load_spec(spec, check_data=False), results).to_csv(index=False)
    if out_file is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(out_file, text)
        err.print(f"written {out_file}", markup=False)


@app.command()
@user_errors
@takes_plugins
def timing(spec: Path = typer.Argument(..., metavar="SPEC.yaml", help="a run spec (YAML); every method in it is timed"),
           vs: str | None = typer.Option("hard_share", help="reference method for the ratio columns "
                                            "(added to the run if the spec lacks it); '' for none"),
           iterations: int = typer.Option(10, min=1, help="iterations per timed block"),
           blocks: int = typer.Option(5, min=1, help="timed blocks (median and range are reported)"),
           warmup: int = typer.Option(3, min=0, help="discarded warm-up iterations per method and mode"),
           out_dir: Path | None = typer.Option(None, "--out",
                                               help="results directory (default: the spec's output.dir)"),
           fmt: str = typer.Option("rich", "--format", help="rich | markdown | latex | csv")):
    """Seconds per 100 training and inference iterations for each method of SPEC, with each method's ratio to
    the reference measured in the same run. Batches are drawn before the clock starts (timed apart, the "data"
    column), warm-up iterations are discarded, the methods take turns inside every timed block, and the median
    and range over blocks are reported. Writes <out>/<spec name>/timing.json."""
    from mtlbench.config.loader import load_spec
    from mtlbench.config.paper_tables import timing_paper_table
    from mtlbench.io import atomic_write_json, output_folder
    from mtlbench.report.timing_table import build_timing_table
    from mtlbench.training.run import load_data
    from mtlbench.training.timing import time_spec, with_reference
    check_format(fmt)
    output_folder(out_dir)
    resolved = load_spec(spec)
    results_folder(resolved, out_dir)
    if vs:
        resolved = with_reference(resolved, vs)
    result = time_spec(resolved, load_data(resolved), warmup, iterations, blocks, vs or None,
                       progress=lambda what: err.print(f"timing {what} ...", highlight=False))
    path = Path(out_dir or resolved.spec.output.dir) / resolved.spec.name / "timing.json"
    atomic_write_json(path, result)
    print_table(build_timing_table(result, timing_paper_table(resolved.spec)), fmt)
    err.print(f"written {path}", markup=False)


@app.command()
@user_errors
@takes_plugins
def report(run: Path = typer.Argument(..., metavar="RUN",
                                      help="a result record, a method's run folder, or a spec's results folder"),
           plots: bool = typer.Option(True, help="write one heat-map PNG per layer and matrix "
                                                 "(needs matplotlib: pip install 'mtlbench[plot]')"),
           figures: Path | None = typer.Option(None, help="folder for the PNGs (default: <run folder>/figures)"),
           matrix: str = typer.Option("distance", help="which matrices: distance | cosine | both"),
           top: int = typer.Option(5, min=1, help="most isolated tasks listed per layer"),
           activations: bool = typer.Option(False, help="MTAL runs: draw the first two conv layers' kernel pairs and "
                                                        "their activation maps (Figures 10-11; needs the run's weights "
                                                        "and its prepared data)")):
    """Print the per-layer task-distance and cosine matrices stored with finished runs (TAAN Figures 2 and 4;
    MTAL: the mean kernel cosine of every task pair per conv layer, distance = 1 - cosine), each task's nearest
    task and the most isolated tasks (a matrix too wide for the terminal is summarised so, beside its heat map;
    for a folder of several runs, by its most isolated tasks only -- report one record for the nearest-task
    table), per layer over the seeds of a row, and, on planted synthetic data, how well the matrices recover the
    planted task groups. With plots, each run's training loss per task at every evaluation too (MTAL Figure 12)."""
    from mtlbench.report.analysis import KINDS, records_at
    from mtlbench.report.render_analysis import print_over_seeds, print_record_analysis, task_loss_figure
    kinds = KINDS if matrix == "both" else (matrix,)
    if any(k not in KINDS for k in kinds):
        raise UsageError(f"--matrix: expected distance, cosine or both (got {matrix!r})")
    if plots or activations:
        from mtlbench.report.plots import pyplot
        pyplot("--plots" if plots else "--activations")
    records = records_at(run)
    for record in records:
        print_record_analysis(out, record, kinds, plots, figures, top, neighbours=len(records) == 1)
        if plots and (png := task_loss_figure(record, figures)):  # MTAL Figure 12
            out.print(f"{record.row} seed {record.seed}: training loss per task {png}", highlight=False, soft_wrap=True)
        if activations:  # MTAL Figures 10-11
            from mtlbench.report.activations import activation_figures
            for png in activation_figures(record, figures):
                out.print(f"{record.row} seed {record.seed}: kernel pairs and activations {png}", highlight=False,
                          soft_wrap=True)
    print_over_seeds(out, records, top)


@app.command()
@user_errors
@takes_plugins
def check(spec: Path | None = typer.Argument(None, metavar="SPEC.yaml", help="the run spec whose records are "
                                                "checked (with --claims: only the claims whose evidence uses it)"),
          against: Path = typer.Option(..., help="reference results folder, e.g. results/reference (records "
                                                 "under DIR/<spec name>/, and timing.json beside them if ratios "
                                                 "are checked)"),
          results: Path | None = typer.Option(None, help="fresh results folder (default: the spec's output.dir)"),
          metric: str | None = typer.Option(None, help="metric compared (default: check.metric or the primary)"),
          split: str | None = typer.Option(None, help="test | val (default: check.split)"),
          per_task: bool | None = typer.Option(None, "--per-task/--mean-only",
                                                  help="check every task too (default: check.per_task)"),
          tolerance: float | None = typer.Option(None, help="allowed absolute drop with fewer than "
                                                    "check.min_seeds reference seeds (default: check.tolerance)"),
          std_k: float | None = typer.Option(None, help="allowed drop in reference standard deviations "
                                                "(default: check.std_k)"),
          timing_tolerance: float | None = typer.Option(None, help="allowed relative growth of a timing ratio "
                                                           "(default: check.timing_tolerance)"),
          fmt: str = typer.Option("rich", "--format", help="rich | markdown (a pull-request summary) | latex | csv"),
          junit: Path | None = typer.Option(None, help="also write JUnit XML here (what CI systems display)"),
          claims: bool = typer.Option(False, "--claims", help="gate on the papers' claims (mtlbench claims): every "
                                      "claim that holds on the --against records must still hold on --results")):
    """Check fresh result records against reference records: per method (and optionally per task) the mean score
    must not fall below the reference by more than the tolerance, and timing ratios must not grow beyond theirs.

    Tolerances come from the spec's `check:` section, overridden by these options. Exit 0 when every check holds,
    1 with the table of checks when one regressed (a diverged or missing run is a regression), 2 for bad input."""
    from mtlbench.io import atomic_write_text
    from mtlbench.report.check import as_table, to_junit, tolerances
    check_format(fmt)
    if junit is not None and junit.is_dir():
        raise UsageError(f"--junit: {junit} is a directory; expected a file name such as check.xml")
    if claims:
        from mtlbench.config.schema import CheckSpec
        from mtlbench.report.claims_render import run_gate
        tol = tolerances(CheckSpec(), tolerance=tolerance, std_k=std_k)
        result = run_gate([str(spec)] if spec else [], against, results or Path("results/runs"), tol)
    elif spec is None:
        raise UsageError("mtlbench check: SPEC.yaml is required (or --claims to gate on the papers' claims)")
    else:
        result = check_one_spec(spec, against, results, metric, split, per_task, tolerance, std_k, timing_tolerance)
    if junit is not None:
        atomic_write_text(junit, to_junit(result))
    print_table(as_table(result), fmt)
    if result.failures:
        error_line(f"{len(result.failures)} check(s) failed: " + "; ".join(f.detail for f in result.failures))
        raise typer.Exit(1)


def check_one_spec(spec, against, results, metric, split, per_task, tolerance, std_k, timing_tolerance):
    """The regression check of one spec's fresh records against its reference records."""
    from mtlbench.config.loader import load_spec
    from mtlbench.metrics import get_metric
    from mtlbench.report.check import check_spec, fresh_folder, reference_folder, tolerances
    resolved = load_spec(spec, check_data=False)
    s = resolved.spec
    tol = tolerances(s.check, metric=metric, split=split, per_task=per_task, tolerance=tolerance, std_k=std_k,
                     timing_tolerance=timing_tolerance)
    if tol.metric is not None:
        get_metric_or_usage(tol.metric)
    return check_spec(s, fresh_folder(results or s.output.dir, s.name, spec), reference_folder(against, s.name),
                      tol, lambda m: get_metric(m).higher_is_better)


CLAIM_FORMATS = ("rich", "markdown", "csv", "json")


@app.command()
@user_errors
@takes_plugins
def claims(specs: list[str] | None = typer.Argument(None, metavar="[SPEC ...]", help="only the claims whose "
                                                       "evidence uses these benchmark specs (files or names)"),
           results: Path = typer.Option(Path("results/reference"), help="results folder the evidence is read from"),
           fmt: str = typer.Option("rich", "--format", help="rich | markdown | csv | json"),
           catalogue: Path | None = typer.Option(None, help="a claims catalogue (default: the package's)"),
           readme: Path | None = typer.Option(None, metavar="README.md", help="write the markdown table into "
                                                 "this file between its results markers (instead of printing)")):
    """Test each claim the TAAN and MTAL papers make about their results on the stored records: the paper's
    figure, ours (mean ± std, n), the test and its Holm-adjusted p-value (over the whole catalogue), the protocol
    tier the evidence was measured at, and a verdict: holds, does not hold, inconclusive, not testable here, or
    no evidence (the records lack the claim's rows)."""
    from mtlbench.report.claims_render import run_claims
    if fmt not in CLAIM_FORMATS:
        raise UsageError(f"--format: expected one of {', '.join(CLAIM_FORMATS)} (got {fmt!r})")
    text, table = run_claims(specs or [], results, catalogue, "markdown" if readme else fmt)
    if readme is not None:
        from mtlbench.report.claims_render import write_readme
        write_readme(readme, text)
        err.print(f"written the results section of {readme}", markup=False)
    elif fmt == "rich":
        from mtlbench.report.claims_render import to_rich
        out.print(to_rich(table))
    else:
        sys.stdout.write(text)


def get_metric_or_usage(name: str):
    from mtlbench.metrics import get_metric
    from mtlbench.registry import UnknownNameError
    try:
        return get_metric(name)
    except UnknownNameError as e:
        raise UsageError(f"--metric: {e}") from None


def spec_table(resolved, out_dir):
    from mtlbench.report.compare import table_for_spec
    return table_for_spec(resolved.spec, resolved.file, out_dir, None, "test")


FORMATS = ("rich", "markdown", "latex", "csv")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"--format: expected one of {', '.join(FORMATS)} (got {fmt!r})")


def print_table(table, fmt: str) -> None:
    from mtlbench.report.render import RENDERERS, to_rich
    if fmt == "rich":
        out.print(to_rich(table))
    else:
        sys.stdout.write(RENDERERS[fmt](table))


from mtlbench.cli.prepare import prepare_app  # noqa: E402  (its sub-commands import their work lazily)

app.add_typer(prepare_app, name="prepare")


if __name__ == "__main__":
    app()
