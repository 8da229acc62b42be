"""Paired t-tests between run folders of different specs -- which `mtlbench compare` does not do, as it tests
the rows of one spec. Example: the DMTRL learning-rate diagnostic against the main Table 3 spec's STL and
Hard-Share runs (the same seeds, so the same data split and batch order):

    python benchmarks/paired_across_specs.py \\
        results/reference/taan_table3_omniglot_cpu5_dmtrl_lr/DMTRL-*/ \\
        --vs results/reference/taan_table3_omniglot_cpu5/STL --vs results/reference/taan_table3_omniglot_cpu5/Hard-Share

Per folder: seeds, mean ± sample std of the test summary number (the pooled accuracy where the records have
it, else the mean over tasks), and against each --vs folder the mean difference and the two-sided paired
t-test over the shared seeds -- mtlbench's own test (mtlbench.report.significance.paired_test), uncorrected.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from mtlbench.report.significance import fmt_p, paired_test
from mtlbench.results import load_records


def summary_by_seed(folder: Path) -> dict[int, float]:
    """{seed: the test summary number} of the ok records in one row's folder."""
    out = {}
    for r in load_records(folder):
        if r.status == "ok":
            scores = r.metrics["test"][r.primary_metric]
            out[r.seed] = scores.pooled if scores.pooled is not None else scores.mean
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="one row's run folder each (seed*.json inside)")
    parser.add_argument("--vs", action="append", type=Path, default=[], help="a reference row's run folder")
    args = parser.parse_args()
    references = {ref: summary_by_seed(ref) for ref in args.vs}
    for folder in args.folders:
        values = summary_by_seed(folder)
        if not values:
            raise SystemExit(f"{folder}: no finished records (seed*.json with status ok)")
        spread = statistics.stdev(values.values()) if len(values) > 1 else 0.0
        line = f"{folder}: n={len(values)} {statistics.mean(values.values()):.4f} ± {spread:.4f}"
        for ref, ref_values in references.items():
            test = paired_test(values, ref_values)
            diff = "" if test.diff is None else f"{test.diff:+.4f} "
            line += f" | vs {ref.name} (n={test.n}): {diff}p {fmt_p(test.p) or test.why}"
        print(line)


if __name__ == "__main__":
    main()
