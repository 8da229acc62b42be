"""STL -- single-task learning: one independent network (trunk and head) per task.

The baseline every MTL table starts from (TAAN Table 1 "STL", MTAL "Single-task"). Tasks share nothing, so
each task may have its own input shape.
"""
from __future__ import annotations

import torch
from torch import nn

from mtlbench.methods.backbone import build_trunk
from mtlbench.methods.base import MTLMethod
from mtlbench.registry import METHODS


@METHODS.register("stl")
class STL(MTLMethod):
    """One trunk and one head per task, nothing shared; tasks may have different input shapes.

    Options: none beyond the backbone. Limits: parameters grow linearly with the number of tasks (56.1M at
    TAAN Table 1's size)."""

    paper = "single-task baseline (one network per task)"

    def __init__(self, info, backbone, params):
        super().__init__(info, backbone, params)
        self.trunks = nn.ModuleList(build_trunk(t.input_shape, backbone) for t in info.tasks)
        self.heads = nn.ModuleList(
            nn.Linear(trunk.out_features, t.n_classes) for trunk, t in zip(self.trunks, info.tasks))

    def forward_task(self, x: torch.Tensor, task: int) -> torch.Tensor:
        return self.heads[task](self.trunks[task](x))
