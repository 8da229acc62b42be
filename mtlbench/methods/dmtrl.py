"""DMTRL -- Deep Multi-Task Representation Learning, a tensor factorisation approach [yang2017]. Registered as
``dmtrl_laf``, ``dmtrl_tucker`` and ``dmtrl_tt``.

What it implements: every hidden layer is task-specific, and the T per-task weights of a
layer are stacked with the task axis last -- dense: [in, out, T]; conv: [kH, kW, C_in, C_out, T] -- and the
stacked tensor is *parametrised* by a factorisation (mtlbench/nn/tensor_factors.py): LAF (W = L S),
Tucker (core and one factor per mode, task mode included) or TT (a train of cores, task core last). The
factorisation is initialised by decomposing an initial tensor, and the ranks come from that decomposition
by the relative-error rule (``eps_or_k``, ``rank_rule``), not by hand. Biases (out x T) are task-specific and
not factorised; the per-task output heads are ordinary linear layers (tasks have different class counts, so
heads cannot be stacked). A conv layer's full tensor is rebuilt once per training iteration and sliced per
task; evaluation (``forward_task``) rebuilds only the requested task's slice. A dense layer under Tucker or TT
is applied to the inputs factor by factor instead (the same function; at near-full ranks and small batches
~30x fewer multiply-adds than rebuilding the tensor: on Omniglot's fc1 [1024, 512, 50] the rebuild dominated
the step).

Initial tensor (``init``):
- ``stl`` (paper): the weights of trained single-task networks of the same spec, read from
  ``stl_checkpoint: PATH`` -- the ``seed<k>.pt`` state_dict that an ``stl`` run saves beside its JSON record
  (e.g. ``stl_checkpoint: results/runs/<spec>/stl/seed0.pt``). Biases, BatchNorm layers and heads are taken
  from the STL networks as well.
- ``random``: T independent Kaiming (fan-in) draws per layer, or ``random_std`` times N(0, 1) (the TAAN code
  uses 0.01); ranks then reflect noise, so a warning is logged and recorded in ``summary()``.
- ``auto`` (default): ``stl`` when the ``stl_checkpoint`` file exists when the model is built, else ``random``
  (with the warning). Validation runs before training, so ``init: stl`` needs the file to exist already, while
  ``auto`` also works in one spec that lists ``stl`` before the DMTRL methods and points ``stl_checkpoint``
  at the STL run's checkpoint (``<output.dir>/<spec name>/<STL row label>/seed<k>.pt``): the STL run is
  trained, saved, then factorised. ``summary()`` records which init was used.

Step size: the factors (optimizer group ``factors``) train at ``factors_lr_mult`` x lr, 0.03 by default
(``FACTORS_LR_MULT`` below says why); the biases, BatchNorm layers and heads at lr.

Options: ``eps_or_k`` (default 0.1; scalar, or one value per SVD: LAF 1, Tucker N + 1, TT N), ``rank_rule``
(``frobenius`` default | ``spectral`` | ``interpolative``; see _tensor_factors.py), ``activation`` (``relu``
as in the paper | ``none``), ``bias_init`` (``zeros`` | ``ones``) for random init.
``fidelity: taan_code`` = yingrliu/TAAN-MTL ``DMTRL_Linear``: random 0.01 N(0, 1) tensors, LAF rank 5,
Tucker/TT relative error 0.5 by the interpolative rule, no nonlinearity between the layers, biases = 1.

Chosen ranks, parameter counts (factor and total) and the initial reconstruction error are in ``summary()``,
per named layer (fc1, conv2_1, ...). The layers run through the backbone's layer plan like every other
method's (``run_towers`` with the factorised weights), with the backbone's BatchNorm, pooling and the activation
chosen by ``activation``. Tasks with other input shapes reach the task-specific layers through their stems
(with ``init: stl`` the STL run's stems are taken too).
Known limits: with ``rank_rule: spectral`` or ``interpolative`` the tolerance holds per SVD, not for the whole
tensor. BatchNorm (conv backbone) is per task. The TAAN code rebuilds the tensor once per task per iteration;
here it is once per iteration (same values, T times less work).
"""
from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from mtlbench.nn.backbone import ActFactory, NoActivation, make_heads, relu_factory
from mtlbench.nn.layer_plan import Layer, Trunk, plan_for, run_towers
from mtlbench.nn.method import MethodParams, MTLMethod, count_parameters
from mtlbench.nn.method_helpers import apply_fidelity, load_state, raise_if_refused, stl_checkpoint_problems
from mtlbench.nn.tensor_factors import FACTORISATIONS
from mtlbench.registry import METHODS

