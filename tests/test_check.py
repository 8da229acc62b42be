"""The rules of `mtlbench check`, on numbers worked by hand: which tolerance applies, where the line between ok
and regressed lies, and how timing ratios are compared."""
from __future__ import annotations

import json
import re
import statistics

import pytest

from mtlbench.config.schema import CheckSpec
from mtlbench.errors import UsageError
from mtlbench.report.check import CheckResult, allowed_drop, check_timing, compare_scores, tolerances


def test_the_std_rule_needs_min_seeds_reference_seeds():
    tol = CheckSpec(tolerance=0.02, std_k=3.0, min_seeds=3, min_tolerance=0.005)
    three = [0.70, 0.72, 0.74]  # std 0.02 -> 3 x std = 0.06
    assert allowed_drop(three, tol) == (pytest.approx(0.06), "-0.0600 (3 x std)")
    assert allowed_drop(three[:2], tol) == (0.02, "-0.0200 (absolute)")  # two seeds: the absolute tolerance
    assert allowed_drop([0.7, 0.7, 0.7001], tol) == (0.005, "-0.0050 (minimum)")  # seeds that agree


def test_the_line_between_ok_and_regressed():
    tol = CheckSpec(std_k=2.0)
    ref = [0.70, 0.72, 0.74]  # mean 0.72, allowed drop 2 x 0.02 = 0.04
    just_ok = compare_scores("M", "map@10", "mean", ref, [0.68 + 1e-9], tol, higher_is_better=True)
    too_low = compare_scores("M", "map@10", "mean", ref, [0.6799], tol, higher_is_better=True)
    assert (just_ok.status, too_low.status) == ("ok", "regressed")
    assert too_low.detail == "M map@10 mean: 0.6799 against the reference's 0.7200 (-0.0401; allowed -0.0400 (2 x std))"
    # for a lower-is-better metric the same numbers are an improvement
    assert compare_scores("M", "loss", "mean", ref, [0.6], tol, higher_is_better=False).status == "ok"
    assert compare_scores("M", "loss", "mean", ref, [0.7601], tol, higher_is_better=False).status == "regressed"
    assert statistics.stdev(ref) == pytest.approx(0.02)


def test_command_line_tolerances_override_the_spec_and_are_validated():
    spec = CheckSpec(tolerance=0.05, per_task=True)
    tol = tolerances(spec, tolerance=0.01, std_k=None, per_task=None)
    assert (tol.tolerance, tol.per_task, tol.std_k) == (0.01, True, 3.0)
    with pytest.raises(UsageError, match=re.escape("--std-k: input should be greater than or equal to 0 (got -1.0)")):
        tolerances(spec, tolerance=None, std_k=-1.0, per_task=None)


def write_timing(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"reference": "Hard-Share", "results": [
        {"row": "Hard-Share", "ratio_train": 1.0, "ratio_infer": 1.0},
        *[{"row": r, "ratio_train": t, "ratio_infer": i} for r, (t, i) in rows.items()]]}))


def test_timing_ratios_may_grow_by_the_relative_tolerance(tmp_path):
    ref, new = tmp_path / "ref" / "timing.json", tmp_path / "new" / "timing.json"
    write_timing(ref, {"TAAN": (1.20, 1.10), "STL": (2.0, None)})
    write_timing(new, {"TAAN": (1.50, 1.40), "STL": (2.4, None)})
    found = {(f.row, f.checked): f for f in check_timing(ref, new, 0.25, CheckResult("s", ref, new))}
    # the reference method's own ratio (always 1) and ratios the reference lacks are not checks
    assert set(found) == {("TAAN", "train time / Hard-Share"), ("TAAN", "infer time / Hard-Share"),
                          ("STL", "train time / Hard-Share")}
    assert found[("TAAN", "train time / Hard-Share")].status == "ok"  # 1.50 = 1.20 x 1.25
    assert found[("TAAN", "infer time / Hard-Share")].status == "regressed"  # 1.40 > 1.10 x 1.25 = 1.375
    assert found[("STL", "train time / Hard-Share")].status == "ok"


def test_a_reference_with_timing_needs_fresh_timing(tmp_path):
    ref = tmp_path / "ref" / "timing.json"
    write_timing(ref, {"TAAN": (1.2, 1.1)})
    (missing,) = check_timing(ref, tmp_path / "new" / "timing.json", 0.25, CheckResult("s", ref, ref))
    assert missing.status == "missing" and missing.failed
    assert check_timing(tmp_path / "none.json", ref, 0.25, CheckResult("s", ref, ref)) == []  # nothing to compare
