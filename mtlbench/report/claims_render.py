"""The claims table (`mtlbench claims`) in every format, the README section made from it, and the claims gate of
`mtlbench check --claims`."""
from __future__ import annotations

from pathlib import Path

from mtlbench.errors import InputError
from mtlbench.report.cells import DASH, Table
from mtlbench.report.claims import ALPHA, HOLDS, INCONCLUSIVE, NO_EVIDENCE, Outcome, verdict_counts
from mtlbench.report.claims_catalogue import TIERS
from mtlbench.report.significance import MIN_SEEDS, fmt_p

HEADER = ["claim", "where", "paper's figure", "statement", "ours", "test", "p (Holm)", "tier", "verdict"]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def verdict_cell(o: Outcome) -> str:
    return f"{o.verdict}: {o.why}" if o.why else o.verdict


def p_text(o: Outcome) -> str:
    return fmt_p(o.p) or DASH  # a count claim has one p per row: its verdict says how many were significant


def claims_table(outcomes: list[Outcome], results: Path, total: int) -> Table:
    counts = verdict_counts(outcomes)
    said = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    shown = f"{len(outcomes)} of the catalogue's {total} claims" if len(outcomes) != total else f"{total} claims"
    table = Table(f"The papers' claims against the records under {results}: {shown} ({said})", list(HEADER), [])
    for o in outcomes:
        c = o.claim
        table.rows.append([c.id, f"{c.paper} {c.place}", c.quote, c.statement, o.ours or DASH, o.test or DASH,
                           p_text(o), TIERS[c.tier], verdict_cell(o)])
    table.notes += legend(total)
    return table


def legend(total: int) -> list[str]:
    return [
        "greater: a two-sided t-test, paired over the seeds both rows ran (same seed: same split and batch order) "
        f"where they share {MIN_SEEDS} or more, else Welch's test; holds when significantly above, does not hold "
        "when significantly below; best: the best of the paper's winners against the best other row, the same way; "
        "count: each row against the reference",
        f"p (Holm): every p-value of the catalogue's {total} claims adjusted as one family (Holm's step-down), "
        f"verdicts at level {ALPHA}",
        "matches: Welch's test against the paper's logged runs, holds when the difference is not significant "
        "(absence of a detected difference, not proof of equality); ratio: one `mtlbench timing` run, ratios "
        "measured within it; fraction: the mean over seeds within the band",
        "ours: mean ± std over seeds (n); tier: the protocol the evidence was measured at; no evidence: the "
        "records lack a row the claim reads (train its spec), never a verdict",
    ]


def to_json_rows(outcomes: list[Outcome]) -> str:
    from mtlbench.report.claims import as_json
    return as_json(outcomes)


def render(table: Table, outcomes: list[Outcome], fmt: str) -> str:
    from mtlbench.report.render import RENDERERS
    if fmt == "json":
        return to_json_rows(outcomes)
    return RENDERERS[fmt](table)


