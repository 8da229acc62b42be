"""Cross-Stitch networks [misra2016].

What it implements: one tower (the backbone trunk) and one head per task; after chosen layers (default: every
stage end -- every layer of the mlp and conv backbones, as the paper stitches after every pooling and fully
connected layer; the five pooling stages of a vgg backbone, as the MTAL tables' baseline) the towers'
activations x_1..x_T of the same examples are recombined by a cross-stitch unit

    x~_t = sum_s alpha[t, s] x_s            (one T x T alpha per boundary, or one per channel).

Multi-input data (one batch per task): every tower must see every task's batch, because tower t's next layer
reads all towers' activations of the *same* examples. Each tower therefore runs once per iteration on the
concatenation of all T task batches, i.e. T tower passes over T batches -- O(T^2) work per iteration, which
shows in timing (``summary()`` records ``tower_batch_passes_per_iteration``). Task t's logits are read from
tower t on task t's rows.

Options:
- ``init``: ``convex`` (paper; alpha_S = ``alpha_s`` on the diagonal, (1 - alpha_S)/(T - 1) elsewhere, rows sum
  to 1 -- the paper's two-task (0.9, 0.1) generalised to T tasks), ``random_rownorm`` (yingrliu/TAAN-MTL:
  0.01 N(0, 1), every row divided in place by its L2 norm at every forward, so alphas may be negative), or
  ``ones`` (LibMTL's all-ones).
- ``granularity``: ``scalar`` (paper) or ``channel`` (one T x T unit per feature/channel).
- ``positions``: ``stages`` (every stage end), ``all`` (every layer) or a list of layer indices or names
  (``fc1``, ``conv3_3``) after which a unit is placed.
- ``alpha_lr_mult``: learning-rate multiplier of the alphas (the paper scales it up, ablating powers of ten
  [recall]; default 1 because the paper's value for this setting is not recorded).
- ``tower_init``: ``scratch`` or ``stl`` (the paper starts from single-task networks; reads
  ``stl_checkpoint: PATH``, an ``stl`` run's ``seed<k>.pt``, whose key names the towers share).
``fidelity: taan_code`` selects ``init: random_rownorm`` (TAAN stitches after each of the 3 hidden layers,
the default positions here).

Tasks with other input shapes reach the towers through their stems (the towers stitch the activations of the
same, stemmed examples). Known limits: a tower's BatchNorm (conv backbone) sees all tasks' batches in one call
during training, so its batch statistics are over all T batches.
"""
from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from mtlbench.nn.method import MethodParams
from mtlbench.nn.method_helpers import Positions, apply_fidelity, raise_if_refused
from mtlbench.nn.towers import FusedTowers
from mtlbench.registry import METHODS

TAAN_CODE = {"init": "random_rownorm"}


class CrossStitchParams(MethodParams):
    fidelity: Literal["paper", "taan_code"] = "paper"
    init: Literal["convex", "random_rownorm", "ones"] = "convex"
    alpha_s: float = Field(default=0.9, ge=0.0, le=1.0)
    granularity: Literal["scalar", "channel"] = "scalar"
    positions: Positions = "stages"
    alpha_lr_mult: float = Field(default=1.0, gt=0.0)
    tower_init: Literal["scratch", "stl"] = "scratch"
    stl_checkpoint: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _fidelity(cls, data):
        return apply_fidelity(data, TAAN_CODE)


def initial_alpha(n_tasks: int, width: int | None, params: CrossStitchParams) -> torch.Tensor:
    T = n_tasks
    if params.init == "convex":
        off = (1.0 - params.alpha_s) / (T - 1) if T > 1 else 0.0
        a = torch.full((T, T), off)
        a.fill_diagonal_(params.alpha_s if T > 1 else 1.0)
    elif params.init == "ones":
        a = torch.ones(T, T)
    else:
        a = torch.randn(T, T) * 0.01
        a = a / a.norm(dim=-1, keepdim=True)
    return a if width is None else a.expand(width, T, T).clone()


@METHODS.register("cross_stitch")
class CrossStitch(FusedTowers):
    """One tower per task; T x T cross-stitch units mix the towers' activations after chosen blocks.

    Params (YAML)::

        fidelity: paper          # paper | taan_code (= init: random_rownorm)
        init: convex             # convex (alpha_S on the diagonal) | random_rownorm (TAAN code) | ones (LibMTL)
        alpha_s: 0.9             # diagonal of the convex init; off-diagonal (1 - alpha_s) / (T - 1)
        granularity: scalar      # scalar | channel (one unit per feature / channel)
        positions: stages        # stages | all | [layer indices or names] after which a unit is placed
        alpha_lr_mult: 1.0       # learning-rate multiplier of the units
        tower_init: scratch      # scratch | stl (needs stl_checkpoint)
        stl_checkpoint: null
    """

    Params = CrossStitchParams
    groups = {"units": ("alphas.*",)}  # the cross-stitch alphas (alpha_lr_mult scales their learning rate)
    cite = "misra2016"  # mtlbench/config/bibliography.yaml

    def __init__(self, info, backbone, params: CrossStitchParams):
        super().__init__(info, backbone, params)
        raise_if_refused(type(self), info, backbone, params)
        self.build_towers()
        widths = [self.plan.layers[i].width if params.granularity == "channel" else None for i in self.positions]
        self.alphas = nn.ParameterList(nn.Parameter(initial_alpha(info.n_tasks, w, params)) for w in widths)
        self.init_towers()

    def fuse_units(self) -> dict:
        if self.params.init == "random_rownorm":
            self._renormalise()
        return {i: partial(stitch, alpha) for i, alpha in zip(self.positions, self.alphas)}

    @torch.no_grad()
    def _renormalise(self) -> None:
        """The TAAN code's in-place row L2 normalisation of every unit, before each forward."""
        for alpha in self.alphas:
            alpha.div_(alpha.norm(dim=-1, keepdim=True))

    # -- optimiser and reporting -----------------------------------------------------------------------------
    def group_lr_mult(self) -> dict[str, float]:
        return {"units": self.params.alpha_lr_mult}

    def summary(self) -> dict:
        units = [(a.mean(0) if a.dim() == 3 else a).detach().cpu().tolist() for a in self.alphas]
        return {"cross_stitch": {**self.tower_summary(), "granularity": self.params.granularity, "alpha": units}}

    @classmethod
    def check(cls, info, backbone, params) -> list[str]:
        return cls.tower_problems(info, backbone, params)


def stitch(alpha: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """x~_t = sum_s alpha[t, s] x_s for h [T, rows, C, ...]; a per-channel alpha is [C, T, T]."""
    if alpha.dim() == 2:
        mixed = torch.einsum("ts,sn...->tn...", alpha, h)
    else:
        mixed = torch.einsum("cts,snc...->tnc...", alpha, h)
    return mixed.contiguous()  # einsum may return a permuted layout; the next conv must see the usual one
