"""The catalogue of paper tables (``paper_tables.yaml``): each table's title, metric, columns and printed rows,
which a spec names as ``table:`` (checked when the spec is loaded) and ``compare`` renders beside our results."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from mtlbench.errors import UsageError
from mtlbench.registry import unknown_name_message

PAPER_TABLES = Path(__file__).with_name("paper_tables.yaml")


@lru_cache(maxsize=1)
def paper_tables() -> dict:
    return yaml.safe_load(PAPER_TABLES.read_text())


def get_paper_table(name: str) -> dict:
    tables = paper_tables()
    if name not in tables:
        raise UsageError(unknown_name_message("paper table", name, tables))
    return tables[name]


def timing_paper_table(spec) -> dict | None:
    """The paper table a spec renders when it is a timing table (``layout: timing``, TAAN's Table 2: seconds per
    100 iterations, not scores), else None."""
    paper = get_paper_table(spec.table) if spec.table else None
    return paper if paper and paper.get("layout") == "timing" else None

