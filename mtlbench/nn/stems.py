"""Per-task stems: each task's input mapped to the trunk's input shape, so tasks whose inputs differ in size,
channels or kind (28x28 font digits, 64x64 handwriting, 800-d SURF vectors) share or stitch one trunk.

- a task whose input already has the trunk's input shape: the identity (no parameters; a method on
  homogeneous data computes exactly what it computed before stems existed);
- an image, conv trunk: resized to the trunk's H x W (``backbone.resize``, default bilinear with antialiasing,
  so shrinking averages instead of aliasing) when the size differs, then a 1x1 conv to the trunk's channels
  when the channel count differs;
- a vector, conv trunk: a linear layer to C*H*W, reshaped to C x H x W;
- anything, mlp trunk: flattened, then a linear layer to the trunk's input width when the size differs.
Every method owns its stems through ``MTLMethod`` (``stl`` too, so the rows of a table differ only in what
they share). Weights: Kaiming (fan-in) normal, zero biases, as the trunk's.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mtlbench.nn.backbone import init_shared
from mtlbench.store.dataset import DataInfo


class ImageStem(nn.Module):
    def __init__(self, shape: tuple[int, ...], trunk_shape: tuple[int, ...], resize: str):
        super().__init__()
        self.size = tuple(trunk_shape[1:]) if tuple(shape[1:]) != tuple(trunk_shape[1:]) else None
        self.mode = resize
        self.proj = nn.Conv2d(shape[0], trunk_shape[0], 1) if shape[0] != trunk_shape[0] else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None:
            x = F.interpolate(x, size=self.size, mode=self.mode, antialias=self.mode in ("bilinear", "bicubic"))
        return x if self.proj is None else self.proj(x)


class VectorStem(nn.Module):
    def __init__(self, features: int, trunk_shape: tuple[int, ...]):
        super().__init__()
        self.trunk_shape = tuple(trunk_shape)
        self.proj = nn.Linear(features, math.prod(trunk_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).view(len(x), *self.trunk_shape)


class FlatStem(nn.Module):
    def __init__(self, shape: tuple[int, ...], features: int):
        super().__init__()
        n = math.prod(shape)
        self.proj = nn.Linear(n, features) if n != features else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return x if self.proj is None else self.proj(x)


def build_stem(shape: tuple[int, ...], trunk_shape: tuple[int, ...], resize: str) -> nn.Module:
    if tuple(shape) == tuple(trunk_shape):
        return nn.Identity()
    if len(trunk_shape) == 1:
        stem = FlatStem(shape, trunk_shape[0])
    elif len(shape) == 1:
        stem = VectorStem(shape[0], trunk_shape)
    else:
        stem = ImageStem(shape, trunk_shape, resize)
    init_shared(stem)
    return stem


def build_stems(info: DataInfo, trunk_shape: tuple[int, ...], resize: str) -> nn.ModuleList:
    return nn.ModuleList(build_stem(t.input_shape, trunk_shape, resize) for t in info.tasks)

