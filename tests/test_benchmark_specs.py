"""Every spec under benchmarks/ is valid (keys, types, method names and options; data checked where present), and
every row of a spec that names a paper table lines up with the paper's row of that name -- a row of ours the
paper does not have (a baseline it did not run) is fine, a near-miss label (a typo) is not: its numbers would be
printed apart from the paper's."""
import difflib
from pathlib import Path

import pytest

from mtlbench.config.loader import load_spec
from mtlbench.report.tables import paper_tables

SPECS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.yaml"))


def near_misses(rows: list[str], paper_rows: list[str]) -> list[str]:
    """'ours -> paper' for each of our rows that is not a paper row but looks like one."""
    out = []
    for row in rows:
        close = difflib.get_close_matches(row, paper_rows, n=1, cutoff=0.75)
        if row not in paper_rows and close:
            out.append(f"{row} -> {close[0]}")
    return out


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_benchmark_spec_is_valid(path):
    resolved = load_spec(path, check_data=False)
    spec = resolved.spec
    if not resolved.dataset.needs_path:  # embedded data is always there: check the backbone's shapes on it too
        load_spec(path)
    if spec.table:
        paper_rows = list(paper_tables()[spec.table]["rows"])
        assert not near_misses([m.row for m in spec.methods], paper_rows), f"rows of {path.name} mislabelled"


def test_near_misses_catch_a_typo_but_not_an_extra_baseline():
    paper = list(paper_tables()["taan_table3_omniglot"]["rows"])
    assert near_misses(["DMTRL_Tucker", "TAAN", "Hard-Share", "Soft Order"], paper) == \
        ["DMTRL_Tucker -> DMTRL-Tucker", "Soft Order -> Soft-Order"]
