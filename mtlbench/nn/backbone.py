"""The backbone spec every method builds its trunk from, and the small pieces around it (activations, init, heads).

Kinds of trunk (``kind``):
- ``mlp``: dense layers ``hidden`` (fc1, fc2, ...); an image input is flattened by the first layer.
- ``conv``: the TAAN-Omniglot conv net: per entry of ``channels`` one conv block (conv, BatchNorm, activation,
  max-pool; conv1, conv2, ...), then dense layers ``dense`` (fc1, ...).
- ``vgg``: VGG stages: ``stages`` lists each stage's conv widths (VGG-16: [[64, 64], [128, 128],
  [256, 256, 256], [512, 512, 512], [512, 512, 512]], layers conv1_1 ... conv5_3), size-preserving
  ``kernel_size`` convolutions (padding (k - 1) / 2), a max-pool of ``pool`` after each stage, then ``dense``.
- ``auto``: ``mlp`` when every task's input is a vector, else ``conv``.
``width`` scales every layer width (CPU-sized VGG: 0.125), rounded, at least 1. The trunk's input shape is
``input`` (default derived from the tasks, see ``mtlbench.nn.layer_plan.trunk_input``); each task reaches it
through its own stem (``mtlbench.nn.stems``), images resized by ``resize``.

Methods change what they need by passing an activation factory (TAAN's per-task activations) or by building
one trunk per task (STL) -- never by re-writing the layer arithmetic (``mtlbench.nn.layer_plan``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer
from torch import nn

from mtlbench.store.dataset import TaskInfo

Width = Annotated[int, Field(ge=1)]  # a layer width, channel count or size
VGG16_STAGES = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]


class TrunkInput(BaseModel):
    """The trunk's input shape: ``channels`` and ``size`` (conv, vgg) or ``features`` (mlp)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    channels: int | None = Field(default=None, ge=1)
    size: int | tuple[int, int] | None = Field(default=None, description="S (square) or [H, W]")
    features: int | None = Field(default=None, ge=1)

    @field_validator("size")
    @classmethod
    def _positive(cls, size):  # checked here, not per union branch: one message, not one per branch
        if size is not None and min([size] if isinstance(size, int) else size) < 1:
            raise ValueError("a size is at least 1 pixel")
        return size


class BackboneSpec(BaseModel):
    """The network shape; ``kind: auto`` picks ``mlp`` for vector inputs and ``conv`` when any task has images."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["auto", "mlp", "conv", "vgg"] = "auto"
    hidden: list[Width] = Field(default=[1024, 1024, 1024], min_length=1, description="MLP hidden widths")
    channels: list[Width] = Field(default=[6, 12, 24, 64], min_length=1, description="conv channels per block")
    stages: list[Annotated[list[Width], Field(min_length=1)]] = Field(default=VGG16_STAGES, min_length=1,
                                                                      description="vgg: conv widths per stage")
    kernel_size: int = Field(default=3, ge=1)
    padding: int = Field(default=0, ge=0, description="conv kind: 0 = 'valid' convolutions as in the TAAN code "
                                                      "(vgg always pads to keep the size)")
    pool: int = Field(default=2, ge=1, description="max-pool size after each conv block / vgg stage (1 = none)")
    dense: list[Width] = Field(default=[512], description="dense layers after the conv blocks")
    conv_batch_norm: bool = True
    dense_batch_norm: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    width: float = Field(default=1.0, gt=0.0, description="scales every layer width (rounded, at least 1)")
    input: TrunkInput | None = Field(default=None, description="the trunk's input shape; default from the tasks")
    resize: Literal["bilinear", "bicubic", "nearest", "area"] = Field(
        default="bilinear", description="how image stems resize a task's images (bilinear/bicubic antialiased)")

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # keys added with VGG stages and stems are left out while at their defaults, so the records written
        # before them keep their backbone identity (`compare` groups a row's seeds by it)
        data = handler(self)
        for key in ADDED_KEYS:
            if key in data and getattr(self, key) == type(self).model_fields[key].default:
                del data[key]
        return data

    def scaled(self, n: int) -> int:
        return max(1, math.floor(n * self.width + 0.5))


ADDED_KEYS = ("stages", "width", "input", "resize")


# Rows of a batch, in order, as (task index, number of rows): [(0, 256), (1, 256), ...] for a training
# step over all tasks, [(t, n)] when one task is evaluated. Task-aware activations (TAAN) need it.
Segments = Sequence[tuple[int, int]]


class ReLU(nn.Module):
    """ReLU taking the row segments that task-aware activations need (and ignoring them)."""

    commutes_with_max_pool = True  # non-decreasing: the fast conv path pools first (mtlbench.nn.fast_conv)

    def forward(self, z: torch.Tensor, segments: Segments | None = None) -> torch.Tensor:
        return torch.relu(z)


class NoActivation(nn.Module):
    """The identity, with the activation call signature (DMTRL's ``activation: none``)."""

    elementwise = True  # acts on each element alone: the fast conv path runs it on the pool's winners (fast_conv)

    def forward(self, z: torch.Tensor, segments: Segments | None = None) -> torch.Tensor:
        return z


# (layer index, number of features or channels) -> activation module called as act(z, segments)
ActFactory = Callable[[int, int], nn.Module]


def relu_factory(layer: int, width: int) -> nn.Module:
    return ReLU()


def init_shared(module: nn.Module) -> None:
    """Kaiming (fan-in, ReLU gain) weights and zero biases for every affine layer (the TAAN defaults)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def make_heads(in_features: int, tasks: Sequence[TaskInfo]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(in_features, t.n_classes) for t in tasks)
