"""Soft-Order -- soft layer ordering [meyerson2018].

What it implements (paper, eqs. of Sec. 3): L shared layers F_1..F_L of equal input and output size, a task
encoder E_t and decoder D_t, and a learnable scaling tensor sigma in R^{T x D x L}:

    y_0 = E_t(x);   s_{t,d,:} = softmax_l(sigma_{t,d,:});   y_d = sum_l s_{t,d,l} F_l(y_{d-1});   yhat = D_t(y_D)

so every shared layer may be applied at every depth and each task learns its own soft order.

Mapping onto mtlbench backbones:
- MLP (``hidden = [h, h, ..., h]``): the first hidden block (input -> h, ReLU) is the encoder; the remaining
  ``len(hidden) - 1`` blocks are the shared layers F_l (linear + [BN] + ReLU + [dropout], as the paper's
  core layers); the per-task linear heads are the decoders D_t. Tasks with other input shapes reach the
  encoders through their stems (with ``encoder: task`` the encoder E_t is task-specific anyway).
- Conv (``channels = [c, c, ..., c]`` with shape-preserving ``padding = (kernel_size - 1) / 2``): the first
  conv block (with its pooling) is the encoder; the other conv blocks, *without* their pooling, are the F_l;
  the pooling is applied once per depth to the mixed output (it has no parameters, so it belongs to the
  depth rather than to a layer). The dense layers after the conv part are shared, the heads are the D_t.

Options:
- ``depth`` D (default L); ``encoder: task`` (paper) or ``shared``; ``sigma_init: zeros`` (uniform mixing,
  as in the first author's tom-release code) or ``normal`` (0.01 N(0,1)).
- ``fidelity: taan_code`` = the variant of the TAAN tables (yingrliu/TAAN-MTL ``SoftOrderNet``): a shared
  first layer (``encoder: shared``) and ``sigma_init: normal``; with the paper backbone 1152 -> 3 x 1024 this
  gives D = L = 2 (the TAAN code hard-codes 16 tasks, this does not).

Known limits: the TAAN Omniglot Soft-Order net is not published, so the conv mapping above is ours (the
backbone must be given equal channels and shape-preserving padding; ``check`` says so otherwise); a ``vgg``
backbone is refused (its stages differ in width, so its layers cannot be reordered). A training
step costs D x L shared-layer applications (L times a plain network), all tasks' rows in one call each.
A shared layer's BatchNorm is one set of running statistics, updated at every depth the layer is applied at:
the paper's F_l is one function at every depth, and the TAAN code's SoftOrderNet reuses one module (its
BatchNorm, commented out there, inside it) per soft layer at both depths; statistics belong to the layer.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from mtlbench.nn.backbone import ReLU, init_shared, make_heads
from mtlbench.nn.layer_plan import Block, trunk_input, trunk_kind
from mtlbench.nn.method import MethodParams, MTLMethod
from mtlbench.nn.method_helpers import apply_fidelity, raise_if_refused, row_task_index, segments_of
from mtlbench.registry import METHODS

TAAN_CODE = {"encoder": "shared", "sigma_init": "normal"}


class SoftOrderParams(MethodParams):
    fidelity: Literal["paper", "taan_code"] = "paper"
    depth: int | None = Field(default=None, ge=1, description="D; default L (the number of shared layers)")
    encoder: Literal["task", "shared"] = "task"
    sigma_init: Literal["zeros", "normal"] = "zeros"

    @model_validator(mode="before")
    @classmethod
    def _fidelity(cls, data):
        return apply_fidelity(data, TAAN_CODE)


def conv_layer(c_in: int, c_out: int, spec, pool: bool) -> Block:
    conv = nn.Conv2d(c_in, c_out, spec.kernel_size, padding=spec.padding)
    norm = nn.BatchNorm2d(c_out) if spec.conv_batch_norm else nn.Identity()
    pooling = nn.MaxPool2d(spec.pool) if pool and spec.pool > 1 else nn.Identity()
    return Block(conv, norm, ReLU(), pooling, 0.0)


def dense_layer(d_in: int, d_out: int, spec) -> Block:
    norm = nn.BatchNorm1d(d_out) if spec.dense_batch_norm else nn.Identity()
    return Block(nn.Linear(d_in, d_out), norm, ReLU(), nn.Identity(), spec.dropout)


@METHODS.register("soft_order")
class SoftOrder(MTLMethod):
    """Encoder, L shared layers mixed at each of D depths by a per-task softmax over layers, decoders (heads).

    Params (YAML)::

        fidelity: paper        # paper | taan_code (= encoder: shared, sigma_init: normal; the TAAN tables)
        depth: null            # D; null = L = (number of hidden layers or conv blocks) - 1
        encoder: task          # task (paper: E_t per task) | shared (TAAN code: shared first layer)
        sigma_init: zeros      # zeros (uniform mixing, first author's code) | normal (0.01 N(0,1), TAAN code)

    Needs equal hidden widths (conv: equal channels and shape-preserving padding) and >= 2 shared layers.
    """

    Params = SoftOrderParams
    groups = {"order": ("sigma",)}  # the soft-ordering scales sigma
    cite = "meyerson2018"  # mtlbench/config/bibliography.yaml

    def __init__(self, info, backbone, params: SoftOrderParams):
        super().__init__(info, backbone, params)
        raise_if_refused(type(self), info, backbone, params)
        self.conv = self.plan.kind == "conv"
        self.n_layers = (len(backbone.channels) if self.conv else len(backbone.hidden)) - 1
        self.depth = params.depth or self.n_layers
        build = self._build_conv if self.conv else self._build_mlp
        encoders, self.layers, self.post, width = build()
        init_shared(nn.ModuleList([encoders, self.layers, self.post]))
        self.encoders = encoders  # one per task, or a single shared one
        self.pool = nn.MaxPool2d(backbone.pool) if self.conv and backbone.pool > 1 else nn.Identity()
        sigma = torch.zeros(info.n_tasks, self.depth, self.n_layers)
        if params.sigma_init == "normal":
            sigma.normal_(0.0, 0.01)
        self.sigma = nn.Parameter(sigma)
        self.heads = make_heads(width, info.tasks)

    # -- construction ---------------------------------------------------------------------------------------
    def _n_encoders(self) -> int:
        return self.info.n_tasks if self.params.encoder == "task" else 1

    def _build_mlp(self):
        spec = self.backbone_spec
        width, d_in = spec.scaled(spec.hidden[0]), math.prod(self.plan.input_shape)
        encoders = nn.ModuleList(dense_layer(d_in, width, spec) for _ in range(self._n_encoders()))
        layers = nn.ModuleList(dense_layer(width, width, spec) for _ in range(self.n_layers))
        return encoders, layers, nn.ModuleList(), width

    def _build_conv(self):
        spec = self.backbone_spec
        c_in, h, w = self.plan.input_shape
        c = spec.scaled(spec.channels[0])
        encoders = nn.ModuleList(conv_layer(c_in, c, spec, pool=True) for _ in range(self._n_encoders()))
        layers = nn.ModuleList(conv_layer(c, c, spec, pool=False) for _ in range(self.n_layers))
        h, w = conv_spatial(h, spec, self.depth), conv_spatial(w, spec, self.depth)
        dims = [c * h * w, *map(spec.scaled, spec.dense)]
        post = nn.ModuleList(dense_layer(a, b, spec) for a, b in itertools.pairwise(dims))
        return encoders, layers, post, dims[-1]

    # -- forward --------------------------------------------------------------------------------------------
    def forward_all(self, hs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        segments = segments_of(hs)
        features = self._features(hs, segments)
        return [self.heads[t](f) for t, f in enumerate(features.split([n for _, n in segments]))]

    def forward_one(self, h: torch.Tensor, task: int) -> torch.Tensor:
        return self.heads[task](self._features([h], [(task, len(h))]))

    def mixing(self) -> torch.Tensor:
        """s = softmax over the layer axis of sigma, [T, D, L]."""
        return torch.softmax(self.sigma, dim=-1)

    def _features(self, xs: Sequence[torch.Tensor], segments) -> torch.Tensor:
        y = self._encode(xs, segments)
        weights = self.mixing()[row_task_index(segments, y.device)]  # [rows, D, L]
        shape = (len(y),) + (1,) * (y.dim() - 1)
        for d in range(self.depth):
            y = sum(weights[:, d, k].view(shape) * layer(y, segments) for k, layer in enumerate(self.layers))
            y = self.pool(y)
        y = y.flatten(1)
        for block in self.post:
            y = block(y, segments)
        return y

    def _encode(self, xs: Sequence[torch.Tensor], segments) -> torch.Tensor:
        flat = (lambda x: x) if self.conv else (lambda x: x.flatten(1))  # an MLP's encoder reads vectors
        if len(self.encoders) == 1:
            return self.encoders[0](flat(torch.cat(list(xs))), segments)
        return torch.cat([self.encoders[t](flat(x), [(t, len(x))]) for (t, _), x in zip(segments, xs)])

    def summary(self) -> dict:
        return {"soft_order": {"layers": self.n_layers, "depth": self.depth, "encoder": self.params.encoder,
                               "mixing": self.mixing().detach().cpu().tolist()}}

    # -- what this method cannot run ------------------------------------------------------------------------
    @classmethod
    def check(cls, info, backbone, params) -> list[str]:
        kind = trunk_kind(info, backbone)
        if kind == "vgg":
            return ["soft_order reorders equal layers, so it needs an mlp or conv backbone with equal widths "
                    "(a vgg backbone's stages differ in width)"]
        if kind == "conv":
            return conv_problems(info, backbone, params)
        return mlp_problems(info, backbone, params)


def conv_spatial(size: int, spec, depth: int) -> int:
    """Height (or width) after the encoder block and ``depth`` pooled soft depths."""
    size = (size + 2 * spec.padding - spec.kernel_size + 1) // spec.pool
    for _ in range(depth):
        size //= spec.pool
    return size


def mlp_problems(info, backbone, params) -> list[str]:
    hidden = backbone.hidden
    problems = []
    if len(hidden) < 3:
        problems.append(f"soft_order needs at least 3 hidden layers (an encoder and >= 2 shared layers to "
                        f"order; with one the ordering is constant); backbone.hidden = {hidden}")
    elif len(set(hidden)) != 1:
        problems.append(f"soft_order applies every shared layer at every depth, so all hidden widths must be "
                        f"equal; backbone.hidden = {hidden}")
    return problems


def conv_problems(info, backbone, params) -> list[str]:
    ch, k = backbone.channels, backbone.kernel_size
    problems = []
    if len(ch) < 3:
        problems.append(f"soft_order needs at least 3 conv blocks (an encoder and >= 2 shared layers to "
                        f"order; with one the ordering is constant); backbone.channels = {ch}")
    elif len(set(ch)) != 1:
        problems.append(f"soft_order applies every shared conv layer at every depth, so all conv channels must "
                        f"be equal; backbone.channels = {ch}")
    if k % 2 == 0 or backbone.padding != (k - 1) // 2:
        problems.append(f"soft_order's shared conv layers must keep the feature-map size: use an odd "
                        f"backbone.kernel_size with backbone.padding = (kernel_size - 1) / 2 (have "
                        f"kernel_size {k}, padding {backbone.padding})")
    if problems:
        return problems
    depth = params.depth or len(ch) - 1
    shape = trunk_input(info, backbone)
    if min(conv_spatial(shape[1], backbone, depth), conv_spatial(shape[2], backbone, depth)) < 1:
        problems.append(f"soft_order: the trunk input {shape} is too small for {depth} pooled depths")
    return problems
