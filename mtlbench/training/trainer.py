"""The training loop of protocol.md, small enough to hold in mind (nanoGPT's habit):

    every iteration: one mini-batch per task -> per-task losses, summed / T, + the method's regularizer
                     -> one optimizer step -> method.after_step(step)
    every eval_every iterations: score the selection split; keep the best weights; stop after `patience`
                     evaluations without improvement
    at the end:      restore the best weights, score val and test, return one result record

The trainer never looks at a method's name and never prints: progress goes to an optional callback.
"""
from __future__ import annotations

import copy
import math
import os
import random
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mtlbench.config.loader import ResolvedMethod, ResolvedSpec
from mtlbench.data.base import MTLData, TaskInfo, TaskSplit
from mtlbench.errors import UsageError
from mtlbench.methods.base import MTLMethod, count_parameters
from mtlbench.metrics import DEFAULT_METRICS, get_metric
from mtlbench.training.env import fingerprint

Progress = Callable[[int, int, dict], None]  # (iteration, total, {"loss": ..., "select": score at evaluations})


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)  # the spec schema has checked the string
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"training.device: {name!r} asked for, but this torch build sees no CUDA device "
                         "(use auto or cpu)")
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:  # cuBLAS is deterministic only with a fixed workspace; must be set before its first use
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: a CUDA op without a deterministic kernel must not abort a long run; CPU runs are bit-exact.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


class TaskSampler:
    """Per-task shuffled passes over each task's training rows, from one seeded generator per task, so a
    task's batch order does not depend on how many other tasks there are."""

    def __init__(self, splits: list[TaskSplit], batch: int, seed: int):
        self.splits, self.batch = splits, batch
        self.gens = [torch.Generator().manual_seed(seed * 100_003 + t) for t in range(len(splits))]
        self.order: list[torch.Tensor] = [torch.empty(0, dtype=torch.long) for _ in splits]
        self.pos = [0] * len(splits)

    def rows(self, t: int) -> torch.Tensor:
        n = len(self.splits[t])
        take = min(self.batch, n)
        if self.pos[t] + take > len(self.order[t]):
            self.order[t], self.pos[t] = torch.randperm(n, generator=self.gens[t]), 0
        rows = self.order[t][self.pos[t]:self.pos[t] + take]
        self.pos[t] += take
        return rows

    def next_batches(self, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for t, split in enumerate(self.splits):
            x, y = split.batch(self.rows(t))
            out.append((x.to(device, non_blocking=True), y.to(device, non_blocking=True)))
        return out


def task_loss(logits: torch.Tensor, y: torch.Tensor, task: TaskInfo) -> torch.Tensor:
    if task.target == "multilabel":  # BCE summed over the task's classes, mean over the batch (protocol.md)
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="sum") / len(y)
    return F.cross_entropy(logits, y)


def train_step(model: MTLMethod, optimizer: torch.optim.Optimizer, batches, tasks: list[TaskInfo], step: int):
    """One iteration of protocol.md: per-task losses summed / T, + the regularizer, one optimizer step, then the
    method's after_step hook. Returns the detached (task loss, regularizer). `mtlbench timing` times this."""
    logits = model([x for x, _ in batches])
    loss = sum(task_loss(lg, y, task) for lg, (_, y), task in zip(logits, batches, tasks)) / len(tasks)
    reg = model.regularizer()
    optimizer.zero_grad(set_to_none=True)
    (loss if reg is None else loss + reg).backward()
    optimizer.step()
    model.after_step(step)
    return loss.detach(), None if reg is None else reg.detach()


def make_optimizer(resolved: ResolvedSpec, model: MTLMethod) -> torch.optim.Optimizer:
    o = resolved.spec.optimizer
    groups = model.param_groups(o.lr)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


@torch.no_grad()
def predict(model: MTLMethod, split: TaskSplit, task: int, batch: int, device: torch.device):
    scores, targets = [], []
    for start in range(0, len(split), batch):
        x, y = split.batch(torch.arange(start, min(start + batch, len(split))))
        scores.append(model.forward_task(x.to(device), task).float().cpu())
        targets.append(y)
    return torch.cat(scores), torch.cat(targets)


