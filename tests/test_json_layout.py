"""How records are laid out on disk: the same JSON object, a matrix one row per line, TAAN's matrices at the
float32 precision of the parameters they come from."""
from __future__ import annotations

import json

import numpy as np
import torch

from mtlbench.io import atomic_write_json, float32_list, json_text
from mtlbench.taan import distance_matrix
from tests.test_taan_method import MLP, build, vector_info


def test_json_text_reads_back_as_the_same_object():
    obj = {"a": [], "b": {}, "c": [[1, 2.5], [3]], "d": [1, {"x": [1.5, None, "s"]}], "e": (1, 2), "f": [[], []],
           "g": [[[1]], [2]], "h": True, "i": "ünï", 3: [True, None], 1.5: {None: 1, False: 2}}
    assert json.loads(json_text(obj)) == json.loads(json.dumps(obj))
    for scalar in (5, "s", None, [], {}):
        assert json.loads(json_text(scalar)) == scalar


def test_a_matrix_takes_one_line_per_row(tmp_path):
    rows = np.random.default_rng(0).normal(size=(50, 50)).tolist()
    path = tmp_path / "r.json"
    atomic_write_json(path, {"summary": {"layers": [{"distance": rows, "b": rows[0]}]}})
    lines = path.read_text().splitlines()
    assert len(lines) == 50 + 11  # 50 rows, the "b" line, and ten lines of keys and brackets around them
    assert json.loads(path.read_text())["summary"]["layers"][0]["distance"] == rows
    assert len(path.read_text()) < len(json.dumps(json.loads(path.read_text()), indent=2)) / 1.4


def test_float32_list_writes_the_shortest_decimal_of_each_float32():
    values = torch.randn(7, 5, dtype=torch.float64) * torch.logspace(-30, 30, 5, dtype=torch.float64)
    stored = float32_list(values)
    assert np.array_equal(np.array(stored, dtype=np.float32), values.float().numpy())
    assert float32_list(torch.tensor([0.1, -0.0, 3.0])) == [0.1, -0.0, 3.0]
    assert torch.tensor([0.1]).double().tolist() != [0.1]  # what .double().tolist() would have written
    digits = len(json.dumps(stored)) / len(json.dumps(values.float().double().tolist()))
    assert digits < 0.75


def test_taan_summary_is_stored_at_float32_precision():
    torch.manual_seed(3)
    taan = build("taan", vector_info(4), MLP, M=7, alpha_init={"kind": "normal", "std": 0.3})
    layer = taan.summary()["layers"][0]
    alpha, b = taan.adaptive_layers()[0].ordered()
    exact = distance_matrix(alpha, b, None).detach()
    assert np.array_equal(np.array(layer["distance"], dtype=np.float32), exact.float().numpy())
    assert np.array_equal(np.array(layer["alpha"], dtype=np.float32), alpha.detach().float().numpy())
    assert all(len(repr(v)) <= 16 for row in layer["distance"] for v in row)
