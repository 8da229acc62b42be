"""Hard-Share -- hard parameter sharing [caruana1997]: every hidden layer shared by all tasks, one linear head per
task. All tasks' batches go through each shared layer in one call, so a training step costs one forward of the
concatenated batch (this is the reference of every timing ratio).

It is also the MTAL tables' "Multi-task" row: the paper only says "multiple identical VGG networks"; we read it
as one VGG trunk shared by all tasks, each task reaching it through its own stem, with its own head."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from mtlbench.nn.backbone import ActFactory, make_heads, relu_factory
from mtlbench.nn.layer_plan import Trunk
from mtlbench.nn.method import MTLMethod
from mtlbench.nn.method_helpers import segments_of
from mtlbench.registry import METHODS


@METHODS.register("hard_share")
class HardShare(MTLMethod):
    """Every hidden layer shared by all tasks, a linear head per task.

    Options: none beyond the backbone. Tasks with other input shapes reach the shared trunk through their stems;
    BatchNorm layers see the concatenation of all tasks' batches."""

    cite = "caruana1997"  # mtlbench/config/bibliography.yaml
    shared_params = ("trunk.*",)
    task_blocks = True  # the trunk sees every task's rows in task blocks (per-task gradients in one backward)

    def __init__(self, info, backbone, params):
        super().__init__(info, backbone, params)
        self.trunk = Trunk(self.plan, self.activation_factory())
        self.heads = make_heads(self.trunk.out_features, info.tasks)

    def activation_factory(self) -> ActFactory:
        """The activation of every hidden layer; TAAN overrides this (and nothing else of the network)."""
        return relu_factory

    def forward_all(self, hs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        segments = segments_of(hs)
        features = self.trunk(torch.cat(list(hs)), segments).split([n for _, n in segments])
        return [head(f) for head, f in zip(self.heads, features)]

    def forward_one(self, h: torch.Tensor, task: int) -> torch.Tensor:
        return self.heads[task](self.trunk(h, [(task, len(h))]))
