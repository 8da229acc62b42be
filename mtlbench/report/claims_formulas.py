"""Claims tested by a computation rather than by runs (``test.kind: formula`` in claims.yaml). Each returns
(holds, what we found, how it was tested). numpy and scipy only."""
from __future__ import annotations

import math


def lemma1_printed_b0_bb(mu: float, sigma: float, b: float) -> float:
    """TAAN Lemma 1's E[B0 B_b] for b > 0 exactly as printed, with sigma (b - 3 mu) in its last term."""
    from scipy.stats import norm
    return ((b * mu - mu ** 2 - sigma ** 2) * (norm.cdf((b - mu) / sigma) - norm.cdf(-mu / sigma))
            + sigma * mu * norm.pdf((b - mu) / sigma) + sigma * (b - 3 * mu) * norm.pdf(mu / sigma))


def b0_bb_by_quadrature(mu: float, sigma: float, b: float) -> float:
    """E[max(0, x) max(0, b - x)] under N(mu, sigma^2): the integrand is nonzero on (0, b) only."""
    from scipy.integrate import quad
    from scipy.stats import norm
    value, _ = quad(lambda x: x * (b - x) * norm.pdf(x, mu, sigma), 0.0, b, epsabs=1e-13, epsrel=1e-12)
    return value


def taan_lemma1_printed() -> tuple[bool, str, str]:
    """The printed E[B0 B_b] against quadrature at mu = 0 (where the paper's experiments sit) and mu != 0."""
    points = [(0.0, 1.0, 1.5), (0.5, 1.2, 1.0), (-0.7, 0.8, 2.0)]
    errors = [lemma1_printed_b0_bb(*pt) - b0_bb_by_quadrature(*pt) for pt in points]
    shown = "; ".join(f"mu={m:g}, sigma={s:g}, b={b:g}: {e:+.2e}" for (m, s, b), e in zip(points, errors))
    return all(abs(e) < 1e-9 for e in errors), f"printed − quadrature: {shown}", "quadrature, 3 points"  # noqa: RUF001 (the rendered minus sign)


def taan_lemma1_expected_error(mu: float, sigma: float) -> float:
    """The printed form's error for b > 0: -2 mu sigma phi(mu / sigma) (sigma (b - 3 mu) should be sigma (b - mu))."""
    return -2 * mu * sigma * math.exp(-0.5 * (mu / sigma) ** 2) / math.sqrt(2 * math.pi)


def mtal_table6_denominator() -> tuple[bool, str, str]:
    """Can each printed percentage of Table 6 be k / m of its layer's m filters (VGG-16: 64 ... 512), to the
    printed decimal? Every value is a multiple of 1/24 instead."""
    from mtlbench.config.paper_tables import paper_tables
    from mtlbench.report.sharing import VGG16_CONV
    rows = paper_tables()["mtal_table6_sharing_ratio"]["rows"]
    layers = [(name, v[0]) for name, v in rows.items() if name != "Total"]
    impossible = [f"{name} {pct}% of {m}" for (name, pct), (m, _) in zip(layers, VGG16_CONV)
                  if not any(abs(100 * k / m - pct) < 0.05 + 1e-9 for k in range(m + 1))]
    by24 = all(abs(pct * 24 / 100 - round(pct * 24 / 100)) < 0.01 for _, pct in layers)
    ours = (f"not k/m for: {', '.join(impossible) or 'none'}; every value a multiple of 1/24: "
            f"{'yes' if by24 else 'no'}")
    return not impossible, ours, "k / filters, 13 layers"


FORMULAS = {"taan_lemma1_printed": taan_lemma1_printed, "mtal_table6_denominator": mtal_table6_denominator}
