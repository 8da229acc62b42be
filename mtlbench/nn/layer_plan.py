"""The layer plan of a trunk, and ``run_towers``: the one place where a trunk's layer arithmetic is written.

A *plan* is what a backbone spec means for one trunk input shape, computed before anything is built: per
layer its kind (conv | dense), name (conv1_1 ... conv5_3 on a VGG trunk, conv1, conv2 ... on the conv kind,
fc1, fc2 ... for dense layers), input and output shapes, pooling, and whether it ends a stage. So ``validate``
can refuse a backbone whose feature maps vanish, and summaries can name layers.

A *tower* is a sequence of ``Block``s (affine map, optional BatchNorm, activation, optional max-pool, dropout),
one per layer. ``run_towers`` applies towers layer by layer:
- one tower on all tasks' rows (Hard-Share, TAAN, each MMoE expert), or one tower per task (STL, MRN's task
  part, DMTRL), or one tower per task on all tasks' rows (Cross-Stitch, NDDR);
- ``fuse``: units after chosen layers that read every tower's activations at once (Cross-Stitch, NDDR);
- ``weights``: per-tower weights of a layer computed by the method each forward (DMTRL's factorised tensors,
  kernel sharing); a stacked conv weight [towers, out, in, k, k] runs all towers in one grouped conv.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtlbench.errors import SpecError
from mtlbench.nn import fast_conv
from mtlbench.nn.backbone import ActFactory, BackboneSpec, Segments, TrunkInput, init_shared, relu_factory
from mtlbench.store.dataset import DataInfo


class PlanError(SpecError):
    """A backbone that cannot be built for the trunk's input: ``field`` is the key under ``backbone`` at fault
    (() for the backbone as a whole), ``message`` one line naming the layer."""

    def __init__(self, message: str, field: tuple[str, ...] = ()):
        self.field, self.message = field, message
        super().__init__([f"{'.'.join(('backbone', *field))}: {message}"])


@dataclass(frozen=True)
class Layer:
    index: int  # position in the trunk; also the layer number the activation factory receives
    name: str
    kind: str  # "conv" | "dense"
    in_shape: tuple[int, ...]  # (C, H, W) or (D,) -- a dense layer's input after flattening
    out_shape: tuple[int, ...]  # after pooling
    kernel_size: int = 0
    padding: int = 0
    pool: int = 1  # max-pool size after the activation (1 = none)
    flatten: bool = False  # the input is flattened first (the first dense layer after convolutions)
    stage: int = 0  # stage number (1-based); 0 for a VGG trunk's dense layers, which form no stage
    stage_end: bool = False
    batch_norm: bool = False
    dropout: float = 0.0

    @property
    def width(self) -> int:
        return self.out_shape[0]


@dataclass(frozen=True)
class Plan:
    kind: str
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]

    @property
    def out_features(self) -> int:
        return math.prod(self.layers[-1].out_shape)

    def stage_ends(self) -> list[int]:
        return [layer.index for layer in self.layers if layer.stage_end]

    def index_of(self, name: str) -> int | None:
        return next((layer.index for layer in self.layers if layer.name == name), None)


# -- from a spec to a plan --------------------------------------------------------------------------------------
def trunk_kind(info: DataInfo, spec: BackboneSpec) -> str:
    if spec.kind != "auto":
        return spec.kind
    return "mlp" if info.input_kinds == {"vector"} else "conv"


def trunk_input(info: DataInfo, spec: BackboneSpec) -> tuple[int, ...]:
    """The trunk's input shape: ``backbone.input`` where given, else derived from the tasks --
    mlp: the tasks' common input shape (an image is flattened by the first layer), or with differing shapes the
    largest flattened size; conv / vgg: the largest channel count, height and width among the image tasks (so by
    default no image task loses resolution or colour; with one shared shape, that shape)."""
    kind, given = trunk_kind(info, spec), spec.input or TrunkInput()
    if kind == "mlp":
        if given.channels or given.size:
            raise PlanError("an mlp trunk takes input: {features: N}, not channels or size", ("input",))
        if given.features:
            return (given.features,)
        shapes = {t.input_shape for t in info.tasks}
        return shapes.pop() if len(shapes) == 1 else (max(math.prod(s) for s in shapes),)
    if given.features:
        raise PlanError(f"a {kind} trunk takes input: {{channels: C, size: S}}, not features", ("input",))
    images = [t.input_shape for t in info.tasks if len(t.input_shape) == 3]
    if not images and not (given.channels and given.size):
        raise PlanError(f"every task of {info.name!r} is a vector, so a {kind} trunk needs "
                        f"input: {{channels: C, size: S}} (or kind: mlp)", ("input",))
    c = given.channels or max(s[0] for s in images)
    if given.size is None:
        return (c, max(s[1] for s in images), max(s[2] for s in images))
    h, w = (given.size, given.size) if isinstance(given.size, int) else given.size
    return (c, h, w)


def plan_for(info: DataInfo, spec: BackboneSpec) -> Plan:
    return build_plan(spec, trunk_kind(info, spec), trunk_input(info, spec))


def backbone_problems(info: DataInfo, spec: BackboneSpec) -> list[PlanError]:
    """Why this backbone cannot run on these tasks (empty when it can): every layer's shape is computed for
    the trunk's input, which every task reaches through its stem."""
    try:
        plan_for(info, spec)
    except PlanError as e:
        return [e]
    return []


