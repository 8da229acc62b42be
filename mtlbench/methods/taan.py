"""TAAN -- Task Adaptive Activation Network [liu2020].

Every hidden layer's weights W and bias are shared by all tasks (as Hard-Share); each task t has its own
activation F_t(x) = max(0, x) + sum_i alpha[t, i] max(0, b_i - x) with hinges b shared within the layer
(mtlbench.taan.AdaptiveActivation, computed by the exact fast algorithm). Optional functional regularizers
(trace norm, cosine, distance) are evaluated once per step from closed forms (mtlbench.taan.functional),
summed over layers and multiplied by ``reg_coef``.

Speed: the activation runs on kernels fused by torch.compile (``kernel: auto``, the default; eager ATen
kernels where compiling is not possible or the input is small, ``kernel: eager`` to skip compiling). In
evaluation (no gradient) it computes the values alone and keeps nothing for backward.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, field_validator

from mtlbench.io import float32_list
from mtlbench.methods.hard_share import HardShare
from mtlbench.nn.backbone import ActFactory
from mtlbench.nn.method import MethodParams
from mtlbench.registry import METHODS
from mtlbench.taan import AdaptiveActivation, cosine_matrix, cosine_reg, distance_matrix, distance_reg, trace_norm_reg
from mtlbench.taan.options import AlphaInit, BInit, GridInit, ZeroInit


class TAANParams(MethodParams):
    """TAAN's options; YAML layout in ``TAAN``'s docstring."""

    M: int = Field(default=64, ge=1, le=32767, description="hinges (basis functions) per layer")
    b_mode: Literal["fixed", "learned"] = "fixed"
    b_init: BInit = GridInit()
    alpha_init: AlphaInit = ZeroInit()
    gmm: list[tuple[float, float, float]] | None = Field(
        default=None, description="measure of the metric: null = N(0,1), else [[pi, mu, sigma], ...]")
    reg: Literal["none", "tn", "cos", "dis"] = "none"
    reg_coef: float = Field(default=0.1, ge=0.0, description="regularization coefficient c")
    dis_power: Literal[1, 2] = 1
    fidelity: Literal["paper", "taan_code"] = "paper"
    kernel: Literal["auto", "compiled", "eager"] = Field(
        default="auto", description="activation kernels: auto (compiled where it pays, else eager) | "
        "compiled (torch.compile) | eager (no compiler needed); the same function either way")

    @field_validator("gmm")
    @classmethod
    def _valid_mixture(cls, gmm):
        if gmm is None:
            return gmm
        if not gmm:
            raise ValueError("gmm needs at least one [pi, mu, sigma] component (or null for N(0,1))")
        for pi, _, sigma in gmm:
            if pi < 0 or sigma <= 0:
                raise ValueError(f"gmm component [{pi}, _, {sigma}] needs pi >= 0 and sigma > 0")
        total = sum(c[0] for c in gmm)
        if not math.isclose(total, 1.0, rel_tol=1e-6):
            raise ValueError(f"gmm weights must sum to 1, got {total}")
        return gmm


@METHODS.register("taan")
class TAAN(HardShare):
    """Hard-Share's network (shared layers, all tasks' rows through each layer in one call, per-task heads) with
    per-task adaptive activations; optional functional regularizer.

    Params (YAML)::

        M: 64                                 # hinges per layer (paper: YouTube-8M 64, Omniglot 32)
        b_mode: fixed                         # fixed (buffer) | learned (parameter, kept sorted)
        b_init: {kind: grid, lo: -3, hi: 3}   # or {kind: uniform, lo: -0.5, hi: 0.5} (authors' code)
        alpha_init: {kind: zero}              # or {kind: normal, std: 0.01} (authors' code)
        gmm: null                             # metric measure: null = N(0,1), or [[pi, mu, sigma], ...]
        reg: none                             # none | tn | cos | dis
        reg_coef: 0.1                         # c (the authors' README uses 0.1; their code defaults to 1.0)
        dis_power: 1                          # D_st = d(F_s, F_t)^dis_power (paper's "d^2" read literally: 2)
        fidelity: paper                       # paper | taan_code (row-norm "trace norm", relu(b) cosine)
        kernel: auto                          # auto | compiled | eager: how the activation is computed

    A bare kind is accepted for the inits (``b_init: uniform``, ``alpha_init: normal``) with default numbers.
    With alpha_init zero and reg none the network computes exactly what Hard-Share computes. BatchNorm before
    the activation is the backbone's option (``conv_batch_norm``, ``dense_batch_norm``), as for every method.
    """

    Params = TAANParams
    groups = {"alpha": ("*.act.alpha",), "hinges": ("*.act.b",)}  # per-task alpha; b when b_mode is learned
    cite = "liu2020"  # mtlbench/config/bibliography.yaml
    shared_params_exclude = ("*.act.alpha",)  # one row per task: each task's own activation

    def activation_factory(self) -> ActFactory:
        p = self.params
        n_tasks = self.info.n_tasks

        def adaptive(layer: int, width: int) -> AdaptiveActivation:
            return AdaptiveActivation(n_tasks, p.M, p.b_mode, p.b_init, p.alpha_init, p.kernel)
        return adaptive

    def adaptive_layers(self) -> list[AdaptiveActivation]:
        return [act for _, act in self.named_adaptive_layers()]

    def named_adaptive_layers(self) -> list[tuple[str, AdaptiveActivation]]:
        """(layer name in the plan -- fc1, conv2, conv3_1 ... --, its adaptive activation)."""
        return [(layer.name, block.act) for layer, block in zip(self.plan.layers, self.trunk.blocks)
                if isinstance(block.act, AdaptiveActivation)]

    def layer_regularizer(self, layer: AdaptiveActivation) -> torch.Tensor:
        p = self.params
        alpha, b = layer.ordered()
        if p.reg == "tn":
            return trace_norm_reg(alpha, fidelity=p.fidelity)
        if p.reg == "cos":
            return cosine_reg(alpha, b, p.gmm, fidelity=p.fidelity)
        return distance_reg(alpha, b, p.gmm, power=p.dis_power)

    def regularizer(self) -> torch.Tensor | None:
        """c * sum over adaptive layers of the chosen closed-form regularizer (once per step)."""
        if self.params.reg == "none":
            return None
        return self.params.reg_coef * sum(self.layer_regularizer(layer) for layer in self.adaptive_layers())

    @torch.no_grad()
    def summary(self) -> dict:
        """Per adaptive layer: the T x T distance d(F_s, F_t) and cosine matrices (the paper's Figures 2/4
        heat maps), with alpha and the sorted hinges b. Stored at float32 precision, the precision of alpha
        and b themselves: with every float64 digit an Omniglot record (50 tasks) took 1.7 times the bytes."""
        p, layers = self.params, []
        for i, (name, layer) in enumerate(self.named_adaptive_layers()):
            alpha, b = layer.ordered()
            layers.append({
                "layer": i,
                "name": name,
                "distance": float32_list(distance_matrix(alpha, b, p.gmm)),
                "cosine": float32_list(cosine_matrix(alpha, b, p.gmm, fidelity=p.fidelity)),
                "alpha": float32_list(alpha),
                "b": float32_list(b),
            })
        return {"task_names": self.info.task_names, "gmm": p.gmm, "layers": layers}
