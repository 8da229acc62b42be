"""TAAN Figure 3 as a table and a figure: each regularizer x coefficient cell filled from our runs (rows labelled
"<paper row> c=<value>"), mean ± std over seeds beside the authors' logged numbers; `compare --plot` draws it."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.config.paper_tables import get_paper_table
from mtlbench.report.grid import grid_series, parse_paper_cell
from tests.conftest import REPO

runner = CliRunner()
SPEC = REPO / "benchmarks" / "taan_figure3_omniglot_cpu.yaml"
RECORD = REPO / "results" / "reference" / "taan_table3_omniglot_cpu" / "TAAN" / "seed0.json"


def write_runs(root, values: dict[str, list[float]]) -> None:
    """Records of the figure's spec for the given rows, one per seed, with these pooled test accuracies."""
    spec = load_spec(SPEC, check_data=False).spec
    base = json.loads(RECORD.read_text())
    base["spec"], base["spec_name"] = spec.model_dump(mode="json"), spec.name
    for row, accuracies in values.items():
        for seed, acc in enumerate(accuracies):
            record = {**base, "row": row, "seed": seed}
            record["metrics"]["test"]["accuracy"]["pooled"] = acc
            path = root / spec.name / row.replace(" ", "_").replace("=", "_") / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record))


def test_paper_cells_parse():
    assert parse_paper_cell("0.8672±0.0054") == (0.8672, 0.0054)
    assert parse_paper_cell(84.11) == (84.11, 0.0) and parse_paper_cell(None) is None


