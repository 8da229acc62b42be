"""NDDR-CNN -- neural discriminative dimensionality reduction [gao2019].

What it implements: one tower (the backbone trunk) and one head per task; after chosen layers (default: every
stage end -- the five pooling stages of a vgg backbone, as the paper places its five NDDR layers after VGG-16's
pooling stages; every layer of the mlp and conv backbones) the towers' features of the same examples are
concatenated along channels and, for each task t, reduced back to C channels:

    F~_t = act(BN_t(W_t [F_1; ...; F_T]))      W_t: a 1x1 convolution T*C -> C without bias

(for dense layers a Linear(T*C -> C) and BatchNorm1d). The official code follows the 1x1 conv with BatchNorm
(decay 0.95, i.e. momentum 0.05 here) and ReLU, as its network-wide defaults; both are options. All T units of a
layer run as one T*C -> T*C 1x1 convolution whose output block t is task t's (its BatchNorm channels are task
t's own).

The original is two-task only. For T tasks the diagonal init puts ``alpha`` on the task's own block (alpha I)
and ``beta`` on every other task's block (beta I), beta = (1 - alpha) / (T - 1) by default, so each output is a
convex mix at the start (the paper's (0.9, 0.1) for T = 2); ``beta`` can be given. Cost: each NDDR layer holds
T * (T * C * C) weights (T^2 C^2: 268M per layer for 16 tasks of width 1024) plus 2 T C BatchNorm parameters.

Options:
- ``init``: ``diag`` (paper; ``alpha``, ``beta``) or ``xavier`` (each task's T*C -> C conv Xavier-uniform).
- ``lr_mult``: learning-rate multiplier of the NDDR 1x1 weights (100 as the official code for the diagonal
  init; it used 1000 for Xavier); the NDDR BatchNorm parameters train at the base rate. Weight decay is the
  optimizer's (``optimizer.weight_decay``), on every weight as in the official code.
- ``activation``: ``relu`` (official code) | ``none``; ``batch_norm`` (true) and ``bn_momentum`` (0.05).
- ``positions``: ``stages`` | ``all`` | a list of layer indices or names (``conv3_3``, ``fc1``).
- ``tower_init``: ``scratch`` or ``stl`` (the paper starts from single-task networks; reads ``stl_checkpoint``).

Multi-input data (one batch per task): as for Cross-Stitch, every tower runs on the concatenation of all T task
batches (T tower passes over T batches per iteration, O(T^2)); task t's logits are read from tower t on its own
rows. Tasks with other input shapes reach the towers through their stems. With ``init: diag, alpha: 1,
beta: 0`` and ``batch_norm: false`` the network computes exactly what independent towers (STL) compute.
Known limits: the paper's "shortcut" variant (NDDR outputs of all stages fed to the heads) is not implemented.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from mtlbench.nn.layer_plan import Layer
from mtlbench.nn.method import MethodParams
from mtlbench.nn.method_helpers import Positions, raise_if_refused
from mtlbench.nn.towers import FusedTowers
from mtlbench.registry import METHODS


class NDDRParams(MethodParams):
    init: Literal["diag", "xavier"] = "diag"
    alpha: float = Field(default=0.9, description="diag init: weight of the task's own features")
    beta: float | Literal["auto"] = Field(default="auto", description="diag init: weight of each other task's "
                                                                       "features; auto = (1 - alpha) / (T - 1)")
    lr_mult: float = Field(default=100.0, gt=0.0)
    activation: Literal["relu", "none"] = "relu"
    batch_norm: bool = True
    bn_momentum: float = Field(default=0.05, gt=0.0, le=1.0)
    positions: Positions = "stages"
    tower_init: Literal["scratch", "stl"] = "scratch"
    stl_checkpoint: str | None = None


class NDDRUnit(nn.Module):
    """The T per-task NDDR layers after one layer, as one T*C -> T*C 1x1 map."""

    def __init__(self, n_tasks: int, layer: Layer, params: NDDRParams):
        super().__init__()
        T, C = n_tasks, layer.width
        conv = layer.kind == "conv"
        self.reduce = nn.Conv2d(T * C, T * C, 1, bias=False) if conv else nn.Linear(T * C, T * C, bias=False)
        bn = nn.BatchNorm2d if conv else nn.BatchNorm1d
        self.norm = bn(T * C, momentum=params.bn_momentum) if params.batch_norm else nn.Identity()
        self.relu = params.activation == "relu"
        with torch.no_grad():
            self.reduce.weight.copy_(initial_weight(T, C, params).view_as(self.reduce.weight))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: every tower's features of the same rows, [T, N, C, ...] -> the fused features, same shape."""
        T, N = h.shape[:2]
        x = h.transpose(0, 1).reshape(N, -1, *h.shape[3:])  # [N, T*C, ...]: [F_1; ...; F_T] on the channel axis
        z = self.norm(self.reduce(x))
        z = torch.relu(z) if self.relu else z
        return z.view(N, T, *h.shape[2:]).transpose(0, 1).contiguous()  # the next layer sees the usual layout


