"""Seconds per 100 iterations, defined as follows (TAAN Table 2 and beyond).

- training iteration = forward + backward + optimizer step over one batch of every task;
  inference iteration = eval-mode forward of one batch of every task;
- batches are drawn and staged on the device before the clock starts; drawing them is timed on its own
  (the "data" column), so data loading never hides inside a method's time;
- warm-up iterations are discarded; the device is synchronised before every clock read (an accelerator
  runs asynchronously: without it the clock would time the launches, not the work); several blocks are timed
  and the median and spread (min, max) reported;
- each method's peak memory over its warm-up training steps is reported (``train_peak_mb``): on an
  accelerator torch's peak allocated memory of its steps (activations, gradients, optimizer state) plus its
  weights; on the CPU the process's peak resident set during its steps (Linux: the high-water mark, reset
  before each method through /proc/self/clear_refs; elsewhere the process's lifetime peak), which includes
  what every method shares (the data, the other models), so rows differ by what each method adds; the record
  also holds the device's name and the environment fingerprint that result records carry (git commit,
  package versions, threads, device);
- each method's backward passes per training step (``backward_passes``: 1, or T for a loss weighting that
  needs per-task gradients where the method's graph cannot batch them; weighting/);
- the step is the trained step: ``training.amp`` (autocast, the fp16 loss scaler) applies as in training;
- every method of the spec is timed in the same process with the same staged batches, the methods taking
  turns inside each block; each ratio to Hard-Share is the median of per-block ratios, so ratios stay
  meaningful even where absolute seconds are not (a shared or throttled machine);
- a method with a closed-form fit (no training steps) gets the seconds of one fit on the training splits
  ("fit s") instead of training-step times.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch

from mtlbench.config.resolved import ResolvedMethod, ResolvedSpec
from mtlbench.nn.method import count_parameters
from mtlbench.store.dataset import MTLData
from mtlbench.training.env import device_name, fingerprint
from mtlbench.training.precision import Precision
from mtlbench.training.sampler import TaskSampler
from mtlbench.training.step import Objective, make_optimizer, train_step
from mtlbench.training.trainer import build_model, resolve_device, seed_everything
from mtlbench.weighting import build_weighting


@dataclass
class TimingResult:
    row: str
    method: str
    train_s: float | None  # median seconds per 100 training iterations (None: a closed-form method)
    train_min: float | None
    train_max: float | None
    infer_s: float
    infer_min: float
    infer_max: float
    data_s: float  # seconds per 100 iterations spent drawing and staging the batches
    n_params: int
    ratio_train: float | None = None  # to the reference row (Hard-Share), same run
    ratio_infer: float | None = None
    train_blocks: list[float] | None = None  # every block's seconds per 100 iterations, for other ratios
    infer_blocks: list[float] | None = None
    fit_s: float | None = None  # seconds of one closed-form fit, for methods trained that way
    train_peak_mb: float | None = None  # peak memory of its training steps (device: + weights; CPU: the process)
    peak_kind: str | None = None  # "device allocated" | "process resident"
    backward_passes: int | None = None  # per training step (None: a closed-form method)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU, whose work is done when a call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> int | None:
    """Start a peak-memory window; returns the bytes allocated now on an accelerator (None on the CPU, whose
    window is the process's resident high-water mark, reset here where Linux allows)."""
    if device.type != "cuda":
        reset_resident_peak()
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def peak_mb(device: torch.device, start: int | None, resident: int) -> float | None:
    """MB: on an accelerator the peak allocated since ``reset_peak`` above what was allocated then, plus
    ``resident`` bytes; on the CPU the process's peak resident set since ``reset_peak``."""
    if device.type != "cuda":
        return resident_peak_mb()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - start + resident) / 2**20


