"""What a spec costs to train, row by row, measured in CPU seconds of this process (one thread): robust on a
shared machine, where wall-clock seconds measure the other processes too. One CPU second of a one-thread run
is one wall second on an idle core, so the totals project a run on one free core.

Per row: CPU seconds per training step (the trainer's own step, median of blocks), of one evaluation of the
selection split, and the projected total of one seed -- iterations x step + evaluations x evaluation + the
final scoring of val and test -- and of all the spec's seeds. With early stopping (patience) the total is an
upper bound. Run from the repository root:

    python benchmarks/spec_cost.py benchmarks/taan_table3_omniglot_cpu5.yaml [--steps 5] [--blocks 3] [--rows A,B]

(`mtlbench timing SPEC` measures the same steps in wall-clock seconds, the methods taking turns, for ratios.)
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from mtlbench.config.loader import load_spec
from mtlbench.training.evaluate import evaluate
from mtlbench.training.run import load_data
from mtlbench.training.run_plan import seeds_of
from mtlbench.training.timing import build_timed, stage_batches
from mtlbench.training.trainer import seed_everything


def cpu_seconds(fn, repeats: int = 1) -> float:
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats


def row_cost(resolved, method, data, staged, steps: int, blocks: int) -> dict:
    spec, device = resolved.spec, torch.device("cpu")
    model, train, _ = build_timed(resolved, method, data, device)
    model.train()
    batches = iter(staged * (steps * blocks + 2))
    cpu_seconds(lambda: train(next(batches)), 2)  # warm-up
    step = statistics.median(cpu_seconds(lambda: train(next(batches)), steps) for _ in range(blocks))
    tr, primary = spec.training, data.info.primary_metric
    evaluation = cpu_seconds(lambda: evaluate(model, data, tr.select_on, [primary], tr.eval_batch, device))
    evaluations = tr.iterations // tr.eval_every + (tr.iterations % tr.eval_every != 0)
    total = tr.iterations * step + evaluations * evaluation + 2 * evaluation  # + final val and test scoring
    return {"row": method.entry.row, "step_s": step, "eval_s": evaluation, "iterations": tr.iterations,
            "evaluations": evaluations, "seed_total_s": total,
            "all_seeds_total_s": total * len(seeds_of(method, spec.seeds))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec")
    ap.add_argument("--steps", type=int, default=5, help="training steps per timed block")
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--rows", default="", help="comma-separated row labels (default: every row)")
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    resolved = load_spec(args.spec)
    data = load_data(resolved)
    seed_everything(0, deterministic=False)
    wanted = [r for r in args.rows.split(",") if r]
    rows = []
    for method in resolved.methods:
        if wanted and method.entry.row not in wanted:
            continue
        row_data = data.only_tasks(method.entry.tasks)  # a row of some tasks (one run per task group)
        staged, _ = stage_batches(row_data, resolved.spec.training.batch_per_task, 4, torch.device("cpu"))
        rows.append(row_cost(resolved, method, row_data, staged, args.steps, args.blocks))
        r = rows[-1]
        print(f"{r['row']:<22} {r['step_s']:7.3f} CPU s/step  {r['eval_s']:7.2f} CPU s/evaluation  "
              f"{r['seed_total_s'] / 60:7.1f} min/seed ({r['iterations']} steps, {r['evaluations']} evaluations)",
              flush=True)
    seed = sum(r["seed_total_s"] for r in rows)
    every = sum(r["all_seeds_total_s"] for r in rows)
    print(f"{'all rows':<22} {sum(r['step_s'] for r in rows):7.3f} CPU s/step  {seed / 60:7.1f} min/seed, "
          f"{every / 3600:.1f} h for {len(resolved.spec.seeds)} seeds (one core)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"spec": args.spec, "threads": 1, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