def test_the_grid_shows_ours_beside_the_paper_and_draws_the_figure(tmp_path):
    pytest.importorskip("matplotlib")
    write_runs(tmp_path, {"TAAN": [0.70, 0.72, 0.74], "TAAN+L_dis c=0.3": [0.80, 0.81, 0.82]})
    png = tmp_path / "figure3.png"
    result = runner.invoke(app, ["compare", str(SPEC), "--results", str(tmp_path), "--format", "csv",
                                 "--plot", str(png)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "method,source,c_0.0,c_0.1,c_0.2,c_0.3,c_0.4"
    sd = np.std([0.70, 0.72, 0.74], ddof=1)
    assert lines[1] == f"TAAN,ours (n=3),0.720 ± {sd:.3f},—,—,—,—"
    assert lines[2] == "TAAN,paper,0.8412±0.0077,—,—,—,—"
    assert lines[3] == "TAAN+L_dis,ours (n=3),—,—,—,0.810 ± 0.010,—"
    assert lines[4].startswith("TAAN+L_dis,p vs TAAN,")  # tested against TAAN (the next test)
    assert lines[5].startswith("TAAN+L_dis,paper,—,0.8594±0.0045")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_refuses_a_table_that_is_no_sweep(tmp_path):
    result = runner.invoke(app, ["compare", str(REPO / "benchmarks" / "taan_table3_omniglot_cpu.yaml"),
                                 "--plot", str(tmp_path / "x.png")])
    assert result.exit_code == 2
    assert "--plot: " in result.output and "not a sweep" in result.output and "Model performance" not in result.output
    assert not (tmp_path / "x.png").exists()


def test_the_taan_code_protocol_is_labelled_paper_faithful():
    """The TAAN code's protocol selects on test: its spec says so (the record's paper_faithful flag follows from
    select_on: test), its validation twin differs only in split and selection, and the optimizer is the code's."""
    code = load_spec(REPO / "benchmarks" / "taan_table3_omniglot_taan_code.yaml", check_data=False).spec
    val = load_spec(REPO / "benchmarks" / "taan_table3_omniglot_taan_code_val.yaml", check_data=False).spec
    assert code.training.select_on == "test" and code.data.options == {"split": "paper_faithful"}
    assert val.training.select_on == "val" and val.data.options == {}
    o = code.optimizer
    assert (o.lr, o.weight_decay, o.lr_mult, o.betas) == (1e-5, 0.005, {"heads": 50}, (0.9, 0.999))
    t = code.training
    assert (t.iterations, t.batch_per_task, t.eval_every, t.patience) == (15000, 5, 100, 100)
    def strip(spec):
        return spec.model_dump(exclude={"name", "data", "training"})
    assert strip(code) == strip(val)
    assert code.training.model_dump(exclude={"select_on"}) == val.training.model_dump(exclude={"select_on"})


def test_only_the_unregularised_row_is_drawn_as_a_level():
    """TAAN (one paper cell, c = 0) is a level across the figure; a regulariser that has run at one
    coefficient so far is a point of its line, not a level."""
    import pandas as pd
    agg = pd.DataFrame({"mean": [0.75, 0.74], "std": [0.01, 0.0]},
                       index=pd.MultiIndex.from_tuples([("TAAN", "pooled"), ("TAAN+L_cos c=0.1", "pooled")]))
    series = {(s.row, s.source): s for s in grid_series(agg, get_paper_table("taan_figure3_omniglot_regularizers"))}
    assert series[("TAAN", "ours")].level and series[("TAAN", "paper")].level
    assert series[("TAAN+L_cos", "ours")].x == [0.1] and not series[("TAAN+L_cos", "ours")].level
    assert not series[("TAAN+L_cos", "paper")].level


def test_each_cell_is_tested_against_the_unregularised_taan(tmp_path):
    """Every cell against TAAN, paired over seeds: the textbook p-value under the cell in csv (Student's sleep
    data: p = 0.002833), a ** marker on the cell in rich (which drops the p lines), no p-value for a cell with
    two seeds (said so), and no line for a row with no runs."""
    from tests.test_significance import DRUG1, DRUG2
    write_runs(tmp_path, {"TAAN": DRUG2, "TAAN+L_dis c=0.3": DRUG1, "TAAN+L_tn c=0.1": [0.71, 0.75]})
    result = runner.invoke(app, ["compare", str(SPEC), "--results", str(tmp_path), "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].startswith("TAAN,ours (n=10)") and lines[2].startswith("TAAN,paper")  # no p line: TAAN is ref
    assert lines[3].startswith("TAAN+L_dis,ours (n=10)")
    assert lines[4] == "TAAN+L_dis,p vs TAAN,,,,0.0028,"
    assert lines[6].startswith("TAAN+L_cos,ours (n=0)") and lines[7].startswith("TAAN+L_cos,paper")
    assert lines[9] == "TAAN+L_tn,p vs TAAN,,—,,,"
    rich = runner.invoke(app, ["compare", str(SPEC), "--results", str(tmp_path)], env={"COLUMNS": "200"}).output
    dis = next(line for line in rich.splitlines() if line.startswith("│ TAAN+L_dis") and "ours" in line)
    assert dis.split("│")[6].strip().endswith("**") and "p vs TAAN" not in rich.replace("p vs TAAN:", "")
    flat = " ".join(rich.split())
    assert "p vs TAAN: two-sided paired t-test over seeds of the pooled accuracy" in flat
    assert "uncorrected" not in flat  # one test: nothing to correct, no note
    assert "fewer than 3 seeds shared with TAAN): TAAN+L_tn c=0.1 (n=2)" in flat


def test_many_cells_are_counted_and_holm_adjusts_them(tmp_path):
    """Two cells each at p < 0.05 against TAAN: uncorrected, both are marked and the note counts 2 tests (0.1
    expected by chance); with --correct holm the smaller p doubles (Holm's m x p for the smallest of m), the other
    takes the running maximum, neither keeps its marker, and the line and legend say "(Holm)"."""
    from scipy import stats

    from tests.test_significance import DRUG2
    ref = np.array(DRUG2)
    wiggle = np.array([0.5, -0.5] * 5)
    cells = {"TAAN+L_dis c=0.1": ref + 0.40 + wiggle, "TAAN+L_dis c=0.2": ref + 0.42 + wiggle}
    raw = [stats.ttest_rel(v, ref).pvalue for v in cells.values()]
    assert min(raw) > 0.025 and max(raw) < 0.05  # marked alone, not after doubling the smaller
    write_runs(tmp_path, {"TAAN": DRUG2, **{row: list(v) for row, v in cells.items()}})

    def show(*args):
        result = runner.invoke(app, ["compare", str(SPEC), "--results", str(tmp_path), *args], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return result.output

    def p_line(csv: str) -> list[float]:
        line = next(line for line in csv.splitlines() if line.startswith("TAAN+L_dis,p vs"))
        return [float(v) for v in line.split(",")[3:5]]

    assert p_line(show("--format", "csv")) == pytest.approx(raw, abs=5e-4)
    assert "2 cells tested, uncorrected for multiple comparisons: about 0.1" in " ".join(show().split())
    holm = show("--format", "csv", "--correct", "holm")
    assert "TAAN+L_dis,p vs TAAN (Holm)," in holm
    assert p_line(holm) == pytest.approx([2 * min(raw)] * 2, abs=5e-4)
    rich = show("--correct", "holm")
    dis = next(line for line in rich.splitlines() if line.startswith("│ TAAN+L_dis") and "ours" in line)
    assert "*" not in dis and "*" in next(line for line in show().splitlines() if line.startswith("│ TAAN+L_dis"))
    assert "p-values Holm-adjusted for the 2 cells tested" in " ".join(rich.split())
