"""MTAL's Table 6 -- the kernel-sharing ratio per conv layer (conv1_1 ... conv5_3) and for the whole network --
from the ``summary`` of MTAL result records, mean ± std over seeds, beside the paper's column.

Our records hold three ratios per layer (``mtlbench.methods.mtal``): (a) shared (filter, unordered task pair)
entries / all entries -- the closest to the paper's "percent of kernel pairs shared", shown beside its column --
(b) filters with at least one partner / (T m), and (c) 1 - distinct effective kernels / (T m), the real
compression; (b) and (c) are extra columns. "Total" is the simple mean over layers; two more rows weight the
layers by their filters and by their kernel parameters. Pure pandas: no torch.
"""
from __future__ import annotations

import pandas as pd

from mtlbench.report.cells import DASH, DIVERGED, Table, fmt_cell
from mtlbench.results import RunRecord

RATIOS = {"pair_entries": "(a) shared pairs %", "filters_with_partner": "(b) filters with a partner %",
          "compression": "(c) compression %"}
TOTALS = {"mean": "Total", "by_filters": "Total, weighted by filters",
          "by_params": "Total, weighted by kernel parameters"}
# VGG-16's conv layers as (filters, input channels), for what the paper's rows imply as totals
VGG16_CONV = [(64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256), (512, 256), (512, 512),
              (512, 512), (512, 512), (512, 512), (512, 512)]


def sharing_frame(records: list[RunRecord]) -> pd.DataFrame:
    """One row per (method row, seed, layer or total, ratio) of the records that report kernel sharing."""
    rows = []
    for rec in records:
        mtal = rec.summary.get("mtal")
        if rec.status != "ok" or not mtal:
            continue
        for layer in rec.summary.get("layers", []):
            rows += [{"row": rec.row, "seed": rec.seed, "layer": layer["name"], "ratio": r, "value": v}
                     for r, v in layer["ratios"].items()]
        rows += [{"row": rec.row, "seed": rec.seed, "layer": TOTALS[kind], "ratio": r, "value": v}
                 for r, by in mtal["totals"].items() for kind, v in by.items()]
    return pd.DataFrame(rows, columns=["row", "seed", "layer", "ratio", "value"])


def sharing_table(records: list[RunRecord], paper: dict, rows: list[str], spec_hint: str = "") -> Table:
    df = sharing_frame(records)
    ours = [r for r in rows if r in set(df.row)] if len(df) else []
    agg = df.groupby(["row", "layer", "ratio"], sort=False)["value"].agg(["mean", "std", "count"]).fillna({"std": 0.0})
    ours_layers = list(dict.fromkeys(n for n in df.layer if n not in TOTALS.values()))
    paper_rows = {name.lower(): name for name in paper["rows"]}
    layers = list(dict.fromkeys([*ours_layers, *(n.lower() for n in paper["rows"] if n != "Total")]))
    header = ["layer", "paper %"] + [f"{row}: {label}" if len(ours) > 1 else f"ours {label}"
                                     for row in ours for label in RATIOS.values()]
    table = Table(paper["title"], header, [], notes=[f"metric: {paper.get('metric', '')}"])
    for layer in [*layers, *TOTALS.values()]:
        source = paper_rows.get(layer.lower())
        cells = [fmt_paper_ratio(paper["rows"][source][0]) if source else DASH]
        cells += [ratio_cell(agg, row, layer, r) for row in ours for r in RATIOS]
        table.rows.append([layer, *cells])
    table.notes += sharing_notes(paper, records, rows, ours, spec_hint)
    return table


def ratio_cell(agg: pd.DataFrame, row: str, layer: str, ratio: str) -> str:
    if (row, layer, ratio) not in agg.index:
        return DASH
    m = agg.loc[(row, layer, ratio)]
    return fmt_cell(m["mean"], m["std"], int(m["count"]), 100.0)


def fmt_paper_ratio(v) -> str:
    return DASH if v is None else f"{float(v):.1f}"


def sharing_notes(paper: dict, records: list[RunRecord], rows: list[str], ours: list[str], spec_hint: str) -> list[str]:
    notes = [paper_total_note(paper), *filter(None, [paper_denominator_note(paper)]),
             "(a) shared (filter, unordered task pair) entries / all entries, beside the paper's column; (b) filters "
             "with at least one partner / (tasks x filters); (c) 1 - distinct effective kernels / (tasks x filters), "
             "the real compression; mean ± std over seeds, in percent"]
    diverged = sorted({r.row for r in records if r.status == "diverged"})
    if diverged:
        notes.append(f"{DIVERGED} (no sharing recorded) for some seeds of: {', '.join(diverged)}")
    missing = [r for r in rows if r not in ours]
    if missing:
        notes.append(f"no kernel-sharing records for {', '.join(missing)}"
                     + (f": run `mtlbench train {spec_hint}`" if spec_hint else ""))
    if "setup" in paper:
        notes.append(f"paper setup: {paper['setup']}")
    return notes


def paper_total_note(paper: dict) -> str:
    """The paper's printed Total against what its rows give: their mean and VGG-16-weighted means."""
    values = [float(v[0]) for name, v in paper["rows"].items() if name != "Total"]
    printed = paper["rows"].get("Total", [None])[0]
    text = f"the paper's Total {printed} is neither the mean of its rows ({sum(values) / len(values):.2f})"
    if len(values) == len(VGG16_CONV):
        filters = [f for f, _ in VGG16_CONV]
        params = [f * c * 9 for f, c in VGG16_CONV]
        by_f = sum(v * w for v, w in zip(values, filters)) / sum(filters)
        by_p = sum(v * w for v, w in zip(values, params)) / sum(params)
        text += f" nor weighted by VGG-16's filters ({by_f:.2f}) or kernel parameters ({by_p:.2f})"
    return text + "; it is shown beside our simple mean over layers"


def paper_denominator_note(paper: dict) -> str | None:
    """What the paper's per-layer percentages can be fractions of: the smallest denominator that gives every
    printed value (12.5 = 3/24, 16.7 = 4/24, 8.3 = 2/24), and whether a layer's filter count could."""
    rows = {name: float(v[0]) for name, v in paper["rows"].items() if name != "Total" and v[0] is not None}
    if not rows:
        return None
    values = sorted(set(rows.values()))
    denominator = next((d for d in range(2, 1001) if all(prints_as(v, d) is not None for v in values)), None)
    if denominator is None:
        return None
    parts = ", ".join(f"{v:g} = {prints_as(v, denominator)}/{denominator}" for v in values)
    text = f"every value of the paper's column is a multiple of 1/{denominator} ({parts})"
    if len(rows) == len(VGG16_CONV):
        misfit = [name for (name, v), (filters, _) in zip(rows.items(), VGG16_CONV) if prints_as(v, filters) is None]
        if misfit:
            text += (f": its denominator is not a layer's filter count (the values of {', '.join(misfit)} are "
                     f"no whole number of that layer's VGG-16 filters, 64 ... 512)")
    return text


def prints_as(percent: float, denominator: int) -> int | None:
    """k when k / denominator, in percent to one decimal, prints as ``percent``; else None."""
    k = round(percent * denominator / 100)
    return k if round(100 * k / denominator, 1) == round(percent, 1) else None
