"""Every spec under benchmarks/ is valid: keys, types, method names and options (data checked where present)."""
from pathlib import Path

import pytest

from mtlbench.config.loader import load_spec
from mtlbench.report.tables import paper_tables

SPECS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_benchmark_spec_is_valid(path):
    resolved = load_spec(path, check_data=False)
    spec = resolved.spec
    if not resolved.dataset.needs_path:  # embedded data is always there: check the backbone's shapes on it too
        load_spec(path)
    assert spec.table is None or spec.table in paper_tables()
    if spec.table and spec.table in paper_tables():
        rows = paper_tables()[spec.table]["rows"]
        unknown = [m.row for m in spec.methods if m.row not in rows and m.row != "Hard-Share"]
        assert not unknown, f"rows {unknown} match no row of {spec.table}"
