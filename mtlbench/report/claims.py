"""``mtlbench claims``: each claim of the catalogue (claims_catalogue.py) tested on the stored records.

Verdicts: **holds**, **does not hold**, **inconclusive** (too few seeds, or not significant), **not testable here**
(the catalogue says why), **no evidence** (the records lack a row the claim reads: never a verdict then).

The tests, by kind (``test.kind``):
- ``greater`` (row A > row B): a two-sided t-test, paired over the seeds the rows share (>= 3; same seed = same
  split and batch order), else Welch's test over the two groups of runs. Holds when A is significantly above B,
  does not hold when significantly below, else inconclusive.
- ``best`` (the winners are on top of the rows): the best winner against the best other row, tested as ``greater``.
- ``count`` (at least k rows beat the reference): each row against the reference as ``greater``; holds when k are
  significantly above, does not hold when so many are significantly below that k can no longer be reached.
- ``matches`` (ours reproduces the paper's logged runs): Welch's test against them; does not hold when the
  difference is significant, holds otherwise (with >= 3 runs of ours).
- ``ratio`` (a timing ratio within a band, from one `mtlbench timing` run), ``fraction`` (a value's mean over seeds
  within a band), ``most_distant`` (a task is the most isolated one by mean isolation rank over seeds, and the
  most isolated in more than half of them; `mtlbench report`'s reading), ``formula`` (a computation).
Every p-value of the catalogue (count's per-row tests included) is Holm-adjusted as one family -- the whole
catalogue, whichever claims are shown -- and the verdicts read the adjusted p at level ``ALPHA``.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from mtlbench.errors import InputError
from mtlbench.report.claims_catalogue import Claim, benchmark_spec
from mtlbench.report.significance import MIN_SEEDS, Paired, holm, paired_test, welch_test

ALPHA = 0.05
HOLDS, FAILS, INCONCLUSIVE, UNTESTABLE, NO_EVIDENCE = ("holds", "does not hold", "inconclusive",
                                                       "not testable here", "no evidence")
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, UNTESTABLE, NO_EVIDENCE)


@dataclass
class Outcome:
    claim: Claim
    ours: str = ""                  # what our records say, e.g. "TAAN 0.7514 ± 0.0085 (n=5); Hard-Share ..."
    test: str = ""                  # how it was tested, e.g. "paired t, 5 seeds"
    verdict: str = NO_EVIDENCE
    why: str = ""                   # the reason beside an inconclusive / untestable / no-evidence verdict
    tests: list[Paired] = field(default_factory=list)  # the p-values this claim adds to the catalogue's family
    effect: float | None = None     # the tested quantity (a difference of means, a ratio, a mean)
    spread: float | None = None     # its standard deviation over seeds, where it has one (check's bands)
    n: int = 0                      # seeds behind the effect

    @property
    def p(self) -> float | None:
        """The claim's (adjusted) p-value: its one test's, or for a count claim none (several tests)."""
        return self.tests[0].p if len(self.tests) == 1 else None


# -- evidence -----------------------------------------------------------------------------------------------------
class Records:
    """The current-settings records of each benchmark spec under one results folder, read once."""

    def __init__(self, results: Path):
        self.results = Path(results)
        if not self.results.is_dir():
            raise InputError(f"--results: {self.results} is not a directory (expected a results folder such as "
                             "results/reference)")
        self._records: dict[str, list] = {}
        self.joined: dict[str, list[str]] = {}  # joined table row -> the spec rows (task groups) it joins

    def of(self, spec_name: str) -> list:
        if spec_name not in self._records:
            from mtlbench.report.compare import spec_records
            self._records[spec_name] = spec_records(benchmark_spec(spec_name), self.results)[0]
        return self._records[spec_name]

    def rows(self, specs: list[str], rows: list[str]) -> dict[str, list]:
        """{row: its records (ok ones) from the first spec that has them}. A row may be a joined table row (spec
        rows trained on task groups with one ``table_row``): its records are its members'."""
        out: dict[str, list] = {}
        for name in specs:
            joins = table_rows(benchmark_spec(name))
            member_of = {member: row for row, members in joins.items() for member in members}
            here: dict[str, list] = {}
            for r in self.of(name):
                row = member_of.get(r.row, r.row)
                if row in rows and row not in out and r.status == "ok":
                    here.setdefault(row, []).append(r)
            out.update(here)
            self.joined.update({row: joins[row] for row in here if row in joins})
        return out

    def timing(self, specs: list[str]) -> dict | None:
        """The first of the specs' timing.json (as `mtlbench timing` wrote it), or None."""
        from mtlbench.report.check import read_timing
        for name in specs:
            path = self.results / benchmark_spec(name).name / "timing.json"
            if path.exists():
                return read_timing(path)
        return None


