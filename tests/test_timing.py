"""`mtlbench timing` measures every method in one run and writes its record; no assertion on seconds."""
import json

from typer.testing import CliRunner

from mtlbench.cli import app
from tests.conftest import TINY_SPEC

runner = CliRunner()


def test_timing_writes_ratios_to_hard_share(write_spec, tmp_path):
    spec = write_spec(TINY_SPEC.replace("{out}", str(tmp_path / "runs"))
                      .replace("  - name: hard_share\n    label: Hard-Share\n", ""))
    result = runner.invoke(app, ["timing", str(spec), "--iterations", "2", "--blocks", "2", "--warmup", "1",
                                 "--format", "csv"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "runs" / "tiny" / "timing.json").read_text())
    rows = {r["row"]: r for r in record["results"]}
    assert set(rows) == {"STL", "Hard-Share"}  # --vs hard_share added the reference
    assert rows["Hard-Share"]["ratio_train"] == 1.0 and rows["STL"]["ratio_train"] > 0
    for r in rows.values():
        assert r["train_min"] <= r["train_s"] <= r["train_max"] and r["infer_s"] > 0 and r["data_s"] >= 0
    assert record["n_tasks"] == 5 and record["batch_per_task"] == 32 and record["threads"] == 1
    # the provenance of a result record; no device memory to report on the CPU
    assert record["device"] == "cpu" and record["device_name"] and record["amp"] == "none"
    assert set(record["env"]) >= {"git", "versions", "torch_threads", "device"} and record["env"]["versions"]["torch"]
    assert all(r["train_peak_mb"] is None for r in rows.values())
    assert "method,train s,train range,infer s,infer range,data s,train / Hard-Share" in result.output


def test_timing_refuses_an_unknown_reference(write_spec, tmp_path):
    spec = write_spec(TINY_SPEC.replace("{out}", str(tmp_path / "runs")))
    result = runner.invoke(app, ["timing", str(spec), "--vs", "hard_shar"])
    assert result.exit_code != 0 and "hard_shar" in result.output


def test_timing_vs_stl_on_mixed_inputs(write_spec, tmp_path):
    """`--vs stl` adds STL as the reference (the MTAL tower baselines are measured against it)."""
    spec = write_spec(f"""
name: towers
data:
  dataset: synthetic_image
  options: {{n_groups: 1, tasks_per_group: 1, outlier: true, image_size: 12, size_step: 4, per_class: 10, n_classes: 3}}
backbone: {{kind: vgg, stages: [[4], [8]], dense: [8]}}
methods:
  - {{name: hard_share, label: Multi-task}}
  - {{name: nddr, label: NDDR-CNN}}
training: {{batch_per_task: 8, threads: 1}}
output: {{dir: {tmp_path / "runs"}}}
""")
    result = runner.invoke(app, ["timing", str(spec), "--vs", "stl", "--iterations", "2", "--blocks", "1",
                                 "--warmup", "1", "--format", "csv"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "runs" / "towers" / "timing.json").read_text())
    rows = {r["row"]: r for r in record["results"]}
    assert set(rows) == {"STL", "Multi-task", "NDDR-CNN"} and record["reference"] == "STL"
    assert rows["STL"]["ratio_train"] == 1.0 and "train / STL" in result.output

def test_timing_times_the_mixed_precision_step(write_spec, tmp_path):
    spec = write_spec(TINY_SPEC.replace("{out}", str(tmp_path / "runs")).replace("threads: 1", "threads: 1\n  amp: bf16"))
    result = runner.invoke(app, ["timing", str(spec), "--iterations", "1", "--blocks", "1", "--warmup", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "runs" / "tiny" / "timing.json").read_text())["amp"] == "bf16"