def reset_resident_peak() -> None:
    try:  # Linux: "5" resets the peak resident set size (VmHWM) to the current one
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def resident_peak_mb() -> float | None:
    """The process's peak resident set in MB: VmHWM (Linux), else getrusage's lifetime maximum."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource
        import sys
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024
    except (ImportError, OSError):
        return None


def stage_batches(data: MTLData, batch: int, n: int, device: torch.device, seed: int = 0):
    """``n`` pre-drawn batch lists on the device, and the seconds per iteration that drawing them took."""
    sampler = TaskSampler(data.split("train"), batch, seed)
    start = time.perf_counter()
    staged = [sampler.next_batches(device) for _ in range(n)]
    sync(device)
    return staged, (time.perf_counter() - start) / n


def time_block(step, staged, iterations: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for i in range(iterations):
        step(staged[i % len(staged)])
    sync(device)
    return (time.perf_counter() - start) * 100.0 / iterations


def train_step_fn(model, optimizer, tasks, precision: Precision, weighting=None):
    objective, count = Objective(model, tasks, precision, weighting), [0]

    def step(batches):  # the trainer's own step, after_step included (MRN's covariance updates cost time too)
        count[0] += 1
        train_step(objective, optimizer, batches, count[0])
    step.weighting = weighting
    return step


def backward_passes(step) -> int | None:
    """Backward passes per training step of a timed step function (1 for ew, the plain step)."""
    if step is None:
        return None
    return 1 if step.weighting is None else step.weighting.backward_passes


def infer_step_fn(model, precision: Precision | None = None):
    precision = precision or Precision()

    @torch.no_grad()
    def step(batches):
        with precision.autocast():
            model([x for x, _ in batches])
    return step


def build_timed(resolved: ResolvedSpec, method: ResolvedMethod, data: MTLData, device: torch.device):
    """(model, its training step or None for a closed-form method, its inference step)."""
    model = build_model(resolved, method, data).to(device)
    if model.closed_form:
        return model, None, infer_step_fn(model)
    precision = Precision(resolved.spec.training.amp, device)
    tr = resolved.spec.training
    weighting = build_weighting(method.entry.weighting, data.info.n_tasks, [len(s) for s in data.split("train")],
                                tr.batch_per_task)
    if weighting is not None:
        weighting.to(device)
    return (model, train_step_fn(model, make_optimizer(resolved, model, weighting), data.info.tasks, precision,
                                 weighting), infer_step_fn(model, precision))


def weight_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def fit_seconds(model, data: MTLData, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    model.fit(data.split("train"))
    sync(device)
    return time.perf_counter() - start


def interleaved_blocks(steps: list, modes: list, staged, warmup: int, iterations: int, blocks: int, device,
                       peaks: list | None = None, models: list | None = None):
    """times[b][m] = block b of method m. Methods take turns inside every block (A B C, A B C, ...), so a slow
    spell of a shared machine hits every method alike instead of whichever happened to be running. A None
    step (a method without training steps) gets None. ``peaks`` (when given) receives each method's peak
    device memory over its warm-up steps."""
    for i, (step, mode) in enumerate(zip(steps, modes)):
        mode()
        start = reset_peak(device)
        n = warmup if start is None else max(warmup, 1)  # at least one step to measure a peak on
        if step is not None and n:
            time_block(step, staged, n, device)
        if peaks is not None:
            peaks.append(peak_mb(device, start, weight_bytes(models[i])) if step is not None else None)
    times = []
    for _ in range(blocks):
        row = []
        for step, mode in zip(steps, modes):
            mode()
            row.append(None if step is None else time_block(step, staged, iterations, device))
        times.append(row)
    return times


def time_spec(resolved: ResolvedSpec, data: MTLData, warmup: int = 3, iterations: int = 10, blocks: int = 5,
              reference: str | None = "hard_share", progress=None) -> dict:
    spec = resolved.spec
    device = resolve_device(spec.training.device)
    if spec.training.threads:
        torch.set_num_threads(spec.training.threads)
    seed_everything(0, deterministic=False)  # deterministic kernels can be slower; timing is not about bits
    staged, data_s = stage_batches(data, spec.training.batch_per_task, min(iterations, 8), device)
    built = [build_timed(resolved, m, data, device) for m in resolved.methods]
    models = [b[0] for b in built]
    if progress:
        progress("training steps")
    peaks: list = []
    train = interleaved_blocks([b[1] for b in built], [m.train for m in models], staged, warmup, iterations,
                               blocks, device, peaks, models)
    fits = {i: fit_seconds(m, data, device) for i, (m, step, _) in enumerate(built) if step is None}
    if progress:
        progress("inference steps")
    infer = interleaved_blocks([b[2] for b in built], [m.eval for m in models], staged, warmup, iterations,
                               blocks, device)
    ref = next((i for i, m in enumerate(resolved.methods) if m.entry.name == reference), None)
    results = [summarise(m, models[i], i, train, infer, ref, data_s, fits.get(i), peaks[i])
               for i, m in enumerate(resolved.methods)]
    for r, (_, step, _) in zip(results, built):
        r.backward_passes = backward_passes(step)
        r.peak_kind = None if r.train_peak_mb is None else ("device allocated" if device.type == "cuda"
                                                            else "process resident")
    first = data.info.tasks[0]
    return {
        "spec_name": spec.name, "device": str(device), "device_name": device_name(device),
        "threads": torch.get_num_threads(), "dtype": str(torch.get_default_dtype()), "amp": spec.training.amp,
        "batch_per_task": spec.training.batch_per_task,
        "n_tasks": data.info.n_tasks, "input_shape": list(first.input_shape),
        "backbone": spec.backbone.model_dump(mode="json"), "warmup": warmup, "iterations_per_block": iterations,
        "blocks": blocks, "reference": None if ref is None else resolved.methods[ref].entry.row,
        "results": [asdict(r) for r in results], "env": fingerprint(device),
    }


def summarise(method: ResolvedMethod, model, i: int, train, infer, ref: int | None, data_s: float,
              fit_s: float | None, train_peak: float | None) -> TimingResult:
    tr, inf = [b[i] for b in train], [b[i] for b in infer]
    stepped = fit_s is None
    result = TimingResult(method.entry.row, method.entry.name, *(spread(tr) if stepped else (None, None, None)),
                          *spread(inf), data_s * 100, count_parameters(model), train_blocks=tr if stepped else None,
                          infer_blocks=inf, fit_s=fit_s, train_peak_mb=train_peak)
    if ref is not None:  # the median of per-block ratios is robust to drifts in the machine's speed
        result.ratio_train = block_ratio(train, i, ref)
        result.ratio_infer = block_ratio(infer, i, ref)
    return result


def spread(times: list[float]) -> tuple[float, float, float]:
    return statistics.median(times), min(times), max(times)


def block_ratio(times, i: int, ref: int) -> float | None:
    if times[0][i] is None or times[0][ref] is None:
        return None
    return statistics.median(b[i] / b[ref] for b in times)


def with_reference(resolved: ResolvedSpec, name: str) -> ResolvedSpec:
    """Add the reference method (e.g. ``--vs hard_share``) to the spec's methods unless it is there."""
    if any(m.entry.name == name for m in resolved.methods):
        return resolved
    from mtlbench.config.schema import MethodEntry
    from mtlbench.errors import UsageError
    from mtlbench.registry import METHODS
    if name not in METHODS:
        raise UsageError(f"--vs: {METHODS.unknown_message(name)}")
    cls = METHODS.get(name)
    label = {"hard_share": "Hard-Share", "stl": "STL"}.get(name, name)
    entry = MethodEntry(name=name, label=label)
    reasons = cls.check(resolved.info, resolved.spec.backbone, cls.Params()) if resolved.info else []
    if reasons:
        raise UsageError(f"--vs {name}: {reasons[0]}")
    resolved.methods.insert(0, ResolvedMethod(entry, cls, cls.Params()))
    return resolved
