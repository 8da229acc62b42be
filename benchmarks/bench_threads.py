"""Thread-policy benchmark: the quickstart idle and beside one CPU-bound neighbour process, for 1 and 2 torch
threads, under OpenMP wait policies -- libgomp's default (a waiting thread spins, then sleeps), passive (it
sleeps at once; what mtlbench sets before torch loads), short spins -- and as the `mtlbench` command runs.

Why: torch's CPU ops run on an OpenMP thread pool. A thread that finishes its share of an op first waits for
the others; when a neighbour process holds one of the two cores, a spinning waiter burns the time slice the
thread it waits for needs, and every small op pays. Each run here is a fresh process, so the policy really is
set before OpenMP starts.

The job and the neighbour each run in a session of their own: Linux schedules sessions as groups
("autogroup"), so the neighbour competes as another user's process would. On a machine shared with other
work, `--nice -20` (root) raises both sessions above it, so that the two stand for an otherwise idle machine.
Configurations are interleaved inside every round (and rotated), so a slow spell hits them alike:

    python benchmarks/bench_threads.py --nice -20 --rounds 3 --skip "omp default:2:busy"
    python benchmarks/bench_threads.py --policies "passive,spin 10k" --threads 2 --hidden 1024,1024 --batch 256

Prints one line per run (wall and CPU seconds) and a table of medians with the busy / idle ratio.
"""
from __future__ import annotations

import argparse
import contextlib
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
# Each policy: (how the command starts, OpenMP variables). "mtlbench": the command as users run it, whatever
# policy mtlbench sets. The others import torch before mtlbench can set anything, so the variables given are
# the ones OpenMP sees: "omp default" none (libgomp spins up to 300,000 times, then sleeps), "passive"
# OMP_WAIT_POLICY=PASSIVE (sleep at once), "spin N" GOMP_SPINCOUNT=N (spin N times, then sleep).
TORCH_FIRST = ["-c", "import torch, sys; from mtlbench.cli import app; sys.argv[0] = 'mtlbench'; app()"]
POLICIES = {"mtlbench": (["-m", "mtlbench"], {}), "omp default": (TORCH_FIRST, {}),
            "passive": (TORCH_FIRST, {"OMP_WAIT_POLICY": "PASSIVE"}),
            "spin 10k": (TORCH_FIRST, {"GOMP_SPINCOUNT": "10000"}),
            "spin 100k": (TORCH_FIRST, {"GOMP_SPINCOUNT": "100000"})}
NEIGHBOUR = "while True: pass"


def spec_variant(folder: Path, threads: int, iterations: int | None, hidden: list[int] | None = None,
                 batch: int | None = None) -> Path:
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec["training"]["threads"] = threads
    if iterations:
        spec["training"]["iterations"] = spec["training"]["eval_every"] = iterations
    if hidden:
        spec["backbone"]["hidden"] = hidden
    if batch:
        spec["training"]["batch_per_task"] = batch
    path = folder / f"quickstart_t{threads}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def own_session(nice: int):
    """A child's pre-exec hook: a session of its own -- Linux schedules sessions as groups ("autogroup"), so the
    neighbour competes as another user's process would, not inside the job's share -- at the niceness asked
    (set on the session's group too: between sessions only the group's niceness counts)."""
    def preexec() -> None:
        os.setsid()
        if nice:
            with contextlib.suppress(OSError):  # no autogroup scheduling here: plain niceness is what counts
                Path("/proc/self/autogroup").write_text(str(nice))
            os.nice(nice)
    return preexec


def run_once(policy: str, spec: Path, out: Path, busy: bool, timeout: float, nice: int = 0) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the training process) of one quickstart run; a run stopped at ``timeout``
    counts as ``timeout`` seconds (a lower bound: the table then shows ">")."""
    start, variables = POLICIES[policy]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(variables)
    cmd = [sys.executable, *start, "train", str(spec), "--out", str(out), "--force", "--no-progress",
           "--format", "csv"]
    renice = own_session(nice)
    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], preexec_fn=renice) if busy else None
    try:
        if neighbour:
            time.sleep(0.5)  # let it reach full speed
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        with contextlib.suppress(subprocess.TimeoutExpired):  # run() killed it; its CPU time counts once reaped
            subprocess.run(cmd, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=timeout, preexec_fn=renice)
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
    ap.add_argument("--hidden", default=None, help="override the quickstart's hidden widths, e.g. 1024,1024")
    ap.add_argument("--batch", type=int, default=None, help="override the quickstart's batch per task")
    ap.add_argument("--policies", default="omp default,mtlbench", help=f"any of: {', '.join(POLICIES)}")
    ap.add_argument("--timeout", type=float, default=900, help="stop a run after this many seconds (recorded as "
                    "a lower bound)")
    ap.add_argument("--nice", type=int, default=0, help="niceness of the job and the neighbour (and of their "
                    "sessions); on a machine shared with other work, a negative value (root only) lets the two of "
                    "them stand for an otherwise idle machine")
    ap.add_argument("--skip", default="", help="configurations not to run, e.g. 'omp default:2:busy' (known to "
                    "take minutes), comma-separated")
    ap.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    policies = [p.strip() for p in args.policies.split(",")]
    skip = {tuple(x.split(":")) for x in args.skip.split(",") if x}
    configs = [(p, t, busy) for p in policies for t in threads for busy in (False, True)
               if (p, str(t), "busy" if busy else "idle") not in skip]
    times: dict[tuple, list[tuple[float, float]]] = {c: [] for c in configs}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        hidden = [int(h) for h in args.hidden.split(",")] if args.hidden else None
        specs = {t: spec_variant(Path(tmp), t, args.iterations, hidden, args.batch) for t in threads}
        for r in range(args.rounds):
            order = configs[r % len(configs):] + configs[:r % len(configs)]  # rotate: no config always first
            for c in order:
                policy, t, busy = c
                times[c].append(run_once(policy, specs[t], Path(tmp) / "out", busy, args.timeout, args.nice))
                wall, cpu = times[c][-1]
                print(f"round {r + 1}: {policy:<12} threads {t} {'busy' if busy else 'idle'}: "
                      f"{wall:6.1f} s wall, {cpu:6.1f} s CPU", flush=True)
    print_table(configs, times, load_before, os.getloadavg(), args.timeout)
    if args.json:
        args.json.write_text(json.dumps({"load_before": load_before, "load_after": os.getloadavg(),
                                         "runs": [{"policy": p, "threads": t, "busy": b, "wall_s": w, "cpu_s": c}
                                                  for (p, t, b), v in times.items() for w, c in v]}, indent=1))


def print_table(configs, times, load_before, load_after, timeout: float) -> None:
    med = {c: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for c, v in times.items()}

    def secs(s: float) -> str:
        return f">{timeout:.0f}" if s >= timeout else f"{s:.1f}"
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
          f"{os.cpu_count()} CPUs; medians of {len(next(iter(times.values())))} runs")
    print("| policy | threads | idle s | busy s | busy / idle | idle CPU s | busy CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for policy, t, busy in configs:
        if busy or (policy, t, True) not in med:
            continue
        (idle, idle_cpu), (loaded, loaded_cpu) = med[(policy, t, False)], med[(policy, t, True)]
        ratio = f"{'>' if max(idle, loaded) >= timeout else ''}{loaded / idle:.2f}x"
        print(f"| {policy} | {t} | {secs(idle)} | {secs(loaded)} | {ratio} | {idle_cpu:.1f} | {loaded_cpu:.1f} |")


if __name__ == "__main__":
    main()
