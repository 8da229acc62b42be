"""Methods that exist only for tests: one whose weights or buffers turn non-finite at a chosen step, and a
closed-form one (ridge regression heads on the raw inputs, fitted once, no optimizer)."""
from __future__ import annotations

import math

import torch

from mtlbench.methods.hard_share import HardShare
from mtlbench.nn.method import MTLMethod
from mtlbench.registry import METHODS


def register(monkeypatch, name: str, cls) -> None:
    """Register ``cls`` as ``name`` for one test (undone afterwards)."""
    METHODS.names()  # discover the real methods first, so the registry does not rediscover over the fake
    monkeypatch.setitem(METHODS._entries, name, cls)
    monkeypatch.setattr(cls, "registry_name", name, raising=False)


class PoisonedWeight(HardShare):
    """Hard-Share whose first weight becomes NaN after step ``AT`` (for seed ``SEED`` only, when set)."""

    AT, SEED = 7, None

    def after_step(self, step: int) -> None:
        if step == self.AT and self.SEED in (None, torch.initial_seed()):
            with torch.no_grad():
                next(self.parameters()).fill_(math.nan)


class PoisonedBuffer(HardShare):
    """Hard-Share with a buffer the loss never reads, set to +inf after step 12."""

    def __init__(self, info, backbone, params):
        super().__init__(info, backbone, params)
        self.register_buffer("gauge", torch.zeros(3))

    def after_step(self, step: int) -> None:
        if step == 12:
            self.gauge.fill_(math.inf)


class RidgeFit(MTLMethod):
    """Per task, ridge regression from the flattened input (and a bias) to the one-hot or multi-hot targets."""

    closed_form = True
    raw_inputs = True  # no trunk: reads the raw inputs
    fits = 0  # how many times fit ran, over all instances

    def __init__(self, info, backbone, params):
        super().__init__(info, backbone, params)
        for t, task in enumerate(info.tasks):
            self.register_buffer(f"w{t}", torch.zeros(math.prod(task.input_shape) + 1, task.n_classes))

    def forward_one(self, x: torch.Tensor, task: int) -> torch.Tensor:
        x = x.flatten(1)
        return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1) @ getattr(self, f"w{task}")

    def fit(self, train) -> None:
        type(self).fits += 1
        for t, (split, task) in enumerate(zip(train, self.info.tasks)):
            x, y = split.batch(torch.arange(len(split)))
            x = torch.cat([x.flatten(1).double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
            y = y.double() if task.target == "multilabel" else torch.nn.functional.one_hot(y, task.n_classes).double()
            w = torch.linalg.solve(x.T @ x + 1.0 * torch.eye(x.shape[1], dtype=torch.float64), x.T @ y)
            getattr(self, f"w{t}").copy_(w.float())


class InfGrad(torch.autograd.Function):
    """Identity forward; +inf gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.inf


class GradSpike(HardShare):
    """Hard-Share whose gradients are +inf at training step ``AT`` while its loss stays finite: what a float16
    overflow in the backward pass looks like."""

    AT = 5

    def __init__(self, info, backbone, params):
        super().__init__(info, backbone, params)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # a buffer: it resumes with the run

    def forward(self, xs):
        self.steps += 1  # forward(xs) runs once per training step; evaluation uses forward_task
        out = super().forward(xs)
        return [InfGrad.apply(o) for o in out] if int(self.steps) == self.AT else out


class FailsWhenAsked(HardShare):
    """Hard-Share that cannot be built while the environment says MTLBENCH_TEST_FAIL=1 (jobs inherit it)."""

    def __init__(self, info, backbone, params):
        import os
        if os.environ.get("MTLBENCH_TEST_FAIL") == "1":
            raise RuntimeError("asked to fail by MTLBENCH_TEST_FAIL")
        super().__init__(info, backbone, params)
