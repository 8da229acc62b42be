"""Backbones shared by every method: an MLP for vector inputs and the TAAN-Omniglot conv net for images.

A trunk is a list of ``Block``s (affine map, optional BatchNorm, activation, optional pooling). Methods change
what they need by passing an activation factory (TAAN's per-task activations) or by building one trunk per
task (STL) -- never by re-writing the layer arithmetic.
"""
from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mtlbench.data.base import TaskInfo


class BackboneSpec(BaseModel):
    """The network shape; ``kind: auto`` picks ``mlp`` for vector inputs and ``conv`` for images."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["auto", "mlp", "conv"] = "auto"
    hidden: list[int] = Field(default=[1024, 1024, 1024], min_length=1, description="MLP hidden widths")
    channels: list[int] = Field(default=[6, 12, 24, 64], min_length=1, description="conv channels per block")
    kernel_size: int = Field(default=3, ge=1)
    padding: int = Field(default=0, ge=0, description="0 = 'valid' convolutions as in the TAAN code")
    pool: int = Field(default=2, ge=1, description="max-pool size after each conv block (1 = none)")
    dense: list[int] = Field(default=[512], description="dense layers after the conv blocks")
    conv_batch_norm: bool = True
    dense_batch_norm: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    def resolved_kind(self, input_shape: tuple[int, ...]) -> str:
        if self.kind != "auto":
            return self.kind
        return "mlp" if len(input_shape) == 1 else "conv"


# Rows of a batch, in order, as (task index, number of rows): [(0, 256), (1, 256), ...] for a training
# step over all tasks, [(t, n)] when one task is evaluated. Task-aware activations (TAAN) need it.
Segments = Sequence[tuple[int, int]]


class ReLU(nn.Module):
    """ReLU taking the row segments that task-aware activations need (and ignoring them)."""

    def forward(self, z: torch.Tensor, segments: Segments | None = None) -> torch.Tensor:
        return torch.relu(z)


# (layer index, number of features or channels) -> activation module called as act(z, segments)
ActFactory = Callable[[int, int], nn.Module]


def relu_factory(layer: int, width: int) -> nn.Module:
    return ReLU()


class Block(nn.Module):
    def __init__(self, affine: nn.Module, norm: nn.Module, act: nn.Module, pool: nn.Module, dropout: float):
        super().__init__()
        self.affine, self.norm, self.act, self.pool = affine, norm, act, pool
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.affine(x))

    def forward(self, x: torch.Tensor, segments: Segments | None = None) -> torch.Tensor:
        return self.drop(self.pool(self.act(self.pre_activation(x), segments)))


class Trunk(nn.Module):
    """Hidden layers from the input to the last shared feature vector ([N, out_features])."""

    def __init__(self, blocks: list[Block], flatten_at: int, out_features: int):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.flatten_at = flatten_at  # blocks before this index are conv blocks
        self.out_features = out_features

    def forward(self, x: torch.Tensor, segments: Segments | None = None) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            if i == self.flatten_at:
                x = x.flatten(1)
            x = block(x, segments)
        return x.flatten(1) if self.flatten_at >= len(self.blocks) else x


def conv_out(size: int, spec: BackboneSpec) -> int:
    after_conv = size + 2 * spec.padding - spec.kernel_size + 1
    return after_conv // spec.pool


def dense_block(d_in: int, d_out: int, spec: BackboneSpec, act: nn.Module) -> Block:
    norm = nn.BatchNorm1d(d_out) if spec.dense_batch_norm else nn.Identity()
    return Block(nn.Linear(d_in, d_out), norm, act, nn.Identity(), spec.dropout)


def build_trunk(input_shape: tuple[int, ...], spec: BackboneSpec, act: ActFactory = relu_factory) -> Trunk:
    if spec.resolved_kind(input_shape) == "mlp":
        dims = [math.prod(input_shape), *spec.hidden]
        blocks = [dense_block(a, b, spec, act(i, b)) for i, (a, b) in enumerate(zip(dims, dims[1:]))]
        trunk = Trunk(blocks, flatten_at=0, out_features=dims[-1])
    else:
        trunk = build_conv_trunk(input_shape, spec, act)
    init_shared(trunk)
    return trunk


def build_conv_trunk(input_shape: tuple[int, ...], spec: BackboneSpec, act: ActFactory) -> Trunk:
    c, h, w = input_shape
    blocks: list[Block] = []
    for i, out_c in enumerate(spec.channels):
        conv = nn.Conv2d(c, out_c, spec.kernel_size, padding=spec.padding)
        norm = nn.BatchNorm2d(out_c) if spec.conv_batch_norm else nn.Identity()
        pool = nn.MaxPool2d(spec.pool) if spec.pool > 1 else nn.Identity()
        blocks.append(Block(conv, norm, act(i, out_c), pool, 0.0))
        c, h, w = out_c, conv_out(h, spec), conv_out(w, spec)
        if h < 1 or w < 1:
            raise ValueError(f"input {input_shape} is too small for {len(spec.channels)} conv blocks")
    dims = [c * h * w, *spec.dense]
    n_conv = len(blocks)
    blocks += [dense_block(a, b, spec, act(n_conv + i, b)) for i, (a, b) in enumerate(zip(dims, dims[1:]))]
    return Trunk(blocks, flatten_at=n_conv, out_features=dims[-1])


def init_shared(module: nn.Module) -> None:
    """Kaiming (fan-in, ReLU gain) weights and zero biases for every affine layer (the TAAN code's defaults)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def make_heads(in_features: int, tasks: Sequence[TaskInfo]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(in_features, t.n_classes) for t in tasks)
