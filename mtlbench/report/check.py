"""``mtlbench check``: fresh result records against reference records, the regression check a CI job runs.

For every method row of the spec (and, with ``per_task``, every task) the mean score over the fresh seeds
may fall below the mean over the reference seeds by at most the allowed drop: ``std_k`` times the
reference's standard deviation over seeds when the reference has at least ``min_seeds`` seeds (never less
than ``min_tolerance``), else the absolute ``tolerance``. Every metric mtlbench stores is higher-is-better;
the caller says so for the metric checked. A row with a diverged fresh seed, or with no fresh record, is a
regression. Where the reference folder holds ``timing.json`` (written by ``mtlbench timing``), each method's
training and inference time ratio to the reference method may grow by at most ``timing_tolerance``
(relative); a ratio is measured within one run, so it means the same on a slower or busier machine.

Pure Python and pandas: no torch.
"""
from __future__ import annotations

import json
import statistics
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlbench.errors import InputError
from mtlbench.report.cells import Table
from mtlbench.results import RunRecord, experiment_key, load_records

FAILING = ("regressed", "diverged", "missing")
TIMING = "timing.json"


@dataclass
class Finding:
    row: str
    checked: str  # "map@10 mean", "map@10 A1", "train time / Hard-Share"
    reference: str
    fresh: str
    change: str
    allowed: str
    status: str  # ok | regressed | diverged | missing
    detail: str = ""  # the sentence a CI log or JUnit failure shows

    @property
    def failed(self) -> bool:
        return self.status in FAILING


@dataclass
class CheckResult:
    spec_name: str
    reference: Path
    fresh: Path
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.failed]


def reference_folder(against: Path, spec_name: str) -> Path:
    """``DIR/<spec name>`` when it exists, else ``DIR`` itself when it holds the spec's row folders."""
    against = Path(against)
    if not against.is_dir():
        raise InputError(f"--against: {against} is not a directory (expected a results folder such as "
                         f"results/reference)")
    for folder in (against / spec_name, against):
        if folder.is_dir() and (any(folder.glob("*/seed*.json")) or (folder / TIMING).exists()):
            return folder
    raise InputError(f"--against: {against} holds no records of {spec_name!r} (expected "
                     f"{against / spec_name}/<row>/seed<k>.json)")


def fresh_folder(results: Path, spec_name: str, spec_file: Path) -> Path:
    folder = Path(results) / spec_name
    if not any(folder.glob("*/seed*.json")):
        raise InputError(f"no fresh records of {spec_name!r} under {folder}; run `mtlbench train {spec_file}` "
                         "first (or point --results at them)")
    return folder


def check_spec(spec, fresh: Path, reference: Path, tol,
               higher_is_better: Callable[[str], bool] = lambda metric: True) -> CheckResult:
    """``spec``: the RunSpec; ``tol``: its CheckSpec with any command-line overrides applied;
    ``higher_is_better(metric)``: the metric's direction (the metric registry knows it)."""
    result = CheckResult(spec.name, reference, fresh)
    rows = [m.row for m in spec.methods]
    current = spec.model_dump(mode="json")
    fresh_records = current_records(load_records(fresh), rows, current, result, "fresh")
    ref_records = [r for r in load_records(reference) if r.row in rows]
    metric = tol.metric or next((r.primary_metric for r in [*ref_records, *fresh_records]), None)
    for row in rows:
        refs = [r for r in ref_records if r.row == row]
        news = [r for r in fresh_records if r.row == row]
        if not refs or any(r.status == "diverged" for r in refs):
            result.notes.append(f"{row}: {'the reference diverged' if refs else 'no reference record'}, not checked")
            continue
        result.findings += check_row(row, refs, news, metric, tol, higher_is_better(metric))
    note_setting_changes(ref_records, current, result)
    result.findings += check_timing(reference / TIMING, fresh / TIMING, tol.timing_tolerance, result)
    return result


