"""The conv engine's speed on TAAN's Omniglot net, one thread, on real drawings (not a timed test).

Times, in one process and interleaved (every candidate takes a turn inside every block, so a slow spell of a
shared machine hits all alike), the training step and the inference step of
  (a) a plain eager PyTorch module of the same net, written as a user would write it (nn.Sequential of
      Conv2d, BatchNorm2d, ReLU, MaxPool2d; 50 linear heads; Adam),
  (b) mtlbench's Hard-Share and (c) TAAN (M = 32), each at `training.kernel: fused` (the default on conv
      trunks) and `eager` (the reference path),
and prints the ratios. Also DMTRL-Tucker's training step, initialised from an STL model as Table 3 trains it
(the STL model trained briefly here: --stl-steps), and DMTRL-TT's evaluation of the whole Omniglot test split.
With --youtube8m DIR also the MLP (YouTube-8M, Table 1 CPU net) TAAN / Hard-Share step ratio.

Seconds are CPU seconds of this process (time.process_time), robust on a shared machine: one CPU second of a
one-thread run is one wall second on an idle core. Each figure is the fastest of --blocks blocks.

    mtlbench prepare omniglot --src ../shared/data/omniglot --out /tmp/prep/omniglot
    python benchmarks/bench_conv_engine.py --omniglot /tmp/prep/omniglot [--youtube8m /tmp/prep/youtube8m]
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mtlbench.config.loader import load_spec
from mtlbench.training.evaluate import evaluate
from mtlbench.training.precision import Precision
from mtlbench.training.run import load_data
from mtlbench.training.step import make_optimizer
from mtlbench.training.timing import infer_step_fn, stage_batches, train_step_fn
from mtlbench.training.trainer import build_model

REPO = Path(__file__).resolve().parents[1]
OMNIGLOT_SPEC = REPO / "benchmarks" / "taan_table3_omniglot_cpu5.yaml"
YOUTUBE_SPEC = REPO / "benchmarks" / "taan_table1_youtube8m_cpu.yaml"


class PlainNet(nn.Module):
    """The TAAN Omniglot net as a user would write it: 4 x [3x3 valid conv, BatchNorm, ReLU, 2x2 max-pool],
    dense 512 with ReLU, one linear head per task."""

    def __init__(self, n_classes: list[int], size: int = 105, channels=(6, 12, 24, 64)):
        super().__init__()
        layers, c = [], 1
        for o in channels:
            layers += [nn.Conv2d(c, o, 3), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)]
            c, size = o, (size - 2) // 2
        self.trunk = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * size * size, 512), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(512, n) for n in n_classes)

    def forward(self, xs):
        features = self.trunk(torch.cat(xs)).split([len(x) for x in xs])
        return [head(f) for head, f in zip(self.heads, features)]


def plain_steps(model: PlainNet, lr: float):
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def train(batches):
        logits = model([x for x, _ in batches])
        loss = sum(F.cross_entropy(z, y) for z, (_, y) in zip(logits, batches)) / len(batches)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def infer(batches):
        model([x for x, _ in batches])
    return train, infer


def with_kernel(resolved, kernel: str, data_path: Path):
    spec = resolved.spec.model_copy(deep=True)
    spec.training.kernel = kernel
    spec.data.path = data_path
    resolved.spec = spec
    return resolved


def mtlbench_steps(spec_file: Path, data_path: Path, row: str, kernel: str, data=None, params=None):
    resolved = with_kernel(load_spec(spec_file), kernel, data_path)
    data = data or load_data(resolved)
    method = next(m for m in resolved.methods if m.entry.row == row)
    if params:
        method.params = method.params.model_copy(update=params)
    torch.manual_seed(0)
    model = build_model(resolved, method, data)
    train = train_step_fn(model, make_optimizer(resolved, model), data.info.tasks, Precision())
    infer = infer_step_fn(model)
    return model, data, resolved, train, infer


def cpu_seconds(fn, batches) -> float:
    start = time.process_time()
    fn(batches)
    return time.process_time() - start


def interleaved(candidates: dict, staged, blocks: int, warmup: int = 2) -> dict[str, float]:
    """{name: fastest block's CPU seconds per call}; every candidate takes a turn inside every block."""
    for fn, mode in candidates.values():
        mode()
        for i in range(warmup):
            fn(staged[i % len(staged)])
    best = {name: float("inf") for name in candidates}
    for b in range(blocks):
        for name, (fn, mode) in candidates.items():
            mode()
            best[name] = min(best[name], cpu_seconds(fn, staged[b % len(staged)]))
    return best


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                      if line.startswith("Model name")), platform.processor())
    except (OSError, subprocess.CalledProcessError):
        model = platform.processor()
    return f"{model}; torch {torch.__version__}; 1 thread"


