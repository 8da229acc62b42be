"""Micro-benchmark of the TAAN activation alone, next to ReLU: the exact fast algorithm (compiled and eager
kernels; uniform-grid and bucketize bucketing) and the naive [N, ..., M] form, at the two paper shapes:
  mlp  -- YouTube-8M MLP layer: [4096, 1024], M = 64, T = 16 tasks of 256 rows
  conv -- Omniglot conv net's first layer: [250, 6, 103, 103], M = 32, T = 50 tasks of 5 images
Two modes: "train" = forward + backward (gradients for x and alpha, and for b on the bucketize paths, which are
the learned-b ones); "infer" = forward under torch.no_grad(). Variants take turns inside every repeat, so a slow
spell of a shared machine hits all of them; each time is the median over repeats. Clock: on CPU the process's CPU
time (what a busy shared machine disturbs least; with several threads it is their sum: use --clock wall), on
CUDA wall time with synchronisation. Targets (issue 12): conv train <= 2x ReLU's time.

Memory (train mode), two numbers:
- "saved B/elem": bytes of every tensor autograd saves for backward (torch.autograd.graph.saved_tensors_hooks)
  except the tiny alpha/b tables, per input element; measured on a 1/64 slice of the batch.
- "peak MiB": the highest total of tensor bytes allocated during one forward + backward above what was live
  before (CUDA: torch.cuda.max_memory_allocated; CPU: torch.profiler's "[memory]" events).

    python benchmarks/bench_activation.py --threads 1                  # both shapes, CPU
    python benchmarks/bench_activation.py --case conv --threads 1 --repeats 9
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
from mtlbench.taan import adaptive_activation, naive_adaptive_activation, uniform_grid

CASES = {  # shape, M, tasks
    "mlp": ((4096, 1024), 64, 16),
    "conv": ((250, 6, 103, 103), 32, 50),
}
VARIANTS = ["relu", "compiled", "eager", "compiled_bucketize", "eager_bucketize", "naive"]
KERNEL = {"compiled": ("compiled", True), "eager": ("eager", True),
          "compiled_bucketize": ("compiled", False), "eager_bucketize": ("eager", False)}


def make_inputs(shape, m, tasks, device, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=dtype).to(device).requires_grad_(True)
    grad_out = torch.randn(shape, generator=g, dtype=dtype).to(device)
    alpha = (0.1 * torch.randn(tasks, m, generator=g, dtype=dtype)).to(device).requires_grad_(True)
    b = torch.linspace(-3, 3, m, dtype=dtype, device=device)
    n = shape[0]
    segments = [(t, n // tasks + (1 if t < n % tasks else 0)) for t in range(tasks)]
    return x, grad_out, alpha, b, segments


def forward(variant, x, alpha, b, segments):
    """The variant's output and the inputs it differentiates."""
    if variant == "relu":
        return torch.relu(x), (x,)
    if variant == "naive":
        return naive_adaptive_activation(x, alpha, b, segments), (x, alpha)
    kernel, use_grid = KERNEL[variant]
    if not use_grid:
        b = b.detach().requires_grad_(True)
    y = adaptive_activation(x, alpha, b, segments, uniform_grid(b) if use_grid else None, kernel)
    return y, ((x, alpha) if use_grid else (x, alpha, b))


def step(mode, variant, x, grad_out, alpha, b, segments):
    if mode == "infer":
        with torch.no_grad():
            return forward(variant, x, alpha, b, segments)[0]
    y, wrt = forward(variant, x, alpha, b, segments)
    return torch.autograd.grad(y, wrt, grad_out)


def saved_bytes_per_element(variant, shape, m, tasks, device, dtype) -> float:
    small = (max(tasks, shape[0] // 64), *shape[1:])
    x, _, alpha, b, segments = make_inputs(small, m, tasks, device, dtype)
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
        step("train", variant, *inputs)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step("train", variant, *inputs)
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        prof.export_chrome_trace(f.name)
        with open(f.name) as trace:
            events = json.load(trace)["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"]
    return max(totals, default=0)


def clock_fn(device, clock):
    if device.type == "cuda":
        def wall_synced():
            torch.cuda.synchronize()
            return time.perf_counter()
        return wall_synced
    return time.process_time if clock == "cpu" else time.perf_counter


def time_interleaved(mode, variants, inputs, device, clock, repeats, naive_repeats) -> dict[str, list[float]]:
    """ms per call of every variant; the variants take turns inside each repeat (after one warm-up each)."""
    now = clock_fn(device, clock)
    for v in variants:
        step(mode, v, *inputs)
    times = {v: [] for v in variants}
    for r in range(repeats):
        for v in variants:
            if v == "naive" and r >= naive_repeats:
                continue
            t0 = now()
            step(mode, v, *inputs)
            times[v].append(1e3 * (now() - t0))
    return times


def run_case(name, a, device, dtype) -> None:
    shape, m, tasks = CASES[name]
    variants = [v for v in a.variants.split(",") if v != "naive" or name == "mlp" or a.naive_conv]
    inputs = make_inputs(shape, m, tasks, device, dtype)
    for mode in ("train", "infer"):
        times = time_interleaved(mode, variants, inputs, device, a.clock, a.repeats, a.naive_repeats)
        rows = []
        for v in variants:
            row = {"variant": v, "median_ms": statistics.median(times[v]), "min_ms": min(times[v])}
            if mode == "train":
                row["peak_bytes"] = peak_bytes(v, inputs, device)
                row["saved_per_elem"] = saved_bytes_per_element(v, shape, m, tasks, device, dtype)
            rows.append(row)
        report(name, mode, shape, m, tasks, a, rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", default="all", choices=["all", *CASES])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--naive-repeats", type=int, default=2, help="the naive form takes seconds per call")
    p.add_argument("--naive-conv", action="store_true", help="also run the naive form at the conv shape "
                   "(an [N, C, H, W, M] tensor: 2 GiB in float32)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--clock", default="cpu", choices=["cpu", "wall"], help="CPU devices: process CPU time or "
                   "wall time (CUDA always uses synchronised wall time)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device, dtype = torch.device(a.device), getattr(torch, a.dtype)
    for name in CASES if a.case == "all" else [a.case]:
        run_case(name, a, device, dtype)


def report(name, mode, shape, m, tasks, a, rows) -> None:
    elems = 1
    for s in shape:
        elems *= s
    what = "forward + backward" if mode == "train" else "forward under no_grad"
    clock = "wall" if a.device != "cpu" else a.clock
    print(f"\n{name} {mode} ({what}): {list(shape)} = {elems} elements, M = {m}, T = {tasks}, {a.device} "
          f"{a.dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads, {clock} clock")
    relu = next((r["median_ms"] for r in rows if r["variant"] == "relu"), None)
    head = f"{'variant':<20}{'median ms':>11}{'min ms':>10}{'x ReLU':>9}"
    print(head + (f"{'saved B/elem':>14}{'peak MiB':>10}" if mode == "train" else ""))
    for r in rows:
        ratio = f"{r['median_ms'] / relu:>9.2f}" if relu else f"{'':>9}"
        line = f"{r['variant']:<20}{r['median_ms']:>11.1f}{r['min_ms']:>10.1f}{ratio}"
        if mode == "train":
            line += f"{r['saved_per_elem']:>14.2f}{r['peak_bytes'] / 2**20:>10.1f}"
        print(line)
    by = {r["variant"]: r["median_ms"] for r in rows}
    if "naive" in by:
        for v in ("compiled", "eager"):
            if v in by:
                print(f"{v}: {by['naive'] / by[v]:.0f}x faster than naive")


if __name__ == "__main__":
    main()
