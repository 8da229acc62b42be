"""Delta_m % and mean rank (report/summary.py) against hand computations, their columns in compare's tables,
and the long export (`mtlbench export`) read back by pandas."""
from __future__ import annotations

import io

import pandas as pd
import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.report.summary import summary_columns
from mtlbench.results import load_records
from tests.conftest import REPO

runner = CliRunner()


def tidy_rows(values: dict) -> pd.DataFrame:
    """results.tidy's shape from {(row, seed): {task: value}}."""
    rows = [{"row": row, "method": row, "seed": seed, "metric": "m", "column": task, "value": v, "n_params": 1}
            for (row, seed), tasks in values.items() for task, v in tasks.items()]
    return pd.DataFrame(rows)


VALUES = {("STL", 0): {"a": 0.8, "b": 0.5}, ("STL", 1): {"a": 0.6, "b": 0.5},
          ("M", 0): {"a": 0.77, "b": 0.55}, ("M", 1): {"a": 0.84, "b": 0.45},
          ("W", 0): {"a": 0.1, "b": 0.1}, ("W", 1): {"a": 0.1, "b": 0.1}}


def test_delta_m_and_mean_rank_by_hand(monkeypatch):
    # STL means: a 0.7, b 0.5. M seed 0: (0.07/0.7 + 0.05/0.5) / 2 = +10 %; seed 1: (0.14/0.7 - 0.05/0.5) / 2 = +5 %
    # -> +7.50 ± 3.54 (sample std of 10 and 5). W: (-6/7 - 0.8) / 2 = -82.86 % both seeds.
    # ranks, seed 0: a: STL 1, M 2, W 3; b: M 1, STL 2, W 3 -> STL 1.5, M 1.5, W 3; seed 1: a: M 1, STL 2; b: STL 1,
    # M 2 -> 1.5 each again
    cols = summary_columns(tidy_rows(VALUES), ["a", "b"], "accuracy", ["STL", "M", "W"], "STL")
    assert cols == {"Δm % vs STL": {"STL": "ref", "M": "+7.50 ± 3.54", "W": "-82.86 ± 0.00"},
                    "mean rank": {"STL": "1.50 ± 0.00", "M": "1.50 ± 0.00", "W": "3.00 ± 0.00"}}
    # lower is better (l_t = 1): the signs flip, and the ranks turn over
    import mtlbench.report.summary as summary
    monkeypatch.setitem(summary.HIGHER_IS_BETTER, "error", False)
    low = summary_columns(tidy_rows(VALUES), ["a", "b"], "error", ["STL", "M", "W"], "STL")
    assert low["Δm % vs STL"]["M"] == "-7.50 ± 3.54" and low["mean rank"]["W"] == "1.00 ± 0.00"


def test_without_a_single_task_row_only_the_mean_rank_is_shown():
    values = {k: v for k, v in VALUES.items() if k[0] != "STL"}
    cols = summary_columns(tidy_rows(values), ["a", "b"], "accuracy", ["M", "W"], None)
    assert list(cols) == ["mean rank"] and cols["mean rank"] == {"M": "1.00 ± 0.00", "W": "2.00 ± 0.00"}


def test_compare_shows_delta_m_and_mean_rank_on_the_committed_table1():
    result = runner.invoke(app, ["compare", str(REPO / "benchmarks/taan_table1_youtube8m_cpu.yaml"), "--results",
                                 str(REPO / "results/reference"), "--format", "csv"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(io.StringIO(result.output))
    assert list(table.columns[-3:]) == ["p vs Hard-Share", "Δm % vs STL", "mean rank"]
    ours = table[table.source.str.startswith("ours")].set_index("method")
    assert ours.loc["STL", "Δm % vs STL"] == "ref"
    assert ours.loc["Hard-Share", "Δm % vs STL"].startswith("-4.72 ± ")
    assert table[table.source == "paper"]["mean rank"].eq("—").all()


def test_export_is_one_row_per_score_and_round_trips_through_pandas(tmp_path):
    spec, results = REPO / "benchmarks/ci_smoke.yaml", REPO / "results/reference"
    out = tmp_path / "long.csv"
    result = runner.invoke(app, ["export", str(spec), "--results", str(results), "--out", str(out)])
    assert result.exit_code == 0, result.output
    long = pd.read_csv(out)
    assert list(long.columns) == ["spec", "method", "label", "weighting", "seed", "task", "split", "metric", "value",
                                  "step", "code_version", "identity"]
    records = load_records(results / "ci_smoke")
    assert len(long) == sum(len(s.tasks) for r in records for m in r.metrics.values() for s in m.values())
    for r in records:
        mine = long[(long.label == r.row) & (long.seed == r.seed) & (long.split == "test") & (long.metric == "map@10")]
        assert dict(zip(mine.task, mine.value)) == r.metrics["test"]["map@10"].tasks  # exact, no rounding
        assert set(mine.identity) == {r.identity} and set(mine.step) == {r.best_iteration}
    assert set(long.weighting) == {"ew"}
    # the means over tasks are the committed records' means
    means = long[(long.split == "test") & (long.metric == "map@10")].groupby(["label", "seed"]).value.mean()
    for r in records:
        assert means[(r.row, r.seed)] == pytest.approx(r.metrics["test"]["map@10"].mean, abs=1e-12)
    stdout = runner.invoke(app, ["export", str(spec), "--results", str(results)])
    assert stdout.exit_code == 0 and stdout.output == out.read_text()