def build_plan(spec: BackboneSpec, kind: str, input_shape: tuple[int, ...]) -> Plan:
    if kind == "mlp":
        return Plan(kind, input_shape, tuple(dense_layers(spec, input_shape, spec.hidden, 0, True)))
    if len(input_shape) != 3:
        raise PlanError(f"a {kind} trunk needs image inputs (C, H, W), got {input_shape}")
    layers: list[Layer] = []
    shape = input_shape
    for i, (name, width, padding, pool, stage, end) in enumerate(conv_layers(spec, kind)):
        out = conv_output(shape, width, spec.kernel_size, padding, pool)
        if min(out[1:]) < 1:
            raise PlanError(too_small(input_shape, layers, name, shape, spec.kernel_size, padding, pool, out))
        layers.append(Layer(i, name, "conv", shape, out, spec.kernel_size, padding, pool, stage=stage,
                            stage_end=end, batch_norm=spec.conv_batch_norm))
        shape = out
    layers += dense_layers(spec, shape, spec.dense, len(layers), kind == "conv")
    return Plan(kind, input_shape, tuple(layers))


def conv_layers(spec: BackboneSpec, kind: str) -> list[tuple[str, int, int, int, int, bool]]:
    """(name, width, padding, pool, stage, ends a stage) of every conv layer."""
    if kind == "conv":  # every block is a stage of its own: conv, pool
        return [(f"conv{i + 1}", spec.scaled(c), spec.padding, spec.pool, i + 1, True)
                for i, c in enumerate(spec.channels)]
    if any(not stage for stage in spec.stages):
        raise PlanError("every VGG stage needs at least one conv width", ("stages",))
    pad = (spec.kernel_size - 1) // 2  # VGG's convolutions keep the size; only the pooling shrinks it
    return [(f"conv{s}_{k}", spec.scaled(c), pad, spec.pool if k == len(stage) else 1, s, k == len(stage))
            for s, stage in enumerate(spec.stages, 1) for k, c in enumerate(stage, 1)]


