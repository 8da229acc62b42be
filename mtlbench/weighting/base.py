"""What every loss weighting is: how one training step combines the tasks' losses (or their gradients) into
the update. ``ew`` (the mean of the task losses) is no object at all: the step then runs exactly as it always
did, so ew records keep their numbers and identities.

Two kinds, one contract:

- ``LossWeighting`` (``kind = "loss"``): a function of the loss vector (TorchJD's scalarizers: UW, DWA,
  FAMO, ...). One ordinary backward pass; every parameter gets the gradient of the combined loss.
- ``GradientWeighting`` (``kind = "gradient"``): a function of the per-task gradients of the parameters
  every task shares (TorchJD's aggregators: PCGrad, MGDA, UPGrad, ...). The shared parameters get the
  aggregated vector; every other parameter (heads, per-task activations) gets its own task's gradient, as in
  TorchJD's ``mtl_backward`` and LibMTL. Needs a method that declares shared parameters
  (``MTLMethod.shared_params``).

A weighting's internal state (UW's log-variances, DWA's loss history, FAMO's logits and their Adam moments,
GradVac's and Nash-MTL's running quantities) is saved with the run's resumable state (``state_dict`` /
``load_state_dict``: tensors and plain values only, so ``torch.load(weights_only=True)`` reads them back).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn


class WeightingOptions(BaseModel):
    """A weighting's own options; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class StepContext:
    """What a weighting may need to know about the run when it is built."""

    n_tasks: int
    iterations_per_epoch: int  # iterations that draw as many rows as the largest task's training split


class Weighting(nn.Module):
    Options: ClassVar[type[WeightingOptions]] = WeightingOptions
    kind: ClassVar[str] = "loss"
    cite: ClassVar[str] = ""  # its paper's key in mtlbench/config/bibliography.yaml ("" for ew)
    # modules it imports only when built (the solver aggregators' cvxpy); `validate` refuses it when missing
    requires: ClassVar[tuple[str, ...]] = ()
    install: ClassVar[str] = ""

    def __init__(self, options: WeightingOptions, ctx: StepContext):
        super().__init__()
        self.options, self.ctx = options, ctx
        self.last_weights: torch.Tensor | None = None  # the task weights of the last step (history)
        self.backward_passes = 1  # backward passes through the network in the last step
        self.batched = True  # per-task gradients in one batched pass until the graph refuses (weighted.py)

    def trained_parameters(self) -> list[nn.Parameter]:
        """Parameters the run's optimizer trains (UW's log-variances); FAMO steps its logits itself."""
        return []

    @classmethod
    def missing(cls) -> list[str]:
        return [m for m in cls.requires if importlib.util.find_spec(m) is None]

    # -- resumable state beyond nn.Module's parameters and buffers ------------------------------------------
    def extra(self) -> dict[str, Any]:
        return {}

    def load_extra(self, state: dict[str, Any]) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {"module": self.state_dict(), "extra": self.extra()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["module"])
        self.load_extra(state["extra"])

    def after_step(self, losses_after: torch.Tensor | None) -> None:
        """Called after the optimizer step; ``losses_after`` (the same batch's losses, recomputed) only when
        ``needs_losses_after``."""

    needs_losses_after: ClassVar[bool] = False


class LossWeighting(Weighting):
    kind = "loss"

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        """The task-loss vector [T] (the whole batch's, also across ranks) -> the scalar to minimise."""
        raise NotImplementedError


class GradientWeighting(Weighting):
    kind = "gradient"
    # whether the task-specific parameters get the weighted task gradients (GradNorm weighs losses) or each
    # its own task's gradient unweighted (the aggregators: only the shared parameters are aggregated)
    weighs_task_parameters: ClassVar[bool] = False

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The per-task gradients of the shared parameters [T, n] (and the task losses [T]) -> (the update
        direction [n], the weight of each task's row when the aggregator is a weighted combination, else
        None)."""
        raise NotImplementedError


def torch_state(value: Any) -> Any:
    """numpy arrays -> tensors, recursively: what a weights-only checkpoint can hold."""
    import numpy as np
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, dict):
        return {k: torch_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(torch_state(v) for v in value)
    return value
