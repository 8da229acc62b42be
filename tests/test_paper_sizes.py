"""Parameter counts at TAAN Table 1's sizes (YouTube-8M: 1152 -> 3 x 1024, 16 tasks, 3,557 classes) against
closed forms, and against the table's "# of params" column where our method is the table's method."""
from __future__ import annotations

import pytest

from mtlbench.report.sizes import YOUTUBE8M_CLASSES, count_at_paper_size

T, D_IN, H = 16, 1152, 1024
TRUNK = (D_IN * H + H) + 2 * (H * H + H)  # 3,279,872
HEADS = sum(H * c + c for c in YOUTUBE8M_CLASSES)  # 3,645,925
STL = T * TRUNK + HEADS
HARD = TRUNK + HEADS


def millions(n: int) -> str:
    """The paper's rounding: three significant digits."""
    return f"{n / 1e6:.3g}M"


@pytest.mark.parametrize("method, params, closed_form, table1", [
    ("stl", {}, STL, "56.1M"),
    ("hard_share", {}, HARD, "6.93M"),
    ("soft_order", {"fidelity": "taan_code"}, HARD + T * 2 * 2, "6.93M"),  # + sigma [T, D=2, L=2]
    ("soft_order", {}, T * (D_IN * H + H) + 2 * (H * H + H) + HEADS + T * 2 * 2, None),  # task encoders
    ("mrn_t", {}, STL, "56.1M"),
    ("mrn_full", {}, STL, None),  # Table 1 says 61.6M, see test_mrn_precisions_are_buffers_at_paper_size
    ("cross_stitch", {}, STL + 3 * T * T, None),
    ("mmoe", {}, 6 * TRUNK + T * 6 * D_IN + HEADS, None),
    # TAAN code: LAF rank K = 5 per layer, K (prod D + T); biases [T, out]; ordinary heads
    ("dmtrl_laf", {"fidelity": "taan_code"},
     5 * (D_IN * H + T) + 2 * 5 * (H * H + T) + 3 * T * H + HEADS, "20.1M"),
])
def test_paper_size_counts(method, params, closed_form, table1):
    counts = count_at_paper_size(method, params)
    assert counts["trainable"] == closed_form
    assert counts["frozen"] == 0
    if table1:
        assert millions(counts["trainable"]) == table1


def test_mrn_precisions_are_buffers_at_paper_size():
    """The precisions are not trainable; at paper size they hold 6.57M entries (Table 1's MRN_full 61.6M is
    neither 56.1M nor 56.1M + 6.57M = 62.7M -- reported, not reproduced)."""
    counts = count_at_paper_size("mrn_full")
    precisions = 3 * T * T + 3 * H * H + (D_IN * D_IN + 2 * H * H)
    assert counts["buffers"] == precisions + 1  # + the update counter
    assert millions(counts["trainable"] + precisions) == "62.7M"


@pytest.mark.slow
@pytest.mark.timeout(3600)  # factorising 1152 x 1024 x 16 tensors: 19 min measured on a busy 2-core machine
@pytest.mark.parametrize("method, table1", [("dmtrl_tucker", 39.1e6), ("dmtrl_tt", 46.2e6)])
def test_taan_code_tucker_and_tt_ranks_give_table1_sizes(method, table1):
    """Random 0.01 N(0, 1) tensors, relative error 0.5 by the interpolative rule: the ranks depend on the draw,
    so the count is checked to 1% (measured seed 0: Tucker 39,061,157, TT 46,039,141). Takes minutes."""
    import torch

    torch.manual_seed(0)
    counts = count_at_paper_size(method, {"fidelity": "taan_code"})
    assert abs(counts["trainable"] - table1) / table1 < 0.01
