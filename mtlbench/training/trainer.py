"""The training loop, small enough to hold in mind (nanoGPT's habit):

    every iteration: one mini-batch per task -> mean task loss + the method's regularizer -> one optimizer step
                     (step.py); a non-finite loss stops the run as diverged
    every eval_every iterations: score the selection split; keep the best weights (a CPU copy); stop after
                     `patience` evaluations without improvement
    every checkpoint_every iterations: save the whole TrainState (state.py) so a killed run resumes exactly
    at the end:      restore the best weights, score val and test, return one result record (record.py)

A method with a closed-form fit (``MTLMethod.closed_form``) is fitted once instead of stepped. The trainer never
looks at a method's name and never prints: progress goes to an optional callback. In a data-parallel run (``d``,
distributed.py) every rank runs this loop on its slice of each batch; rank 0 alone evaluates and scores.
"""
from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable

import numpy as np
import torch

from mtlbench.config.resolved import ResolvedMethod, ResolvedSpec
from mtlbench.errors import UsageError
from mtlbench.metrics import get_metric
from mtlbench.nn import fast_conv
from mtlbench.nn.method import MTLMethod
from mtlbench.results import RunRecord
from mtlbench.store.dataset import MTLData
from mtlbench.training.distributed import SINGLE, Dist, convert_batchnorm, unwrap, wrap
from mtlbench.training.evaluate import evaluate, metric_names
from mtlbench.training.precision import Precision
from mtlbench.training.record import make_record
from mtlbench.training.run_plan import RunCell
from mtlbench.training.sampler import TaskSampler
from mtlbench.training.state import TrainState
from mtlbench.training.step import Objective, make_optimizer, train_step
from mtlbench.weighting import build_weighting

Progress = Callable[[int, int, dict], None]  # (iteration, total, {"loss": ..., "select": score at evaluations})
Checkpoint = Callable[[TrainState], None]


class Diverged(Exception):
    """A non-finite loss, regularizer or weight; the message says which, the iteration where it was seen."""

    def __init__(self, iteration: int, what: str):
        self.iteration = iteration
        super().__init__(f"diverged at iteration {iteration}: {what}")


