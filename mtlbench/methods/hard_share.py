"""Hard-Share -- hard parameter sharing (Caruana, 1997): every hidden layer shared by all tasks, one linear
head per task. All tasks' batches go through each shared layer in one call, so a training step costs one
forward of the concatenated batch (this is the reference of every timing ratio)."""
from __future__ import annotations

from typing import Sequence

import torch

from mtlbench.methods.backbone import ActFactory, build_trunk, make_heads, relu_factory
from mtlbench.methods.base import MTLMethod, needs_same_input_shape
from mtlbench.registry import METHODS


@METHODS.register("hard_share")
class HardShare(MTLMethod):
    """Every hidden layer shared by all tasks, a linear head per task.

    Options: none beyond the backbone. Limits: needs the same input shape for every task (refused otherwise);
    BatchNorm layers (conv backbone) see the concatenation of all tasks' batches."""

    paper = "Caruana, Multitask Learning, Machine Learning 28 (1997)"

    def __init__(self, info, backbone, params):
        super().__init__(info, backbone, params)
        self.trunk = build_trunk(info.tasks[0].input_shape, backbone, self.activation_factory())
        self.heads = make_heads(self.trunk.out_features, info.tasks)

    def activation_factory(self) -> ActFactory:
        """The activation of every hidden layer; TAAN overrides this (and nothing else of the network)."""
        return relu_factory

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        sizes = [len(x) for x in xs]
        features = self.trunk(torch.cat(list(xs)), list(enumerate(sizes))).split(sizes)
        return [head(f) for head, f in zip(self.heads, features)]

    def forward_task(self, x: torch.Tensor, task: int) -> torch.Tensor:
        return self.heads[task](self.trunk(x, [(task, len(x))]))

    @classmethod
    def check(cls, info, backbone, params):
        return needs_same_input_shape(info, cls.registry_name)
