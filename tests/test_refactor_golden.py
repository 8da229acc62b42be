"""Refactor safety: every method that existed before the layer plan computes, on homogeneous data, exactly
what it computed before (losses of 30 seeded training steps and the eval logits after them, recorded on the
code before the refactor in tests/golden/methods_short_run.json)."""
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
