"""MMoE -- Multi-gate Mixture-of-Experts [ma2018]. Beyond the TAAN and MTAL papers' tables; the TAAN code
(yingrliu/TAAN-MTL ``MMoE``) has it.

What it implements: E experts, each a full backbone trunk, shared by all tasks; per task t a gate
g_t(x) = softmax(W_t x) over the experts, a linear map of the (flattened) input without bias
(paper eq. 5; W_t in R^{E x d}); task t's features are sum_e g_t(x)_e f_e(x), followed by its head (the paper's
task tower is a linear head here, as in the TAAN code). All tasks' rows go through each expert in one call.
Tasks with other input shapes reach the experts through their stems; the gates read the same stemmed input
(the raw input itself when the task's stem is the identity, e.g. on homogeneous data).

Options: ``num_experts`` (6, as the TAAN code), ``gate_std`` (gate weights ~ gate_std N(0, 1); 0.01 as the
TAAN code; 0 = uniform gates at the start), ``gate_bias`` (False, as the paper's formula).

Known limits: gates read the raw input, so for images the gate has E x C x H x W weights per task; every
expert is a full trunk, so the parameter count is about E times Hard-Share's trunk.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pydantic import Field
from torch import nn

from mtlbench.nn.backbone import make_heads
from mtlbench.nn.layer_plan import Trunk, run_towers
from mtlbench.nn.method import MethodParams, MTLMethod
from mtlbench.nn.method_helpers import segments_of
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
    groups = {"gates": ("gates.*",)}
    cite = "ma2018"  # mtlbench/config/bibliography.yaml
    shared_params = ("experts.*",)  # the gates are one per task

    def __init__(self, info, backbone, params: MMoEParams):
        super().__init__(info, backbone, params)
        self.experts = nn.ModuleList(Trunk(self.plan) for _ in range(params.num_experts))
        self.gates = nn.ModuleList(nn.Linear(math.prod(self.plan.input_shape), params.num_experts,
                                             bias=params.gate_bias) for _ in info.tasks)
        for gate in self.gates:
            nn.init.normal_(gate.weight, 0.0, params.gate_std)
            if gate.bias is not None:
                nn.init.zeros_(gate.bias)
        self.heads = make_heads(self.plan.out_features, info.tasks)

    def forward_all(self, hs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        segments = segments_of(hs)
        experts = self._experts(torch.cat(list(hs)), segments)  # [rows, E, features]
        out = []
        for (t, _), h_t, f_t in zip(segments, hs, experts.split([len(h) for h in hs])):
            out.append(self.heads[t](self._mix(h_t, f_t, t)))
        return out

    def forward_one(self, h: torch.Tensor, task: int) -> torch.Tensor:
        return self.heads[task](self._mix(h, self._experts(h, [(task, len(h))]), task))

    def _experts(self, x: torch.Tensor, segments) -> torch.Tensor:
        towers = [e.blocks for e in self.experts]
        return torch.stack(run_towers(self.plan, towers, [x] * len(towers), segments), dim=1)

    def _mix(self, x: torch.Tensor, experts: torch.Tensor, task: int) -> torch.Tensor:
        gate = torch.softmax(self.gates[task](x.flatten(1)), dim=-1)  # [rows, E]
        return (gate.unsqueeze(-1) * experts).sum(1)

    def gate_means(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Mean gate of each task over a batch (raw inputs, as ``forward`` takes them), [T, E]."""
        with torch.no_grad():
            return torch.stack([torch.softmax(g(stem(x).flatten(1)), -1).mean(0)
                                for g, stem, x in zip(self.gates, self.stems, xs)])

    def summary(self) -> dict:
        return {"mmoe": {"experts": self.params.num_experts}}
