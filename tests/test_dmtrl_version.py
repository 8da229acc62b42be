"""DMTRL version 2: the SVD factors train at 0.03 x lr by default (a decided reading: mtlbench/methods/dmtrl.py,
FACTORS_LR_MULT), and the method's version enters DMTRL run keys only -- every other row keeps its identity,
old DMTRL records stay readable, are not counted as finished runs, and `compare` marks them."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.methods.dmtrl import FACTORS_LR_MULT
from mtlbench.results import METHOD_VERSIONS, identity_hash, load_records, method_version, run_key
from mtlbench.training.run_plan import plan_cells, stored_key
from mtlbench.training.step import make_optimizer
from mtlbench.training.trainer import build_model
from tests.conftest import REPO, small_data

SPEC = """
name: dmtrl_version
data:
  dataset: synthetic_vector
  options: {n_groups: 2, tasks_per_group: 2, outlier: true, input_dim: 64, n_examples: 1200, n_classes: 8}
backbone: {hidden: [16, 16]}
methods:
  - {name: dmtrl_tucker, params: {init: random}}
optimizer: {optimizer}
"""


def optimizer_of(write_spec, optimizer: str, params: str = "{init: random}"):
    text = SPEC.replace("{optimizer}", optimizer).replace("{init: random}", params)
    resolved = load_spec(write_spec(text))
    torch.manual_seed(0)
    model = build_model(resolved, resolved.methods[0], small_data("vector"))
    return model, make_optimizer(resolved, model)


def lr_of(optimizer, p) -> float:
    return next(g["lr"] for g in optimizer.param_groups if any(q is p for q in g["params"]))


def test_factors_train_at_the_decided_multiplier_by_default(write_spec):
    model, opt = optimizer_of(write_spec, "{lr: 0.001}")
    assert FACTORS_LR_MULT == 0.03
    assert lr_of(opt, model.tensors[0].core) == pytest.approx(0.001 * 0.03)
    assert lr_of(opt, model.towers[0].blocks[0].affine.bias) == pytest.approx(0.001)
    assert lr_of(opt, model.heads[0].weight) == pytest.approx(0.001)


def test_the_spec_multiplies_on_top_and_the_option_restores_the_plain_rate(write_spec):
    model, opt = optimizer_of(write_spec, "{lr: 0.001, lr_mult: {factors: 2}}")
    assert lr_of(opt, model.tensors[1].factors[0]) == pytest.approx(0.001 * 0.03 * 2)
    model, opt = optimizer_of(write_spec, "{lr: 0.001}", "{init: random, factors_lr_mult: 1}")
    assert lr_of(opt, model.tensors[1].factors[0]) == pytest.approx(0.001)
    model, opt = optimizer_of(write_spec, "{lr: 0.001}", "{fidelity: taan_code}")  # the TAAN code: one rate
    assert lr_of(opt, model.tensors[0].core) == pytest.approx(0.001)


def test_only_dmtrl_run_keys_carry_a_method_version(write_spec):
    assert set(METHOD_VERSIONS) == {"dmtrl_laf", "dmtrl_tucker", "dmtrl_tt"} and method_version("taan") == 1
    text = SPEC.replace("{optimizer}", "{lr: 0.001}").replace("methods:\n", "methods:\n  - {name: hard_share}\n")
    cells = plan_cells(load_spec(write_spec(text)), [0], REPO / "unused")
    hard, dmtrl = (c.key for c in cells)
    assert dmtrl["method_version"] == 2 and "method_version" not in hard
    assert hard == run_key(cells[1].spec, "hard_share", 0, hard["code"])  # the key every earlier version made


def test_old_dmtrl_records_keep_their_identity_and_are_not_finished_runs():
    """A committed DMTRL record (version 1) reads with the identity it was written with, but the cell of the
    same spec, row and seed now has another key: `train` does not skip it."""
    spec_file = REPO / "benchmarks" / "taan_table3_omniglot_cpu5.yaml"
    records = [r for r in load_records(REPO / "results" / "reference" / "taan_table3_omniglot_cpu5")
               if r.method.startswith("dmtrl") and r.seed == 0]
    assert len(records) == 3 and all(r.method_version is None for r in records)
    for record in records:
        assert identity_hash(stored_key(record)) == record.identity
        key = stored_key(record)
        assert {**key, "method_version": 2} != key and "method_version" not in key
    assert spec_file.exists()


@pytest.mark.parametrize("spec", ["taan_table3_omniglot_cpu5", "taan_table1_youtube8m_cpu"])
def test_compare_marks_the_old_dmtrl_records(spec):
    result = CliRunner().invoke(app, ["compare", f"benchmarks/{spec}.yaml", "--results", "results/reference",
                                      "--format", "markdown"])
    assert result.exit_code == 0, result.output
    note = next(line for line in result.output.splitlines() if "old computation" in line)
    assert "15 record(s) of DMTRL-LAF, DMTRL-TT, DMTRL-Tucker" in note
    assert "dmtrl_laf, dmtrl_tt, dmtrl_tucker version 1, now 2" in note


def test_a_version_2_record_is_not_marked(tmp_path):
    source = REPO / "results" / "reference" / "taan_table3_omniglot_cpu5_dmtrl_lr"
    target = tmp_path / source.name
    shutil.copytree(source, target)
    for path in target.rglob("seed*.json"):
        data = json.loads(path.read_text())
        data["method_version"] = 2
        path.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["compare", f"benchmarks/{source.name}.yaml", "--results", str(tmp_path),
                                      "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "old computation" not in result.output and "DMTRL-Tucker (factors lr x0.03)" in result.output
