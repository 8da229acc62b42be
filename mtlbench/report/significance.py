"""Is a row's gap to a reference row more than seed noise? A two-sided paired t-test over seeds.

What is tested: the table's summary number of each run (the pooled accuracy where the table shows it, as TAAN's
Omniglot table; else the mean over tasks), row against reference, pairs = runs with the same seed (the same
batch order and data split for both methods). Why over seeds and not over (seed, task) cells: the seed is the
unit of replication -- the 50 tasks of one run share one trained network, so their differences are not
independent draws, and counting 5 x 50 cells as 250 pairs would make any gap look significant (pseudo-
replication). Why a t-test and not Wilcoxon's signed-rank test: with 5 seeds the smallest two-sided p-value
Wilcoxon can give is 0.0625, so it could never say anything. Fewer than ``MIN_SEEDS`` shared seeds: no p-value
(said so in a note). A row whose every paired value equals the reference's is not tested (no p, no marker).

Many rows (or a sweep's cells) against one reference are many tests: at p < 0.05, about one in twenty marks a
gap that is noise. The table says how many were tested; ``compare --correct holm`` replaces each p by Holm's
step-down adjusted p-value (Holm 1979), so that a marker holds for the table as a whole (family-wise error rate
below the marker's level), under any dependence between the tests -- theirs share one reference row, so
Bonferroni-type bounds, not independence-based ones, are what is safe. Holm is uniformly more powerful than
Bonferroni and needs no assumption Bonferroni does not.

scipy is imported here only, and only when a test runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_SEEDS = 3  # a t-test with fewer pairs has at most one degree of freedom
MARKS = ((0.01, "**"), (0.05, "*"))
CORRECTIONS = ("none", "holm")


@dataclass
class Paired:
    n: int                       # seeds run by both rows
    p: float | None = None       # two-sided p-value; None when not tested (see why)
    diff: float | None = None    # mean of (row - reference) over the paired seeds
    why: str = ""                # "too few seeds" | "identical" | ""


def paired_test(values: dict[int, float], reference: dict[int, float]) -> Paired:
    """Paired t-test of ``values`` against ``reference`` (both seed -> value) over the seeds they share."""
    seeds = sorted(set(values) & set(reference))
    if len(seeds) < MIN_SEEDS:
        return Paired(len(seeds), why="too few seeds")
    a = np.array([values[s] for s in seeds], dtype=float)
    b = np.array([reference[s] for s in seeds], dtype=float)
    d = a - b
    if not d.any():
        return Paired(len(seeds), diff=0.0, why="identical")
    if not (d - d[0]).any():  # every seed moved by the same amount: no noise at all, the t statistic is infinite
        return Paired(len(seeds), p=0.0, diff=float(d[0]))
    from scipy import stats
    return Paired(len(seeds), p=float(stats.ttest_rel(a, b).pvalue), diff=float(d.mean()))


def welch_test(values: list[float], reference: list[float]) -> Paired:
    """Welch's two-sided t-test (unequal variances) of two groups of runs that share no seeds -- rows of
    different protocols, or ours against a paper's logged runs; ``n`` is the smaller group's size."""
    n = min(len(values), len(reference))
    if n < MIN_SEEDS:
        return Paired(n, why="too few seeds")
    a, b = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    diff = float(a.mean() - b.mean())
    if not (a - a[0]).any() and not (b - b[0]).any():  # no spread in either group: no test to run
        return Paired(n, p=None if diff == 0 else 0.0, diff=diff, why="identical" if diff == 0 else "")
    from scipy import stats
    return Paired(n, p=float(stats.ttest_ind(a, b, equal_var=False).pvalue), diff=diff)


def holm(ps: list[float]) -> list[float]:
    """Holm's adjusted p-values, in the order given: the k-th smallest (k = 0, 1, ...) of m is multiplied by
    m - k, capped at 1, and made non-decreasing along the sorted order (a hypothesis is rejected at level a
    exactly when Holm's step-down procedure at level a rejects it)."""
    adjusted, running = [0.0] * len(ps), 0.0
    for k, i in enumerate(sorted(range(len(ps)), key=ps.__getitem__)):
        running = max(running, min(1.0, (len(ps) - k) * ps[i]))
        adjusted[i] = running
    return adjusted


def test_family(labels: dict, values: dict[str, dict[int, float]], reference: str, correction: str) -> dict:
    """{key: Paired}: each label's runs (``labels``: key -> row label, ``values``: seed_values) against the
    reference's, paired over seeds; with ``correction`` "holm" the p-values are adjusted as one family."""
    tests = {key: paired_test(values.get(label, {}), values.get(reference, {})) for key, label in labels.items()}
    tested = [t for t in tests.values() if t.p is not None]
    if correction == "holm":
        for test, p in zip(tested, holm([t.p for t in tested])):
            test.p = p
    return tests


def p_label(reference: str, correction: str) -> str:
    """The p column's (or line's) name; it carries the correction, wherever the table is pasted."""
    return f"p vs {reference}" + ("" if correction == "none" else f" ({correction.capitalize()})")


def marker(p: float | None) -> str:
    if p is None or math.isnan(p):
        return ""
    return next((m for level, m in MARKS if p < level), "")


def fmt_p(p: float | None) -> str:
    if p is None:
        return ""
    return "<1e-4" if p < 1e-4 else f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


def seed_values(df, column: str) -> dict[str, dict[int, float]]:
    """{row: {seed: value}} of one column of a tidy frame (one metric): what each row's runs are tested on."""
    return {row: dict(zip(g.seed, g.value)) for row, g in df[df.column == column].groupby("row", sort=False)}


def test_notes(reference: str, summary: str, tests: list[tuple[str, Paired]], unit: str = "row",
               correction: str = "none") -> list[str]:
    """The table's legend of the test, what the number of tests means (uncorrected: how many marks chance alone
    would give; else the correction), then a footnote for each reason rows (or cells: ``unit``) went untested.
    ``tests`` holds (label, test) for every row or cell tested."""
    column = "pooled accuracy" if summary == "pooled" else "mean over tasks"
    notes = [f"{p_label(reference, correction)}: two-sided paired t-test over seeds of the {column} (pairs: the "
             f"same seed); rich tables mark * p < 0.05, ** p < 0.01; no p-value with fewer than {MIN_SEEDS} "
             "shared seeds"]
    tested = sum(t.p is not None for _, t in tests)
    units = f"{tested} {unit}{'s' * (tested != 1)}"
    if correction == "holm" and tested:
        notes.append(f"p-values Holm-adjusted for the {units} tested (step-down; family-wise error rate), so a "
                     "marker holds for the table as a whole")
    elif tested > 1:
        notes.append(f"{units} tested, uncorrected for multiple comparisons: about {tested * 0.05:.1f} would be "
                     "marked at p < 0.05 by chance alone (Holm's correction: compare --correct holm)")
    skipped = [(label, t) for label, t in tests if t.why]
    few = [f"{label} (n={t.n})" for label, t in skipped if t.why == "too few seeds"]
    same = [label for label, t in skipped if t.why == "identical"]
    if few:
        notes.append(f"no p-value (fewer than {MIN_SEEDS} seeds shared with {reference}): {', '.join(few)}")
    if same:
        notes.append(f"not tested (identical to {reference} on every seed): {', '.join(same)}")
    return notes
