"""The training loop end to end on the embedded data: learning, determinism, records, and re-rendering."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.metrics import accuracy, map_at_k
from mtlbench.training.run import load_data, run_spec
from tests.conftest import TINY_SPEC

runner = CliRunner()


def chance(data, metric) -> float:
    """The metric of random scores on the test split, averaged over tasks."""
    g = torch.Generator().manual_seed(0)
    vals = []
    for task, split in zip(data.info.tasks, data.split("test")):
        scores = torch.rand(len(split), task.n_classes, generator=g)
        vals.append(metric(scores, split.y))
    return sum(vals) / len(vals)


@pytest.fixture
def tiny(write_spec, tmp_path):
    return load_spec(write_spec(TINY_SPEC.replace("{out}", str(tmp_path / "runs"))))


def test_hard_share_beats_chance_on_vector_data(tiny):
    records = run_spec(tiny)
    data = load_data(tiny)
    floor = chance(data, map_at_k)
    hs = next(r for r in records if r.row == "Hard-Share").metrics["test"]["map@10"].mean
    assert floor < 0.35 and hs > floor + 0.35, (hs, floor)  # observed: 0.778 vs 0.284


def test_hard_share_beats_chance_on_image_data(write_spec, tmp_path):
    text = f"""
    name: tiny_img
    data:
      dataset: synthetic_image
      options: {{n_groups: 2, tasks_per_group: 1, image_size: 16, per_class: 25, n_classes: 5}}
    backbone: {{channels: [8, 16], dense: [32]}}
    methods: [{{name: hard_share}}]
    training: {{iterations: 80, batch_per_task: 25, eval_every: 20, threads: 1}}
    output: {{dir: {tmp_path / 'runs'}}}
    """
    resolved = load_spec(write_spec(text))
    rec = run_spec(resolved)[0]
    acc = rec.metrics["test"]["accuracy"]
    assert chance(load_data(resolved), accuracy) < 0.3
    assert acc.mean > 0.6 and 0 < acc.pooled <= 1, acc


def test_same_spec_and_seed_give_identical_metrics(tiny, tmp_path):
    a = run_spec(tiny, seeds=[3], out_dir=tmp_path / "a")
    b = run_spec(tiny, seeds=[3], out_dir=tmp_path / "b")
    assert [r.metrics for r in a] == [r.metrics for r in b]
    assert [r.history for r in a] == [r.history for r in b]
    c = run_spec(tiny, seeds=[4], out_dir=tmp_path / "c")
    assert [r.metrics for r in a] != [r.metrics for r in c]


def test_record_holds_what_protocol_asks(tiny, tmp_path):
    records = run_spec(tiny, seeds=[0])
    path = tmp_path / "runs" / "tiny" / "STL" / "seed0.json"
    rec = json.loads(path.read_text())
    assert rec["spec"]["name"] == "tiny" and rec["seed"] == 0 and rec["method"] == "stl"
    assert set(rec["metrics"]) == {"val", "test"}
    assert set(rec["metrics"]["test"]) == {"map@10", "gap@20", "hit@1"}
    assert list(rec["metrics"]["test"]["map@10"]["tasks"]) == records[0].tasks
    assert rec["n_params"] > 0 and 0 < rec["train_time_s"] <= rec["wall_time_s"] and len(rec["data_checksum"]) == 64
    env = rec["env"]
    assert {"git", "versions", "torch_threads", "device"} <= set(env) and env["versions"]["torch"]
    assert path.with_suffix(".pt").exists()
    assert not list(path.parent.glob(".*.tmp"))


def test_stl_and_hard_share_differ_in_size(tiny):
    records = {r.row: r for r in run_spec(tiny)}
    assert records["STL"].n_params > 2 * records["Hard-Share"].n_params


def test_crash_while_writing_leaves_no_record(tiny, tmp_path, monkeypatch):
    """The record's bytes are written (to a temporary file) and the rename into place fails: no record, no
    temporary file, and the run's state file stays for a resume."""
    import mtlbench.io as io_mod
    real_replace, written = io_mod.os.replace, []

    def replace(src, dst):
        if str(dst).endswith(".json"):
            written.append(json.loads(Path(src).read_text()))
            raise OSError("disk full")
        real_replace(src, dst)
    monkeypatch.setattr(io_mod.os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        run_spec(tiny, seeds=[0])
    assert written and written[0]["row"] == "STL" and written[0]["status"] == "ok"  # the write was reached
    run = tmp_path / "runs" / "tiny" / "STL"
    assert not list(run.glob("*.json")) and not list(run.glob(".*.tmp"))
    assert (run / "seed0.state.pt").exists() and (run / "seed0.pt").exists()


def test_train_then_compare_rerenders_without_training(write_spec, tmp_path):
    spec = write_spec(TINY_SPEC.replace("{out}", str(tmp_path / "runs")))
    result = runner.invoke(app, ["train", str(spec), "--seeds", "0,1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Hard-Share" in result.output
    md = runner.invoke(app, ["compare", str(spec), "--format", "markdown"])
    assert md.exit_code == 0, md.output
    lines = [ln for ln in md.output.splitlines() if ln.startswith("| Hard-Share")]
    assert len(lines) == 1 and "±" in lines[0] and "| 2 | ref |" in lines[0]
    assert "| seeds | p vs Hard-Share | Δm % vs STL | mean rank |" in md.output  # summary columns come last
    csv_out = runner.invoke(app, ["compare", str(spec), "--format", "csv"]).output
    assert csv_out.splitlines()[0].startswith("method,A1,A2,B1,B2,X,mean")
    latex = runner.invoke(app, ["compare", str(spec), "--format", "latex"]).output
    assert r"\begin{tabular}" in latex and r"$\pm$" in latex


def test_compare_marks_missing_rows(write_spec, tmp_path):
    spec = write_spec(TINY_SPEC.replace("{out}", str(tmp_path / "empty")))
    result = runner.invoke(app, ["compare", str(spec), "--format", "markdown"])
    assert result.exit_code == 0
    assert "| STL | — |" in result.output
    assert f"no result yet for STL, Hard-Share: run `mtlbench train {spec}`" in result.output


def test_compare_renders_a_paper_table_beside_ours():
    result = runner.invoke(app, ["compare", "taan_table3_omniglot", "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "| TAAN | paper | 1,380K | 84.11 |" in result.output


def test_bad_format_is_a_usage_error(tiny, write_spec, tmp_path):
    spec = write_spec(TINY_SPEC.replace("{out}", str(tmp_path / "runs")))
    result = runner.invoke(app, ["compare", str(spec), "--format", "html"])
    assert result.exit_code == 2 and "--format: expected one of rich, markdown, latex, csv" in result.output


def test_paper_numbers_render_as_printed():
    result = runner.invoke(app, ["compare", "taan_table1_youtube8m", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "Hard-Share,paper,6.93M,0.770,0.838,0.870," in result.output


def test_compare_leaves_out_records_of_other_settings(write_spec, tmp_path):
    out = tmp_path / "runs"
    spec = write_spec(TINY_SPEC.replace("{out}", str(out)))
    assert runner.invoke(app, ["train", str(spec), "--no-progress"]).exit_code == 0
    spec.write_text(spec.read_text().replace("lr: 0.003", "lr: 0.002"))  # same rows, other experiment
    result = runner.invoke(app, ["compare", str(spec), "--format", "markdown"])
    assert result.exit_code == 0
    assert "left out 2 record(s) made with other settings" in result.output
    assert "| STL | — |" in result.output


def test_compare_and_report_refuse_what_is_not_a_record(tmp_path, write_spec):
    out = tmp_path / "runs"
    spec = write_spec(TINY_SPEC.replace("{out}", str(out)))
    bad = out / "tiny" / "STL" / "seed0.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"a": 1}')
    for args in (["compare", str(spec)], ["report", str(bad)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.output == f"error: {bad}: not a mtlbench result record (missing spec_name, row, method and " \
                                "15 more)\n"


def test_compare_checks_its_options(write_spec, tmp_path):
    spec = write_spec(TINY_SPEC.replace("{out}", str(tmp_path / "runs")))
    assert runner.invoke(app, ["compare", str(spec), "--split", "train"]).exit_code == 2
    bad_metric = runner.invoke(app, ["compare", str(spec), "--metric", "map@1O"])
    assert bad_metric.exit_code == 2 and "did you mean 'map@10'" in bad_metric.output
    missing = runner.invoke(app, ["compare", str(spec), "--results", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "is not a directory" in missing.output


def test_primary_metric_is_always_stored(write_spec, tmp_path):
    text = TINY_SPEC.replace("{out}", str(tmp_path / "runs")) + "evaluation: {metrics: [gap@20]}\n"
    rec = run_spec(load_spec(write_spec(text)), seeds=[0])[0]
    assert list(rec.metrics["test"]) == ["map@10", "gap@20"]


def test_paper_faithful_records_are_footnoted(write_spec, tmp_path):
    text = TINY_SPEC.replace("{out}", str(tmp_path / "runs")) \
        .replace("eval_every: 50", "eval_every: 50\n  select_on: test")
    spec = write_spec(text)
    records = run_spec(load_spec(spec), seeds=[0])
    assert all(r.paper_faithful for r in records)
    result = runner.invoke(app, ["compare", str(spec), "--format", "markdown"])
    assert "‡ paper_faithful (selected on test rows, as the original code did): Hard-Share, STL" in result.output
    assert "| STL ‡ |" in result.output and "| Hard-Share ‡ |" in result.output  # the rows carry the label too


def test_a_paper_table_renders_from_the_spec_that_has_run(write_spec, tmp_path, monkeypatch):
    """Several specs may name one paper table (paper size, CPU size, a one-row spec): `compare TABLE` renders the
    one with finished rows, and says which."""
    from mtlbench.report import compare as compare_mod
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    text = TINY_SPEC.replace("{out}", str(tmp_path / "runs")) \
        .replace("name: tiny", "name: tiny\ntable: taan_table1_youtube8m")
    (bench / "a_paper_size.yaml").write_text(text.replace("name: tiny\n", "name: never_run\n"))
    ran = bench / "b_cpu.yaml"
    ran.write_text(text)
    assert runner.invoke(app, ["train", str(ran), "--no-progress"]).exit_code == 0
    monkeypatch.setattr(compare_mod, "BENCHMARKS", bench)
    result = runner.invoke(app, ["compare", "taan_table1_youtube8m", "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "| Hard-Share | ours (n=1) |" in result.output
    assert f"rendered from {ran} (the spec naming this table with the most finished rows" in result.output
