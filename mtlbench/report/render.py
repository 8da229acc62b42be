"""A ``Table`` as markdown, LaTeX, CSV or a rich table for the terminal (which shows p-values as markers)."""
from __future__ import annotations

import csv
import io

from mtlbench.report.cells import FAITHFUL, REIMPLEMENTED, Table


def to_markdown(t: Table) -> str:
    def fmt(i, j, v):
        return f"**{v}**" if (i, j) in t.best else v
    lines = [f"**{t.title}**", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(fmt(i, j, v) for j, v in enumerate(r)) + " |" for i, r in enumerate(t.rows)]
    lines += [""] + [f"- {n}" for n in t.notes]
    return "\n".join(lines) + "\n"


def latex_escape(s: str) -> str:
    for a, b in [("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("±", r"$\pm$"), ("—", "--"), (REIMPLEMENTED, r"$\dagger$"), (FAITHFUL, r"$\ddagger$")]:
        s = s.replace(a, b)
    return s


def to_latex(t: Table) -> str:
    def fmt(i, j, v):
        return rf"\textbf{{{latex_escape(v)}}}" if (i, j) in t.best else latex_escape(v)
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(t.title)}}}",
           r"\begin{tabular}{" + "l" * 1 + "c" * (len(t.header) - 1) + "}", r"\toprule",
           " & ".join(latex_escape(h) for h in t.header) + r" \\", r"\midrule"]
    out += [" & ".join(fmt(i, j, v) for j, v in enumerate(r)) + r" \\" for i, r in enumerate(t.rows)]
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def to_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(t.header)
    w.writerows(t.rows)
    return buf.getvalue()


def to_rich(t: Table):
    from rich.table import Table as RichTable
    rt = RichTable(title=t.title, caption="\n".join(t.notes) or None, caption_justify="left")
    shown = [j for j in range(len(t.header)) if j != t.p_column]  # rich shows p-values as markers
    for j in shown:
        rt.add_column(t.header[j], justify="left" if t.header[j] in ("method", "source") else "right", no_wrap=True)
    for i, r in enumerate(t.rows):
        if i in t.p_rows:
            continue
        cells = [r[j] + (f" {t.marks[(i, j)]}" if (i, j) in t.marks else "") for j in shown]
        rt.add_row(*[f"[bold]{v}[/bold]" if (i, j) in t.best else v for j, v in zip(shown, cells)])
    return rt



RENDERERS = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv}
