"""Cross-Stitch networks (Misra, Shrivastava, Gupta & Hebert, "Cross-stitch Networks for Multi-task
Learning", CVPR 2016).

What it implements: one tower (the backbone trunk) and one head per task; after chosen
hidden blocks (default: every one -- the paper stitches after every pooling and fully connected layer) the
towers' activations x_1..x_T of the same examples are recombined by a cross-stitch unit

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
- ``positions``: ``all`` or a list of block indices after which a unit is placed.
- ``alpha_lr_mult``: learning-rate multiplier of the alphas (the paper scales it up, ablating powers of ten
  [recall]; default 1 because the paper's value for this setting is not recorded).
- ``tower_init``: ``scratch`` or ``stl`` (the paper starts from single-task networks; reads
  ``stl_checkpoint: PATH``, an ``stl`` run's ``seed<k>.pt``, whose key names the towers share).
``fidelity: taan_code`` selects ``init: random_rownorm`` (TAAN stitches after each of the 3 hidden layers,
the default positions here).

Known limits: a tower's BatchNorm (conv backbone) sees all tasks' batches in one call during training, so its
batch statistics are over all T batches. Towers need the same input shape.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from pydantic import Field, model_validator
from torch import nn

from mtlbench.methods._common import (apply_fidelity, load_state, mixed_kind_problems, raise_if_refused,
                                      same_input_problems, segments_of, stl_checkpoint_problems)
from mtlbench.methods.backbone import build_trunk, make_heads
from mtlbench.methods.base import MethodParams, MTLMethod
from mtlbench.registry import METHODS

TAAN_CODE = {"init": "random_rownorm"}


class CrossStitchParams(MethodParams):
    fidelity: Literal["paper", "taan_code"] = "paper"
    init: Literal["convex", "random_rownorm", "ones"] = "convex"
    alpha_s: float = Field(default=0.9, ge=0.0, le=1.0)
    granularity: Literal["scalar", "channel"] = "scalar"
    positions: Literal["all"] | list[int] = "all"
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
class CrossStitch(MTLMethod):
    """One tower per task; T x T cross-stitch units mix the towers' activations after chosen blocks.

    Params (YAML)::

        fidelity: paper          # paper | taan_code (= init: random_rownorm)
        init: convex             # convex (alpha_S on the diagonal) | random_rownorm (TAAN code) | ones (LibMTL)
        alpha_s: 0.9             # diagonal of the convex init; off-diagonal (1 - alpha_s) / (T - 1)
        granularity: scalar      # scalar | channel (one unit per feature / channel)
        positions: all           # all | [block indices] after which a unit is placed
        alpha_lr_mult: 1.0       # learning-rate multiplier of the units
        tower_init: scratch      # scratch | stl (needs stl_checkpoint)
        stl_checkpoint: null
    """

    Params = CrossStitchParams
    paper = "Misra, Shrivastava, Gupta & Hebert, Cross-stitch Networks for Multi-task Learning, CVPR 2016"

    def __init__(self, info, backbone, params: CrossStitchParams):
        super().__init__(info, backbone, params)
        raise_if_refused(type(self), info, backbone, params)
        shape = info.tasks[0].input_shape
        self.trunks = nn.ModuleList(build_trunk(shape, backbone) for _ in info.tasks)  # STL's key names
        self.heads = make_heads(self.trunks[0].out_features, info.tasks)
        n_blocks = len(self.trunks[0].blocks)
        self.positions = list(range(n_blocks)) if params.positions == "all" else sorted(set(params.positions))
        widths = [block_width(b) for b in self.trunks[0].blocks]
        self.alphas = nn.ParameterList(
            nn.Parameter(initial_alpha(info.n_tasks, widths[i] if params.granularity == "channel" else None,
                                       params)) for i in self.positions)
        if params.tower_init == "stl":
            state = load_state(params.stl_checkpoint)
            self.load_state_dict({k: v for k, v in state.items() if k.startswith(("trunks.", "heads."))},
                                 strict=False)

    # -- forward --------------------------------------------------------------------------------------------
    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        segments = segments_of(xs)
        towers = self._towers(torch.cat(list(xs)), segments)
        per_task = towers.split([n for _, n in segments], dim=1)  # [T, n_t, features] each
        return [self.heads[t](h[t]) for t, h in enumerate(per_task)]

    def forward_task(self, x: torch.Tensor, task: int) -> torch.Tensor:
        return self.heads[task](self._towers(x, [(task, len(x))])[task])

    def _towers(self, x: torch.Tensor, segments) -> torch.Tensor:
        """Every tower on every row, stitched at the chosen boundaries: [T, rows, features]."""
        if self.params.init == "random_rownorm":
            self._renormalise()
        trunk0 = self.trunks[0]
        hs = [x] * len(self.trunks)
        units = dict(zip(self.positions, self.alphas))
        for i in range(len(trunk0.blocks)):
            if i == trunk0.flatten_at:
                hs = [h.flatten(1) for h in hs]
            hs = [trunk.blocks[i](h, segments) for trunk, h in zip(self.trunks, hs)]
            if i in units:
                hs = list(stitch(units[i], torch.stack(hs)))
        h = torch.stack(hs)
        return h.flatten(2) if trunk0.flatten_at >= len(trunk0.blocks) else h

    @torch.no_grad()
    def _renormalise(self) -> None:
        """The TAAN code's in-place row L2 normalisation of every unit, before each forward."""
        for alpha in self.alphas:
            alpha.div_(alpha.norm(dim=-1, keepdim=True))

    # -- optimiser and reporting -----------------------------------------------------------------------------
    def param_groups(self, lr: float) -> list[dict]:
        alpha_ids = {id(a) for a in self.alphas}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in alpha_ids]
        return [{"params": rest, "lr": lr},
                {"params": list(self.alphas), "lr": lr * self.params.alpha_lr_mult}]

    def summary(self) -> dict:
        T = self.info.n_tasks
        units = [(a.mean(0) if a.dim() == 3 else a).detach().cpu().tolist() for a in self.alphas]
        return {"cross_stitch": {"positions": self.positions, "granularity": self.params.granularity,
                                 "tower_batch_passes_per_iteration": T * T, "alpha": units}}

    @classmethod
    def check(cls, info, backbone, params) -> list[str]:
        problems = mixed_kind_problems(info, "cross_stitch")
        if problems:
            return problems
        problems = same_input_problems(info, "cross_stitch", "stitches the towers' activations of the same "
                                                             "examples")
        with torch.device("meta"):
            n_blocks = len(build_trunk(info.tasks[0].input_shape, backbone).blocks) if not problems else 0
        if params.positions != "all":
            bad = [p for p in params.positions if not 0 <= p < n_blocks]
            if bad and n_blocks:
                problems.append(f"cross_stitch: positions {bad} are not block indices 0..{n_blocks - 1}")
        if params.tower_init == "stl":
            problems += stl_checkpoint_problems(params.stl_checkpoint, info, backbone, "cross_stitch",
                                                "tower_init: stl")
        return problems


def block_width(block: nn.Module) -> int:
    affine = block.affine
    return affine.out_channels if isinstance(affine, nn.Conv2d) else affine.out_features


def stitch(alpha: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """x~_t = sum_s alpha[t, s] x_s for h [T, rows, C, ...]; a per-channel alpha is [C, T, T]."""
    if alpha.dim() == 2:
        mixed = torch.einsum("ts,sn...->tn...", alpha, h)
    else:
        mixed = torch.einsum("cts,snc...->tnc...", alpha, h)
    return mixed.contiguous()  # einsum may return a permuted layout; the next conv must see the usual one
