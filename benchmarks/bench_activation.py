"""Micro-benchmark of the TAAN activation alone: the naive [N, H, M] form vs the exact fast algorithm
(uniform-grid and bucketize paths), with ReLU for reference; forward + backward (gradients for x and alpha,
and for b on the bucketize path, which is the learned-b one). Targets: fast >= 10x faster than
naive; memory saved for backward <= 8 bytes per element (naive: 4 M bytes and more).

Memory, two numbers:
- "saved B/elem": bytes of every tensor autograd saves for backward (torch.autograd.graph.saved_tensors_hooks)
  except the tiny alpha/b tables, per input element; exact, any device. Measured on a 1/64 slice of the
  batch with the same T and M (the saved sizes scale linearly).
- "peak MiB": the highest total of tensor bytes allocated during one forward + backward above what was live
  before (so it includes the output and the input gradient that every activation needs). CUDA:
  torch.cuda.max_memory_allocated; CPU: the allocator's running total recorded by torch.profiler
  (profile_memory=True, "[memory]" events' "Total Allocated").

    python benchmarks/bench_activation.py                       # 4096 x 1024, M = 64, T = 16, CPU
    python benchmarks/bench_activation.py --threads 1 --repeats 9
    python benchmarks/bench_activation.py --device cuda --repeats 50
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
from mtlbench.taan import adaptive_activation, naive_adaptive_activation, uniform_grid  # noqa: E402

VARIANTS = ["relu", "fast_grid", "fast_bucketize", "naive"]


def make_inputs(n, h, m, tasks, device, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, h, generator=g, dtype=dtype).to(device).requires_grad_(True)
    grad_out = torch.randn(n, h, generator=g, dtype=dtype).to(device)
    alpha = (0.1 * torch.randn(tasks, m, generator=g, dtype=dtype)).to(device).requires_grad_(True)
    b = torch.linspace(-3, 3, m, dtype=dtype, device=device)
    segments = [(t, n // tasks + (1 if t < n % tasks else 0)) for t in range(tasks)]
    return x, grad_out, alpha, b, segments


def forward(variant, x, alpha, b, segments):
    """The variant's output and the inputs it differentiates."""
    if variant == "relu":
        return torch.relu(x), (x,)
    if variant == "fast_grid":
        return adaptive_activation(x, alpha, b, segments, uniform_grid(b)), (x, alpha)
    if variant == "fast_bucketize":
        b = b.detach().requires_grad_(True)
        return adaptive_activation(x, alpha, b, segments, None), (x, alpha, b)
    return naive_adaptive_activation(x, alpha, b, segments), (x, alpha)


def step(variant, x, grad_out, alpha, b, segments):
    y, wrt = forward(variant, x, alpha, b, segments)
    return torch.autograd.grad(y, wrt, grad_out)


def saved_bytes_per_element(variant, a, device, dtype) -> float:
    n = max(a.tasks, a.n // 64)
    x, _, alpha, b, segments = make_inputs(n, a.h, a.m, a.tasks, device, dtype)
    sizes = []

    def pack(t):
        if t.numel() > alpha.numel() + b.numel():
            sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward(variant, x, alpha, b, segments)
    return sum(sizes) / x.numel()


def peak_bytes(variant, inputs, device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(variant, *inputs)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(variant, *inputs)
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        prof.export_chrome_trace(f.name)
        events = json.load(open(f.name))["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"]
    return max(totals, default=0)


def time_ms(variant, inputs, device, repeats) -> list[float]:
    times = []
    for i in range(repeats + 1):  # the first call is a warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(variant, *inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(1e3 * (time.perf_counter() - t0))
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=4096, help="rows (all tasks together)")
    p.add_argument("--h", type=int, default=1024, help="features per row")
    p.add_argument("--m", type=int, default=64, help="hinges")
    p.add_argument("--tasks", type=int, default=16)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--naive-repeats", type=int, default=2, help="the naive form takes seconds per call")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device, dtype = torch.device(a.device), getattr(torch, a.dtype)
    inputs = make_inputs(a.n, a.h, a.m, a.tasks, device, dtype)
    rows = []
    for v in a.variants.split(","):
        times = time_ms(v, inputs, device, a.naive_repeats if v == "naive" else a.repeats)
        rows.append({"variant": v, "median_ms": statistics.median(times), "min_ms": min(times),
                     "max_ms": max(times), "peak_bytes": peak_bytes(v, inputs, device),
                     "saved_per_elem": saved_bytes_per_element(v, a, device, dtype)})
    report(a, rows)


def report(a, rows) -> None:
    elems = a.n * a.h
    print(f"TAAN activation fwd+bwd: {a.n} x {a.h} = {elems} elements, M = {a.m}, T = {a.tasks}, {a.device} "
          f"{a.dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'variant':<16}{'median ms':>11}{'min ms':>10}{'max ms':>10}{'saved B/elem':>14}{'peak MiB':>10}"
          f"{'peak B/elem':>13}")
    for r in rows:
        print(f"{r['variant']:<16}{r['median_ms']:>11.1f}{r['min_ms']:>10.1f}{r['max_ms']:>10.1f}"
              f"{r['saved_per_elem']:>14.2f}{r['peak_bytes'] / 2**20:>10.1f}{r['peak_bytes'] / elems:>13.1f}")
    by = {r["variant"]: r for r in rows}
    for v in ("fast_grid", "fast_bucketize"):
        if v in by and "naive" in by:
            speedup = by["naive"]["median_ms"] / by[v]["median_ms"]
            print(f"{v}: {speedup:.0f}x faster than naive (target >= 10x), "
                  f"peak memory {by['naive']['peak_bytes'] / max(by[v]['peak_bytes'], 1):.0f}x smaller")
        if v in by and "relu" in by:
            print(f"{v}: {by[v]['median_ms'] / by['relu']['median_ms']:.1f}x the time of ReLU")


if __name__ == "__main__":
    main()
