"""STL -- single-task learning: one independent network (trunk and head) per task.

The baseline every MTL table starts from (TAAN Table 1 "STL", MTAL "Single-task"). Tasks share nothing; a task
whose input shape differs from the trunk's reaches its trunk through its own stem, exactly as in the methods
that share, so the rows of a table differ only in what they share.
"""
from __future__ import annotations

import torch
from torch import nn

from mtlbench.nn.backbone import make_heads
from mtlbench.nn.layer_plan import Trunk
from mtlbench.nn.method import MTLMethod
from mtlbench.registry import METHODS


@METHODS.register("stl")
class STL(MTLMethod):
    """One trunk and one head per task, nothing shared.

    Options: none beyond the backbone. Limits: parameters grow linearly with the number of tasks (56.1M at
    TAAN Table 1's size)."""

    cite = "caruana1997"  # mtlbench/config/bibliography.yaml

    def __init__(self, info, backbone, params):
        super().__init__(info, backbone, params)
        self.trunks = nn.ModuleList(Trunk(self.plan) for _ in info.tasks)
        self.heads = make_heads(self.plan.out_features, info.tasks)

    def forward_one(self, h: torch.Tensor, task: int) -> torch.Tensor:
        return self.heads[task](self.trunks[task](h))
