"""Data pipeline benchmark: prepare all YouTube-8M shards, then load them back.

Targets (issue #4): prepare the 100 shared YouTube-8M shards in under 2 minutes on 2 cores, and load from the
prepared shards at >= 100,000 rows per second. Run from the repository root:

    python benchmarks/bench_data.py [--data ../shared/data] [--repeats 5] [--omniglot]

Prints one line per measurement (median and best of the repeats; wall-clock seconds) and a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch


def timed(fn, repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def report(name: str, times: list[float], rows: int | None = None) -> dict:
    med, best = statistics.median(times), min(times)
    rate = f"  {rows / med:,.0f} rows/s median, {rows / best:,.0f} best" if rows else ""
    print(f"{name:<38} median {med:7.3f}s  best {best:7.3f}s  (n={len(times)}){rate}", flush=True)
    return {"name": name, "median_s": med, "best_s": best, "n": len(times),
            **({"rows": rows, "rows_per_s_median": rows / med, "rows_per_s_best": rows / best} if rows else {})}


def batch_rate(data, batches: int = 200, batch: int = 256) -> float:
    """Rows per second served by TaskSplit.batch: one random 256-row batch per task per step."""
    gen = torch.Generator().manual_seed(0)
    splits = data.split("train")
    t0 = time.perf_counter()
    for _ in range(batches // len(splits) + 1):
        for s in splits:
            s.batch(torch.randint(0, len(s), (batch,), generator=gen))
    return (batches // len(splits) + 1) * len(splits) * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--omniglot", action="store_true", help="also time Omniglot prepare + load")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (batch gathering is faster with 1 "
                    "on a busy machine: OpenMP threads spin while waiting for a core)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from mtlbench.data.youtube8m import YouTube8M
    from mtlbench.prepare.youtube8m import prepare_youtube8m

    yt = args.data / "youtube8m"
    results = {"cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
               "machine": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "youtube8m"
        t0, c0 = time.perf_counter(), time.process_time()
        prepare_youtube8m(yt / "video_level", yt / "vocabulary.csv", out, seed=0)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        m = json.loads((out / "manifest.json").read_text())
        n = m["videos_read"]
        print(f"{'prepare youtube8m (100 shards)':<38} wall {wall:7.2f}s  cpu {cpu:6.2f}s  {n:,} videos, "
              f"{sum(s['bytes'] for s in m['shards']) / 1e6:.1f} MB of shards", flush=True)
        results["prepare_youtube8m"] = {"wall_s": wall, "cpu_s": cpu, "videos": n}
        for verify in ("crc32c", "sha256", "none"):
            times, data = timed(lambda v=verify: YouTube8M.load(YouTube8M.Options(verify=v), 0, out), args.repeats)
            results[f"load_verify_{verify}"] = report(f"load youtube8m (verify={verify})", times, n)
        results["batch_rows_per_s_memory"] = batch_rate(data)
        stream = YouTube8M.load(YouTube8M.Options(memory="stream"), 0, out)
        results["batch_rows_per_s_stream"] = batch_rate(stream, batches=48)
        print(f"{'TaskSplit.batch, in memory':<38} {results['batch_rows_per_s_memory']:,.0f} rows/s")
        print(f"{'TaskSplit.batch, streamed from HDF5':<38} {results['batch_rows_per_s_stream']:,.0f} rows/s")
        if args.omniglot:
            from mtlbench.data.omniglot import Omniglot
            from mtlbench.prepare.omniglot import prepare_omniglot
            om = Path(tmp) / "omniglot"
            times, _ = timed(lambda: prepare_omniglot(args.data / "omniglot", om, force=True), 1)
            results["prepare_omniglot"] = report("prepare omniglot", times, 32_460)
            times, _ = timed(lambda: Omniglot.load(Omniglot.Options(), 0, om), args.repeats)
            results["load_omniglot"] = report("load omniglot", times, 32_460)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
