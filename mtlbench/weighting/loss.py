"""Loss weightings: functions of the task-loss vector (TorchJD's scalarizers), one ordinary backward pass.

Under torchrun every rank combines the same, all-reduced loss vector (step.py), so weights that depend on the
losses (DWA, FAMO, UW's gradient) are the one-process weights; a random weighting (RLW) draws from the random
stream every rank shares.
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torchjd import scalarization as S

from mtlbench.registry import WEIGHTINGS
from mtlbench.weighting.base import LossWeighting, StepContext, WeightingOptions


@WEIGHTINGS.register("ew")
class EqualWeighting(LossWeighting):
    """The mean of the task losses: the default, run by the plain training step (no weighting object)."""

    def combine(self, losses):
        return losses.mean()


class ScalarizerWeighting(LossWeighting):
    """A TorchJD scalarizer applied to the loss vector."""

    def __init__(self, options, ctx: StepContext):
        super().__init__(options, ctx)
        self.scalarizer = self.make(options, ctx)

    def make(self, options, ctx: StepContext) -> S.Scalarizer:
        raise NotImplementedError

    def combine(self, losses):
        return self.scalarizer(losses)

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        return []


@WEIGHTINGS.register("uw")
class Uncertainty(ScalarizerWeighting):
    """sum_t exp(-s_t)/2 L_t + s_t/2 with learned log-variances s (trained by the run's optimizer, lr of the
    spec, no weight decay)."""

    cite = "kendall2018"  # mtlbench/config/bibliography.yaml

    def make(self, options, ctx):
        return S.UW(ctx.n_tasks)

    def trained_parameters(self):
        return [self.scalarizer.log_var]


@WEIGHTINGS.register("imtl_l")
class IMTLLoss(ScalarizerWeighting):
    """IMTL-L: learned loss scales e^s_t L_t - s_t (trained by the run's optimizer)."""

    cite = "liu2021imtl"  # mtlbench/config/bibliography.yaml

    def make(self, options, ctx):
        return S.IMTLL(ctx.n_tasks)

    def trained_parameters(self):
        return [self.scalarizer.log_scale]


class DWAOptions(WeightingOptions):
    temperature: float = Field(default=2.0, gt=0, description="T of the softmax over loss ratios (paper: 2)")
    period: int | None = Field(default=None, ge=1, description="iterations per 'epoch' whose mean losses the "
                               "weights compare (default: one pass over the largest task's training split)")


@WEIGHTINGS.register("dwa")
class DynamicWeightAverage(ScalarizerWeighting):
    """Weights K softmax(L_k(e-1) / L_k(e-2) / T) from the mean losses of the two previous epochs; an epoch is
    ``period`` iterations (our runs count iterations, not epochs)."""

    Options = DWAOptions
    cite = "liu2019"  # mtlbench/config/bibliography.yaml

    def make(self, options, ctx):
        self.period = options.period or ctx.iterations_per_epoch
        self.calls = 0
        return S.DWA(options.temperature)

    def after_step(self, losses_after):
        self.calls += 1
        if self.calls % self.period == 0:
            self.scalarizer.step()

    def extra(self) -> dict[str, Any]:
        s = self.scalarizer
        return {"calls": self.calls, "loss_sum": s._loss_sum, "n_batches": s._n_batches,
                "previous": list(s._previous_averages)}

    def load_extra(self, state):
        s = self.scalarizer
        self.calls, s._loss_sum, s._n_batches = state["calls"], state["loss_sum"], state["n_batches"]
        s._previous_averages = list(state["previous"])


class FAMOOptions(WeightingOptions):
    lr: float = Field(default=0.025, ge=0, description="Adam step size of the task logits (paper: 0.025)")
    weight_decay: float = Field(default=1e-3, ge=0, description="the logits' regularisation (paper: 1e-3)")


@WEIGHTINGS.register("famo")
class FAMOWeighting(ScalarizerWeighting):
    """c sum_t z_t log L_t with z = softmax(w); w takes its own Adam step after each update from the change
    of the same batch's log-losses (recomputed after the step: one more forward, no backward)."""

    Options = FAMOOptions
    cite = "liu2023famo"  # mtlbench/config/bibliography.yaml
    needs_losses_after = True

    def make(self, options, ctx):
        return S.FAMO(ctx.n_tasks, lr=options.lr, weight_decay=options.weight_decay)

    def after_step(self, losses_after):
        self.scalarizer.update(losses_after)

    def extra(self):
        s = self.scalarizer
        return {"optimizer": None if s._optimizer is None else s._optimizer.state_dict(),
                "prev_losses": s._prev_losses}

    def load_extra(self, state):
        s = self.scalarizer
        s._prev_losses = state["prev_losses"]
        if state["optimizer"] is not None:
            s._optimizer = torch.optim.Adam([s._w], lr=s.lr, weight_decay=s.weight_decay)
            s._optimizer.load_state_dict(state["optimizer"])


@WEIGHTINGS.register("rlw")
class RandomLossWeighting(ScalarizerWeighting):
    """Weights softmax(N(0, I)) drawn anew at every step."""

    cite = "lin2022"  # mtlbench/config/bibliography.yaml

    def make(self, options, ctx):
        return S.Random()


@WEIGHTINGS.register("geometric_mean")
class GeometricMeanLoss(ScalarizerWeighting):
    """(prod_t L_t)^(1/T)."""

    cite = "chennupati2019"  # mtlbench/config/bibliography.yaml

    def make(self, options, ctx):
        return S.GeometricMean()


class STCHOptions(WeightingOptions):
    mu: float = Field(default=1.0, gt=0, description="smoothing of the Tchebycheff max (smaller: closer to max)")


@WEIGHTINGS.register("stch")
class SmoothTchebycheff(ScalarizerWeighting):
    """mu log sum_t exp(L_t / (T mu)): a smooth maximum of the (uniformly weighted) task losses."""

    Options = STCHOptions
    cite = "lin2024stch"  # mtlbench/config/bibliography.yaml

    def make(self, options, ctx):
        return S.STCH(options.mu)
