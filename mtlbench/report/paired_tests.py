"""A table's significance column: each of our rows (a sweep's each cell) against the reference row, paired over
seeds, adjusted as one family (significance.py does the statistics)."""
from __future__ import annotations

import pandas as pd

from mtlbench.report.cells import DASH, Table, p_cell


def add_tests(table: Table, df: pd.DataFrame, paper: dict | None, reference: str, diverged: set[str],
              correction: str) -> None:
    """Every row (a sweep's every cell) against the reference, as one family."""
    if paper and paper.get("grid"):
        from mtlbench.report.grid import add_grid_paired_tests
        add_grid_paired_tests(table, df, paper, reference, diverged, correction)
    elif table.ours:
        add_paired_tests(table, df, reference, diverged, correction)


def add_paired_tests(table: Table, df: pd.DataFrame, reference: str, diverged: set[str],
                     correction: str = "none") -> None:
    """A "p vs <reference>" column: each of our rows against the reference row, paired over seeds, on the
    table's summary column (adjusted as a family by ``correction``); the summary cell (else the row name) gets the
    rich marker."""
    from mtlbench.report.significance import marker, p_label, seed_values, test_family, test_notes
    names = {i: row for row, i in table.ours.items()}
    tested = {i: row for i, row in names.items() if row != reference and row not in diverged}
    tests = test_family(tested, seed_values(df, table.summary), reference, correction)
    table.p_column = len(table.header)
    table.header.append(p_label(reference, correction))
    for i, r in enumerate(table.rows):
        r.append(p_cell(tests.get(i), names.get(i) == reference, DASH if names.get(i) in diverged else ""))
        if i in tests and marker(tests[i].p):
            table.marks[(i, table.summary_at)] = marker(tests[i].p)
    table.notes += test_notes(reference, table.summary, [(tested[i], t) for i, t in tests.items()], "row", correction)
