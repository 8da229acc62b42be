"""Thread-policy benchmark: the quickstart idle and beside one CPU-bound neighbour, for 1 and 2 torch threads,
under OpenMP's default wait policy (threads spin at every barrier) and under mtlbench's policy (passive:
waiting threads sleep).

Why: torch's CPU ops run on an OpenMP thread pool. With libgomp's default policy a thread that reaches a
barrier first spins for a while; when a neighbour process holds one of the two cores, the spinning thread
burns that core's time slice while the thread it waits for is descheduled, and every small op pays for it.
Each run of ``mtlbench train`` is a fresh process, so the wait policy really is set before OpenMP starts.

Run from the repository root, when the machine is as quiet as it gets (configurations are interleaved inside
every round, so a slow spell hits them alike):

    python benchmarks/bench_threads.py [--rounds 3] [--iterations 400] [--json out.json]

Prints a table of median wall seconds, CPU seconds and the busy / idle ratio per configuration, and the load
average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "benchmarks" / "quickstart.yaml"
# "omp default": torch is imported before mtlbench can set a policy, with OMP_WAIT_POLICY unset, so libgomp
# keeps its own default (spin, then sleep). "mtlbench": the command as users run it.
TORCH_FIRST = "import torch, sys; from mtlbench.cli import app; sys.argv[0] = 'mtlbench'; app()"
POLICIES = {"omp default": ["-c", TORCH_FIRST], "mtlbench": ["-m", "mtlbench"]}
NEIGHBOUR = "while True: pass"


def spec_variant(folder: Path, threads: int, iterations: int | None) -> Path:
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec["training"]["threads"] = threads
    if iterations:
        spec["training"]["iterations"] = iterations
    path = folder / f"quickstart_t{threads}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_once(policy: str, spec: Path, out: Path, busy: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the training process) of one quickstart run."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    cmd = [sys.executable, *POLICIES[policy], "train", str(spec), "--out", str(out), "--force", "--no-progress",
           "--format", "csv"]
    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR]) if busy else None
    try:
        if neighbour:
            time.sleep(0.5)  # let it reach full speed
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        if neighbour:
            neighbour.kill()
            neighbour.wait()
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="times every configuration runs (medians reported)")
    ap.add_argument("--iterations", type=int, default=None, help="override the quickstart's 400 iterations")
    ap.add_argument("--threads", default="1,2", help="torch thread counts to measure")
    ap.add_argument("--policies", default=",".join(POLICIES), help=f"any of: {', '.join(POLICIES)}")
    ap.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    policies = [p.strip() for p in args.policies.split(",")]
    configs = [(p, t, busy) for p in policies for t in threads for busy in (False, True)]
    times: dict[tuple, list[tuple[float, float]]] = {c: [] for c in configs}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        specs = {t: spec_variant(Path(tmp), t, args.iterations) for t in threads}
        for r in range(args.rounds):
            order = configs[r % len(configs):] + configs[:r % len(configs)]  # rotate: no config always first
            for c in order:
                policy, t, busy = c
                times[c].append(run_once(policy, specs[t], Path(tmp) / "out", busy))
                wall, cpu = times[c][-1]
                print(f"round {r + 1}: {policy:<12} threads {t} {'busy' if busy else 'idle'}: "
                      f"{wall:6.1f} s wall, {cpu:6.1f} s CPU", flush=True)
    print_table(configs, times, load_before, os.getloadavg())
    if args.json:
        args.json.write_text(json.dumps({"load_before": load_before, "load_after": os.getloadavg(),
                                         "runs": [{"policy": p, "threads": t, "busy": b, "wall_s": w, "cpu_s": c}
                                                  for (p, t, b), v in times.items() for w, c in v]}, indent=1))


def print_table(configs, times, load_before, load_after) -> None:
    med = {c: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for c, v in times.items()}
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
          f"{os.cpu_count()} CPUs; medians of {len(next(iter(times.values())))} runs")
    print("| policy | threads | idle s | busy s | busy / idle | idle CPU s | busy CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for policy, t, busy in configs:
        if busy:
            continue
        (idle, idle_cpu), (loaded, loaded_cpu) = med[(policy, t, False)], med[(policy, t, True)]
        print(f"| {policy} | {t} | {idle:.1f} | {loaded:.1f} | {loaded / idle:.2f}x | {idle_cpu:.1f} | "
              f"{loaded_cpu:.1f} |")


if __name__ == "__main__":
    main()
