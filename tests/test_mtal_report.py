"""MTAL's records in the reports: Table 6 (sharing ratios per conv layer beside the paper's column, the totals and
the footnote on the paper's Total), heat maps of the kernel cosines, and sweeps (`mtlbench sweep`: a `sweep:`
section validated, one run per value that skip/resume like any run, the table and the PNG; `compare` re-renders
them without training)."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.paper_tables import get_paper_table
from mtlbench.report.sharing import sharing_table
from mtlbench.results import RunRecord, load_records

runner = CliRunner()

TINY_VGG16 = """
name: {name}
table: {table}
data:
  dataset: synthetic_image
  options: {{n_groups: 1, tasks_per_group: 2, outlier: false, image_size: 16, size_step: 4, per_class: 10,
            n_classes: 3}}
backbone: {{kind: vgg, width: 0.0157, dense: [64], input: {{channels: 1, size: 32}}}}
methods:
  - {{name: mtal, label: MTAL, params: {{delta: 0.3}}}}
{sweep}
training: {{iterations: 2, batch_per_task: 4, eval_every: 2, threads: 1}}
seeds: [0, 1]
output: {{dir: {out}}}
"""


def spec_text(tmp_path, name="t6", table="mtal_table6_sharing_ratio", sweep=""):
    return TINY_VGG16.format(name=name, table=table, sweep=sweep, out=tmp_path / "runs")


# -- Table 6 ----------------------------------------------------------------------------------------------------
def test_table6_renders_every_conv_layer_and_the_totals_beside_the_paper(write_spec, tmp_path):
    spec = write_spec(spec_text(tmp_path))
    assert runner.invoke(app, ["train", str(spec), "--no-progress"]).exit_code == 0
    result = runner.invoke(app, ["compare", str(spec), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines
            if line.startswith("| ") and not line.startswith("| layer")}
    layers = [f"conv{s}_{k}" for s, n in enumerate([2, 2, 3, 3, 3], 1) for k in range(1, n + 1)]
    assert list(rows)[:13] == layers and list(rows)[13:] == ["Total", "Total, weighted by filters",
                                                             "Total, weighted by kernel parameters"]
    assert rows["conv1_1"][0] == "12.5" and rows["conv2_1"][0] == "16.7" and rows["Total"][0] == "13.1"
    assert all(" ± " in c for r in rows.values() for c in r[1:])  # ours: mean ± std over the two seeds
    assert "| layer | paper % | ours (a) shared pairs % | ours (b) filters with a partner % |" in result.output
    assert ("the paper's Total 13.1 is neither the mean of its rows (13.47) nor weighted by VGG-16's filters "
            "(14.15) or kernel parameters (14.63)") in result.output
    records = load_records(tmp_path / "runs" / "t6")
    by_hand = [r.summary["layers"][0]["ratios"]["pair_entries"] * 100 for r in records]
    assert rows["conv1_1"][1].startswith(f"{sum(by_hand) / 2:.2f} ± ")


def record(seed: int, ratios: dict[str, float], status="ok") -> RunRecord:
    layers = [{"layer": 0, "name": "conv1_1", "filters": 4, "kernel_params": 9, "ratios": ratios}]
    totals = {r: {"mean": v, "by_filters": v, "by_params": v} for r, v in ratios.items()}
    return RunRecord(spec_name="s", row="MTAL", method="mtal", seed=seed, status=status, spec_file="s.yaml", spec={},
                     params={}, dataset="d", tasks=["a", "b"], primary_metric="accuracy", selected_on="val",
                     best_iteration=1, iterations_run=1, history=[], n_params=1, train_time_s=1, wall_time_s=1,
                     metrics=None, summary={"layers": layers, "mtal": {"totals": totals}} if status == "ok" else {})


def test_table6_means_and_stds_over_seeds_and_rows_without_records():
    recs = [record(0, {"pair_entries": 0.1, "filters_with_partner": 0.2, "compression": 0.0}),
            record(1, {"pair_entries": 0.3, "filters_with_partner": 0.4, "compression": 0.1}),
            record(2, {}, status="diverged")]
    table = sharing_table(recs, get_paper_table("mtal_table6_sharing_ratio"), ["MTAL", "MTAL_R"])
    conv = next(r for r in table.rows if r[0] == "conv1_1")
    assert conv == ["conv1_1", "12.5", "20.00 ± 14.14", "30.00 ± 14.14", "5.00 ± 7.07"]
    assert next(r for r in table.rows if r[0] == "conv5_3")[2:] == ["—"] * 3  # our network has no such layer
    assert any("no kernel-sharing records for MTAL_R" in n for n in table.notes)
    assert any("diverged" in n and "MTAL" in n for n in table.notes)


# -- heat maps ----------------------------------------------------------------------------------------------------
def test_report_draws_mtal_cosine_heat_maps_per_conv_layer(write_spec, tmp_path):
    pytest.importorskip("matplotlib")
    spec = write_spec(spec_text(tmp_path, name="hm", table="null").replace("seeds: [0, 1]", "seeds: [0]"))
    assert runner.invoke(app, ["train", str(spec), "--no-progress"]).exit_code == 0
    result = runner.invoke(app, ["report", str(tmp_path / "runs" / "hm" / "MTAL"), "--matrix", "cosine"])
    assert result.exit_code == 0, result.output
    text = "".join(result.output.split())  # rich wraps and centres the tables' titles
    assert "layer0(conv1_1)taskcosine" in text and "layer12(conv5_3)taskcosine" in text
    assert len(list((tmp_path / "runs" / "hm" / "MTAL" / "figures").glob("seed0_layer*_cosine.png"))) == 13


# -- sweeps ---------------------------------------------------------------------------------------------------------
SWEEP = "sweep: {method: MTAL, param: delta, values: [1.5, -1.0]}"


def test_sweep_trains_each_value_once_and_renders_table_and_figure(write_spec, tmp_path):
    pytest.importorskip("matplotlib")
    spec = write_spec(spec_text(tmp_path, name="sw", table="null", sweep=SWEEP).replace("seeds: [0, 1]", "seeds: [0]"))
    result = runner.invoke(app, ["sweep", str(spec), "--no-progress", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = [line.split(",") for line in result.stdout.splitlines()]  # the table; progress goes to stderr
    header = rows[0]
    assert header[:2] == ["delta", "mean accuracy"] and header[-1] == "seeds"
    got = {r[0]: dict(zip(header, r)) for r in rows[1:] if r and r[0] in ("-1.0", "1.5")}
    assert list(got) == ["-1.0", "1.5"]  # sorted by value
    assert got["1.5"]["sharing pair_entries"] == "0.000" and got["-1.0"]["sharing pair_entries"] == "1.000"
    assert got["-1.0"]["sharing compression"] == "0.500"  # two tasks, every filter shared
    figure = tmp_path / "runs" / "sw" / "sweep_delta.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "runs" / "sw").iterdir()) == ["MTAL_delta_-1.0", "MTAL_delta_1.5",
                                                                             "sweep_delta.png"]
    again = runner.invoke(app, ["sweep", str(spec), "--no-progress", "--no-plot", "--format", "csv"])
    assert again.exit_code == 0 and again.output.count("finished, skipped") == 2
    rendered = runner.invoke(app, ["compare", str(spec), "--format", "csv", "--plot", str(tmp_path / "f.png")])
    assert rendered.exit_code == 0 and rendered.stdout.splitlines()[:3] == result.stdout.splitlines()[:3]
    assert (tmp_path / "f.png").exists()


@pytest.mark.parametrize("sweep, line, message", [
    ("sweep: {method: MTL, param: delta, values: [0.1]}", "sweep.method",
     "no method row 'MTL' in this spec (rows: MTAL)"),
    ("sweep: {method: MTAL, param: deltaa, values: [0.1]}", "sweep.param", "mtal has no option 'deltaa'; did you mean "
     "'delta'? (options: delta, pairing, phi, init, init_noise, relations, l2_reduction, lambda)"),
    ("sweep: {method: MTAL, param: pairing, values: [index, nearest]}", "sweep.values[1]",
     "pairing: Input should be 'index' or 'best_match' (got 'nearest')"),
    ("sweep: {method: MTAL, param: delta, values: [0.1, 0.1]}", "sweep.values[1]",
     "0.1 gives the row 'MTAL delta=0.1' twice"),
])
def test_sweep_section_problems_are_one_line_each_exit_2(write_spec, tmp_path, sweep, line, message):
    spec = write_spec(spec_text(tmp_path, table="null", sweep=sweep))
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert lines == [f"error: {spec}:10: {line}: {message}"]


def test_sweep_needs_a_sweep_section_and_works_for_any_method_option(write_spec, tmp_path):
    spec = write_spec(spec_text(tmp_path, table="null"))
    result = runner.invoke(app, ["sweep", str(spec)])
    assert result.exit_code == 2 and "the spec has no sweep section" in result.output
    from mtlbench.config.loader import load_spec
    from mtlbench.config.sweep import expand_sweep
    taan = write_spec("""
        name: taan_sweep
        data: {dataset: synthetic_vector, options: {input_dim: 16, n_examples: 100}}
        backbone: {hidden: [8]}
        methods: [{name: taan, label: TAAN+L_dis, params: {reg: dis}}]
        sweep: {method: TAAN+L_dis, param: reg_coef, values: [0.1, 0.2]}
        """, name="taan.yaml")
    points = expand_sweep(load_spec(taan))
    assert [m.entry.row for m in points.methods] == ["TAAN+L_dis reg_coef=0.1", "TAAN+L_dis reg_coef=0.2"]
    assert [m.params.reg_coef for m in points.methods] == [0.1, 0.2] and points.methods[0].params.reg == "dis"


def test_table6_note_says_the_papers_ratios_are_multiples_of_one_24th():
    from mtlbench.report.sharing import paper_denominator_note
    note = paper_denominator_note(get_paper_table("mtal_table6_sharing_ratio"))
    assert "multiple of 1/24 (8.3 = 2/24, 12.5 = 3/24, 16.7 = 4/24)" in note
    # Conv1_1's 12.5% is 8 of its 64 filters; the 16.7% and 8.3% rows are no whole number of their filters
    assert "not a layer's filter count" in note and "Conv2_1, Conv3_1" in note and "Conv1_1" not in note
    # percentages that are whole numbers of each layer's filters (k/64 ... k/512) give no such finding
    from mtlbench.report.sharing import VGG16_CONV
    planted = {"rows": {f"L{i}": [round(100 * 3 / f, 1)] for i, (f, _) in enumerate(VGG16_CONV)}}
    assert "filter count" not in paper_denominator_note(planted)