def stl_checkpoint(data_path: Path, data, steps: int, folder: Path) -> Path:
    """An STL model of the Omniglot spec trained ``steps`` steps, saved as DMTRL's init: stl reads it."""
    model, _, _, train, _ = mtlbench_steps(OMNIGLOT_SPEC, data_path, "STL", "fused", data)
    staged, _ = stage_batches(data, 5, max(steps, 1), torch.device("cpu"), seed=1)
    model.train()
    for i in range(steps):
        train(staged[i])
    path = folder / "stl.pt"
    torch.save(model.state_dict(), path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--omniglot", type=Path, required=True, help="a prepared Omniglot directory")
    ap.add_argument("--youtube8m", type=Path, default=None, help="a prepared YouTube-8M directory (optional)")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--stl-steps", type=int, default=30, help="steps of the STL model DMTRL starts from")
    ap.add_argument("--no-dmtrl", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(machine(), flush=True)

    _, data, resolved, hs_train, _ = mtlbench_steps(OMNIGLOT_SPEC, args.omniglot, "Hard-Share", "fused")
    models = {}
    steps = {}
    for row in ("Hard-Share", "TAAN"):
        for kernel in ("fused", "eager"):
            model, _, _, train, infer = mtlbench_steps(OMNIGLOT_SPEC, args.omniglot, row, kernel, data)
            models[row, kernel] = model
            steps[f"{row} {kernel}"] = (train, infer, model)
    torch.manual_seed(0)
    plain = PlainNet([t.n_classes for t in data.info.tasks])
    p_train, p_infer = plain_steps(plain, resolved.spec.optimizer.lr)
    steps["plain eager module"] = (p_train, p_infer, plain)
    staged, _ = stage_batches(data, resolved.spec.training.batch_per_task, 4, torch.device("cpu"))

    train_t = interleaved({k: (tr, m.train) for k, (tr, _, m) in steps.items()}, staged, args.blocks)
    infer_t = interleaved({k: (inf, m.eval) for k, (_, inf, m) in steps.items()}, staged, args.blocks)
    print(f"\nOmniglot net, {len(staged[0])} tasks x {len(staged[0][0][0])} drawings of 105 x 105, "
          f"CPU s per step (fastest of {args.blocks} interleaved blocks)")
    print(f"{'':24} {'train s':>8} {'infer s':>8}")
    for k in steps:
        print(f"{k:24} {train_t[k]:8.3f} {infer_t[k]:8.3f}")
    ratios = [("Hard-Share fused / plain eager module", "Hard-Share fused", "plain eager module", "<= 0.40"),
              ("Hard-Share eager / plain eager module", "Hard-Share eager", "plain eager module", ""),
              ("TAAN fused / Hard-Share fused", "TAAN fused", "Hard-Share fused", "train <= 1.15, infer <= 1.25"),
              ("TAAN eager / Hard-Share eager", "TAAN eager", "Hard-Share eager", "")]
    print(f"\n{'ratio':40} {'train':>6} {'infer':>6}  target")
    for label, a, b, target in ratios:
        print(f"{label:40} {train_t[a] / train_t[b]:6.2f} {infer_t[a] / infer_t[b]:6.2f}  {target}")

    if not args.no_dmtrl:
        with tempfile.TemporaryDirectory() as folder:
            ckpt = stl_checkpoint(args.omniglot, data, args.stl_steps, Path(folder))
            tucker, _, _, t_train, _ = mtlbench_steps(OMNIGLOT_SPEC, args.omniglot, "DMTRL-Tucker", "fused", data,
                                                       {"stl_checkpoint": str(ckpt)})
            tt, _, _, _, _ = mtlbench_steps(OMNIGLOT_SPEC, args.omniglot, "DMTRL-TT", "fused", data,
                                            {"stl_checkpoint": str(ckpt)})
            hs = models["Hard-Share", "fused"]
            best = interleaved({"DMTRL-Tucker": (t_train, tucker.train), "Hard-Share": (hs_train, hs.train)},
                               staged, max(2, args.blocks // 2))
            tt.eval()
            start = time.process_time()
            evaluate(tt, data, "test", [data.info.primary_metric], resolved.spec.training.eval_batch,
                     torch.device("cpu"))
            tt_eval = time.process_time() - start
        print(f"\nDMTRL-Tucker training step (init: stl, STL trained {args.stl_steps} steps): "
              f"{best['DMTRL-Tucker']:.3f} s = {best['DMTRL-Tucker'] / best['Hard-Share']:.2f}x Hard-Share "
              f"(target <= 2.5)")
        print(f"DMTRL-TT evaluation of the Omniglot test split: {tt_eval:.2f} s (target < 5)")

    if args.youtube8m is not None:
        _, ydata, yres, _, _ = mtlbench_steps(YOUTUBE_SPEC, args.youtube8m, "Hard-Share", "auto")
        ymodels = {row: mtlbench_steps(YOUTUBE_SPEC, args.youtube8m, row, "auto", ydata)
                   for row in ("Hard-Share", "TAAN")}
        ystaged, _ = stage_batches(ydata, yres.spec.training.batch_per_task, 4, torch.device("cpu"))
        best = interleaved({row: (v[3], v[0].train) for row, v in ymodels.items()}, ystaged, args.blocks)
        print(f"\nYouTube-8M MLP (Table 1 CPU net) training step: TAAN {best['TAAN']:.4f} s, Hard-Share "
              f"{best['Hard-Share']:.4f} s: {best['TAAN'] / best['Hard-Share']:.2f}x (target <= 1.10)")


if __name__ == "__main__":
    main()
