"""Every command explains itself and lists what is registered."""
import pytest
from typer.testing import CliRunner

from mtlbench.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args", [[], ["train"], ["validate"], ["list"], ["compare"]])
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