def current_records(records: list[RunRecord], rows: list[str], current: dict, result: CheckResult,
                    which: str) -> list[RunRecord]:
    """The records of the spec's rows made with its current settings; others are left out with a note."""
    records = [r for r in records if r.row in rows]
    stale = [r for r in records if experiment_key(r.spec, r.row) != experiment_key(current, r.row)]
    if stale:
        result.notes.append(f"left out {len(stale)} {which} record(s) made with other settings of the same rows "
                            f"(e.g. {stale[0].path})")
    return [r for r in records if r not in stale]


def note_setting_changes(refs: list[RunRecord], current: dict, result: CheckResult) -> None:
    from mtlbench.results import key_differences
    for r in refs:
        diffs = key_differences(experiment_key(r.spec, r.row), experiment_key(current, r.row))
        if diffs:
            result.notes.append(f"the reference of {r.row} was made with other settings: {'; '.join(diffs[:3])}")
            return


def scores(records: list[RunRecord], metric: str, split: str, column: str) -> list[float]:
    out = []
    for r in records:
        entry = (r.metrics or {}).get(split, {}).get(metric)
        if entry is None:
            held = sorted({m for rec in records for m in (rec.metrics or {}).get(split, {})})
            raise InputError(f"{r.path}: holds no {metric} on {split} (it has: {', '.join(held) or 'none'}); "
                             "choose check.metric / --metric among them")
        value = entry.mean if column == "mean" else entry.tasks.get(column)
        if value is not None:
            out.append(value)
    return out


def fmt_scores(values: list[float]) -> str:
    if not values:
        return "—"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {std:.4f} (n={len(values)})" if len(values) > 1 else \
        f"{values[0]:.4f} (n=1)"


def allowed_drop(ref: list[float], tol) -> tuple[float, str]:
    if len(ref) >= tol.min_seeds:
        drop = max(tol.std_k * statistics.stdev(ref), tol.min_tolerance)
        return drop, f"-{drop:.4f} ({tol.std_k:g} x std)" if drop > tol.min_tolerance else \
            f"-{drop:.4f} (minimum)"
    return tol.tolerance, f"-{tol.tolerance:.4f} (absolute)"


def check_row(row: str, refs: list[RunRecord], news: list[RunRecord], metric: str, tol,
              higher_is_better: bool) -> list[Finding]:
    if not news:
        return [Finding(row, f"{metric} mean", fmt_scores(scores(refs, metric, tol.split, "mean")), "—", "", "",
                        "missing", f"{row}: no fresh record")]
    bad = sorted(r.seed for r in news if r.status == "diverged")
    if bad:
        return [Finding(row, f"{metric} mean", fmt_scores(scores(refs, metric, tol.split, "mean")), "diverged", "",
                        "", "diverged", f"{row}: diverged for seed(s) {', '.join(map(str, bad))} (no score)")]
    columns = ["mean"] + (list(refs[0].tasks) if tol.per_task else [])
    return [compare_scores(row, metric, col, scores(refs, metric, tol.split, col),
                           scores(news, metric, tol.split, col), tol, higher_is_better) for col in columns]


def compare_scores(row: str, metric: str, column: str, ref: list[float], new: list[float], tol,
                   higher_is_better: bool) -> Finding:
    checked = f"{metric} {column}"
    if not new:
        return Finding(row, checked, fmt_scores(ref), "—", "", "", "missing", f"{row}: no fresh {checked}")
    ref_mean, new_mean = statistics.fmean(ref), statistics.fmean(new)
    change = new_mean - ref_mean
    drop, allowed = allowed_drop(ref, tol)
    worse = -change if higher_is_better else change
    status = "regressed" if worse > drop + 1e-12 else "ok"
    detail = (f"{row} {checked}: {new_mean:.4f} against the reference's {ref_mean:.4f} "
              f"({change:+.4f}; allowed {allowed})")
    return Finding(row, checked, fmt_scores(ref), fmt_scores(new), f"{change:+.4f}", allowed, status, detail)


