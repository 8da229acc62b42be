"""MTAL's figures drawn from records: Figure 8 (mean and spread over tasks per method, `compare --plot` on a
table's spec) and Figure 12 (each task's training loss at every evaluation, `report`); matplotlib on Agg."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.results import RunRecord, record_path, write_record

pytest.importorskip("matplotlib")
runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def drawn(monkeypatch):
    """What each saved figure showed: per axes, its bars' heights and labels or its lines' labels and points."""
    import mtlbench.report.plots as plots
    seen = []
    real = plots.save

    def save(fig, path):
        seen.append([{"title": ax.get_title(), "lines": {ln.get_label(): ln.get_xydata().tolist() for ln in ax.lines
                                                          if not ln.get_label().startswith("_")},
                      "bars": {c.get_label(): [p.get_height() for p in c.patches] for c in ax.containers
                               if hasattr(c, "patches")},
                      "xticks": [t.get_text() for t in ax.get_xticklabels()],
                      "images": [np.asarray(im.get_array()) for im in ax.images]} for ax in fig.axes])
        return real(fig, path)
    monkeypatch.setattr(plots, "save", save)
    return seen


SPEC = """
name: mtal_fig
table: mtal_table3_related_without_relations
data: {dataset: mtal_related, path: prepared}
backbone: {kind: vgg, width: 0.125, dense: [512, 512], input: {channels: 1, size: 32}}
methods:
  - {name: stl, label: Single-task}
  - {name: hard_share, label: Multi-task}
optimizer: {name: sgd, lr: 0.01, momentum: 0.0}
seeds: [0, 1]
output: {dir: OUT}
"""
SCORES = {"Single-task": [{"HD": 0.8, "a": 0.6, "Typographic*": 0.9, "A": 0.7},
                          {"HD": 0.9, "a": 0.7, "Typographic*": 0.9, "A": 0.7}],
          "Multi-task": [{"HD": 0.9, "a": 0.9, "Typographic*": 0.9, "A": 0.9},
                         {"HD": 0.9, "a": 0.9, "Typographic*": 0.9, "A": 0.9}]}


def plant(spec_path, out):
    spec = load_spec(spec_path, check_data=False).spec
    dumped = spec.model_dump(mode="json")
    for row, seeds in SCORES.items():
        for seed, tasks in enumerate(seeds):
            method = next(m.name for m in spec.methods if m.row == row)
            write_record(record_path(out, spec.name, row, seed), RunRecord(
                spec_name=spec.name, row=row, method=method, seed=seed, spec_file=str(spec_path), spec=dumped,
                params={}, dataset="mtal_related", tasks=list(tasks), primary_metric="accuracy", selected_on="val",
                best_iteration=1, iterations_run=1, history=[], n_params=10, train_time_s=1.0, wall_time_s=1.0,
                metrics={"test": {"accuracy": {"tasks": tasks, "mean": float(np.mean(list(tasks.values())))}}}))


def test_figure_8_bars_are_the_mean_over_tasks_with_their_spread_beside_the_papers(write_spec, tmp_path, drawn):
    out = tmp_path / "runs"
    spec = write_spec(SPEC.replace("OUT", str(out)))
    plant(spec, out)
    png = tmp_path / "fig8.png"
    result = runner.invoke(app, ["compare", str(spec), "--plot", str(png), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == PNG and f"figure: {png}" in result.output
    (ax,) = drawn[-1]
    assert ax["xticks"] == ["Single-task", "Multi-task"] and set(ax["bars"]) == {"ours", "paper"}
    # Single-task's task means over its two seeds: HD 0.85, a 0.65, Typographic* 0.9, A 0.7 -> 0.775
    assert ax["bars"]["ours"] == pytest.approx([0.775, 0.9])
    # the paper's Table 3 rows: Single-task 0.76 / 0.84 / 0.95 / 0.80, Multi-task 0.82 / 0.85 / 0.92 / 0.84
    assert ax["bars"]["paper"] == pytest.approx([np.mean([0.76, 0.84, 0.95, 0.80]), np.mean([0.82, 0.85, 0.92, 0.84])])


def test_a_table_without_a_figure_still_refuses_plot(write_spec, tmp_path):
    spec = write_spec(SPEC.replace("OUT", str(tmp_path)).replace("table: mtal_table3_related_without_relations",
                                                                  "table: mtal_table6_sharing_ratio"))
    result = runner.invoke(app, ["compare", str(spec), "--plot", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "not a sweep" in result.output and not (tmp_path / "x.png").exists()


TINY = """
name: losses
data:
  dataset: synthetic_vector
  options: {n_groups: 2, tasks_per_group: 1, input_dim: 16, n_examples: 300}
