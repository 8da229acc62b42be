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
