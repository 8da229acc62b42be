"""The claims catalogue (``claims.yaml``, package data): what the two papers claim about their results, each claim
with the evidence that tests it here and the test. Data, not code; this module reads and checks it.

A claim names its evidence by benchmark spec (``benchmarks/<spec>.yaml``), the spec's rows, the metric, the column
(``mean`` over tasks, ``pooled``, a task, or a layer) and the split. The checks run in two steps, both refusing with
one ``FILE:LINE: field: problem`` line per problem (exit 2), like a spec's: the entry's shape (pydantic, unknown
keys refused), then what it names (the spec file exists, the rows are the spec's, the metric is one mtlbench has).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mtlbench.errors import SpecError

CATALOGUE = Path(__file__).with_name("claims.yaml")
BENCHMARKS = Path("benchmarks")
KINDS = ("greater", "best", "count", "ratio", "fraction", "matches", "most_distant", "formula", "untestable")
# evidence read from records other than their metrics: the parameter count, MTAL's kernel-sharing ratio (a),
# and the timing ratios of `mtlbench timing` (timing.json)
SPECIAL_METRICS = ("n_params", "kernel_sharing", "train_time", "infer_time")
TIERS = {"cpu_size": "CPU size", "paper_protocol": "the paper's protocol", "paper_size": "paper size",
         "analytic": "analytic (no runs)", "none": "—"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Evidence(Strict):
    specs: list[str] = Field(min_length=1, description="benchmark specs (benchmarks/<spec>.yaml) whose records "
                                                        "are the evidence")
    rows: list[str] = Field(min_length=1, description="the specs' row labels the test reads")
    metric: str = Field(description="a metric of the records (accuracy, map@10, ...) or n_params | "
                                    "kernel_sharing | train_time | infer_time")
    column: str = Field(default="mean", description="mean (over tasks) | pooled | a task | a conv layer / total "
                                                     "(kernel_sharing)")
    split: Literal["test", "val"] = "test"
    layer: int | None = Field(default=None, description="most_distant: the layer index (0 = first, -1 = last)")
    paper_runs: list[float] | None = Field(default=None, description="matches: the paper's per-run values")


class Test(Strict):
    kind: Literal[KINDS]  # type: ignore[valid-type]
    winners: list[str] | None = Field(default=None, description="best: the rows the paper says are on top")
    reference: str | None = Field(default=None, description="count: the row the others are compared with")
    at_least: int | None = Field(default=None, ge=1, description="count: how many rows must beat the reference")
    band: tuple[float, float] | None = Field(default=None, description="ratio, fraction: [low, high]")
    task: str | None = Field(default=None, description="most_distant: the task the paper names")
    check: str | None = Field(default=None, description="formula: the computation that tests it")
    reason: str | None = Field(default=None, description="untestable: why not here")


class Claim(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    paper: Literal["TAAN", "MTAL"]
    place: str = Field(description="table / figure / section, e.g. 'Table 3'")
    quote: str = Field(description="the paper's numbers, as printed")
    statement: str = Field(description="the claim in testable form")
    tier: Literal[tuple(TIERS)]  # type: ignore[valid-type]
    evidence: Evidence | None = None
    test: Test

    @model_validator(mode="after")
    def _fits_its_kind(self) -> Claim:
        problem = kind_problem(self)
        if problem:
            raise ValueError(problem)
        return self


class Catalogue(Strict):
    claims: list[Claim] = Field(min_length=1)


def kind_problem(c: Claim) -> str | None:
    """What a claim of its test kind lacks (or has in excess), as one phrase; None when it fits."""
    t, ev = c.test, c.evidence
    if t.kind == "untestable":
        return None if t.reason else "test.reason: an untestable claim says why"
    if t.kind == "formula":
        return None if t.check in FORMULA_CHECKS else f"test.check: one of {', '.join(FORMULA_CHECKS)}"
    if ev is None:
        return f"evidence: a {t.kind} claim needs evidence (specs, rows, metric)"
    need = {"greater": 2, "ratio": 2, "matches": 1, "most_distant": 1, "fraction": 1}
    if t.kind in need and len(ev.rows) != need[t.kind]:
        return f"evidence.rows: a {t.kind} claim names {need[t.kind]} row(s) (got {len(ev.rows)})"
    if t.kind == "best" and (not t.winners or not set(t.winners) < set(ev.rows)):
        return "test.winners: a best claim names winners among (and fewer than) evidence.rows"
    if t.kind == "count" and (t.reference is None or t.at_least is None or t.at_least > len(ev.rows)):
        return "test: a count claim names a reference row and at_least <= the number of rows"
    if t.kind in ("ratio", "fraction") and (t.band is None or t.band[0] > t.band[1]):
        return "test.band: [low, high] with low <= high"
    if t.kind == "ratio" and ev.metric not in ("train_time", "infer_time"):
        return "evidence.metric: a ratio claim reads train_time or infer_time"
    if t.kind == "matches" and (not ev.paper_runs or len(ev.paper_runs) < 2):
        return "evidence.paper_runs: a matches claim lists the paper's per-run values (two or more)"
    if t.kind == "most_distant" and (t.task is None or ev.layer is None):
        return "test.task and evidence.layer: a most_distant claim names the task and the layer"
    return None


FORMULA_CHECKS = ("taan_lemma1_printed", "mtal_table6_denominator")


# -- reading ----------------------------------------------------------------------------------------------------
def load_catalogue(path: Path | None = None, check_names: bool = True) -> tuple[Catalogue, Path, dict]:
    """The catalogue at ``path`` (default: the package's), checked; (catalogue, path, line map)."""
    from mtlbench.config.loader import Problems, describe_error, read_yaml
    path = shown_path(Path(path or CATALOGUE))
    try:
        raw, lines = read_yaml(path)
    except SpecError as e:  # read_yaml speaks of a spec; this file is a catalogue
        raise SpecError([p.replace("the spec", "the catalogue") for p in e.problems]) from None
    problems = Problems(path, lines)
    try:
        catalogue = Catalogue.model_validate(raw)
    except ValidationError as err:
        for e in err.errors():
            loc, msg = tuple(e["loc"]), e["msg"]
            if e["type"] == "value_error":  # a claim that does not fit its test kind: the claim's line
                problems.add(loc, msg.removeprefix("Value error, "))
            else:
                problems.add(loc, describe_error(e, Catalogue, loc))
        raise SpecError(problems.items) from None
    seen: dict[str, int] = {}
    for i, claim in enumerate(catalogue.claims):
        if claim.id in seen:
            problems.add(("claims", i, "id"), f"duplicate claim id {claim.id!r} (first at claims[{seen[claim.id]}])")
        seen.setdefault(claim.id, i)
    if check_names:
        for i, claim in enumerate(catalogue.claims):
            for loc, message in name_problems(claim):
                problems.add(("claims", i, *loc), message)
    if problems.items:
        raise SpecError(problems.items)
    return catalogue, path, lines


def name_problems(claim: Claim) -> list[tuple[tuple, str]]:
    """What a claim's evidence names that does not exist: a spec file, a row of its specs, a metric."""
    ev = claim.evidence
    if ev is None:
        return []
    out = []
    rows: set[str] = set()
    for j, name in enumerate(ev.specs):
        spec = benchmark_spec(name)
        if spec is None:
            out.append((("evidence", "specs", j), f"no benchmark spec {name!r} ({BENCHMARKS / name}.yaml)"))
            continue
        rows |= {m.row for m in spec.methods} | {m.table_row for m in spec.methods if getattr(m, "table_row", None)}
    if len(out) == 0:
        named = [*ev.rows, *(claim.test.winners or []), *([claim.test.reference] if claim.test.reference else [])]
        for r in dict.fromkeys(named):
            if r not in rows:
                out.append((("evidence", "rows"), f"no row {r!r} in {', '.join(ev.specs)} (rows: "
                                                  f"{', '.join(sorted(rows))})"))
    if ev.metric not in SPECIAL_METRICS:
        from mtlbench.metrics import get_metric
        from mtlbench.registry import UnknownNameError
        try:
            get_metric(ev.metric)
        except UnknownNameError as e:
            out.append((("evidence", "metric"), f"{e} (or one of {', '.join(SPECIAL_METRICS)})"))
    return out


def shown_path(path: Path) -> Path:
    """The path relative to the working directory where it lies below it (what an error line shows)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


_SPECS: dict[str, object] = {}


def benchmark_spec(name: str):
    """The RunSpec of ``benchmarks/<name>.yaml`` (a sweep spec: with its points as rows); None when absent."""
    path = BENCHMARKS / f"{name}.yaml"
    if not path.is_file():
        return None
    key = str(path.resolve())
    if key not in _SPECS:
        from mtlbench.config.loader import load_spec
        resolved = load_spec(path, check_data=False)
        if resolved.spec.sweep is not None:
            from mtlbench.config.sweep import expand_sweep
            resolved = expand_sweep(resolved)
        _SPECS[key] = resolved.spec
    return _SPECS[key]
