"""``--rows``: the CLI's filter of a resolved spec's method rows (``train``, ``status``)."""
from __future__ import annotations

import fnmatch
from dataclasses import replace

from mtlbench.config.resolved import ResolvedSpec
from mtlbench.errors import UsageError
from mtlbench.results import slug


def only_rows(resolved: ResolvedSpec, patterns: list[str] | None) -> ResolvedSpec:
    """``resolved`` with only the method rows matching one of ``patterns`` (shell globs on the row label or on its
    results folder name, e.g. ``TAAN*``, ``DMTRL-TT_factors_lr_x0.03``); all rows when ``patterns`` is None. A
    row's run identity does not depend on the other rows, so its records are those the whole spec writes."""
    if patterns is None:
        return resolved
    rows = [m.entry.row for m in resolved.methods]
    keep = {r for p in patterns for r in matching(rows, p, resolved)}
    methods = [m for m in resolved.methods if m.entry.row in keep]
    entries = [e for e in resolved.spec.methods if e.row in keep]
    return replace(resolved, spec=resolved.spec.model_copy(update={"methods": entries}), methods=methods)


def matching(rows: list[str], pattern: str, resolved: ResolvedSpec) -> list[str]:
    """The rows ``pattern`` matches by label or by folder name; a pattern matching none is a UsageError."""
    hits = [r for r in rows if fnmatch.fnmatchcase(r, pattern) or fnmatch.fnmatchcase(slug(r), pattern)]
    if not hits:
        raise UsageError(f"--rows: {pattern!r} matches no row of {resolved.file}; its rows: {', '.join(rows)}")
    return hits