def record_value(record, ev) -> float | None:
    """One run's value of the evidence's metric and column."""
    if ev.metric == "n_params":
        return float(record.n_params)
    if ev.metric == "kernel_sharing":
        mtal = record.summary.get("mtal") or {}
        if ev.column in ("total", "mean"):
            return (mtal.get("totals") or {}).get("pair_entries", {}).get("mean")
        layer = next((lay for lay in record.summary.get("layers", []) if lay.get("name") == ev.column), None)
        return None if layer is None else layer["ratios"]["pair_entries"]
    entry = (record.metrics or {}).get(ev.split, {}).get(ev.metric)
    if entry is None:
        return None
    return {"mean": entry.mean, "pooled": entry.pooled}.get(ev.column, entry.tasks.get(ev.column))


def table_rows(spec) -> dict[str, list[str]]:
    """{joined table row: its spec rows} for the rows a spec trains on task groups (``table_row``), else {}."""
    joins: dict[str, list[str]] = {}
    for m in spec.methods:
        if getattr(m, "table_row", None):
            joins.setdefault(m.table_row, []).append(m.row)
    return joins


def joined_value(records: list, ev, members: list[str]) -> float | None:
    """One seed's value of a joined row from its groups' records: the mean over every task of all groups (as the
    paper's row), or the task's own value; None unless every group ran the seed."""
    if sorted(r.row for r in records) != sorted(members) or ev.metric in ("n_params", "kernel_sharing"):
        return None
    tasks: dict[str, float] = {}
    for r in records:
        entry = (r.metrics or {}).get(ev.split, {}).get(ev.metric)
        if entry is None:
            return None
        tasks.update({t: v for t, v in entry.tasks.items() if v is not None})
    if ev.column == "mean":
        return statistics.fmean(tasks.values()) if tasks else None
    return tasks.get(ev.column)


def seed_values(found: dict[str, list], ev, joined: dict[str, list[str]] | None = None) -> dict[str, dict[int, float]]:
    out = {}
    for row, recs in found.items():
        by_seed: dict[int, list] = {}
        for r in recs:
            by_seed.setdefault(r.seed, []).append(r)
        members = (joined or {}).get(row)
        values = {seed: v for seed, rs in sorted(by_seed.items())
                  if (v := joined_value(rs, ev, members) if members else record_value(rs[0], ev)) is not None}
        if values:
            out[row] = values
    return out


def describe(row: str, values: dict[int, float]) -> str:
    from mtlbench.report.check import fmt_scores
    v = list(values.values())
    if all(float(x).is_integer() and x == v[0] for x in v):  # a count (parameters), the same for every seed
        return f"{row} {v[0]:,.0f} (n={len(v)})"
    return f"{row} {fmt_scores(v)}"