def resolve_device(name: str, d: Dist = SINGLE) -> torch.device:
    """The spec's device; in a data-parallel run on CUDA, each rank's own GPU (its local rank)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)  # the spec schema has checked the string
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"training.device: {name!r} asked for, but this torch build sees no CUDA device "
                         "(use auto or cpu)")
    if device.type == "cuda" and d.world > 1:
        device = torch.device("cuda", d.local_rank)
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:  # cuBLAS is deterministic only with a fixed workspace; must be set before its first use
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: a CUDA op without a deterministic kernel must not abort a long run; CPU runs are bit-exact.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def build_model(resolved: ResolvedSpec, method: ResolvedMethod, data: MTLData, seed: int = 0) -> MTLMethod:
    model = method.cls(data.info, resolved.spec.backbone_for(method.entry), method.params_for(seed))
    return fast_conv.configure(model, resolved.spec.training.kernel)


def check_finite(iteration: int, loss: float, reg: torch.Tensor | None, precision: Precision | None = None) -> None:
    if not math.isfinite(loss):
        raise Diverged(iteration, f"the task loss is {loss}")
    if reg is not None and not math.isfinite(r := reg.item()):
        raise Diverged(iteration, f"the regularizer is {r}")
    if precision is not None and precision.collapsed():  # skipped fp16 steps alone are not a divergence
        raise Diverged(iteration, f"the fp16 gradients stayed non-finite down to a loss scale below 2**-24 "
                                  f"({precision.skipped} steps skipped)")


def check_weights(model: MTLMethod, iteration: int) -> None:
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise Diverged(iteration, f"{name} has non-finite values")


def train_run(resolved: ResolvedSpec, cell: RunCell, data: MTLData, progress: Progress | None = None,
              resume: dict | None = None, checkpoint: Checkpoint | None = None,
              d: Dist = SINGLE) -> tuple[RunRecord, MTLMethod]:
    """Train one method with one seed, from ``resume`` (a TrainState.state_dict of this run) when given; return
    the result record and the model with its selected weights. On ranks other than 0 of a data-parallel run
    the record carries no scores (rank 0 writes the run's record)."""
    tr = resolved.spec.training
    wall_start = time.perf_counter()
    if tr.threads:
        torch.set_num_threads(tr.threads)
    seed_everything(cell.seed, tr.deterministic)
    device = resolve_device(tr.device, d)
    model = build_model(resolved, cell.method, data, cell.seed)
    if d.world > 1 and tr.sync_batchnorm:
        convert_batchnorm(model, d.sync_group)
    model.to(device)
    if model.closed_form:
        return fit_run(resolved, cell, data, model, device, wall_start, progress)
    primary, precision = data.info.primary_metric, Precision(tr.amp, device)
    sampler = TaskSampler(data.split("train"), tr.batch_per_task, cell.seed, d.rank, d.world)
    weighting = build_weighting(cell.method.entry.weighting, len(data.info.tasks),
                                [len(s) for s in data.split("train")], tr.batch_per_task)
    if weighting is not None:
        weighting.to(device)
    state = TrainState(model, make_optimizer(resolved, model, weighting), sampler,
                       get_metric(primary).higher_is_better, precision, weighting)
    if resume is not None:
        state.load_state_dict(resume)
    earlier = state.train_time
    objective = Objective(model, data.info.tasks, precision, weighting)
    if weighting is None:  # a weighted step sums its gradients over the ranks itself (weighted.py)
        objective = wrap(objective, d, device)
    env = {"world_size": d.world}
    try:
        run_steps(state, objective, data, resolved, device, progress, checkpoint, d)
    except Diverged as e:
        if weighting is not None:
            env["backward_passes_per_step"] = weighting.backward_passes
        return make_record(resolved, cell, data, model, device, status="diverged", failure=str(e),
                           iterations_run=e.iteration, history=state.history, train_time_s=state.train_time,
                           wall_time_s=earlier + time.perf_counter() - wall_start, env_extra=env), model
    if weighting is not None:
        env["backward_passes_per_step"] = weighting.backward_passes
    model.load_state_dict(state.best_weights)
    metrics = final_scores(resolved, model, data, device) if d.main else None
    return make_record(resolved, cell, data, model, device, metrics=metrics, best_iteration=state.best_iteration,
                       iterations_run=state.iteration, history=state.history, train_time_s=state.train_time,
                       wall_time_s=earlier + time.perf_counter() - wall_start, env_extra=env), model


def run_steps(state: TrainState, objective, data: MTLData, resolved: ResolvedSpec, device: torch.device,
              progress: Progress | None, checkpoint: Checkpoint | None, d: Dist = SINGLE) -> None:
    tr = resolved.spec.training
    primary, every = data.info.primary_metric, tr.checkpoint_every or tr.eval_every
    score_key = f"{tr.select_on}_{primary}"
    session_start, earlier = time.perf_counter(), state.train_time
    while not state.finished(tr.iterations, tr.patience):
        it = state.iteration = state.iteration + 1
        batches = state.sampler.next_batches(device)
        loss, reg, _ = train_step(objective, state.optimizer, batches, it, d, state.sampler.totals)
        info = {"loss": loss.item()}
        check_finite(it, info["loss"], reg, state.precision)
        if it % tr.eval_every == 0 or it == tr.iterations:
            check_weights(state.model, it)
            info["select"] = selection_score(state, data, tr, device, d)
            entry = {"iteration": it, "loss": info["loss"], "reg": None if reg is None else reg.item(),
                     score_key: info["select"], "task_loss": task_losses(objective, data.info.task_names, d)}
            if state.precision.scaler is not None:
                entry["skipped_steps"] = state.precision.skipped
            if state.weighting is not None:  # ew runs store no weights: their records are as before
                entry.update(weighting_entry(state.weighting))
            state.history.append(entry)
            state.evaluated(info["select"])
        state.train_time = earlier + time.perf_counter() - session_start
        if checkpoint and it % every == 0 and not state.finished(tr.iterations, tr.patience):
            check_weights(state.model, it)
            checkpoint(state)
        if progress:
            progress(it, tr.iterations, info)


def weighting_entry(weighting) -> dict:
    """What a weighted run's history adds at each evaluation: the task weights of the last step (null for an
    aggregator that is no weighted combination: GradDrop, ConFIG) and the backward passes it took."""
    weights = weighting.last_weights
    return {"task_weights": None if weights is None else [float(v) for v in weights.cpu()],
            "backward_passes": weighting.backward_passes}


def task_losses(objective, names: list[str], d: Dist) -> dict[str, float]:
    """Each task's loss at this step (MTAL Figure 12's curves), summed over data-parallel ranks as the loss is."""
    return dict(zip(names, d.sum(torch.stack(unwrap(objective).last_task_losses)).tolist()))


def selection_score(state: TrainState, data: MTLData, tr, device: torch.device, d: Dist) -> float:
    """The selection split's mean primary metric, scored by rank 0 and shared with every rank."""
    primary = data.info.primary_metric
    if not d.main:
        return d.broadcast(None)
    return d.broadcast(evaluate(state.model, data, tr.select_on, [primary], tr.eval_batch, device)[primary]["mean"])


def fit_run(resolved: ResolvedSpec, cell: RunCell, data: MTLData, model: MTLMethod, device: torch.device,
            wall_start: float, progress: Progress | None) -> tuple[RunRecord, MTLMethod]:
    """A closed-form method: one fit on the training splits, no optimizer; the fitted model is the selected one."""
    start = time.perf_counter()
    model.fit(data.split("train"))
    fit_time = time.perf_counter() - start
    if progress:
        progress(1, 1, {})
    common = dict(trained_by="fit", iterations_run=0, history=[], train_time_s=fit_time)
    try:
        check_weights(model, 0)
    except Diverged as d:
        return make_record(resolved, cell, data, model, device, status="diverged", failure=str(d),
                           wall_time_s=time.perf_counter() - wall_start, **common), model
    return make_record(resolved, cell, data, model, device, metrics=final_scores(resolved, model, data, device),
                       best_iteration=0, wall_time_s=time.perf_counter() - wall_start, **common), model


def final_scores(resolved: ResolvedSpec, model: MTLMethod, data: MTLData, device: torch.device) -> dict:
    metrics, batch = metric_names(resolved, data), resolved.spec.training.eval_batch
    return {s: evaluate(model, data, s, metrics, batch, device) for s in ("val", "test")}