def evaluate(model: MTLMethod, data: MTLData, split: str, metrics: list[str], batch: int,
             device: torch.device) -> dict:
    """{metric: {"tasks": {name: value}, "mean": mean over tasks, "pooled": over all examples (accuracy)}}."""
    was_training = model.training
    model.eval()
    per_task = [predict(model, s, t, batch, device) for t, s in enumerate(data.split(split))]
    model.train(was_training)
    out = {}
    for name in metrics:
        fn = get_metric(name).fn
        values = [fn(scores, y) for scores, y in per_task]
        entry = {"tasks": dict(zip(data.info.task_names, values)), "mean": float(np.mean(values))}
        if name == "accuracy":  # TAAN's Omniglot table pools all test images of all tasks
            n = [len(y) for _, y in per_task]
            entry["pooled"] = float(np.average(values, weights=n))
        out[name] = entry
    return out


def improved(score: float, best: float, higher: bool) -> bool:
    """A NaN score (e.g. a diverged run) never counts as an improvement."""
    if math.isnan(score):
        return False
    return score > best if higher else score < best


def metric_names(resolved: ResolvedSpec, data: MTLData) -> list[str]:
    names = [data.info.primary_metric]  # always stored: selection and tables use it
    if resolved.spec.evaluation.metrics:
        return names + [m for m in resolved.spec.evaluation.metrics if m not in names]
    for task in data.info.tasks:
        names += [m for m in DEFAULT_METRICS[task.target] if m not in names]
    return names


def build_model(resolved: ResolvedSpec, method: ResolvedMethod, data: MTLData, seed: int = 0) -> MTLMethod:
    return method.cls(data.info, resolved.spec.backbone_for(method.entry), method.params_for(seed))


def train_run(resolved: ResolvedSpec, method: ResolvedMethod, seed: int, data: MTLData,
              progress: Progress | None = None) -> tuple[dict, MTLMethod]:
    """Train one method with one seed; return the result record (see results.py) and the best model."""
    spec, tr = resolved.spec, resolved.spec.training
    wall_start = time.perf_counter()
    if tr.threads:
        torch.set_num_threads(tr.threads)
    seed_everything(seed, tr.deterministic)
    device = resolve_device(tr.device)
    model = build_model(resolved, method, data, seed).to(device)
    optimizer = make_optimizer(resolved, model)
    sampler = TaskSampler(data.split("train"), tr.batch_per_task, seed)
    metrics, primary = metric_names(resolved, data), data.info.primary_metric
    higher = get_metric(primary).higher_is_better
    best = {"score": -np.inf if higher else np.inf, "iteration": 0, "state": None}
    history, bad_evals, start = [], 0, time.perf_counter()
    tasks = data.info.tasks

    for it in range(1, tr.iterations + 1):
        loss, reg = train_step(model, optimizer, sampler.next_batches(device), tasks, it)
        if it % tr.eval_every == 0 or it == tr.iterations:
            score = evaluate(model, data, tr.select_on, [primary], tr.eval_batch, device)[primary]["mean"]
            history.append({"iteration": it, "loss": loss.item(), "reg": None if reg is None else reg.item(),
                            f"{tr.select_on}_{primary}": score})
            if improved(score, best["score"], higher) or best["state"] is None:
                best.update(score=score, iteration=it, state=copy.deepcopy(model.state_dict()))
                bad_evals = 0
            else:
                bad_evals += 1
            if progress:
                progress(it, tr.iterations, {"loss": loss.item(), "select": score})
            if tr.patience and bad_evals >= tr.patience:
                break
        elif progress:
            progress(it, tr.iterations, {"loss": loss.item()})

    train_time = time.perf_counter() - start
    model.load_state_dict(best["state"])
    scores = {s: evaluate(model, data, s, metrics, tr.eval_batch, device) for s in ("val", "test")}
    record = {
        "spec_name": spec.name, "spec_file": str(resolved.file), "spec": spec.model_dump(mode="json"),
        "method": method.entry.name, "row": method.entry.row, "params": method.params_for(seed).model_dump(mode="json"),
        "seed": seed, "dataset": data.info.name, "tasks": data.info.task_names,
        "data_metadata": data.info.metadata,
        "primary_metric": primary, "selected_on": tr.select_on,
        # selecting on test, or on a split whose "validation" rows are test rows (Omniglot's paper_faithful)
        "paper_faithful": tr.select_on == "test" or bool(data.info.metadata.get("val_is_test")),
        "deterministic": tr.deterministic, "metrics": scores,
        "best_iteration": best["iteration"], "iterations_run": it, "history": history,
        "n_params": count_parameters(model), "train_time_s": train_time,
        "wall_time_s": time.perf_counter() - wall_start,
        "data_checksum": data.info.checksum, "env": fingerprint(device), "summary": model.summary(),
    }
    return record, model
