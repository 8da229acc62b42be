"""`mtlbench timing` measures every method in one run and writes its record. The clock is replaced by a virtual
one that only the methods' forward passes advance (Hard-Share by 1 s, a stand-in method by 3 s), so every
number the command reports is known exactly and no assertion depends on how fast or busy the machine is."""
import json
import statistics

import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.methods.hard_share import HardShare
from mtlbench.training import timing
from tests.conftest import TINY_SPEC
from tests.fake_methods import register

runner = CliRunner()


class Clock:
    now = 0.0

    @classmethod
    def read(cls) -> float:
        return cls.now


class Ticking(HardShare):
    """Hard-Share whose every forward pass costs COST virtual seconds."""

    COST = 1.0

    def forward(self, xs):
        Clock.now += self.COST
        return super().forward(xs)


class ThreeTimesSlower(Ticking):
    COST = 3.0


@pytest.fixture
def virtual_clock(monkeypatch):
    monkeypatch.setattr(timing.time, "perf_counter", Clock.read)
    register(monkeypatch, "hard_share", Ticking)
    register(monkeypatch, "slow_share", ThreeTimesSlower)


def test_timing_reports_what_the_clock_saw(virtual_clock, write_spec, tmp_path):
    spec = write_spec(TINY_SPEC.replace("{out}", str(tmp_path / "runs")).replace("name: stl", "name: slow_share")
                      .replace("label: STL", "label: Slow"))
    result = runner.invoke(app, ["timing", str(spec), "--iterations", "4", "--blocks", "3", "--warmup", "1",
                                 "--format", "csv"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "runs" / "tiny" / "timing.json").read_text())
    rows = {r["row"]: r for r in record["results"]}
    assert record["reference"] == "Hard-Share" and set(rows) == {"Slow", "Hard-Share"}
    # one forward per iteration: seconds per 100 iterations = 100 x its cost, in every block, both modes
    assert rows["Hard-Share"]["train_blocks"] == [100.0] * 3 and rows["Slow"]["train_blocks"] == [300.0] * 3
    assert rows["Slow"]["infer_blocks"] == [300.0] * 3 and rows["Slow"]["infer_s"] == 300.0
    assert rows["Slow"]["ratio_train"] == 3.0 and rows["Slow"]["ratio_infer"] == 3.0
    assert rows["Slow"]["data_s"] == 0.0  # drawing batches runs no forward pass
    assert "Slow,300.000,300.000-300.000,300.000,300.000-300.000,0.000,3.00x,3.00x" in result.output
    assert record["n_tasks"] == 5 and record["batch_per_task"] == 32 and record["threads"] == 1
    # the provenance of a result record; on the CPU the peak memory is the process's resident set
    assert record["device"] == "cpu" and record["device_name"] and record["amp"] == "none"
    assert set(record["env"]) >= {"git", "versions", "torch_threads", "device"} and record["env"]["versions"]["torch"]
    assert all(r["train_peak_mb"] > 0 and r["peak_kind"] == "process resident" for r in rows.values())


def test_ratios_are_medians_of_per_block_ratios():
    """A slow spell hitting one block must not move the ratio: block 2 below is 10x slower for both."""
    train = [[3.0, 1.0], [30.0, 10.0], [3.3, 1.0]]
    assert timing.block_ratio(train, 0, 1) == statistics.median([3.0, 3.0, 3.3]) == 3.0
    assert timing.block_ratio([[None, 1.0]], 0, 1) is None  # a method without training steps has no ratio


def test_timing_refuses_an_unknown_reference(write_spec, tmp_path):
    spec = write_spec(TINY_SPEC.replace("{out}", str(tmp_path / "runs")))
    result = runner.invoke(app, ["timing", str(spec), "--vs", "hard_shar"])
    assert result.exit_code == 2 and "--vs: unknown method 'hard_shar'; did you mean 'hard_share'?" in result.output


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
    assert "train / STL" in result.output and all(rows[r]["ratio_train"] > 0 for r in ("Multi-task", "NDDR-CNN"))


class AutocastSpy(HardShare):
    """Hard-Share that notes, at each forward pass, whether it ran in training mode and under which autocast."""

    seen: list[tuple[bool, bool, torch.dtype]] = []

    def forward(self, xs):
        AutocastSpy.seen.append((self.training, torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return super().forward(xs)


def test_timing_times_the_mixed_precision_step(write_spec, tmp_path, monkeypatch):
    register(monkeypatch, "spy", AutocastSpy)
    monkeypatch.setattr(AutocastSpy, "seen", [])
    spec = write_spec(TINY_SPEC.replace("{out}", str(tmp_path / "runs"))
                      .replace("threads: 1", "threads: 1\n  amp: bf16")
                      .replace("name: stl", "name: spy"))
    result = runner.invoke(app, ["timing", str(spec), "--iterations", "1", "--blocks", "1", "--warmup", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "runs" / "tiny" / "timing.json").read_text())["amp"] == "bf16"
    # the timed steps themselves ran under bf16 autocast, in training and in inference
    assert {training for training, _, _ in AutocastSpy.seen} == {True, False}
    assert all(on and dtype == torch.bfloat16 for _, on, dtype in AutocastSpy.seen), AutocastSpy.seen


def test_compare_renders_a_timing_table_from_its_stored_record(virtual_clock, write_spec, tmp_path):
    """A spec naming TAAN's Table 2 is re-rendered by `compare` from its timing.json, exactly as `timing` printed
    it; before the file exists, the paper's seconds and the command that measures ours; a damaged file is one
    line naming it, exit 2."""
    spec = write_spec(TINY_SPEC.replace("{out}", str(tmp_path / "runs")).replace("name: stl", "name: slow_share")
                      .replace("label: STL", "label: TAAN")
                      .replace("name: tiny", "name: tiny\ntable: taan_table2_timing"))
    before = runner.invoke(app, ["compare", str(spec), "--format", "markdown"])
    assert before.exit_code == 0, before.output
    assert "| TAAN | 20.05 | 0.880 |" in before.output and f"`mtlbench timing {spec}` measures it" in before.output
    timed = runner.invoke(app, ["timing", str(spec), "--iterations", "2", "--blocks", "2", "--warmup", "0",
                                "--format", "csv"])
    assert timed.exit_code == 0, timed.output
    rendered = runner.invoke(app, ["compare", str(spec), "--format", "csv"])
    assert rendered.exit_code == 0, rendered.output
    table = [line for line in timed.output.splitlines() if line.startswith(("method,", "TAAN,", "Hard-Share,"))]
    assert table and all(line in rendered.output.splitlines() for line in table)
    assert "TAAN,300.000,300.000-300.000,300.000,300.000-300.000,0.000,3.00x,3.00x" in rendered.output
    assert "20.05" in rendered.output  # the paper's seconds beside ours
    (tmp_path / "runs" / "tiny" / "timing.json").write_text("{not json")
    damaged = runner.invoke(app, ["compare", str(spec)])
    assert damaged.exit_code == 2 and "timing.json: not a timing record" in damaged.output
    assert "Traceback" not in damaged.output and len(damaged.output.strip().splitlines()) == 1