# -- README ----------------------------------------------------------------------------------------------------------
def readme_section(text: str, path: Path) -> tuple[int, int]:
    """(start, end) offsets of what lies between the results markers of a README."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise InputError(f"--readme: {path} has no {BEGIN} ... {END} markers around its results section")
    return start + len(BEGIN), end


def with_section(text: str, path: Path, markdown: str) -> str:
    start, end = readme_section(text, path)
    return text[:start] + "\n" + markdown + text[end:]


def section_of(text: str, path: Path) -> str:
    start, end = readme_section(text, path)
    return text[start:end].removeprefix("\n")


# -- check --claims ------------------------------------------------------------------------------------------------
def allowed_drop(ref: Outcome, tol) -> tuple[float, str]:
    """The bands of `mtlbench check`: std_k x the effect's std over the reference's seeds (at least min_tolerance)
    with min_seeds or more, else the absolute tolerance."""
    if ref.spread is not None and ref.n >= tol.min_seeds:
        drop = max(tol.std_k * ref.spread, tol.min_tolerance)
        return drop, f"-{drop:.4f} ({tol.std_k:g} x std)" if drop > tol.min_tolerance else f"-{drop:.4f} (minimum)"
    return tol.tolerance, f"-{tol.tolerance:.4f} (absolute)"


def gate(reference: list[Outcome], fresh: list[Outcome], tol) -> list:
    """check's Findings: each claim that holds on the reference must keep holding on the fresh records. A fresh
    "does not hold" or "no evidence" fails; an inconclusive one fails when its effect fell below the reference's
    by more than the allowed drop (directional claims), and always for claims read without seed noise (bands,
    formulas, ranks)."""
    fresh_by = {o.claim.id: o for o in fresh}
    return [gate_one(ref, fresh_by[ref.claim.id], tol) for ref in reference if ref.verdict == HOLDS]


def gate_one(ref: Outcome, new: Outcome, tol):
    from mtlbench.report.check import Finding
    cid, kind = ref.claim.id, f"{ref.claim.test.kind} claim"
    if new.verdict == HOLDS:
        return Finding(cid, kind, ref.verdict, new.verdict, "", "", "ok")
    if new.verdict == NO_EVIDENCE:
        return Finding(cid, kind, ref.verdict, new.verdict, "", "", "missing", f"{cid}: {new.why}")
    directional = ref.claim.test.kind in ("greater", "best")
    if new.verdict == INCONCLUSIVE and directional and ref.effect is not None and new.effect is not None:
        drop, allowed = allowed_drop(ref, tol)
        change = new.effect - ref.effect
        status = "regressed" if -change > drop + 1e-12 else "ok"
        return Finding(cid, kind, f"holds ({ref.effect:+.4f})", f"{new.verdict} ({new.effect:+.4f})",
                       f"{change:+.4f}", allowed, status,
                       f"{cid}: the effect {new.effect:+.4f} against the reference's {ref.effect:+.4f} "
                       f"({change:+.4f}; allowed {allowed})")
    why = f" ({new.why})" if new.why else ""
    return Finding(cid, kind, ref.verdict, new.verdict, "", "holds", "regressed",
                   f"{cid}: held in the reference, now {new.verdict}{why}")


# -- the command ---------------------------------------------------------------------------------------------------
def outcomes_for(specs: list[str], results: Path, catalogue: Path | None):
    """(the shown claims' outcomes, the catalogue's size): every claim is evaluated, so that the Holm family is
    the whole catalogue whichever claims are shown."""
    from mtlbench.errors import UsageError
    from mtlbench.report.claims import evaluate, select
    from mtlbench.report.claims_catalogue import load_catalogue
    cat, _, _ = load_catalogue(catalogue)
    shown = select(cat.claims, specs) if specs else cat.claims
    if specs and not shown:
        raise UsageError(f"no claim's evidence uses {', '.join(specs)} (claims read: "
                         f"{', '.join(sorted({s for c in cat.claims if c.evidence for s in c.evidence.specs}))})")
    outcomes = evaluate(cat.claims, results)
    ids = {c.id for c in shown}
    return [o for o in outcomes if o.claim.id in ids], len(cat.claims)


def run_claims(specs: list[str], results: Path, catalogue: Path | None, fmt: str) -> tuple[str, Table]:
    outcomes, total = outcomes_for(specs, results, catalogue)
    table = claims_table(outcomes, results, total)
    return ("" if fmt == "rich" else render(table, outcomes, fmt)), table


def write_readme(path: Path, markdown: str) -> None:
    from mtlbench.io import atomic_write_text
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise InputError(f"--readme: cannot read {path} ({e.strerror})") from None
    atomic_write_text(Path(path), with_section(text, Path(path), markdown))


def run_gate(specs: list[str], against: Path, fresh: Path, tol):
    """check's CheckResult of the claims (those using ``specs``, or all) on the reference records and on the
    fresh ones: `check`'s table, JUnit XML and exit code then apply as they are."""
    from mtlbench.report.check import CheckResult
    for flag, folder in (("--against", against), ("--results", fresh)):
        if not Path(folder).is_dir():
            raise InputError(f"{flag}: {folder} is not a directory (expected a results folder)")
    reference, _ = outcomes_for(specs, against, None)
    new, _ = outcomes_for(specs, fresh, None)
    result = CheckResult("claims", Path(against), Path(fresh), gate(reference, new, tol))
    result.notes.append("checked: the claims that hold on the reference records (mtlbench claims)")
    return result


def to_rich(table: Table):
    """The terminal's table: the columns wrap (the statements and our numbers are sentences); the claim id stays
    whole so it can be searched for."""
    from rich.table import Table as RichTable
    rt = RichTable(title=table.title, caption="\n".join(table.notes), caption_justify="left", show_lines=True)
    for head in table.header:
        rt.add_column(head, no_wrap=head in ("claim", "p (Holm)"), overflow="fold")
    for row in table.rows:
        rt.add_row(*[f"[bold]{v}[/bold]" if j == len(row) - 1 else v for j, v in enumerate(row)])
    return rt