def initial_weight(T: int, C: int, params: NDDRParams) -> torch.Tensor:
    """[T*C (out), T*C (in)]: row block t is task t's reduction of [F_1; ...; F_T]."""
    if params.init == "xavier":
        w = torch.empty(T * C, T * C)
        for t in range(T):  # per task: a T*C -> C map (fan_in T*C, fan_out C)
            nn.init.xavier_uniform_(w[t * C:(t + 1) * C])
        return w
    beta = params.beta
    if beta == "auto":
        beta = (1.0 - params.alpha) / (T - 1) if T > 1 else 0.0
    blocks = torch.full((T, T), float(beta))
    blocks.fill_diagonal_(params.alpha)
    return torch.kron(blocks, torch.eye(C))


@METHODS.register("nddr")
class NDDR(FusedTowers):
    """One tower per task; after chosen layers each task's features are a learned 1x1 reduction (+ BN, ReLU) of
    all towers' concatenated features. The original is two-task only; cost T*T*C*C weights per NDDR layer.

    Params (YAML)::

        init: diag               # diag (alpha on the task's own block, beta elsewhere) | xavier
        alpha: 0.9
        beta: auto               # auto = (1 - alpha) / (T - 1); the paper's (0.9, 0.1) for two tasks
        lr_mult: 100             # learning-rate multiplier of the NDDR weights (official code: 100; 1000 for xavier)
        activation: relu         # relu (official code) | none
        batch_norm: true
        bn_momentum: 0.05        # TF decay 0.95
        positions: stages        # stages | all | [layer indices or names]
        tower_init: scratch      # scratch | stl (needs stl_checkpoint)
        stl_checkpoint: null
    """

    Params = NDDRParams
    # the 1x1 reduction weights (lr_mult scales their learning rate) and the BatchNorm after them
    groups = {"reductions": ("units.*.reduce.weight",), "reduction_norms": ("units.*.norm.*",)}
    cite = "gao2019"  # mtlbench/config/bibliography.yaml

    def __init__(self, info, backbone, params: NDDRParams):
        super().__init__(info, backbone, params)
        raise_if_refused(type(self), info, backbone, params)
        self.build_towers()
        self.units = nn.ModuleList(NDDRUnit(info.n_tasks, self.plan.layers[i], params) for i in self.positions)
        self.init_towers()

    def fuse_units(self) -> dict:
        return dict(zip(self.positions, self.units))

    def group_lr_mult(self) -> dict[str, float]:
        return {"reductions": self.params.lr_mult}

    def summary(self) -> dict:
        return {"nddr": {**self.tower_summary(),
                         "weights_per_layer": [unit.reduce.weight.numel() for unit in self.units]}}

    @classmethod
    def check(cls, info, backbone, params) -> list[str]:
        return cls.tower_problems(info, backbone, params)