log = logging.getLogger(__name__)
RANDOM_WARNING = ("DMTRL factorises a random tensor (no STL checkpoint): the ranks reflect noise, not the "
                  "paper's trained single-task weights")


# The SVD factors' default step size, a decided reading (DMTRL version 2; results.METHOD_VERSIONS). The paper
# trains its factorised layers with one learning rate, but it does not say which parametrisation that rate
# meets. Ours starts from the STL weights factorised by SVD, whose factors hold orthonormal columns: on
# Omniglot's fc1 (524,288 x 50) LAF's shared factor has entries of ~0.0014 (rms) against ~0.047 for the weights
# they encode, so Adam's per-entry steps of ~lr change a factor ~30x more, relatively, than they change a plain
# weight, and the STL start collapses within 100 steps (Table 3 CPU at the plain rate: LAF 42.4%, TT 55.7%,
# Tucker 67.5% pooled test accuracy). 0.03 ~= 0.0014 / 0.047 makes a step change the factors as much,
# relatively, as a plain weight (Table 3 CPU, 5 seeds: LAF 71.55, TT 71.99, Tucker 74.04). ``fidelity:
# taan_code`` keeps the TAAN code's plain rate (1).
FACTORS_LR_MULT = 0.03


@functools.cache
def warn_random_once() -> None:
    # `timing` and the parameter counts rebuild the model many times in one process: say it once; the record
    # carries the warning of every run anyway.
    log.warning(RANDOM_WARNING)


class DMTRLParams(MethodParams):
    fidelity: Literal["paper", "taan_code"] = "paper"
    init: Literal["auto", "stl", "random"] = "auto"
    stl_checkpoint: str | None = None
    eps_or_k: float | list[float] = Field(default=0.1, description="relative error (< 1) or rank (>= 1)")
    rank_rule: Literal["frobenius", "spectral", "interpolative"] = "frobenius"
    random_std: float | None = Field(default=None, gt=0, description="None = Kaiming fan-in std per layer")
    activation: Literal["relu", "none"] = "relu"
    bias_init: Literal["zeros", "ones"] = "zeros"
    factors_lr_mult: float = Field(default=FACTORS_LR_MULT, gt=0, description="learning-rate multiplier of "
                                   "the SVD factors (group `factors`); 1 = the plain learning rate")

    @model_validator(mode="before")
    @classmethod
    def _fidelity(cls, data):
        return apply_fidelity(data, cls.taan_code_defaults())

    @classmethod
    def taan_code_defaults(cls) -> dict:
        return {"init": "random", "random_std": 0.01, "eps_or_k": 0.5, "rank_rule": "interpolative",
                "activation": "none", "bias_init": "ones", "factors_lr_mult": 1.0}


class LAFParams(DMTRLParams):
    @classmethod
    def taan_code_defaults(cls) -> dict:
        return {**super().taan_code_defaults(), "eps_or_k": 5}


def stacked_shape(layer: Layer) -> tuple[int, ...]:
    """One task's weight in the stacked layout: dense [in, out], conv [kH, kW, C_in, C_out]."""
    if layer.kind == "conv":
        return (layer.kernel_size, layer.kernel_size, layer.in_shape[0], layer.width)
    return (layer.in_shape[0], layer.width)


def to_stacked(layer: Layer, w: torch.Tensor) -> torch.Tensor:
    """A torch weight ([out, in] or [out, in, kh, kw]) in the stacked layout."""
    return w.permute(2, 3, 1, 0) if layer.kind == "conv" else w.T


def to_torch(layer: Layer, w: torch.Tensor) -> torch.Tensor:
    """One task's slice of the stacked tensor in torch's layout (the inverse of ``to_stacked``)."""
    return w.permute(3, 2, 0, 1) if layer.kind == "conv" else w.T


