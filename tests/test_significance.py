"""`compare` tests each row against a reference row: a two-sided paired t-test over seeds of the table's summary
column, a p column in csv / markdown, * / ** markers in rich; no p-value for identical rows or too few seeds."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.report.significance import holm, paired_test
from tests.conftest import REPO

runner = CliRunner()
SPEC = REPO / "benchmarks" / "taan_table3_omniglot_cpu.yaml"
REFERENCE = REPO / "results" / "reference" / "taan_table3_omniglot_cpu"

# Student's sleep data (Cushny & Peebles 1905): extra hours of sleep of 10 patients under two drugs. The paired
# t-test of the textbooks (R: t.test(extra ~ group, data = sleep, paired = TRUE)): t = -4.0621, df = 9,
# p-value = 0.002833, mean difference -1.58.
DRUG1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_the_textbook_paired_t_test():
    test = paired_test(dict(enumerate(DRUG1)), dict(enumerate(DRUG2)))
    assert test.n == 10 and test.p == pytest.approx(0.002833, abs=5e-7) and test.diff == pytest.approx(-1.58)


def test_pairs_are_the_shared_seeds_only():
    one = paired_test({**dict(enumerate(DRUG1)), 99: 50.0}, dict(enumerate(DRUG2)))
    assert one.n == 10 and one.p == pytest.approx(0.002833, abs=5e-7)


def test_holm_adjusts_the_textbook_example():
    """Holm (1979) on four p-values 0.01, 0.04, 0.03, 0.005 at level 0.05: the step-down procedure compares the
    sorted p-values with 0.05/4, 0.05/3, 0.05/2, 0.05/1 and rejects the first two (0.005, 0.01) only; the adjusted
    p-values are 4 x 0.005, 3 x 0.01, then max(0.03, 2 x 0.03), max(0.06, 0.04)."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []


@pytest.mark.parametrize("seed", range(20))
def test_an_adjusted_p_below_alpha_is_exactly_a_step_down_rejection(seed):
    """For any p-values and level, "Holm-adjusted p < alpha" rejects what Holm's sequential procedure rejects:
    walk the sorted p-values, reject while p_(k) < alpha / (m - k), stop at the first that is not."""
    rng = np.random.default_rng(seed)
    ps = list(rng.uniform(0, 0.1, size=rng.integers(1, 15)) ** rng.uniform(1, 3))
    for alpha in (0.01, 0.05, 0.1):
        rejected = set()
        for k, i in enumerate(sorted(range(len(ps)), key=ps.__getitem__)):
            if ps[i] >= alpha / (len(ps) - k):
                break
            rejected.add(i)
        assert {i for i, p in enumerate(holm(ps)) if p < alpha} == rejected


def write_runs(root, rows: dict[str, list[float]]) -> None:
    """Records of the committed reference runs, one per seed, with the given pooled test accuracies."""
    for row, values in rows.items():
        base = json.loads((REFERENCE / row / "seed0.json").read_text())
        for seed, value in enumerate(values):
            base["seed"], base["metrics"]["test"]["accuracy"]["pooled"] = seed, value
            path = root / "taan_table3_omniglot_cpu" / row / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(base))


