"""TAAN Figure 4 as a computed statement: each task's nearest task, the most isolated tasks per layer and over
seeds, and a 50 x 50 matrix summarised (not printed as a grid of "…") with its heat map's path."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.report.analysis import isolation, isolation_over_seeds
from tests.conftest import REPO

runner = CliRunner()
OMNIGLOT_TAAN = REPO / "results" / "reference" / "taan_table3_omniglot_cpu" / "TAAN"

# a, b, c close together; d far from all of them but nearest to c
HAND = np.array([[0.0, 1.0, 2.0, 9.0],
                 [1.0, 0.0, 1.5, 8.0],
                 [2.0, 1.5, 0.0, 5.0],
                 [9.0, 8.0, 5.0, 0.0]])


def test_nearest_tasks_and_the_most_isolated_first():
    iso = isolation(HAND, list("abcd"))
    assert iso.neighbour == ["b", "a", "b", "c"]
    assert iso.nearest.tolist() == [1.0, 1.0, 1.5, 5.0]
    assert [iso.names[i] for i in iso.order] == ["d", "c", "a", "b"]  # ties (a, b) in task order
    assert iso.rank("d") == 0 and iso.rank("b") == 3


def test_similarity_matrices_count_the_least_similar_as_isolated():
    cosine = 1.0 - HAND / 10.0
    iso = isolation(cosine, list("abcd"), similarity=True)
    assert iso.neighbour == ["b", "a", "b", "c"] and iso.names[iso.order[0]] == "d"
    assert iso.nearest[3] == pytest.approx(0.5)


def test_ranking_over_seeds():
    swapped = HAND.copy()
    swapped[[2, 3]] = swapped[[3, 2]]
    swapped[:, [2, 3]] = swapped[:, [3, 2]]  # seed 2: c is the outlier
    runs = [isolation(HAND, list("abcd")), isolation(HAND, list("abcd")), isolation(swapped, list("abcd"))]
    ranking = isolation_over_seeds(runs)
    assert (ranking[0].task, ranking[0].first, ranking[0].seeds) == ("d", 2, 3)
    assert ranking[0].mean_rank == pytest.approx((1 + 1 + 2) / 3)
    assert (ranking[1].task, ranking[1].mean_rank, ranking[1].first) == ("c", pytest.approx(5 / 3), 1)


def test_a_wide_matrix_is_summarised_with_its_heat_map(tmp_path):
    """The committed 400-iteration Omniglot TAAN run: in its first layer Braille is the most isolated alphabet,
    Syriac (Estrangelo) next -- printed, not left to the eye; no grid of '…'."""
    pytest.importorskip("matplotlib")
    result = runner.invoke(app, ["report", str(OMNIGLOT_TAAN / "seed0.json"), "--figures", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "…" not in result.output
    assert ("layer 0 task distance: 50 x 50, too wide to print here -- heat map "
            f"{tmp_path / 'seed0_layer0_distance.png'}") in text
    assert ("most isolated (distance to the nearest task): 1. Braille 0.0698 (nearest: Syriac_(Estrangelo)), "
            "2. Syriac_(Estrangelo) 0.0522 (nearest: ULOG)") in text
    assert "nearest task of each task" in text
    assert (tmp_path / "seed0_layer4_distance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_most_isolated_per_layer_over_seeds(tmp_path):
    run = tmp_path / "TAAN"
    run.mkdir()
    for seed in (0, 1):
        record = json.loads((OMNIGLOT_TAAN / "seed0.json").read_text())
        record["seed"] = seed
        (run / f"seed{seed}.json").write_text(json.dumps(record))
    result = runner.invoke(app, ["report", str(run), "--no-plots", "--top", "2"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│ layer")]
    assert [r.split("│")[2].strip() for r in rows] == ["Braille", "Braille", "Japanese_(katakana)", "Oriya", "Braille"]
    assert "2/2 seeds" in rows[0] and "Braille 1.0, Syriac_(Estrangelo) 2.0" in rows[0]
    # per seed only the headline of each wide matrix: the 50-row nearest-task tables stay with single records
    assert "nearest task of each task" not in result.output
    assert result.output.count("most isolated (distance to the nearest task): 1. Braille") == 3 * 2  # layers 0, 1, 4
    shutil.rmtree(run)
