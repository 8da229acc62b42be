"""Metrics against hand-computed cases (mtlbench.metrics defines mAP@10 exactly)."""
import pytest
import torch

from mtlbench.metrics import accuracy, gap_at_k, hit_at_1, map_at_k


def ranked(n_classes: int, true_ranks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One example whose class at rank r (1-based) has score n_classes - r; labels on at ``true_ranks``."""
    scores = torch.arange(n_classes, 0, -1, dtype=torch.float32)[None]
    y = torch.zeros(1, n_classes)
    for r in true_ranks:
        y[0, r - 1] = 1
    return scores, y


@pytest.mark.parametrize("true_ranks, expected", [
    ([1], 1.0),
    ([1, 3], (1 / 1 + 2 / 3) / 2),
    ([2, 3, 4], (1 / 2 + 2 / 3 + 3 / 4) / 3),
    ([2, 11], 1 / 2),            # the rank-11 label is outside the top 10 and costs nothing (lenient)
    ([11, 12], 0.0),             # no true label in the top 10
    ([10], 1 / 10),
])
def test_map_at_10_hand_cases(true_ranks, expected):
    scores, y = ranked(12, true_ranks)
    assert map_at_k(scores, y, 10) == pytest.approx(expected)


def test_map_at_10_is_a_mean_over_examples():
    s1, y1 = ranked(12, [1])
    s2, y2 = ranked(12, [2])
    assert map_at_k(torch.cat([s1, s2]), torch.cat([y1, y2])) == pytest.approx((1 + 0.5) / 2)


def test_map_with_fewer_classes_than_k():
    scores, y = ranked(4, [2, 4])
    assert map_at_k(scores, y, 10) == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_gap_pools_predictions_of_all_examples():
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.7, 0.6, 0.5]])
    y = torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    # top-2 pairs by score: 0.9 (hit, P=1), 0.8, 0.7, 0.6 (hit, P=2/4); 3 true labels in all
    assert gap_at_k(scores, y, 2) == pytest.approx((1 + 0.5) / 3)


def test_hit_at_1_and_accuracy():
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.7, 0.6, 0.5]])
    assert hit_at_1(scores, torch.tensor([[1.0, 0, 0], [0, 1, 1]])) == pytest.approx(0.5)
    assert accuracy(scores, torch.tensor([0, 2])) == pytest.approx(0.5)
    assert accuracy(scores, torch.tensor([0, 0])) == pytest.approx(1.0)