def conv_output(shape: tuple[int, ...], width: int, k: int, padding: int, pool: int) -> tuple[int, int, int]:
    _, h, w = shape
    return (width, (h + 2 * padding - k + 1) // pool, (w + 2 * padding - k + 1) // pool)


def dense_layers(spec: BackboneSpec, shape: tuple[int, ...], widths: Sequence[int], start: int,
                 stages: bool) -> list[Layer]:
    layers = []
    for j, w in enumerate(widths):
        i, width = start + j, spec.scaled(w)
        layers.append(Layer(i, f"fc{j + 1}", "dense", (math.prod(shape),), (width,), flatten=len(shape) > 1,
                            stage=i + 1 if stages else 0, stage_end=stages, batch_norm=spec.dense_batch_norm,
                            dropout=spec.dropout))
        shape = (width,)
    return layers


def too_small(input_shape, done: list[Layer], name, shape, k, padding, pool, out) -> str:
    fmt = "x".join
    after = ", ".join(f"{layer.name} {fmt(map(str, layer.out_shape))}" for layer in done) or "nothing before it"
    op = f"{k}x{k} convolution (padding {padding})" + (f" and {pool}x{pool} max-pool" if pool > 1 else "")
    return (f"the trunk input {fmt(map(str, input_shape))} (every task's input, after its stem) is too "
            f"small for this backbone: {name} gets {fmt(map(str, shape))} and its {op} would leave "
            f"{max(out[1], 0)}x{max(out[2], 0)} ({after}); give a larger backbone.input size, more padding or "
            f"fewer conv layers")


# -- towers -----------------------------------------------------------------------------------------------------
class Bias(nn.Module):
    """The affine map of a layer whose weights the method computes each forward (``run_towers(weights=...)``):
    only the bias is a parameter here."""

    def __init__(self, width: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(width))


class Block(nn.Module):
    fast = False  # the fast conv path (mtlbench.nn.fast_conv.configure sets it per block)

    def __init__(self, affine: nn.Module, norm: nn.Module, act: nn.Module, pool: nn.Module, dropout: float):
        super().__init__()
        self.affine, self.norm, self.act, self.pool = affine, norm, act, pool
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def finish(self, z: torch.Tensor, segments: Segments | None = None) -> torch.Tensor:
        """Everything after the affine map: BatchNorm, activation, pooling, dropout."""
        if self.fast:
            return fast_conv.finish(self, z, segments)
        return self.drop(self.pool(self.act(self.norm(z), segments)))

    def forward(self, x: torch.Tensor, segments: Segments | None = None) -> torch.Tensor:
        if self.fast:
            return fast_conv.forward(self, x, segments)
        return self.finish(self.affine(x), segments)


def build_block(layer: Layer, act: ActFactory, weighted: bool = True) -> Block:
    """One layer's modules; ``weighted=False`` leaves the weight to the method (a ``Bias`` only)."""
    c_in, width = layer.in_shape[0], layer.width
    if layer.kind == "conv":
        affine = nn.Conv2d(c_in, width, layer.kernel_size, padding=layer.padding) if weighted else Bias(width)
        norm = nn.BatchNorm2d(width) if layer.batch_norm else nn.Identity()
        pool = nn.MaxPool2d(layer.pool) if layer.pool > 1 else nn.Identity()
        return Block(affine, norm, act(layer.index, width), pool, 0.0)
    activation = act(layer.index, width)  # before the weights: keeps the random draws of earlier versions
    affine = nn.Linear(c_in, width) if weighted else Bias(width)
    norm = nn.BatchNorm1d(width) if layer.batch_norm else nn.Identity()
    return Block(affine, norm, activation, nn.Identity(), layer.dropout)


class Trunk(nn.Module):
    """One tower over the whole plan: hidden layers from the trunk input to the feature vector [N, out_features]."""

    def __init__(self, plan: Plan, act: ActFactory = relu_factory, weighted: bool = True):
        super().__init__()
        self.plan = plan
        self.blocks = nn.ModuleList(build_block(layer, act, weighted) for layer in plan.layers)
        init_shared(self)

    @property
    def out_features(self) -> int:
        return self.plan.out_features

    def forward(self, x: torch.Tensor, segments: Segments | None = None) -> torch.Tensor:
        return run_towers(self.plan, [self.blocks], [x], segments)[0]


# fuse[layer index](activations stacked over towers [K, rows, ...]) -> the same shape
Fuse = Mapping[int, Callable[[torch.Tensor], torch.Tensor]]
# weights(layer) -> None (use the blocks' own weights) or one weight per tower: a list, or stacked [K, ...];
# for a dense layer also a LinearMap: the towers' inputs -> their x W^T (no bias), for methods whose weights are
# cheaper to apply than to build (DMTRL's factorisations)
LinearMap = Callable[[Sequence[torch.Tensor]], Sequence[torch.Tensor]]
Weights = Callable[[Layer], "torch.Tensor | Sequence[torch.Tensor] | LinearMap | None"]


def run_towers(plan: Plan, towers: Sequence[Sequence[Block]], hs: Sequence[torch.Tensor],
               segments: Segments | None = None, fuse: Fuse | None = None, weights: Weights | None = None,
               layers: Sequence[Layer] | None = None) -> list[torch.Tensor]:
    """Apply ``layers`` (default: the whole plan; a slice for partly shared trunks) of every tower to its input
    ``hs[k]``; ``towers[k][j]`` is tower k's block of ``layers[j]``. ``segments`` are the row segments every
    tower's input holds (task-aware activations read them). After a layer in ``fuse``, the towers' activations
    are replaced by what the unit makes of all of them. The trunk's output is flattened to [rows, features]."""
    layers = plan.layers if layers is None else layers
    hs = list(hs)
    for j, layer in enumerate(layers):
        if layer.flatten:
            hs = [h.flatten(1) for h in hs]
        blocks = [tower[j] for tower in towers]
        w = weights(layer) if weights is not None else None
        if w is None:
            hs = [block(h, segments) for block, h in zip(blocks, hs)]
        else:
            hs = [block.finish(z, segments) for block, z in zip(blocks, computed_affine(layer, blocks, hs, w))]
        if fuse is not None and layer.index in fuse:
            hs = list(fuse[layer.index](torch.stack(hs)))
    if layers and layers[-1].index == len(plan.layers) - 1 and layers[-1].kind == "conv":
        hs = [h.flatten(1) for h in hs]
    return hs


def computed_affine(layer: Layer, blocks: Sequence[Block], hs: Sequence[torch.Tensor], w) -> list[torch.Tensor]:
    """The layer's affine map with method-computed weights (conv [out, in, k, k], dense [out, in] per tower) and
    each block's bias."""
    biases = [block.affine.bias for block in blocks]
    if layer.kind == "dense" and callable(w):
        return [z if b is None else z + b for z, b in zip(w(hs), biases)]
    if layer.kind == "dense":
        return [h @ wk.t() if b is None else h @ wk.t() + b for h, wk, b in zip(hs, w, biases)]
    if torch.is_tensor(w) and len(hs) > 1 and len({h.shape for h in hs}) == 1:
        return grouped_conv(hs, w, biases, layer.padding)
    return [F.conv2d(h, wk, b, padding=layer.padding) for h, wk, b in zip(hs, w, biases)]


def grouped_conv(hs: Sequence[torch.Tensor], w: torch.Tensor, biases, padding: int) -> list[torch.Tensor]:
    """Every tower's conv in one call: inputs side by side on the channel axis, one group per tower."""
    k = len(hs)
    bias = None if biases[0] is None else torch.cat(list(biases))
    z = F.conv2d(torch.cat(list(hs), dim=1), w.reshape(k * w.shape[1], *w.shape[2:]), bias, padding=padding,
                 groups=k)
    return list(z.view(z.shape[0], k, w.shape[1], *z.shape[2:]).unbind(1))