backbone: {hidden: [16, 16]}
methods:
  - {name: hard_share, label: Hard-Share}
optimizer: {lr: 0.003}
training: {iterations: 30, batch_per_task: 16, eval_every: 10, threads: 1}
output: {dir: OUT}
"""


def test_figure_12_each_tasks_training_loss_at_every_evaluation(write_spec, tmp_path, drawn):
    out = tmp_path / "runs"
    spec = write_spec(TINY.replace("OUT", str(out)))
    assert runner.invoke(app, ["train", str(spec)]).exit_code == 0
    path = out / "losses" / "Hard-Share" / "seed0.json"
    record = json.loads(path.read_text())
    tasks = record["tasks"]
    assert len(tasks) == 3  # two groups of one task and the outlier
    for entry in record["history"]:
        losses = entry["task_loss"]
        assert list(losses) == tasks and all(v > 0 for v in losses.values())
        # the step's loss is the mean of the tasks' losses: the per-task values are that step's
        assert entry["loss"] == pytest.approx(sum(losses.values()) / len(tasks), rel=1e-5)
    result = runner.invoke(app, ["report", str(path), "--figures", str(tmp_path / "fig")])
    assert result.exit_code == 0, result.output
    png = tmp_path / "fig" / "seed0_task_loss.png"
    assert png.read_bytes()[:8] == PNG and "training loss per task" in result.output
    (ax,) = drawn[-1]
    assert set(ax["lines"]) == set(tasks)
    for task in tasks:
        assert ax["lines"][task] == [[h["iteration"], h["task_loss"][task]] for h in record["history"]]


VGG = """
name: acts
data:
  dataset: synthetic_image
  options: {n_groups: 1, tasks_per_group: 2, outlier: false, image_size: 16, size_step: 4, per_class: 10, n_classes: 3}
backbone: {kind: vgg, width: 0.0625, dense: [16], input: {channels: 1, size: 32}}
methods:
  - {name: mtal, label: MTAL, params: {delta: 0.0}}
training: {iterations: 4, batch_per_task: 4, eval_every: 2, threads: 1}
output: {dir: OUT}
"""


def test_figures_10_11_show_each_shared_pairs_filters_on_their_tasks_images(write_spec, tmp_path, drawn):
    """delta 0 shares every pair of positive cosine: the first layer's figure shows shared pairs, each panel the
    activation of that task's filter on that task's first test image (recomputed here from the saved weights)."""
    import torch

    from mtlbench.training.run import load_data
    out = tmp_path / "runs"
    spec = write_spec(VGG.replace("OUT", str(out)))
    assert runner.invoke(app, ["train", str(spec)]).exit_code == 0
    record = out / "acts" / "MTAL" / "seed0.json"
    result = runner.invoke(app, ["report", str(record), "--activations", "--no-plots",
                                 "--figures", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in (tmp_path / "f").glob("*.png"))
    assert pngs == ["seed0_activations_conv1_1.png", "seed0_activations_conv1_2.png"], pngs
    first = drawn[-2]
    assert len(first) % 4 == 0 and len(first) >= 4
    titles = [ax["title"] for ax in first]
    assert all("(shared, cos" in t for t in titles[1::2]), titles
    resolved = load_spec(spec)
    data = load_data(resolved)
    m = resolved.methods[0]  # the eager model (the trainer may run fused conv kernels, which call no act module)
    model = m.cls(data.info, resolved.spec.backbone_for(m.entry), m.params)
    model.load_state_dict(torch.load(record.with_suffix(".pt"), weights_only=True))
    model.eval()
    names = data.info.task_names
    for row in range(len(first) // 4):
        for side in (0, 1):
            title = first[4 * row + 2 * side + 1]["title"]
            task = names.index(title.split(" filter ")[0])
            k = int(title.split(" filter ")[1].split(" ")[0])
            seen = []
            hook = model.trunks[task].blocks[0].act.register_forward_hook(lambda m, i, o: seen.append(o))  # noqa: B023 -- removed below
            with torch.no_grad():
                model.forward_task(data.split("test")[task].batch(torch.arange(1))[0], task)
            hook.remove()
            np.testing.assert_allclose(first[4 * row + 2 * side + 1]["images"][0], seen[0][0, k].numpy(), rtol=1e-6)
