"""The cost table (`mtlbench timing`): parameters, seconds per 100 train / inference iterations, peak memory (CPU:
the process's resident high-water mark during the method's steps) and backward passes per step -- 1 for ew and
for per-task gradients from task blocks (Hard-Share, TAAN), T where the step needs the whole Jacobian and the
graph does not batch (GradNorm weighs every parameter's task gradients; TAAN's fused activation)."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.report.timing_table import build_timing_table

runner = CliRunner()

SPEC = """
name: cost
data:
  dataset: synthetic_vector
  options: {{n_groups: 1, tasks_per_group: 2, outlier: true, input_dim: 16, n_examples: 300, n_classes: 6}}
backbone: {{hidden: [16, 16]}}
methods:
  - {{name: hard_share, label: Hard-Share, weighting: [ew, uw, pcgrad]}}
  - {{name: taan, label: TAAN, weighting: [pcgrad, gradnorm]}}
training: {{iterations: 10, batch_per_task: 16, eval_every: 5, threads: 1}}
output: {{dir: {out}}}
"""


def test_timing_reports_peak_memory_and_backward_passes(write_spec, tmp_path):
    spec = write_spec(SPEC.format(out=tmp_path))
    result = runner.invoke(app, ["timing", str(spec), "--iterations", "2", "--blocks", "1", "--warmup", "1",
                                 "--format", "csv"])
    assert result.exit_code == 0, result.output
    timing = json.loads((tmp_path / "cost" / "timing.json").read_text())
    rows = {r["row"]: r for r in timing["results"]}
    assert {row: r["backward_passes"] for row, r in rows.items()} == {
        "Hard-Share": 1, "Hard-Share (uw)": 1, "Hard-Share (pcgrad)": 1, "TAAN (pcgrad)": 1, "TAAN (gradnorm)": 3}
    assert all(r["train_peak_mb"] > 10 and r["peak_kind"] == "process resident" for r in rows.values())
    assert rows["TAAN (pcgrad)"]["n_params"] > rows["Hard-Share"]["n_params"]  # TAAN's alpha
    lines = [ln for ln in result.output.splitlines() if "," in ln]  # the csv (progress lines go to stderr)
    header = lines[0].split(",")
    assert header[-2:] == ["peak MB", "backward passes"] and "params" in header and "train s" in header
    assert lines[5].startswith("TAAN (gradnorm),") and lines[5].endswith(",3")


def test_a_timing_file_from_before_the_cost_columns_renders_as_it_did():
    old = {"reference": "Hard-Share", "device": "cpu", "threads": 1, "batch_per_task": 8, "n_tasks": 2, "blocks": 1,
           "iterations_per_block": 2, "warmup": 1,
           "results": [{"row": "Hard-Share", "train_s": 1.0, "train_min": 1.0, "train_max": 1.0, "infer_s": 0.5,
                        "infer_min": 0.5, "infer_max": 0.5, "data_s": 0.1, "ratio_train": 1.0, "ratio_infer": 1.0,
                        "n_params": 1000, "train_peak_mb": None}]}
    table = build_timing_table(old)
    assert table.header[-1] == "params" and not any("peak" in n or "backward" in n for n in table.notes)