def compare(tmp_path, *args):
    result = runner.invoke(app, ["compare", str(SPEC), "--results", str(tmp_path), *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def flat(output: str) -> str:
    """The rich caption's notes wrap at the table's width; join the words again."""
    return " ".join(output.split())


def without_summary(csv_text: str) -> list[str]:
    """The csv lines without the Delta_m / mean rank columns (test_summary_numbers.py tests those)."""
    import csv
    import io
    rows = list(csv.reader(io.StringIO(csv_text)))
    keep = [j for j, h in enumerate(rows[0]) if h != "mean rank" and not h.startswith("Δm")]
    return [",".join(r[j] for j in keep) for r in rows]


def taan_line(output: str, marker: str = "│ TAAN") -> str:
    return next(line for line in output.splitlines() if line.startswith(marker) and "ours" in line)


def test_a_significant_row_gets_its_p_value_and_marker(tmp_path):
    write_runs(tmp_path, {"Hard-Share": DRUG2, "TAAN": DRUG1})
    csv = without_summary(compare(tmp_path, "--format", "csv"))
    assert csv[0].endswith(",p vs Hard-Share")
    assert csv[1].startswith("Hard-Share,ours (n=10)") and csv[1].endswith(",ref")
    assert csv[2].startswith("TAAN,ours (n=10)") and csv[2].endswith(",0.0028")
    rich = compare(tmp_path)
    assert "p vs Hard-Share" not in rich.splitlines()[2]  # rich shows markers, not the column
    assert "178.90 ** │" in taan_line(rich)  # the marker on the summary cell
    assert "two-sided paired t-test over seeds of the pooled accuracy" in flat(rich)


def test_a_row_identical_to_the_reference_is_not_marked(tmp_path):
    write_runs(tmp_path, {"Hard-Share": DRUG2, "TAAN": DRUG2})
    assert without_summary(compare(tmp_path, "--format", "csv"))[2].endswith(",—")
    rich = compare(tmp_path)
    assert "*" not in taan_line(rich)
    assert "not tested (identical to Hard-Share on every seed): TAAN" in flat(rich)


def test_too_few_seeds_give_no_p_value_and_say_so(tmp_path):
    write_runs(tmp_path, {"Hard-Share": DRUG2[:2], "TAAN": DRUG1[:2]})
    assert without_summary(compare(tmp_path, "--format", "csv"))[2].endswith(",—")
    rich = compare(tmp_path)
    assert "*" not in taan_line(rich)
    assert "no p-value (fewer than 3 seeds shared with Hard-Share): TAAN (n=2)" in flat(rich)


def test_another_reference_row_or_none(tmp_path):
    write_runs(tmp_path, {"Hard-Share": DRUG2, "TAAN": DRUG1})
    csv = without_summary(compare(tmp_path, "--format", "csv", "--vs", "TAAN"))
    assert csv[0].endswith(",p vs TAAN") and csv[1].endswith(",0.0028") and csv[2].endswith(",ref")
    assert "p vs" not in compare(tmp_path, "--format", "csv", "--vs", "")
    bad = runner.invoke(app, ["compare", str(SPEC), "--results", str(tmp_path), "--vs", "HS"])
    assert bad.exit_code == 2
    assert "--vs: taan_table3_omniglot_cpu has no row 'HS' (rows: Hard-Share, TAAN; '' for no test)" in flat(bad.output)


def test_a_single_row_is_not_corrected_and_a_bad_correction_is_refused(tmp_path):
    write_runs(tmp_path, {"Hard-Share": DRUG2, "TAAN": DRUG1})
    csv = without_summary(compare(tmp_path, "--format", "csv", "--correct", "holm"))
    assert csv[0].endswith(",p vs Hard-Share (Holm)") and csv[2].endswith(",0.0028")  # one test: m x p = p
    assert "uncorrected" not in compare(tmp_path)
    bad = runner.invoke(app, ["compare", str(SPEC), "--results", str(tmp_path), "--correct", "bonf"])
    assert bad.exit_code == 2 and "--correct: expected none or holm (got 'bonf')" in flat(bad.output)


def test_paired_tests_across_specs_print_the_readme_numbers():
    """benchmarks/paired_across_specs.py on the committed records: the DMTRL lr diagnostic against the main
    spec's STL (docs/results.md quotes Tucker +0.99 points, p = 0.0003; LAF p = 0.0037)."""
    import subprocess
    import sys
    ref = REPO / "results" / "reference"
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "paired_across_specs.py"),
                          str(ref / "taan_table3_omniglot_cpu5_dmtrl_lr" / "DMTRL-Tucker_factors_lr_x0.03"),
                          str(ref / "taan_table3_omniglot_cpu5_dmtrl_lr" / "DMTRL-LAF_factors_lr_x0.03"),
                          "--vs", str(ref / "taan_table3_omniglot_cpu5" / "STL")],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout.splitlines()
    assert out[0].endswith("n=5 0.7404 ± 0.0031 | vs STL (n=5): +0.0099 p 0.00028")
    assert out[1].endswith("vs STL (n=5): -0.0150 p 0.0037")
    quoted = " ".join((REPO / "docs" / "results.md").read_text().split())  # the page quotes these two runs
    assert "Tucker is 0.99 points above STL (p = 0.0003)" in quoted and "(p = 0.047, 0.0037)" in quoted
