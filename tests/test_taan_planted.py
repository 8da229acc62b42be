"""TAAN recovers the planted task structure of the embedded data (the analysis behind the paper's Figures 2, 4).

Observed on layer 0 after 300 iterations of TAAN+L_dis (c = 0.1): mean distance across planted groups is 7.9x
(seed 0) and 10.4x (seed 1) the mean distance within a group, and the outlier task X is the most isolated task
(largest distance to its nearest other task). We assert a 3x margin.
"""
import pytest

from mtlbench.config.loader import load_spec
from mtlbench.report.analysis import group_separation, isolation_rank, layer_matrices
from mtlbench.training.run import run_spec

SPEC = """
name: planted
data:
  dataset: synthetic_vector
  options: {{n_groups: 2, tasks_per_group: 3, input_dim: 64, n_examples: 2000, input_noise: 0.3}}
backbone: {{hidden: [64, 64]}}
methods:
  - {{name: taan, label: TAAN+L_dis, params: {{M: 16, reg: dis, reg_coef: 0.1}}}}
optimizer: {{lr: 0.003}}
training: {{iterations: 300, batch_per_task: 32, eval_every: 100, threads: 1}}
output: {{dir: {out}}}
"""


@pytest.mark.parametrize("seed", [0, 1])
def test_distances_recover_planted_groups_and_outlier(seed, write_spec, tmp_path):
    record = run_spec(load_spec(write_spec(SPEC.format(out=tmp_path))), seeds=[seed])[0]
    names, meta = record.tasks, record.data_metadata
    first = layer_matrices(record)[0]
    sep = group_separation(first.distance, names, meta["groups"])
    assert sep["across"] > 3 * sep["within"], sep
    assert isolation_rank(first.distance, names, meta["outliers"][0]) == 0
    assert record.metrics["test"]["map@10"].mean > 0.8