class DMTRL(MTLMethod):
    """Every hidden layer's task-stacked weight tensor parametrised by a factorisation with data-driven ranks.

    Params (YAML)::

        fidelity: paper          # paper | taan_code (random 0.01 N(0,1), LAF K=5 / eps 0.5 interpolative,
                                 #   no activation, biases 1)
        init: auto               # auto (stl if the stl_checkpoint file exists, else random + warning) | stl | random
        stl_checkpoint: null     # e.g. results/runs/<spec>/stl/seed0.pt (an stl run's saved state_dict)
        eps_or_k: 0.1            # < 1: relative error; >= 1: rank; or a list, one per SVD
        rank_rule: frobenius     # frobenius (whole-tensor error) | spectral | interpolative (toolbox, scipy)
        random_std: null         # random init: null = Kaiming fan-in std per layer, else std * N(0, 1)
        activation: relu         # relu (paper) | none (TAAN code)
        bias_init: zeros         # zeros | ones (TAAN code); with init stl the STL biases are used
        factors_lr_mult: 0.03    # the SVD factors' learning rate, x lr (the spec's optimizer.lr_mult.factors
                                 #   multiplies on top); 1 = the plain rate (DMTRL version 1, TAAN code)
    """

    Params = DMTRLParams
    groups = {"factors": ("tensors.*",)}  # the factorised layer weights (the shared and task-specific factors)
    cite = "yang2017"  # mtlbench/config/bibliography.yaml
    factorisation: ClassVar[str] = ""

    def __init__(self, info, backbone, params: DMTRLParams):
        super().__init__(info, backbone, params)
        raise_if_refused(type(self), info, backbone, params)
        self.init_used = "stl" if params.init == "stl" or checkpoint_exists(params) else "random"
        stl = load_state(params.stl_checkpoint) if self.init_used == "stl" else None
        if stl is None and self.random_is_a_stand_in:
            warn_random_once()
        self._build(stl)

    @property
    def random_is_a_stand_in(self) -> bool:
        # the paper factorises trained STL weights, so random tensors stand in for them and are warned about; the
        # TAAN code's model (fidelity: taan_code) is random by design
        return self.params.fidelity != "taan_code"

    def group_lr_mult(self) -> dict[str, float]:
        """The factors' step size (``FACTORS_LR_MULT`` says why it is not 1)."""
        return {"factors": self.params.factors_lr_mult}

    def activation_factory(self) -> ActFactory:
        return relu_factory if self.params.activation == "relu" else (lambda layer, width: NoActivation())

    # -- construction ---------------------------------------------------------------------------------------
    def _build(self, stl: dict | None) -> None:
        T, layers = self.info.n_tasks, self.plan.layers
        build = FACTORISATIONS[self.factorisation]
        stacks = [self._initial_stack(layer, stl) for layer in layers]
        self.tensors = nn.ModuleList(build(w, self.params.eps_or_k, self.params.rank_rule) for w in stacks)
        with torch.no_grad():
            self.init_error = [float((f.full().double() - w).norm() / w.norm())
                               for f, w in zip(self.tensors, stacks)]
        # per task: the layers' biases, BatchNorm, activation, pooling; the weights are the factorised tensors
        self.towers = nn.ModuleList(Trunk(self.plan, self.activation_factory(), weighted=False) for _ in range(T))
        with torch.no_grad():
            for layer in layers:
                bias = self._initial_bias(layer, stl)
                for t, tower in enumerate(self.towers):
                    tower.blocks[layer.index].affine.bias.copy_(bias[t])
        self.heads = make_heads(self.plan.out_features, self.info.tasks)
        if stl is not None:
            self._copy_from_stl(stl)

    def _initial_stack(self, layer: Layer, stl: dict | None) -> torch.Tensor:
        T, i = self.info.n_tasks, layer.index
        if stl is not None:
            ws = [to_stacked(layer, stl[f"trunks.{t}.blocks.{i}.affine.weight"]) for t in range(T)]
            return torch.stack(ws, dim=-1).double()
        shape = stacked_shape(layer)
        std = self.params.random_std or math.sqrt(2.0 / math.prod(shape[:-1]))
        return torch.randn(*shape, T, dtype=torch.float64) * std

    def _initial_bias(self, layer: Layer, stl: dict | None) -> torch.Tensor:
        T, i = self.info.n_tasks, layer.index
        if stl is not None:
            return torch.stack([stl[f"trunks.{t}.blocks.{i}.affine.bias"] for t in range(T)]).float()
        fill = 1.0 if self.params.bias_init == "ones" else 0.0
        return torch.full((T, layer.width), fill)

    def _copy_from_stl(self, stl: dict) -> None:
        self.stems.load_state_dict({k[len("stems."):]: v for k, v in stl.items() if k.startswith("stems.")})
        for t in range(self.info.n_tasks):
            self.heads[t].load_state_dict({k.split(".", 2)[2]: v for k, v in stl.items()
                                           if k.startswith(f"heads.{t}.")})
            for i, block in enumerate(self.towers[t].blocks):
                prefix = f"trunks.{t}.blocks.{i}.norm."
                block.norm.load_state_dict({k[len(prefix):]: v for k, v in stl.items() if k.startswith(prefix)})

    # -- forward --------------------------------------------------------------------------------------------
    def forward_all(self, hs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        tasks = list(range(self.info.n_tasks))
        hs = run_towers(self.plan, [tower.blocks for tower in self.towers], hs,
                        weights=lambda layer: self.layer_weights(layer, tasks))
        return [self.heads[t](h) for t, h in enumerate(hs)]

    def forward_one(self, h: torch.Tensor, task: int) -> torch.Tensor:
        hs = run_towers(self.plan, [self.towers[task].blocks], [h],
                        weights=lambda layer: self.layer_weights(layer, [task]))
        return self.heads[task](hs[0])

    def layer_weights(self, layer: Layer, tasks: list[int]):
        """The weights of ``tasks`` at ``layer`` for run_towers: a dense Tucker / TT layer as a linear map applied
        through its factors (W never built); otherwise one task's slice, or the full tensor rebuilt once for
        all tasks -- sliced by unbind, not full[..., t]: indexing makes autograd add T zero-filled full-size
        gradients (Omniglot's fc1: 50 x 26M floats per step), unbind stacks one (the same values)."""
        f = self.tensors[layer.index]
        if f.applicable:
            return lambda xs: f.apply_to(xs, tasks)
        if len(tasks) == 1:
            return [to_torch(layer, f.task(tasks[0]))]
        return [to_torch(layer, w) for w in f.full().unbind(-1)]

    # -- reporting ------------------------------------------------------------------------------------------
    def summary(self) -> dict:
        layers = [{"name": layer.name, "shape": list(f.shape), "ranks": f.ranks, "params": f.n_params(),
                   "init_rel_error": e} for layer, f, e in zip(self.plan.layers, self.tensors, self.init_error)]
        info = {"factorisation": self.factorisation, "init": self.init_used, "rank_rule": self.params.rank_rule,
                "eps_or_k": self.params.eps_or_k, "stl_checkpoint": self.params.stl_checkpoint, "layers": layers,
                "factor_params": sum(f.n_params() for f in self.tensors), "total_params": count_parameters(self)}
        if self.init_used == "random" and self.random_is_a_stand_in:
            info["warning"] = RANDOM_WARNING
        return {"dmtrl": info}

    @classmethod
    def check(cls, info, backbone, params) -> list[str]:
        name = getattr(cls, "registry_name", "dmtrl")
        problems = eps_problems(name, cls.factorisation, params.eps_or_k, backbone, info)
        if params.init == "stl" or checkpoint_exists(params):  # auto + a missing file = random, decided at build
            problems += stl_checkpoint_problems(params.stl_checkpoint, info, backbone, name, "init: stl")
        if params.rank_rule == "interpolative":
            try:
                import scipy.linalg.interpolative  # noqa: F401
            except ImportError:
                problems.append(f"{name}: rank_rule: interpolative needs scipy (pip install scipy)")
        return problems


def checkpoint_exists(params: DMTRLParams) -> bool:
    return params.init == "auto" and bool(params.stl_checkpoint) and Path(params.stl_checkpoint).is_file()


def eps_problems(name: str, factorisation: str, eps_or_k, backbone, info) -> list[str]:
    values = eps_or_k if isinstance(eps_or_k, list) else [eps_or_k]
    problems = [f"{name}: eps_or_k values must be > 0 (got {v})" for v in values if v <= 0]
    problems += [f"{name}: eps_or_k value {v} >= 1 must be a whole rank" for v in values
                 if v >= 1 and v != int(v)]
    if not isinstance(eps_or_k, list) or problems:
        return problems
    for layer in plan_for(info, backbone).layers:
        modes = len(stacked_shape(layer)) + 1  # + the task axis
        n_svd = {"LAF": 1, "Tucker": modes, "TT": modes - 1}[factorisation]
        if len(eps_or_k) != n_svd:
            problems.append(f"{name}: eps_or_k lists {len(eps_or_k)} values but layer {layer.name} "
                            f"({modes}-mode tensor) "
                            f"needs {n_svd} for {factorisation} -- give one value per SVD or a single value")
            break
    return problems


@METHODS.register("dmtrl_laf")
class DMTRLLAF(DMTRL):
    """DMTRL with last-axis flattening: W = L S. Options: see ``DMTRL``."""

    Params = LAFParams
    factorisation = "LAF"


@METHODS.register("dmtrl_tucker")
class DMTRLTucker(DMTRL):
    """DMTRL with a Tucker factorisation (core and one factor per mode). Options: see ``DMTRL``."""

    factorisation = "Tucker"


@METHODS.register("dmtrl_tt")
class DMTRLTT(DMTRL):
    """DMTRL with a tensor-train factorisation (task core last). Options: see ``DMTRL``."""

    factorisation = "TT"