# -- tests -----------------------------------------------------------------------------------------------------------
def compare_rows(a: dict[int, float], b: dict[int, float], constant: tuple[bool, bool] = (False, False)
                 ) -> tuple[Paired, str, float | None]:
    """(test, its name, the spread of the effect): paired over shared seeds where there are enough, else Welch.
    ``constant``: whether a (or b) is a seed-free row (a deterministic fit, one record): its value is the same for
    every seed, so the other row's seeds are paired with it -- the one-sample t-test against that value."""
    if constant[1] and len(b) == 1 and not constant[0]:
        b = dict.fromkeys(a, next(iter(b.values())))
    elif constant[0] and len(a) == 1 and not constant[1]:
        a = dict.fromkeys(b, next(iter(a.values())))
    shared = sorted(set(a) & set(b))
    if len(shared) >= MIN_SEEDS:
        diffs = [a[s] - b[s] for s in shared]
        name = "one-sample t against the seed-free row" if any(constant) else "paired t"
        return paired_test(a, b), f"{name}, {len(shared)} seeds", statistics.stdev(diffs)
    test = welch_test(list(a.values()), list(b.values()))
    spread = math.sqrt(statistics.variance(a.values()) + statistics.variance(b.values())) \
        if min(len(a), len(b)) > 1 else None
    if test.why == "too few seeds" and min(len(a), len(b)) > 0:
        test.diff = statistics.fmean(a.values()) - statistics.fmean(b.values())
    return test, f"Welch t, n={len(a)} vs {len(b)}", spread


def directional(test: Paired) -> tuple[str, str]:
    """(verdict, why) of "A > B" from its (adjusted) test."""
    if test.p is None:
        return INCONCLUSIVE, {"too few seeds": f"too few seeds (n={test.n}; a test needs {MIN_SEEDS})",
                              "identical": "no difference on any seed"}.get(test.why, test.why)
    if test.p < ALPHA:
        return (HOLDS, "") if test.diff > 0 else (FAILS, "significantly the other way")
    return INCONCLUSIVE, f"not significant (p = {test.p:.2g} >= {ALPHA})"


def run_greater(claim: Claim, values: dict, const: set[str]) -> Outcome:
    a, b = claim.evidence.rows
    test, name, spread = compare_rows(values[a], values[b], (a in const, b in const))
    return Outcome(claim, f"{describe(a, values[a])}; {describe(b, values[b])}", name, tests=[test],
                   effect=test.diff, spread=spread, n=test.n)


def run_best(claim: Claim, values: dict, const: set[str]) -> Outcome:
    means = {r: statistics.fmean(v.values()) for r, v in values.items()}
    winners = [r for r in claim.evidence.rows if r in claim.test.winners]
    others = [r for r in claim.evidence.rows if r not in claim.test.winners]
    best_w, best_o = max(winners, key=means.get), max(others, key=means.get)
    test, name, spread = compare_rows(values[best_w], values[best_o], (best_w in const, best_o in const))
    top = max(means, key=means.get)
    ours = f"top: {describe(top, values[top])}"
    if top in winners:
        ours += f"; next: {describe(best_o, values[best_o])}"
    else:
        ours += f"; best of {', '.join(winners)}: {describe(best_w, values[best_w])}"
    return Outcome(claim, ours, f"{best_w} vs {best_o}: {name}", tests=[test], effect=test.diff, spread=spread,
                   n=test.n)


def run_count(claim: Claim, values: dict, const: set[str]) -> Outcome:
    ref = claim.test.reference
    rows = [r for r in claim.evidence.rows if r != ref]
    tests = [compare_rows(values[r], values[ref], (r in const, ref in const))[0] for r in rows]
    return Outcome(claim, "", f"each of {len(rows)} rows vs {ref}: paired t", tests=tests, n=min(t.n for t in tests))


def run_matches(claim: Claim, values: dict, const: set[str]) -> Outcome:
    row, paper = claim.evidence.rows[0], claim.evidence.paper_runs
    test = welch_test(list(values[row].values()), paper)
    ours = describe(row, values[row])
    if test.diff is None and values[row]:
        test.diff = statistics.fmean(values[row].values()) - statistics.fmean(paper)
    return Outcome(claim, f"{ours}; paper's runs {statistics.fmean(paper):.4f} ± {statistics.stdev(paper):.4f} "
                          f"(n={len(paper)})", f"Welch t, n={len(values[row])} vs {len(paper)}", tests=[test],
                   effect=test.diff, n=test.n)


