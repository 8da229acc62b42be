"""MMoE -- Multi-gate Mixture-of-Experts (Ma, Zhao, Yi, Chen, Hong & Chi, "Modeling Task Relationships in
Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018). Beyond the TAAN and MTAL papers' tables;
the TAAN code (yingrliu/TAAN-MTL ``MMoE``) has it.

What it implements: E experts, each a full backbone trunk, shared by all tasks; per task t a gate
g_t(x) = softmax(W_t x) over the experts, a linear map of the raw (flattened) input without bias
(paper eq. 5; W_t in R^{E x d}); task t's features are sum_e g_t(x)_e f_e(x), followed by its head (the paper's
task tower is a linear head here, as in the TAAN code). All tasks' rows go through each expert in one call.

Options: ``num_experts`` (6, as the TAAN code), ``gate_std`` (gate weights ~ gate_std N(0, 1); 0.01 as the
TAAN code; 0 = uniform gates at the start), ``gate_bias`` (False, as the paper's formula).

Known limits: gates read the raw input, so for images the gate has E x C x H x W weights per task; every
expert is a full trunk, so the parameter count is about E times Hard-Share's trunk.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from pydantic import Field
from torch import nn

from mtlbench.methods._common import mixed_kind_problems, raise_if_refused, same_input_problems, segments_of
from mtlbench.methods.backbone import build_trunk, make_heads
from mtlbench.methods.base import MethodParams, MTLMethod
from mtlbench.registry import METHODS


class MMoEParams(MethodParams):
    num_experts: int = Field(default=6, ge=1)
    gate_std: float = Field(default=0.01, ge=0.0)
    gate_bias: bool = False


@METHODS.register("mmoe")
class MMoE(MTLMethod):
    """Shared experts (full trunks) mixed per task by a softmax gate on the raw input, then per-task heads.

    Params (YAML)::

        num_experts: 6     # as the TAAN code
        gate_std: 0.01     # gate weights ~ gate_std N(0, 1); 0 = uniform gates at the start
        gate_bias: false   # the paper's gate is softmax(W_t x), no bias
    """

    Params = MMoEParams
    paper = "Ma et al., Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts, KDD 2018"

    def __init__(self, info, backbone, params: MMoEParams):
        super().__init__(info, backbone, params)
        raise_if_refused(type(self), info, backbone, params)
        shape = info.tasks[0].input_shape
        self.experts = nn.ModuleList(build_trunk(shape, backbone) for _ in range(params.num_experts))
        self.gates = nn.ModuleList(nn.Linear(math.prod(shape), params.num_experts, bias=params.gate_bias)
                                   for _ in info.tasks)
        for gate in self.gates:
            nn.init.normal_(gate.weight, 0.0, params.gate_std)
            if gate.bias is not None:
                nn.init.zeros_(gate.bias)
        self.heads = make_heads(self.experts[0].out_features, info.tasks)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        segments = segments_of(xs)
        x = torch.cat(list(xs))
        experts = torch.stack([e(x, segments) for e in self.experts], dim=1)  # [rows, E, features]
        out = []
        for (t, _), x_t, f_t in zip(segments, xs, experts.split([len(x) for x in xs])):
            out.append(self.heads[t](self._mix(x_t, f_t, t)))
        return out

    def forward_task(self, x: torch.Tensor, task: int) -> torch.Tensor:
        experts = torch.stack([e(x, [(task, len(x))]) for e in self.experts], dim=1)
        return self.heads[task](self._mix(x, experts, task))

    def _mix(self, x: torch.Tensor, experts: torch.Tensor, task: int) -> torch.Tensor:
        gate = torch.softmax(self.gates[task](x.flatten(1)), dim=-1)  # [rows, E]
        return (gate.unsqueeze(-1) * experts).sum(1)

    def gate_means(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Mean gate of each task over a batch, [T, E] (which experts each task uses)."""
        with torch.no_grad():
            return torch.stack([torch.softmax(g(x.flatten(1)), -1).mean(0) for g, x in zip(self.gates, xs)])

    def summary(self) -> dict:
        return {"mmoe": {"experts": self.params.num_experts}}

    @classmethod
    def check(cls, info, backbone, params) -> list[str]:
        problems = mixed_kind_problems(info, "mmoe")
        return problems or same_input_problems(info, "mmoe", "feeds every task's input to the shared experts")
