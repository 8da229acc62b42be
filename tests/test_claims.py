"""`mtlbench claims`: the verdict logic on planted records (a claim that holds, one that does not, one
inconclusive, one without evidence), Holm over the whole catalogue, the shipped catalogue's names checked against
the benchmark specs and the committed records, refusals (a bad catalogue entry, corrupt records), the output
formats, the gate of `check --claims`, and the README's results section generated from the table."""
from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.schema import CheckSpec
from mtlbench.errors import SpecError
from mtlbench.report import claims as C
from mtlbench.report.claims_catalogue import FORMULA_CHECKS, SPECIAL_METRICS, benchmark_spec, load_catalogue
from mtlbench.report.claims_formulas import (
    FORMULAS,
    b0_bb_by_quadrature,
    lemma1_printed_b0_bb,
    taan_lemma1_expected_error,
)
from mtlbench.report.claims_render import BEGIN, END, gate, section_of
from mtlbench.report.significance import holm, paired_test
from tests.conftest import REPO

runner = CliRunner()
SMOKE = REPO / "results" / "reference" / "ci_smoke"
# planted mean map@10 per row and seed: TAAN is Hard-Share + 0.05/0.06/0.05 (a clear paired gain), STL wobbles
# around Hard-Share (+0, +0.01, -0.01: no gain)
PLANTED = {"Hard-Share": [0.80, 0.82, 0.81], "TAAN": [0.85, 0.88, 0.86], "STL": [0.80, 0.83, 0.80]}

CATALOGUE_TEXT = """\
claims:
  - id: planted-holds
    paper: TAAN
    place: Table 1
    quote: "TAAN 0.842 vs Hard-Share 0.775"
    statement: "TAAN > Hard-Share"
    tier: cpu_size
    evidence: {specs: [ci_smoke], rows: [TAAN, Hard-Share], metric: map@10}
    test: {kind: greater}
  - id: planted-fails
    paper: TAAN
    place: Table 1
    quote: "Hard-Share 0.775 vs TAAN 0.842 (read backwards)"
    statement: "Hard-Share > TAAN"
    tier: cpu_size
    evidence: {specs: [ci_smoke], rows: [Hard-Share, TAAN], metric: map@10}
    test: {kind: greater}
  - id: planted-inconclusive
    paper: TAAN
    place: Table 1
    quote: "Hard-Share 0.775 vs STL 0.675"
    statement: "Hard-Share > STL"
    tier: cpu_size
    evidence: {specs: [ci_smoke], rows: [Hard-Share, STL], metric: map@10}
    test: {kind: greater}
  - id: planted-no-evidence
    paper: TAAN
    place: Table 1
    quote: "Hard-Share 0.775 vs STL 0.675"
    statement: "Hard-Share > STL on the quickstart data"
    tier: cpu_size
    evidence: {specs: [quickstart], rows: [Hard-Share, STL], metric: map@10}
    test: {kind: greater}
"""


@pytest.fixture
def at_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # evidence names benchmarks/<spec>.yaml, relative to the working directory


def plant(results, values=PLANTED):
    """The ci_smoke reference records with their test mean map@10 replaced by ``values`` (row -> per seed)."""
    for row, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            data = json.loads((SMOKE / row / f"seed{seed}.json").read_text())
            data["metrics"]["test"]["map@10"]["mean"] = value
            path = results / "ci_smoke" / row / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data))
    return results


@pytest.fixture
def planted(tmp_path, at_repo):
    catalogue = tmp_path / "claims.yaml"
    catalogue.write_text(CATALOGUE_TEXT)
    return plant(tmp_path / "results"), catalogue


def outcomes(catalogue, results):
    cat, _, _ = load_catalogue(catalogue)
    return {o.claim.id: o for o in C.evaluate(cat.claims, results)}


def test_the_four_verdicts_on_planted_records(planted):
    results, catalogue = planted
    got = outcomes(catalogue, results)
    assert got["planted-holds"].verdict == C.HOLDS
    assert got["planted-holds"].test == "paired t, 3 seeds"
    assert got["planted-holds"].effect == pytest.approx(0.16 / 3)
    assert got["planted-fails"].verdict == C.FAILS
    assert got["planted-inconclusive"].verdict == C.INCONCLUSIVE
    assert got["planted-inconclusive"].why.startswith("not significant (p = ")
    no = got["planted-no-evidence"]
    assert (no.verdict, no.tests, no.ours) == (C.NO_EVIDENCE, [], "")  # never a test, never a verdict
    assert no.why == f"no records of Hard-Share, STL (map@10) under {results}/quickstart"


