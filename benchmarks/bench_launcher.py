"""Local-launcher benchmark: the quickstart grid trained in process and with `--launcher local --workers N`,
interleaved in every round (so a slow spell of this shared machine hits both alike), each into a fresh
results folder, as the `mtlbench` command runs. Prints one line per run and the median ratio local / in-process
per seed count.

Why: a local worker trains cell after cell in one process (mtlbench/launch/worker.py), so a grid pays
Python's and torch's start once per worker, not once per cell. What no launcher can beat: the command's own
start plus the longest cell (with one seed the quickstart's STL cell is about 60% of the in-process time).

    python benchmarks/bench_launcher.py --seeds 0 --seeds 0,1,2,3 --rounds 2 --workers 2
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "benchmarks" / "quickstart.yaml"


def timed_train(spec: Path, seeds: str, out: Path, launcher: list[str]) -> float:
    cmd = [sys.executable, "-m", "mtlbench", "train", str(spec), "--seeds", seeds, "--out", str(out),
           "--format", "csv", *launcher]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", type=Path, default=QUICKSTART)
    ap.add_argument("--seeds", action="append", help="comma-separated seeds of one grid (repeatable)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    local = ["--launcher", "local", "--workers", str(args.workers), "--cpus-per-job", "1"]
    ways = {"in process": [], f"local --workers {args.workers}": local}
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for seeds in args.seeds or ["0"]:
                order = list(ways.items()) if r % 2 == 0 else list(reversed(ways.items()))
                for name, flags in order:
                    out = Path(tmp) / f"{name.split()[0]}-{seeds}-{r}"
                    s = timed_train(args.spec, seeds, out, flags)
                    results.setdefault((seeds, name), []).append(s)
                    print(f"round {r} seeds {seeds:<10} {name:<20} {s:6.1f} s", flush=True)
    print("\n| seeds | in process (s) | local (s) | local / in process |\n| --- | --- | --- | --- |")
    for seeds in args.seeds or ["0"]:
        a, b = (statistics.median(results[(seeds, name)]) for name in ways)
        print(f"| {seeds} | {a:.1f} | {b:.1f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
