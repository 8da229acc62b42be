"""The NaN guard: a non-finite loss or weight stops the run with one line (row, seed, iteration), its record says
`diverged` with no metrics, the other runs still train, the command exits 1 at the end, records stay strict JSON,
and tables show "diverged" instead of a number."""
from __future__ import annotations

import json
import math
import re

from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.io import atomic_write_json
from mtlbench.training.run import run_spec
from tests.conftest import TINY_SPEC
from tests.fake_methods import PoisonedBuffer, PoisonedWeight, register

runner = CliRunner()
SHORT = TINY_SPEC.replace("iterations: 300", "iterations: 40").replace("eval_every: 50", "eval_every: 10")


def strict_json(path):
    def refuse(token):
        raise AssertionError(f"{path} holds {token}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_sgd_at_lr_1e6_is_recorded_as_diverged_and_exits_1(write_spec, tmp_path):
    text = SHORT.replace("{out}", str(tmp_path / "runs")).replace("optimizer: {lr: 0.003}",
                                                                  "optimizer: {name: sgd, lr: 1.0e6}")
    spec = write_spec(text)
    result = runner.invoke(app, ["train", str(spec), "--no-progress", "--format", "markdown"])
    assert result.exit_code == 1, result.output
    # STL's loss overflows; Hard-Share's stays finite (its ReLUs die and the loss saturates): it is not diverged
    assert re.search(r"^STL seed 0 diverged at iteration \d+: the task loss is (nan|inf); recorded as diverged, "
                     r"without a score$", result.output, re.M), result.output
    run = tmp_path / "runs" / "tiny" / "STL"
    rec = strict_json(run / "seed0.json")
    assert rec["status"] == "diverged" and rec["metrics"] is None and rec["best_iteration"] is None
    assert rec["failure"].startswith("diverged at iteration ")
    assert not (run / "seed0.pt").exists() and not (run / "seed0.state.pt").exists()
    assert strict_json(tmp_path / "runs" / "tiny" / "Hard-Share" / "seed0.json")["status"] == "ok"
    assert "| STL | diverged | diverged | diverged | diverged | diverged | diverged | 48K | 1 |" in result.output
    assert "\nerror: 1 run(s) diverged: STL seed 0\n" in result.output
    compare = runner.invoke(app, ["compare", str(spec), "--format", "csv"])
    assert compare.exit_code == 0
    assert "\nSTL,diverged,diverged,diverged,diverged,diverged,diverged,48K,1,—\n" in compare.output


def test_a_nan_weight_stops_its_run_and_the_next_runs_still_train(write_spec, tmp_path, monkeypatch):
    register(monkeypatch, "poisoned_weight", PoisonedWeight)
    text = SHORT.replace("{out}", str(tmp_path / "runs")).replace("name: stl\n    label: STL",
                                                                  "name: poisoned_weight\n    label: Poisoned")
    lines = []
    poisoned, hard_share = run_spec(load_spec(write_spec(text)), log=lines.append)
    # the weight turns NaN after step 7, so the loss of iteration 8 is the first non-finite value
    assert lines == ["Poisoned seed 0 diverged at iteration 8: the task loss is nan; recorded as diverged, "
                     "without a score"]
    assert poisoned.status == "diverged" and poisoned.iterations_run == 8 and poisoned.metrics is None
    # untrained ~0.30; these 40 steps, uninterrupted by the poisoned run, ~0.57: Hard-Share still learned
    assert hard_share.status == "ok" and hard_share.metrics["test"]["map@10"].mean > 0.45


def test_a_non_finite_buffer_is_caught_at_the_next_evaluation_and_a_rerun_exits_1_again(write_spec, tmp_path,
                                                                                        monkeypatch):
    register(monkeypatch, "poisoned_buffer", PoisonedBuffer)
    text = SHORT.replace("{out}", str(tmp_path / "runs")).replace("name: stl\n    label: STL",
                                                                  "name: poisoned_buffer\n    label: Gauge")
    spec = write_spec(text)
    result = runner.invoke(app, ["train", str(spec), "--no-progress"])
    assert result.exit_code == 1
    assert "Gauge seed 0 diverged at iteration 20: gauge has non-finite values; recorded as diverged" in result.output
    rec = strict_json(tmp_path / "runs" / "tiny" / "Gauge" / "seed0.json")
    assert rec["history"][-1]["iteration"] == 10  # evaluations before the one that found it
    again = runner.invoke(app, ["train", str(spec), "--no-progress"])  # finished (diverged) runs are not retrained
    assert again.exit_code == 1 and "Gauge seed 0: finished, skipped" in again.output
    assert again.output.rstrip().endswith("error: 1 run(s) diverged: Gauge seed 0")


def test_a_row_with_one_diverged_seed_shows_no_number(write_spec, tmp_path, monkeypatch):
    monkeypatch.setattr(PoisonedWeight, "SEED", 1)
    register(monkeypatch, "poisoned_weight", PoisonedWeight)
    text = SHORT.replace("{out}", str(tmp_path / "runs")).replace("name: stl\n    label: STL",
                                                                  "name: poisoned_weight\n    label: Poisoned")
    spec = write_spec(text)
    records = run_spec(load_spec(spec), seeds=[0, 1])
    assert [r.status for r in records] == ["ok", "diverged", "ok", "ok"]
    result = runner.invoke(app, ["compare", str(spec), "--format", "markdown"])
    assert result.exit_code == 0
    assert "| Poisoned | diverged | diverged | diverged | diverged | diverged | diverged | 15K | 2 |" in result.output
    assert "- Poisoned diverged (non-finite loss or weights; no score) for seed(s) 1" in result.output
    assert re.search(r"\n\| Hard-Share \| 0\.\d+ ± 0\.\d+ \|", result.output)  # both seeds scored


def test_json_is_written_strictly(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": math.nan, "b": [math.inf, 1.5], "c": {"d": -math.inf, "e": (2.0, math.nan)}})
    assert strict_json(path) == {"a": None, "b": [None, 1.5], "c": {"d": None, "e": [2.0, None]}}