def test_too_few_seeds_is_inconclusive_never_a_verdict(tmp_path, at_repo):
    catalogue = tmp_path / "claims.yaml"
    catalogue.write_text(CATALOGUE_TEXT)
    results = plant(tmp_path / "results", {"Hard-Share": [0.80, 0.82], "TAAN": [0.95, 0.97]})
    got = outcomes(catalogue, results)["planted-holds"]
    assert (got.verdict, got.p) == (C.INCONCLUSIVE, None)
    assert got.why == "too few seeds (n=2; a test needs 3)"


def test_holm_runs_over_the_whole_catalogue(planted):
    results, catalogue = planted
    v = {row: dict(enumerate(x)) for row, x in PLANTED.items()}
    raw = [paired_test(v["TAAN"], v["Hard-Share"]).p, paired_test(v["Hard-Share"], v["TAAN"]).p,
           paired_test(v["Hard-Share"], v["STL"]).p]
    got = outcomes(catalogue, results)
    assert [got[i].p for i in ("planted-holds", "planted-fails", "planted-inconclusive")] == \
        pytest.approx(holm(raw))
    assert got["planted-holds"].p == pytest.approx(3 * raw[0])  # the smallest of 3, times 3
    # showing one spec's claims keeps the catalogue's family: the same adjusted p
    result = runner.invoke(app, ["claims", "ci_smoke", "--results", str(results), "--catalogue", str(catalogue),
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    shown = {c["id"]: c for c in json.loads(result.stdout)["claims"]}
    assert set(shown) == {"planted-holds", "planted-fails", "planted-inconclusive"}
    assert shown["planted-holds"]["p_holm"] == pytest.approx(3 * raw[0])


def test_a_count_claim_counts_significant_rows():
    claim = C.Claim.model_validate({
        "id": "c", "paper": "TAAN", "place": "T", "quote": "q", "statement": "s", "tier": "cpu_size",
        "evidence": {"specs": ["x"], "rows": ["A", "B", "R"], "metric": "map@10"},
        "test": {"kind": "count", "reference": "R", "at_least": 2}})
    def with_ps(*pd):
        o = C.Outcome(claim, tests=[C.Paired(5, p=p, diff=d) for p, d in pd])
        C.count_verdict(o)
        return o.verdict
    assert with_ps((0.01, 0.1), (0.02, 0.2)) == C.HOLDS
    assert with_ps((0.01, -0.1), (0.5, 0.2)) == C.FAILS  # one significantly below: two can no longer be above
    assert with_ps((0.01, 0.1), (0.5, 0.2)) == C.INCONCLUSIVE


def test_the_formula_claims():
    # Lemma 1's printed E[B0 B_b] is right at mu = 0 and off by exactly -2 mu sigma phi(mu / sigma) elsewhere
    for mu, sigma, b in [(0.0, 1.0, 1.5), (0.5, 1.2, 1.0), (-0.7, 0.8, 2.0)]:
        error = lemma1_printed_b0_bb(mu, sigma, b) - b0_bb_by_quadrature(mu, sigma, b)
        assert error == pytest.approx(taan_lemma1_expected_error(mu, sigma), abs=1e-9)
    assert FORMULAS["taan_lemma1_printed"]()[0] is False
    holds, ours, _ = FORMULAS["mtal_table6_denominator"]()
    # 12.5% = 8/64 is possible for 64 filters, 16.7% of 128 is not (21/128 = 16.4%, 22/128 = 17.2%)
    assert holds is False and "Conv2_1 16.7% of 128" in ours and "Conv1_1" not in ours
    assert ours.endswith("every value a multiple of 1/24: yes")
    assert set(FORMULAS) == set(FORMULA_CHECKS)


# -- the shipped catalogue ---------------------------------------------------------------------------------------
def test_the_shipped_catalogue_names_what_exists(at_repo):
    """Every spec, row and metric a shipped claim names exists: load_catalogue checks them (a problem raises)."""
    cat, _, _ = load_catalogue()
    assert len(cat.claims) >= 20
    places = {(c.paper, c.place.split(" (")[0].split(" with ")[0].split(" and ")[0]) for c in cat.claims}
    for table in ("Table 1", "Table 2", "Table 3", "Figure 2", "Figure 3", "Figure 4", "Lemma 1"):
        assert ("TAAN", table) in places, table
    for table in ("Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Figure 8", "Figure 9", "Figure 10",
                  "Figure 11", "Figure 12"):
        assert ("MTAL", table) in places, table
    assert all(c.test.reason for c in cat.claims if c.test.kind == "untestable")


def test_the_shipped_claims_columns_are_in_the_committed_records(at_repo):
    """A claim's metric and column are what its spec's committed records hold (where they exist)."""
    cat, _, _ = load_catalogue()
    records = C.Records(REPO / "results" / "reference")
    checked = 0
    for claim in cat.claims:
        ev = claim.evidence
        if ev is None or ev.metric in SPECIAL_METRICS:
            continue
        found = records.rows(ev.specs, ev.rows)
        for recs in found.values():
            # a joined table row (one run per task group) holds each task in one group's records
            tasks = {t for r in recs for t in r.tasks}
            assert ev.column in ("mean", "pooled", *tasks), (claim.id, ev.column)
            r = next(r for r in recs if ev.column in ("mean", "pooled") or ev.column in r.tasks)
            assert ev.metric in r.metrics[ev.split], (claim.id, ev.metric)
            assert C.record_value(r, ev) is not None, claim.id
            checked += 1
    assert checked > 30


BAD_ENTRIES = [
    ("specs: [ci_smoke]", "specs: [no_such_spec]",
     "claims[0].evidence.specs[0]: no benchmark spec 'no_such_spec' (benchmarks/no_such_spec.yaml)"),
    ("rows: [TAAN, Hard-Share]", "rows: [TAAN, Hard-Sharing]",
     "claims[0].evidence.rows: no row 'Hard-Sharing' in ci_smoke (rows: Hard-Share, STL, TAAN)"),
    ("metric: map@10}\n    test: {kind: greater}\n  - id: planted-fails",
     "metric: map@11}\n    test: {kind: greater}\n  - id: planted-fails",
     "claims[0].evidence.metric: unknown metric 'map@11'"),
    ("    tier: cpu_size\n    evidence: {specs: [ci_smoke], rows: [TAAN, Hard-Share]",
     "    tier: cpu_size\n    colour: red\n    evidence: {specs: [ci_smoke], rows: [TAAN, Hard-Share]",
     "claims[0].colour: unknown key"),
]


@pytest.mark.parametrize("old,new,message", BAD_ENTRIES, ids=["spec", "row", "metric", "unknown-key"])
def test_a_bad_catalogue_entry_is_refused_with_its_line(tmp_path, at_repo, old, new, message):
    assert old in CATALOGUE_TEXT
    path = tmp_path / "claims.yaml"
    path.write_text(CATALOGUE_TEXT.replace(old, new, 1))
    result = runner.invoke(app, ["claims", "--catalogue", str(path), "--results", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:")
    assert message in lines[0]
    line = int(lines[0].split(":")[2])
    assert path.read_text().splitlines()[line - 1].lstrip().startswith(("evidence", "colour"))


def test_a_claim_that_does_not_fit_its_kind_is_refused(tmp_path, at_repo):
    path = tmp_path / "claims.yaml"
    path.write_text(CATALOGUE_TEXT.replace("test: {kind: greater}", "test: {kind: ratio, band: [1, 2]}", 1))
    with pytest.raises(SpecError) as e:
        load_catalogue(path)
    assert e.value.problems == [f"{path}:2: claims[0]: evidence.metric: a ratio claim reads train_time or infer_time"]


def test_corrupt_records_are_one_line_exit_2_and_an_empty_folder_is_no_evidence(planted, tmp_path):
    _, catalogue = planted
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["claims", "--results", str(empty), "--catalogue", str(catalogue), "--format", "csv"])
    assert result.exit_code == 0
    verdicts = [row["verdict"] for row in csv.DictReader(io.StringIO(result.stdout))]
    assert len(verdicts) == 4 and all(v.startswith("no evidence: no records of ") for v in verdicts)
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "results", bad)
    (bad / "ci_smoke" / "TAAN" / "seed1.json").write_text("{ not json")
    result = runner.invoke(app, ["claims", "--results", str(bad), "--catalogue", str(catalogue)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}/ci_smoke/TAAN/seed1.json: not a readable result record (Expecting property name enclosed "
        "in double quotes: line 1 column 3 (char 2))"]
    result = runner.invoke(app, ["claims", "--results", str(tmp_path / "nowhere"), "--catalogue", str(catalogue)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: --results: {tmp_path}/nowhere is not a directory (expected a results "
                                      "folder such as results/reference)")


def test_markdown_csv_and_json_say_the_same(planted):
    results, catalogue = planted
    args = ["claims", "--results", str(results), "--catalogue", str(catalogue), "--format"]
    md = runner.invoke(app, [*args, "markdown"]).stdout
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, [*args, "csv"]).stdout)))
    data = json.loads(runner.invoke(app, [*args, "json"]).stdout)
    assert md.startswith(f"**The papers' claims against the records under {results}: 4 claims (1 holds, 1 does not "
                         "hold, 1 inconclusive, 1 no evidence)**")
    assert "| planted-holds | TAAN Table 1 | TAAN 0.842 vs Hard-Share 0.775 | TAAN > Hard-Share | TAAN 0.8633 ± " \
           "0.0153 (n=3); Hard-Share 0.8100 ± 0.0100 (n=3) | paired t, 3 seeds |" in md
    assert [r["verdict"].split(":")[0] for r in rows] == ["holds", "does not hold", "inconclusive", "no evidence"]
    assert [c["verdict"] for c in data["claims"]] == ["holds", "does not hold", "inconclusive", "no evidence"]
    assert data["verdicts"] == {"holds": 1, "does not hold": 1, "inconclusive": 1, "not testable here": 0,
                                "no evidence": 1}
    assert rows[0]["p (Holm)"] == f"{data['claims'][0]['p_holm']:.2g}"
    assert runner.invoke(app, [*args, "html"]).exit_code == 2
    assert "planted-holds" in runner.invoke(app, [*args, "rich"]).stdout


def test_the_claims_gate_of_check(planted, tmp_path):
    results, catalogue = planted
    cat, _, _ = load_catalogue(catalogue)
    ref = C.evaluate(cat.claims, results)
    # fresh records where TAAN's gain shrank to +0.01/+0.00/+0.02 (inconclusive, far below the reference's gain)
    fresh = plant(tmp_path / "fresh", {**PLANTED, "TAAN": [0.81, 0.82, 0.83]})
    findings = gate(ref, C.evaluate(cat.claims, fresh), CheckSpec())
    (held,) = findings  # only the claim that held on the reference is gated
    assert (held.row, held.status) == ("planted-holds", "regressed")
    assert held.detail == ("planted-holds: the effect +0.0100 against the reference's +0.0533 (-0.0433; allowed "
                           "-0.0173 (3 x std))")
    # a fresh gain within the bands is no regression (+0.0500 against +0.0533: -0.0033 within 3 x std = 0.0173)
    same = plant(tmp_path / "same", {"Hard-Share": [0.80, 0.82, 0.81], "TAAN": [0.86, 0.85, 0.87]})
    again = C.evaluate(cat.claims, same)
    assert again[0].verdict == C.INCONCLUSIVE  # not significant after Holm: the bands decide
    (kept,) = gate(ref, again, CheckSpec())
    assert (kept.row, kept.status) == ("planted-holds", "ok")


def test_check_claims_exits_1_with_a_table_when_a_claim_stops_holding(tmp_path, at_repo, monkeypatch):
    monkeypatch.setattr("mtlbench.report.claims_catalogue.CATALOGUE", tmp_path / "claims.yaml")
    (tmp_path / "claims.yaml").write_text(CATALOGUE_TEXT)
    ref = plant(tmp_path / "ref")
    fresh = plant(tmp_path / "fresh", {**PLANTED, "TAAN": [0.70, 0.71, 0.72]})  # now significantly below
    ok = runner.invoke(app, ["check", "--claims", "--against", str(ref), "--results", str(ref)])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["check", "--claims", "--against", str(ref), "--results", str(fresh), "--format",
                              "markdown"])
    assert bad.exit_code == 1
    assert "| planted-holds | greater claim | holds | does not hold |  | holds | regressed |" in bad.stdout
    assert bad.stderr.strip().splitlines() == [
        "error: 1 check(s) failed: planted-holds: held in the reference, now does not hold "
        "(significantly the other way)"]
    junit = tmp_path / "claims.xml"
    runner.invoke(app, ["check", "--claims", "--against", str(ref), "--results", str(fresh), "--junit", str(junit)])
    assert 'failures="1"' in junit.read_text() and 'name="greater claim"' in junit.read_text()