def load_timing(path: Path) -> dict[str, Any]:
    """A timing.json as `mtlbench timing` wrote it; anything else is one line naming the file (exit 2)."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not all(isinstance(r["row"], str) for r in data["results"]):
            raise ValueError("no results rows")
        return data
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a timing record written by `mtlbench timing` ({e})") from None


def read_timing(path: Path) -> dict[str, Any]:
    """{row: its timing result} and, under '', the reference row's name."""
    data = load_timing(path)
    return {r["row"]: r for r in data["results"]} | {"": {"reference": data.get("reference")}}


def check_timing(ref_path: Path, new_path: Path, tolerance: float, result: CheckResult) -> list[Finding]:
    """Each method's time ratio to the reference method, training and inference: fresh <= reference x (1 + tol)."""
    if not ref_path.exists():
        return []
    ref = read_timing(ref_path)
    vs = ref.pop("")["reference"] or "reference"
    if not new_path.exists():
        return [Finding("(timing)", f"time / {vs}", "timing.json", "—", "", "", "missing",
                        f"the reference has timing ratios but {new_path} does not exist; run `mtlbench timing`")]
    new = read_timing(new_path)
    new.pop("")
    findings = []
    for row, r in ref.items():
        for mode in ("train", "infer"):
            key = f"ratio_{mode}"
            if r.get(key) is None or row == vs:
                continue
            got = (new.get(row) or {}).get(key)
            checked = f"{mode} time / {vs}"
            if got is None:
                findings.append(Finding(row, checked, f"{r[key]:.2f}x", "—", "", "", "missing",
                                        f"{row}: no fresh {checked} in {new_path}"))
                continue
            limit = r[key] * (1 + tolerance)
            status = "regressed" if got > limit else "ok"
            findings.append(Finding(row, checked, f"{r[key]:.2f}x", f"{got:.2f}x", f"{got / r[key] - 1:+.0%}",
                                    f"+{tolerance:.0%}", status,
                                    f"{row} {checked}: {got:.2f}x against the reference's {r[key]:.2f}x "
                                    f"(allowed up to {limit:.2f}x)"))
    return findings


# -- output ---------------------------------------------------------------------------------------------------------
def verdict(result: CheckResult) -> str:
    n, bad = len(result.findings), len(result.failures)
    return f"{bad} of {n} checks failed" if bad else f"all {n} checks hold"


def as_table(result: CheckResult) -> Table:
    table = Table(f"mtlbench check {result.spec_name} against {result.reference}: {verdict(result)}",
                  ["method", "checked", "reference", "fresh", "change", "allowed", "status"], [])
    for f in result.findings:
        table.rows.append([f.row, f.checked, f.reference, f.fresh, f.change, f.allowed, f.status])
    table.notes += result.notes
    return table


def to_junit(result: CheckResult) -> str:
    """JUnit XML (one test case per check), the format CI systems display as test results."""
    n, bad = str(len(result.findings)), str(len(result.failures))
    suites = ET.Element("testsuites", name="mtlbench check", tests=n, failures=bad)
    suite = ET.SubElement(suites, "testsuite", name=f"mtlbench check {result.spec_name}", tests=n, failures=bad)
    for f in result.findings:
        case = ET.SubElement(suite, "testcase", classname=f"{result.spec_name}.{f.row}", name=f.checked)
        if f.failed:
            failure = ET.SubElement(case, "failure", type=f.status, message=f.detail)
            failure.text = f"reference {f.reference}; fresh {f.fresh}; change {f.change}; allowed {f.allowed}"
    if result.notes:
        ET.SubElement(suite, "system-out").text = "\n".join(result.notes)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def tolerances(check, **overrides):
    """The spec's ``check`` section with the command line's non-None values applied (and validated)."""
    from pydantic import ValidationError

    from mtlbench.errors import UsageError
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return type(check).model_validate({**check.model_dump(), **given})
    except ValidationError as e:
        first = e.errors()[0]
        name = "--" + str(first["loc"][0]).replace("_", "-")
        raise UsageError(f"{name}: {first['msg'][0].lower() + first['msg'][1:]} (got {first.get('input')!r})") from None
