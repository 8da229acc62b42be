"""Data-parallel step time: 2 gloo ranks (1 thread each) against one process, at the TAAN step-cost size.

Target (issue 11): at benchmarks/taan_step_cost.yaml's size (1152 -> 3 x 1024, 16 tasks with YouTube-8M's class
counts, batch 256 per task) the time of one *global* training step with 2 gloo ranks on 2 cores is <= 0.7x the
one-process step. Run from the repository root (it starts its two ranks itself, through torchrun):

    python benchmarks/bench_ddp.py [--spec benchmarks/taan_step_cost.yaml] [--method Hard-Share]
                                   [--steps 3] [--blocks 4] [--warmup 1]

The measurements are interleaved inside one process group, block after block: rank 0 alone times the
one-process step (the other rank waits at a barrier) with 1 thread and with 2 threads, then both ranks time
the data-parallel step (each on its half of every task's batch, DDP's gradient all-reduce included). The
ratios are medians of per-block ratios, so a shared machine's slow spells hit all three alike. Batches are
drawn before the clock starts (as in `mtlbench timing`). Prints one line per block and a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", default=str(REPO / "benchmarks" / "taan_step_cost.yaml"))
    p.add_argument("--method", default="Hard-Share", help="row label of the spec's method to time")
    p.add_argument("--steps", type=int, default=3, help="training steps per timed block")
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    return p.parse_args()


def relaunch() -> int:
    """Start this script as 2 ranks under torchrun (gloo, this machine)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
           *sys.argv[1:]]
    return subprocess.run(cmd, env=env).returncode


def stepper(resolved, method, data, d, seed: int = 0):
    """(a function running n training steps on pre-drawn batches, the objective) for one-process (d=SINGLE)
    or data-parallel steps."""
    from mtlbench.training.distributed import wrap
    from mtlbench.training.precision import Precision
    from mtlbench.training.sampler import TaskSampler
    from mtlbench.training.step import Objective, make_optimizer, train_step
    from mtlbench.training.trainer import build_model
    torch.manual_seed(seed)
    model = build_model(resolved, method, data, seed)
    optimizer = make_optimizer(resolved, model)
    objective = wrap(Objective(model, data.info.tasks, Precision()), d, torch.device("cpu"))
    sampler = TaskSampler(data.split("train"), resolved.spec.training.batch_per_task, seed, d.rank, d.world)
    staged = [(sampler.next_batches(torch.device("cpu")), list(sampler.totals)) for _ in range(4)]
    count = [0]

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            count[0] += 1
            batches, totals = staged[count[0] % len(staged)]
            train_step(objective, optimizer, batches, count[0], d, totals)
        return (time.perf_counter() - start) / n
    return run


def main() -> int:
    args = parse()
    if "RANK" not in os.environ:
        return relaunch()
    from mtlbench.config.loader import load_spec
    from mtlbench.training.distributed import SINGLE, start, stop
    from mtlbench.training.run import load_data
    d = start("cpu")
    resolved = load_spec(args.spec)
    method = next(m for m in resolved.methods if m.entry.row == args.method)
    data = load_data(resolved)
    torch.set_num_threads(1)
    single = stepper(resolved, method, data, SINGLE) if d.main else None
    ddp = stepper(resolved, method, data, d)
    if d.main:
        single(args.warmup)
    ddp(args.warmup)
    rows = []
    for b in range(args.blocks):
        if d.main:
            one = single(args.steps)
            torch.set_num_threads(2)
            two = single(args.steps)
            torch.set_num_threads(1)
        d.barrier()
        par = ddp(args.steps)
        d.barrier()
        if d.main:
            rows.append({"one_process_1_thread_s": one, "one_process_2_threads_s": two, "ddp_2_ranks_s": par})
            print(f"block {b}: 1 process 1 thread {one:.3f} s/step, 2 threads {two:.3f} s/step, "
                  f"2 gloo ranks {par:.3f} s/step (ratio {par / one:.3f} / {par / two:.3f})", flush=True)
    if d.main:
        summary = {"spec": args.spec, "method": args.method, "steps_per_block": args.steps, "blocks": rows,
                   "batch_per_task": resolved.spec.training.batch_per_task, "n_tasks": data.info.n_tasks,
                   "ratio_vs_1_thread": statistics.median(r["ddp_2_ranks_s"] / r["one_process_1_thread_s"]
                                                          for r in rows),
                   "ratio_vs_2_threads": statistics.median(r["ddp_2_ranks_s"] / r["one_process_2_threads_s"]
                                                           for r in rows),
                   "load_average": os.getloadavg()}
        print(json.dumps(summary, indent=1))
    stop(d if d.world > 1 else SINGLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