# -- the README ------------------------------------------------------------------------------------------------------
def test_the_readme_results_section_is_the_claims_table(at_repo):
    """The README's results section is generated (`mtlbench claims --results results/reference --readme
    README.md`): it cannot drift from the records."""
    result = runner.invoke(app, ["claims", "--results", "results/reference", "--format", "markdown"])
    assert result.exit_code == 0, result.output
    readme = REPO / "README.md"
    assert section_of(readme.read_text(), readme) == result.stdout


def test_readme_writes_only_between_the_markers(planted, tmp_path):
    results, catalogue = planted
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n")
    result = runner.invoke(app, ["claims", "--results", str(results), "--catalogue", str(catalogue), "--readme",
                                 str(readme)])
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert text.startswith(f"# x\n\nbefore\n{BEGIN}\n**The papers' claims") and text.endswith(f"{END}\nafter\n")
    assert "old table" not in text
    readme.write_text("# no markers\n")
    result = runner.invoke(app, ["claims", "--results", str(results), "--catalogue", str(catalogue), "--readme",
                                 str(readme)])
    assert result.exit_code == 2 and readme.read_text() == "# no markers\n"


def test_spec_arguments_select_claims(at_repo):
    cat, _, _ = load_catalogue()
    chosen = C.select(cat.claims, ["benchmarks/taan_table2_timing.yaml"])
    assert {c.id for c in chosen} >= {"taan-t2-ldis-costs-1.91x", "taan-t2-mrn-7.8x"}
    assert all("taan_table2_timing" in c.evidence.specs for c in chosen)
    # a spec's name (the records' folder) selects the claims of every benchmark writing there
    assert {c.id for c in C.select(cat.claims, ["mtal_related_cpu"])} >= {"mtal-t2-mtal-r-best", "mtal-t3-mtal-best",
                                                                        "mtal-t6-total-13.1"}
    assert benchmark_spec("no_such_spec") is None