def run_fraction(claim: Claim, values: dict, const: set[str]) -> Outcome:
    row = claim.evidence.rows[0]
    v = list(values[row].values())
    mean = statistics.fmean(v)
    low, high = claim.test.band
    verdict = HOLDS if low <= mean <= high else FAILS
    return Outcome(claim, describe(row, values[row]), f"mean in [{low:g}, {high:g}]", verdict,
                   effect=mean, spread=statistics.stdev(v) if len(v) > 1 else None, n=len(v))


def run_ratio(claim: Claim, timing: dict) -> Outcome:
    a, b = claim.evidence.rows
    key = "ratio_train" if claim.evidence.metric == "train_time" else "ratio_infer"
    ratio = timing[a][key] / timing[b][key]
    low, high = claim.test.band
    mode = "training" if key == "ratio_train" else "inference"
    return Outcome(claim, f"{a} / {b} {mode} time {ratio:.2f}x (one timing run)",
                   f"ratio in [{low:g}, {high:g}]", HOLDS if low <= ratio <= high else FAILS, effect=ratio, n=1)


def run_most_distant(claim: Claim, found: dict) -> Outcome:
    from mtlbench.report.analysis import isolation, isolation_over_seeds, layer_matrices
    row, task, layer = claim.evidence.rows[0], claim.test.task, claim.evidence.layer
    recs = [r for r in found[row] if layer_matrices(r)]
    if not recs:
        return Outcome(claim, why=f"the records of {row} hold no task matrices")
    per_seed = [isolation(layer_matrices(r)[layer].distance, r.tasks) for r in recs]
    ranking = isolation_over_seeds(per_seed)
    mine = next(x for x in ranking if x.task == task)
    name = layer_matrices(recs[0])[layer].title
    ours = (f"{name}: most isolated {ranking[0].task} (mean rank {ranking[0].mean_rank:.1f}); {task} mean rank "
            f"{mine.mean_rank:.1f}, first in {mine.first} of {mine.seeds} seeds")
    out = Outcome(claim, ours, f"isolation rank over {len(recs)} seeds", n=len(recs))
    if len(recs) < MIN_SEEDS:
        out.verdict, out.why = INCONCLUSIVE, f"too few seeds (n={len(recs)})"
    elif ranking[0].task != task:
        out.verdict = FAILS
    elif 2 * mine.first > mine.seeds:
        out.verdict = HOLDS
    else:
        out.verdict, out.why = INCONCLUSIVE, f"first by mean rank, but most isolated in only {mine.first} seeds"
    return out


def run_formula(claim: Claim) -> Outcome:
    from mtlbench.report.claims_formulas import FORMULAS
    holds, ours, test = FORMULAS[claim.test.check]()
    return Outcome(claim, ours, test, HOLDS if holds else FAILS)


# -- the catalogue -------------------------------------------------------------------------------------------------
def evaluate_claim(claim: Claim, records: Records) -> Outcome:
    kind, ev = claim.test.kind, claim.evidence
    if kind == "untestable":
        return Outcome(claim, verdict=UNTESTABLE, why=claim.test.reason)
    if kind == "formula":
        return run_formula(claim)
    if kind == "ratio":
        timing = records.timing(ev.specs)
        missing = [r for r in ev.rows if timing is None or r not in timing]
        if missing:
            return Outcome(claim, why=no_evidence_line(records, ev, missing, "timing.json"))
        return run_ratio(claim, timing)
    needed = list(dict.fromkeys([*ev.rows, *([claim.test.reference] if claim.test.reference else [])]))
    found = records.rows(ev.specs, needed)
    if kind == "most_distant":
        if ev.rows[0] not in found:
            return Outcome(claim, why=no_evidence_line(records, ev, ev.rows, "records"))
        return run_most_distant(claim, found)
    values = seed_values(found, ev, records.joined)
    missing = [r for r in needed if r not in values]
    if missing:
        return Outcome(claim, why=no_evidence_line(records, ev, missing, "records"))
    run = {"greater": run_greater, "best": run_best, "count": run_count, "matches": run_matches,
           "fraction": run_fraction}[kind]
    return run(claim, values, seed_free(found))


