"""The contract every MTL method satisfies. The trainer only ever calls what is here -- it never looks at a
method's name -- so a new method is one new file: subclass ``MTLMethod``, declare a ``Params`` model,
decorate with ``@METHODS.register("name")``.

The base class owns what every method shares: the layer plan of its backbone (``self.plan``, shapes checked
when it is built) and one stem per task that maps the task's input to the trunk's input shape
(``self.stems``; the identity where a task's input already has it). A method implements ``forward_one`` (and,
to run all tasks at once, ``forward_all``) on inputs that have been through their stems.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from mtlbench.nn.backbone import BackboneSpec
from mtlbench.nn.layer_plan import plan_for
from mtlbench.nn.stems import build_stems
from mtlbench.store.dataset import DataInfo, TaskSplit


class MethodParams(BaseModel):
    """A method's own options; subclasses add fields. Unknown keys are errors, never ignored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MTLMethod(nn.Module):
    Params: ClassVar[type[MethodParams]] = MethodParams
    cite: ClassVar[str] = ""  # its paper's key in mtlbench/config/bibliography.yaml; docstrings cite as [key]
    # True for a method trained by one closed-form ``fit`` instead of optimizer steps: the trainer then calls
    # fit once (no optimizer, no step loop, the fitted model is the selected one) and evaluates as usual.
    closed_form: ClassVar[bool] = False
    # True for a method that reads every task's raw input and builds no trunk (a shallow method such as a
    # discriminant analysis on flattened inputs): no layer plan, identity stems, the backbone is not checked.
    raw_inputs: ClassVar[bool] = False
    # False for a method whose run draws no random numbers (a deterministic closed-form fit on the spec's fixed
    # split): every seed would repeat the same run, so a row of it trains and renders one seed (n = 1).
    uses_seed: ClassVar[bool] = True
    # Named optimizer groups of the method's own parameters: group -> fnmatch patterns of parameter names
    # (TAAN's {"alpha": ("*.act.alpha",)}). Matched first; every other parameter is in "heads" (heads.*),
    # "stems" (stems.*) or "trunk" (the rest: the shared trunk, or the per-task towers). Specs scale a group's
    # learning rate and weight decay by name (optimizer.lr_mult, optimizer.weight_decay_mult).
    groups: ClassVar[dict[str, tuple[str, ...]]] = {}
    # fnmatch patterns of the parameters every task's loss depends on (a shared trunk), less those matching
    # ``shared_params_exclude`` (per-task slices inside it, e.g. TAAN's alpha): gradient weightings (PCGrad,
    # MGDA, ...) aggregate the per-task gradients of these. Empty: the method shares none (STL), and gradient
    # weightings are refused.
    shared_params: ClassVar[tuple[str, ...]] = ()
    shared_params_exclude: ClassVar[tuple[str, ...]] = ()
    # True where the shared layers are called once per step on all tasks' rows in task blocks (Hard-Share,
    # TAAN): the per-task gradients of their weights then come from one backward pass (training/task_blocks.py)
    task_blocks: ClassVar[bool] = False

    def __init__(self, info: DataInfo, backbone: BackboneSpec, params: MethodParams):
        super().__init__()
        self.info, self.backbone_spec, self.params = info, backbone, params
        if self.raw_inputs:
            self.plan, self.stems = None, nn.ModuleList(nn.Identity() for _ in info.tasks)
        else:
            self.plan = plan_for(info, backbone)  # raises PlanError (one line) when the backbone does not fit
            self.stems = build_stems(info, self.plan.input_shape, backbone.resize)

    # -- what the trainer calls ---------------------------------------------------------------------------
    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One input batch per task, in task order -> one logit matrix per task."""
        return self.forward_all([stem(x) for stem, x in zip(self.stems, xs)])

    def forward_task(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Logits of one task for one batch (used at evaluation time)."""
        return self.forward_one(self.stems[task](x), task)

    # -- what a method implements, on inputs already through their stems -----------------------------------
    def forward_all(self, hs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Every task's batch -> every task's logits. Methods whose layers are shared override this to run all
        tasks' rows through each shared layer in one call."""
        return [self.forward_one(h, t) for t, h in enumerate(hs)]

    def forward_one(self, h: torch.Tensor, task: int) -> torch.Tensor:
        """One task's logits for its batch after its stem (the raw batch for ``raw_inputs`` methods)."""
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

    @classmethod
    def group_names(cls) -> list[str]:
        """Every optimizer group this method may have (some may be empty for a given dataset or options)."""
        return [*cls.groups, *COMMON_GROUPS]

    def group_of(self, name: str) -> str:
        """The optimizer group of the parameter called ``name``."""
        for group, patterns in self.groups.items():
            if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
                return group
        return next((g for g in ("heads", "stems") if name.startswith(g + ".")), "trunk")

    def named_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """group -> its trainable (name, parameter) pairs, in ``named_parameters`` order; every trainable
        parameter is in exactly one group."""
        out: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in self.group_names()}
        for name, p in self.named_parameters():
            if p.requires_grad:
                out[self.group_of(name)].append((name, p))
        return out

    def is_shared(self, name: str) -> bool:
        """Whether the parameter ``name`` is shared by all tasks (``shared_params``)."""
        return (any(fnmatch.fnmatch(name, p) for p in self.shared_params)
                and not any(fnmatch.fnmatch(name, p) for p in self.shared_params_exclude))

    def group_lr_mult(self) -> dict[str, float]:
        """The method's own learning-rate multipliers per group (NDDR's 100 on its reductions); the spec's
        ``optimizer.lr_mult`` multiplies on top."""
        return {}

    def summary(self) -> dict[str, Any]:
        """Method-specific facts stored in the result record (chosen ranks, task-distance matrices...)."""
        return {}

    def gradient_exempt(self) -> dict[str, str]:
        """Parameter-name patterns (fnmatch) that may get no gradient, or an all-zero one, in a training step,
        each with the reason (e.g. a pair weight whose pair shares no kernel in that step). Every other
        parameter must get a non-zero gradient from a step over all tasks (tests check it)."""
        return {}

    def is_gradient_exempt(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.gradient_exempt())

    # -- what `validate` calls before anything is built ------------------------------------------------------
    @classmethod
    def check(cls, info: DataInfo, backbone: BackboneSpec, params: MethodParams) -> list[str]:
        """Reasons this method cannot run on this dataset with these options (empty when it can). The backbone's
        shapes are checked before this (``plan.backbone_problems``)."""
        return []


COMMON_GROUPS = ("heads", "stems", "trunk")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters (stems included), of them the per-task stems', frozen parameters, and buffer
    entries (BatchNorm statistics, MRN precisions): papers differ in which of these their "# of params"
    includes, so all are reported."""
    params = list(model.parameters())
    stems = getattr(model, "stems", None)
    return {"trainable": sum(p.numel() for p in params if p.requires_grad),
            "stems": count_parameters(stems) if isinstance(stems, nn.Module) else 0,
            "frozen": sum(p.numel() for p in params if not p.requires_grad),
            "buffers": sum(b.numel() for b in model.buffers())}
