"""Refactor safety: every method that existed before the layer plan computes, on homogeneous data, exactly
what it computed before (losses of 30 seeded training steps and the eval logits after them, recorded on the
code before the refactor in tests/golden/methods_short_run.json).

TAAN's three entries were re-recorded when its activation moved to fused kernels (mtlbench/taan): those sum the
hinges in another order, and Adam turns rounding-level differences in near-zero gradients of unused hinges
into visible eval differences after 30 steps. The kernels themselves are held to the defining formula and
to gradcheck in tests/test_taan_kernels.py; here TAAN runs its eager kernels, whose bits do not depend on the CPU.
DMTRL-Tucker's three entries and DMTRL-TT's two were re-recorded when dense layers came to be applied through
their factors instead of building the weight tensor: the first step's loss moved by ~5e-7 (float32 rounding),
30 Adam steps grew that to at most 0.5% of the eval logits; tests/test_dmtrl.py holds the two paths equal in
float64, in value and gradient. All eight DMTRL entries were re-recorded at DMTRL version 2, whose SVD factors train at
0.03 x lr by default (mtlbench/methods/dmtrl.py, FACTORS_LR_MULT); every other entry is unchanged."""
from __future__ import annotations

import json
import logging

import pytest

from tests.refactor_golden import CASES, GOLDEN, case_id, short_run

GOLDEN_RUNS = json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_short_run_reproduces_the_recorded_numbers(case, caplog):
    with caplog.at_level(logging.ERROR):  # DMTRL's random-init warning
        got = short_run(case)
    assert got == GOLDEN_RUNS[case_id(case)]


def test_golden_covers_every_case():
    assert sorted(GOLDEN_RUNS) == sorted(case_id(c) for c in CASES)


def test_reference_records_keep_their_backbone_identity():
    """The committed reference records' backbones dump exactly as stored, so `compare` still groups them with
    their specs (the keys added with VGG stages and stems are left out while at their defaults)."""
    from mtlbench.nn.backbone import BackboneSpec
    from tests.conftest import REPO

    paths = sorted((REPO / "results" / "reference").rglob("seed*.json"))
    assert paths
    for path in paths:
        spec = json.loads(path.read_text())["spec"]
        for backbone in [spec["backbone"], *(m.get("backbone") for m in spec["methods"])]:
            if backbone is not None:
                assert BackboneSpec.model_validate(backbone).model_dump(mode="json") == backbone, path


def test_stl_checkpoint_keys_are_unchanged():
    """DMTRL's `init: stl` and the tower methods' `tower_init: stl` read STL checkpoints by these names,
    including checkpoints written before the layer plan (homogeneous inputs: no stem entries)."""
    from mtlbench.nn.backbone import BackboneSpec
    from mtlbench.registry import METHODS
    from mtlbench.store.dataset import DataInfo, TaskInfo

    info = DataInfo("toy", [TaskInfo(f"t{t}", 3, "multiclass", (1, 8, 8)) for t in range(2)], "per_task", "acc")
    stl = METHODS.get("stl")(info, BackboneSpec(channels=[4], padding=1, dense=[5]), METHODS.get("stl").Params())
    block0 = ["affine.weight", "affine.bias", "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var",
              "norm.num_batches_tracked"]
    expected = [*(f"trunks.{t}.blocks.{k}" for t in range(2) for k in
                  [*(f"0.{n}" for n in block0), "1.affine.weight", "1.affine.bias"]),
                *(f"heads.{t}.{n}" for t in range(2) for n in ("weight", "bias"))]
    assert list(stl.state_dict()) == expected
