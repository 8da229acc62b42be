"""The contract every MTL method satisfies. The trainer only ever calls what is here -- it never looks at a
method's name -- so a new method is one new file: subclass ``MTLMethod``, declare a ``Params`` model,
decorate with ``@METHODS.register("name")``."""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from mtlbench.data.base import DataInfo, TaskSplit
from mtlbench.methods.backbone import BackboneSpec


class MethodParams(BaseModel):
    """A method's own options; subclasses add fields. Unknown keys are errors, never ignored."""

    model_config = ConfigDict(extra="forbid")


class MTLMethod(nn.Module):
    Params: ClassVar[type[MethodParams]] = MethodParams
    paper: ClassVar[str] = ""  # citation shown by `mtlbench list methods`
    # True for a method trained by one closed-form ``fit`` instead of optimizer steps: the trainer then calls
    # fit once (no optimizer, no step loop, the fitted model is the selected one) and evaluates as usual.
    closed_form: ClassVar[bool] = False

    def __init__(self, info: DataInfo, backbone: BackboneSpec, params: MethodParams):
        super().__init__()
        self.info, self.backbone_spec, self.params = info, backbone, params

    # -- what the trainer calls ---------------------------------------------------------------------------
    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One input batch per task, in task order -> one logit matrix per task. Methods whose layers are
        shared override this to run all tasks' rows through each shared layer in one call."""
        return [self.forward_task(x, t) for t, x in enumerate(xs)]

    def forward_task(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Logits of one task for one batch (used at evaluation time)."""
        raise NotImplementedError

    def regularizer(self) -> torch.Tensor | None:
        """Added to the mean task loss once per step; None when the method has none."""
        return None

    def after_step(self, step: int) -> None:
        """Called after every optimizer step (MRN's covariance updates run here)."""

    def fit(self, train: list[TaskSplit]) -> None:
        """Closed-form methods only: fit the model to every task's training split (CPU tensors; move rows to
        the model's device as needed)."""
        raise NotImplementedError(f"{type(self).__name__} is trained by steps (closed_form is False)")

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups; methods with learning-rate multipliers override this."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def summary(self) -> dict[str, Any]:
        """Method-specific facts stored in the result record (chosen ranks, task-distance matrices...)."""
        return {}

    # -- what `validate` calls before anything is built ------------------------------------------------------
    @classmethod
    def check(cls, info: DataInfo, backbone: BackboneSpec, params: MethodParams) -> list[str]:
        """Reasons this method cannot run on this dataset with these options (empty when it can)."""
        return []


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def needs_same_input_shape(info: DataInfo, method: str) -> list[str]:
    if info.same_input_shape:
        return []
    shapes = sorted({t.input_shape for t in info.tasks})
    return [f"{method} shares its first layer across tasks, so every task needs the same input shape "
            f"(dataset {info.name!r} has {shapes}); use a per-task-stem method such as stl"]


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters, frozen parameters, and buffer entries (BatchNorm statistics, MRN precisions):
    papers differ in which of these their "# of params" includes, so all three are reported."""
    params = list(model.parameters())
    return {"trainable": sum(p.numel() for p in params if p.requires_grad),
            "frozen": sum(p.numel() for p in params if not p.requires_grad),
            "buffers": sum(b.numel() for b in model.buffers())}