def test_refusals_of_claims_and_check(planted, tmp_path):
    results, catalogue = planted
    result = runner.invoke(app, ["claims", "taan_table2_timing", "--results", str(results), "--catalogue",
                                 str(catalogue)])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: no claim's evidence uses taan_table2_timing (claims read: ci_smoke, "
                                     "quickstart)")
    result = runner.invoke(app, ["check", "--against", str(results)])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: mtlbench check: SPEC.yaml is required (or --claims to gate on the "
                                     "papers' claims)")
    result = runner.invoke(app, ["check", "--claims", "--against", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: --against: {tmp_path}/nowhere is not a directory (expected a results "
                                     "folder)")


def test_a_joined_row_is_the_mean_over_its_groups_tasks():
    """Rows trained on task groups and shown as one table row (``table_row``): per seed, the mean over every task
    of all groups, a task from the group that has it, and nothing for a seed one group lacks."""
    from types import SimpleNamespace

    from mtlbench.results import MetricScores

    def rec(row, seed, tasks):
        scores = MetricScores(tasks=tasks, mean=sum(tasks.values()) / len(tasks))
        return SimpleNamespace(row=row, seed=seed, status="ok", metrics={"test": {"accuracy": scores}})
    found = {"Multi-task": [rec("Multi-task [HD, a]", 0, {"HD": 0.8, "a": 0.9}),
                            rec("Multi-task [T, A]", 0, {"T": 0.96, "A": 0.86}),
                            rec("Multi-task [HD, a]", 1, {"HD": 0.7, "a": 0.7})]}  # seed 1 lacks a group
    joined = {"Multi-task": ["Multi-task [HD, a]", "Multi-task [T, A]"]}
    ev = C.Claim.model_validate({
        "id": "j", "paper": "MTAL", "place": "Table 2", "quote": "q", "statement": "s", "tier": "cpu_size",
        "evidence": {"specs": ["x"], "rows": ["Multi-task"], "metric": "accuracy"},
        "test": {"kind": "fraction", "band": [0, 1]}}).evidence
    assert C.seed_values(found, ev, joined) == {"Multi-task": {0: pytest.approx(0.88)}}
    assert C.seed_values(found, ev.model_copy(update={"column": "A"}), joined) == {"Multi-task": {0: 0.86}}


def test_a_seed_free_row_is_compared_by_the_one_sample_test():
    """A deterministic fit (one record, the same for every seed) against a seeded row: the seeded row's values
    are paired with the constant, which is the one-sample t-test of their differences; without the flag, one
    record is too few seeds."""
    seeded, fit = {0: 0.80, 1: 0.83, 2: 0.81}, {0: 0.70}
    test, name, _ = C.compare_rows(seeded, fit, (False, True))
    assert name == "one-sample t against the seed-free row, 3 seeds"
    assert test.p == pytest.approx(paired_test(seeded, dict.fromkeys(seeded, 0.70)).p)
    assert test.diff == pytest.approx(2.44 / 3 - 0.70)
    assert C.compare_rows(seeded, fit)[0].why == "too few seeds"
