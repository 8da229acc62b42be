"""`mtlbench report` prints stored task matrices and draws one heat map per layer (TAAN Figures 2, 4)."""
import pytest
from typer.testing import CliRunner

from mtlbench.cli import app

runner = CliRunner()

SPEC = """
name: rep
data:
  dataset: synthetic_vector
  options: {{n_groups: 2, tasks_per_group: 2, input_dim: 32, n_examples: 600}}
backbone: {{hidden: [16, 16]}}
methods:
  - {{name: taan, label: TAAN, params: {{M: 8, reg: dis}}}}
  - {{name: hard_share, label: Hard-Share}}
training: {{iterations: 10, batch_per_task: 16, eval_every: 5, threads: 1}}
output: {{dir: {out}}}
"""


@pytest.fixture
def trained(write_spec, tmp_path):
    spec = write_spec(SPEC.format(out=tmp_path / "runs"))
    assert runner.invoke(app, ["train", str(spec), "--no-progress"]).exit_code == 0
    return tmp_path / "runs" / "rep"


def test_report_draws_a_heat_map_per_layer(trained):
    pytest.importorskip("matplotlib")
    result = runner.invoke(app, ["report", str(trained / "TAAN"), "--matrix", "both"])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in (trained / "TAAN" / "figures").glob("*.png"))
    assert pngs == ["seed0_layer0_cosine.png", "seed0_layer0_distance.png",
                    "seed0_layer1_cosine.png", "seed0_layer1_distance.png",
                    "seed0_task_loss.png"]  # and each task's training loss (MTAL Figure 12)
    assert (trained / "TAAN" / "figures" / pngs[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "layer 0 (fc1) task distance" in result.output and "planted groups" in result.output


def test_report_without_plots_and_for_methods_without_matrices(trained):
    result = runner.invoke(app, ["report", str(trained), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "stores no task matrices" in result.output  # Hard-Share
    assert "layer 1 (fc2) task distance" in result.output
    assert not (trained / "TAAN" / "figures").exists()


def test_report_of_a_missing_folder_is_one_clear_error(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.output
