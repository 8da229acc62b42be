"""Every command explains itself and lists what is registered."""
import pytest
from typer.testing import CliRunner

from mtlbench.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args", [[], ["train"], ["validate"], ["list"], ["compare"], ["status"]])
def test_help_explains(args):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output) > 200


def test_list_methods_and_datasets_and_tables():
    methods = runner.invoke(app, ["list", "methods"]).output
    assert "hard_share" in methods and "stl" in methods
    assert "synthetic_vector" in runner.invoke(app, ["list", "datasets"]).output
    assert "taan_table1_youtube8m" in runner.invoke(app, ["list", "tables"]).output


def test_list_refuses_unknown_kind():
    result = runner.invoke(app, ["list", "widgets"])
    assert result.exit_code == 2


def test_seeds_must_be_integers(tmp_path):
    result = runner.invoke(app, ["train", "benchmarks/quickstart.yaml", "--seeds", "a,b"])
    assert result.exit_code == 2 and "comma-separated integers" in result.output


def test_list_methods_params_counts_every_method_of_a_spec(write_spec, tmp_path):
    from tests.conftest import TINY_SPEC
    spec = write_spec(TINY_SPEC.replace("{out}", str(tmp_path)))
    result = runner.invoke(app, ["list", "methods", "--params", str(spec)])
    assert result.exit_code == 0, result.output
    # Hard-Share: 64->64->64 trunk (8,320) + 5 heads of 64->20 (6,500); STL: five such trunks and heads
    hs, stl = 64 * 64 + 64 + 64 * 64 + 64 + 5 * (64 * 20 + 20), 5 * (2 * (64 * 64 + 64) + 64 * 20 + 20)
    assert f"{hs:,}" in result.output and f"{stl:,}" in result.output


def test_params_only_with_methods():
    result = runner.invoke(app, ["list", "datasets", "--params", "benchmarks/quickstart.yaml"])
    assert result.exit_code == 2 and "--params goes with" in result.output


MIXED_SPEC = """
name: mixed
data:
  dataset: synthetic_image
  options: {n_groups: 1, tasks_per_group: 1, outlier: true, image_size: 16, size_step: 8, per_class: 10, n_classes: 4}
backbone: {kind: vgg, stages: [[4], [8]], dense: [16], input: {channels: 3, size: 16}}
methods:
  - {name: stl}
  - {name: hard_share}
  - {name: nddr}
"""


def test_list_methods_params_shows_stems_apart_and_nddr_closed_form(write_spec):
    """Two 1-channel tasks (16x16, 24x24) on a 3 x 16 x 16 VGG trunk: each stem is a 1x1 conv 1 -> 3 (6 params)."""
    result = runner.invoke(app, ["list", "methods", "--params", str(write_spec(MIXED_SPEC))])
    assert result.exit_code == 0, result.output
    stems = 2 * (1 * 3 + 3)
    tower = (3 * 4 * 9 + 4) + 2 * 4 + (4 * 8 * 9 + 8) + 2 * 8 + (8 * 4 * 4 * 16 + 16)  # conv1_1, BN, conv2_1, BN, fc1
    heads = 2 * (16 * 4 + 4)
    nddr = sum(2 * (2 * c * c) + 2 * 2 * c for c in (4, 8))  # T (T C C) weights + 2 T C BatchNorm per stage
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in result.output.splitlines() if line.startswith("│")]
    rows = {c[0]: c[2] for c in cells}
    assert rows["stl"] == f"{stems + 2 * tower + heads:,}" and rows["hard_share"] == f"{stems + tower + heads:,}"
    assert rows["nddr"] == f"{stems + 2 * tower + heads + nddr:,}"
    assert "of which stems" in result.output and {c[4] for c in cells} == {str(stems)}