def seed_free(found: dict[str, list]) -> set[str]:
    """The rows whose method draws no random numbers (``uses_seed`` False: a deterministic fit trained once)."""
    from mtlbench.registry import METHODS
    return {row for row, recs in found.items()
            if recs and recs[0].method in METHODS and not getattr(METHODS.get(recs[0].method), "uses_seed", True)}


def no_evidence_line(records: Records, ev, missing: list[str], what: str) -> str:
    where = ", ".join(f"{records.results}/{benchmark_spec(s).name}" for s in ev.specs)
    return f"no {what} of {', '.join(missing)} ({ev.metric}) under {where}"


def evaluate(claims: list[Claim], results: Path) -> list[Outcome]:
    """Every claim's outcome; the p-values Holm-adjusted over all of them, then the verdicts read."""
    records = Records(results)
    outcomes = [evaluate_claim(c, records) for c in claims]
    family = [t for o in outcomes for t in o.tests if t.p is not None]
    for test, p in zip(family, holm([t.p for t in family])):
        test.p = p
    for o in outcomes:
        if o.tests:
            read_verdict(o)
    return outcomes


def read_verdict(o: Outcome) -> None:
    kind = o.claim.test.kind
    if kind in ("greater", "best"):
        o.verdict, o.why = directional(o.tests[0])
    elif kind == "matches":
        t = o.tests[0]
        if t.p is None and t.why == "too few seeds":
            o.verdict, o.why = INCONCLUSIVE, f"too few runs (n={t.n}; a test needs {MIN_SEEDS})"
        else:
            o.verdict = FAILS if t.p is not None and t.p < ALPHA else HOLDS
            o.why = "" if o.verdict == HOLDS else "significantly different from the paper's runs"
    elif kind == "count":
        count_verdict(o)


def count_verdict(o: Outcome) -> None:
    k, rows = o.claim.test.at_least, len(o.tests)
    above = sum(t.p is not None and t.p < ALPHA and t.diff > 0 for t in o.tests)
    below = sum(t.p is not None and t.p < ALPHA and t.diff < 0 for t in o.tests)
    o.ours = f"{above} of {rows} significantly above {o.claim.test.reference}, {below} below"
    o.effect = float(above)
    if above >= k:
        o.verdict = HOLDS
    elif rows - below < k:
        o.verdict, o.why = FAILS, f"{below} of {rows} are significantly below: fewer than {k} can be above"
    else:
        o.verdict, o.why = INCONCLUSIVE, f"{above} of the {k} needed are significant"


def select(claims: list[Claim], specs: list[str]) -> list[Claim]:
    """The claims whose evidence uses one of ``specs`` (benchmark names, spec files or spec names)."""
    wanted = {Path(s).stem if s.endswith((".yaml", ".yml")) else s for s in specs}
    out = []
    for c in claims:
        names = set(c.evidence.specs) if c.evidence else set()
        spec_names = {benchmark_spec(n).name for n in names if benchmark_spec(n) is not None}
        if names & wanted or spec_names & wanted:
            out.append(c)
    return out


def verdict_counts(outcomes: list[Outcome]) -> dict[str, int]:
    return {v: sum(o.verdict == v for o in outcomes) for v in VERDICTS}


def as_json(outcomes: list[Outcome]) -> str:
    rows = [{"id": o.claim.id, "paper": o.claim.paper, "place": o.claim.place, "quote": o.claim.quote,
             "statement": o.claim.statement, "tier": o.claim.tier,
             "evidence": o.claim.evidence.model_dump(exclude_none=True) if o.claim.evidence else None,
             "kind": o.claim.test.kind, "ours": o.ours, "test": o.test,
             "p_holm": [t.p for t in o.tests] if o.claim.test.kind == "count" else o.p,
             "effect": o.effect, "n": o.n, "verdict": o.verdict, "why": o.why} for o in outcomes]
    return json.dumps({"claims": rows, "verdicts": verdict_counts(outcomes)}, indent=2) + "\n"
