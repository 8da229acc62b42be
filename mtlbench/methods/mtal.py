"""MTAL -- multi-task learning by sharing similar convolution kernel pairs across heterogeneous tasks [feng2021].
Registered as ``mtal`` (every task pair a candidate) and ``mtal_r`` (MTAL_R: only pairs inside the dataset's prior
task groups; the same method with ``relations: groups``).

What it implements: every task has its own network of the same trunk (the backbone; the paper's VGG-16, one
tower per task as ``stl``'s, same parameter names) with its own stem and head. At every convolution layer, each
forward, for every candidate task pair (i, j):
1. the cosine of kernel pairs, s = cos(vec w_i,k, vec w_j,k') (eq. 3) -- ``pairing: index`` compares filter k
   with filter k' = k; ``best_match`` with j's filter of highest cosine, kept only where the match is mutual;
2. a pair is shared when s >= ``delta`` (eq. 4; the mask is recomputed every forward, from the current
   weights, and carries no gradient -- the threshold is not differentiated);
3. the pair's aggregated kernel w_ij = phi_ij w_i + phi_ji w_j with phi_ij = sigmoid(theta_ij) and
   phi_ji = 1 - phi_ij, so w_ij = w_ji (eq. 5); one theta per unordered candidate pair and layer, starting at 0;
4. task i's effective filter k is the mean of w_ij over the j whose pair was selected; a filter with no
   selected pair stays task i's own w_i,k (eq. 6).
Gradients flow through the effective filters into the raw filters and the thetas. All tasks' kernels of a layer
are handled in one vectorised computation (``mtlbench.nn.kernel_sharing``: the m x T x T cosines from
per-filter Gram matrices, the aggregation as one batched product with an m x T x T coefficient tensor) and the
layer runs through the layer plan's ``weights`` hook: the stacked effective kernels [T, out, in, k, k] as one
grouped convolution on a GPU; on a CPU one convolution per task from the same stack, because CPU grouped
convolutions measured up to 4x slower than per-task ones on the early, large feature maps (1 thread, 32 x 32
maps, 1 or 8 input channels); with nothing selected a CPU run then computes bit for bit what ``stl`` computes.

Objective (eqs. 7-8): the tasks' cross-entropies plus lambda * sum_i ||W_i||_F^2 over every task network's
weights (stem, conv kernels, dense and head weight matrices; not biases or BatchNorm). Eq. 7 *sums* the loss
over samples and tasks; our trainer *averages* (over each task's batch, then over tasks), so:
- ``l2_reduction: sum`` (default): eq. 7 divided through by the number of rows in the step (T x N), so the
  penalty keeps the paper's weight against the data term: lambda * sum_i ||W_i||^2 / (T N), N the batch per
  task (read from the training forward);
- ``l2_reduction: mean``: lambda * (1/T) sum_i ||W_i||^2 beside the averaged loss (N times stronger than the
  paper's balance at the same lambda -- ordinary weight decay 2 lambda / T).

Options (YAML)::

    delta: 0.4               # sharing threshold on the cosine (paper: 0.4 related, 0.55 unrelated tasks);
                             #   > 1 shares nothing (STL), <= -1 every compared pair
    pairing: index           # index (filter k with filter k) | best_match (mutual best cosine)
    phi: learned             # learned (sigmoid(theta), theta from 0) | fixed (0.5)
    init: independent        # independent (Algorithm 1's random W) | shared | shared_noise -- see below
    init_noise: 0.1          # shared_noise: std of the added noise, a fraction of the layer's Kaiming std
    relations: none          # none (MTAL: every pair a candidate) | groups (MTAL_R: info.metadata["groups"])
    l2_reduction: sum        # sum (eq. 7's balance) | mean
    lambda: 0.1              # eq. 7's L2 coefficient (paper: 0.1)

Decisions. The paper names no pairing (``index`` is what eq. 3's shared index k reads as), no parametrisation
of phi (sigmoid keeps phi_ij + phi_ji = 1 with one free number per pair), no initialisation beyond "random";
the options make each choice explicit.

The shared-initialisation lock (why ``init: shared`` is never the default): with phi_ij + phi_ji = 1, two tasks
whose filter k starts identical both use w_12 = phi w_1 + (1 - phi) w_2 = w_21, so their raw filters receive
the gradients phi (g_1 + g_2) and (1 - phi)(g_1 + g_2): the same direction for ever. At phi = 0.5 both get the
same update, the filters stay identical (cosine 1, always selected), theta_12 gets the gradient
(g_1 + g_2) . (w_1 - w_2) = 0 and never moves: the trunk is Hard-Share's, not a learned sharing. Measured on two
tasks, 30 SGD steps (tests/test_mtal.py): the two tasks' kernels are still bitwise identical in every layer,
every filter is selected and every theta is exactly 0. With more tasks the gradients differ only by each task's own
share (g_i / 2 against the others' mean), so the filters drift apart slowly while staying above delta (a prototype:
100% sharing after 1,000 steps with 7 tasks). ``shared_noise`` breaks the symmetry by noise; ``independent``
draws each task's trunk on its own, as Algorithm 1 does. With independent random filters, chance similarity
reaches delta = 0.4 mainly in low-dimensional kernels (P(cos >= 0.4) about 12.5% for 9-d, one input channel
3x3; 1.8% for 27-d; ~0 from 72-d up), so sharing happens mainly in the first conv layer.

``summary()`` (computed on the selected, restored weights) records per named conv layer and task pair the
filters m, shared count, mean cosine and phi; per layer the three sharing ratios -- (a) ``pair_entries``:
shared (filter, unordered task pair) entries / all entries (over all task pairs, candidates or not), (b)
``filters_with_partner``: filters with at least one partner / (T m), (c) ``compression``: 1 - distinct
effective kernels / (T m) -- with their totals over the network (simple mean over layers, weighted by filters,
weighted by kernel parameters), the deduplicated kernel count, the task-by-task mean-cosine matrices
(``mtlbench report`` draws them as heat maps) and the settings.
Parameters: ``stl``'s plus one theta per candidate pair and conv layer (none with ``phi: fixed``).
Known limits: only convolution layers share (the paper's Table 6 is about conv kernels); an ``mlp`` backbone is
refused. BatchNorm stays per task, as in STL.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, model_serializer
from torch import nn

from mtlbench.nn import kernel_sharing as ks
from mtlbench.nn.backbone import make_heads
from mtlbench.nn.layer_plan import Layer, Trunk, plan_for, run_towers
from mtlbench.nn.method import MethodParams, MTLMethod
from mtlbench.nn.method_helpers import raise_if_refused
from mtlbench.registry import METHODS


class MTALParams(MethodParams):
    delta: float = Field(default=0.4, description="share a kernel pair when its cosine is >= delta")
    pairing: Literal["index", "best_match"] = "index"
    phi: Literal["learned", "fixed"] = "learned"
    init: Literal["independent", "shared", "shared_noise"] = "independent"
    init_noise: float = Field(default=0.1, ge=0.0, description="shared_noise: std / the layer's Kaiming std")
    relations: Literal["none", "groups"] = "none"
    l2_reduction: Literal["sum", "mean"] = "sum"
    lambda_: float = Field(default=0.1, ge=0.0, alias="lambda", description="eq. 7's L2 coefficient")

    @model_serializer(mode="wrap")
    def _dump(self, handler):  # records and round trips use the spec's name, `lambda`
        data = handler(self)
        if "lambda_" in data:
            data["lambda"] = data.pop("lambda_")
        return data


class MTALRParams(MTALParams):
    relations: Literal["none", "groups"] = "groups"


@METHODS.register("mtal")
class MTAL(MTLMethod):
    """Per-task towers; at every conv layer kernel pairs of candidate task pairs whose cosine is >= delta are
    aggregated (w_ij = phi_ij w_i + phi_ji w_j) and averaged into each task's effective filters.

    Params (YAML)::

        delta: 0.4               # > 1: nothing shared (STL); paper 0.4 related / 0.55 unrelated
        pairing: index           # index | best_match (mutual)
        phi: learned             # learned (sigmoid(theta)) | fixed (0.5)
        init: independent        # independent | shared (locks: see the module docstring) | shared_noise
        init_noise: 0.1
        relations: none          # none (MTAL) | groups (MTAL_R)
        l2_reduction: sum        # sum (eq. 7's balance: / (T N)) | mean (/ T)
        lambda: 0.1
    """

    Params = MTALParams
    groups = {"thetas": ("thetas.*",)}  # the pair weights phi = sigmoid(theta): optimizer.lr_mult: {thetas: ...}
    cite = "feng2021"  # mtlbench/config/bibliography.yaml

    def __init__(self, info, backbone, params: MTALParams):
        super().__init__(info, backbone, params)
        raise_if_refused(type(self), info, backbone, params)
        self.trunks = nn.ModuleList(Trunk(self.plan) for _ in info.tasks)
        self.heads = make_heads(self.plan.out_features, info.tasks)
        self.conv_layers = [layer for layer in self.plan.layers if layer.kind == "conv"]
        self.pairs = candidate_pairs(info, params.relations)
        if params.phi == "learned" and self.pairs:
            self.thetas = nn.ParameterDict({layer.name: nn.Parameter(torch.zeros(len(self.pairs)))
                                            for layer in self.conv_layers})
        self._rows: int | None = None  # rows of the last training forward (eq. 7's sample count)
        self._index: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        initialise_kernels(self, params)

    # -- the sharing ----------------------------------------------------------------------------------------------
    def kernels(self, layer: Layer) -> torch.Tensor:
        """Every task's raw kernels of a conv layer, filter-major [m, T, d] (d = in x k x k)."""
        w = torch.stack([trunk.blocks[layer.index].affine.weight for trunk in self.trunks], dim=1)
        return w.flatten(2)

    def indices(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(candidate mask [T, T] bool, candidate pairs [P, 2]) on ``device`` (cached)."""
        if device not in self._index:
            T = self.info.n_tasks
            pairs = torch.tensor(self.pairs, dtype=torch.long).reshape(-1, 2)
            mask = torch.zeros(T, T, dtype=torch.bool)
            mask[pairs[:, 0], pairs[:, 1]] = True
            self._index[device] = ((mask | mask.t()).to(device), pairs.to(device))
        return self._index[device]

    def phi(self, layer: Layer, device: torch.device) -> torch.Tensor:
        theta = self.thetas[layer.name] if hasattr(self, "thetas") else None
        return ks.phi_matrix(theta, self.indices(device)[1], self.info.n_tasks)

    def share(self, layer: Layer) -> tuple[torch.Tensor, ks.Selection, torch.Tensor, torch.Tensor]:
        """(raw kernels, the selection, phi [T, T], effective kernels) of a conv layer; kernels [m, T, d]."""
        w = self.kernels(layer)
        candidates, _ = self.indices(w.device)
        sel = ks.select(w, candidates, self.params.delta, self.params.pairing)
        phi = self.phi(layer, w.device).to(w.dtype)
        return w, sel, phi, ks.effective(w, sel, phi)

    def effective_weights(self, layer: Layer) -> list[torch.Tensor] | torch.Tensor | None:
        """Every task's effective kernels of a conv layer for ``run_towers``: stacked [T, out, in, k, k] on a GPU
        (one grouped conv), one [out, in, k, k] per task on a CPU (one conv per task: CPU grouped convolutions
        measured slower on the early, large feature maps); None for a dense layer (the blocks' own weights)."""
        if layer.kind != "conv":
            return None
        eff = self.share(layer)[3]
        shape = (layer.width, layer.in_shape[0], layer.kernel_size, layer.kernel_size)
        if eff.is_cuda:
            return eff.transpose(0, 1).reshape(eff.shape[1], *shape)
        return [e.view(shape) for e in eff.unbind(1)]

    # -- forward ----------------------------------------------------------------------------------------------------
    def forward_all(self, hs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if self.training:
            self._rows = sum(len(h) for h in hs)
        hs = run_towers(self.plan, [trunk.blocks for trunk in self.trunks], hs, weights=self.effective_weights)
        return [head(h) for head, h in zip(self.heads, hs)]

    def forward_one(self, h: torch.Tensor, task: int) -> torch.Tensor:
        def weights(layer: Layer):
            w = self.effective_weights(layer)
            return None if w is None else [w[task]]
        return self.heads[task](run_towers(self.plan, [self.trunks[task].blocks], [h], weights=weights)[0])

    # -- objective --------------------------------------------------------------------------------------------------
    def l2_weights(self) -> list[torch.Tensor]:
        """Every task network's weights in eq. 7: stems, conv kernels, dense and head matrices."""
        return [m.weight for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    def regularizer(self) -> torch.Tensor | None:
        p = self.params
        if p.lambda_ == 0:
            return None
        total = sum(w.square().sum() for w in self.l2_weights())
        T = self.info.n_tasks
        scale = 1.0 / T if p.l2_reduction == "mean" else 1.0 / (self._rows or T)
        return p.lambda_ * scale * total

    def gradient_exempt(self) -> dict[str, str]:
        """The thetas of layers where no pair is selected now: their gradient is exactly zero."""
        if not hasattr(self, "thetas"):
            return {}
        with torch.no_grad():
            idle = [layer.name for layer in self.conv_layers if not self.share(layer)[1].mask.any()]
        return {f"thetas.{name}": "no kernel pair of this layer is selected, so theta gets no gradient"
                for name in idle}

    # -- reporting --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def summary(self) -> dict:
        names = self.info.task_names
        layers = []
        for layer in self.conv_layers:
            w, sel, phi, eff = self.share(layer)
            stats = ks.layer_stats(w, sel, phi, eff, self.indices(w.device)[0], names)
            layers.append({"layer": layer.index, "name": layer.name, **stats})
        totals = ks.totals(layers)
        kernels = {"all": sum(la["filters"] for la in layers) * len(names),
                   "distinct": sum(la["distinct_kernels"] for la in layers),
                   "params_all": sum(la["filters"] * la["kernel_params"] for la in layers) * len(names),
                   "params_distinct": sum(la["distinct_kernels"] * la["kernel_params"] for la in layers)}
        p = self.params
        settings = {"delta": p.delta, "pairing": p.pairing, "phi": p.phi, "init": p.init, "init_noise": p.init_noise,
                    "relations": p.relations, "candidate_pairs": [[names[i], names[j]] for i, j in self.pairs],
                    "l2_reduction": p.l2_reduction, "lambda": p.lambda_}
        return {"task_names": names, "layers": layers,
                "mtal": {"settings": settings, "totals": totals, "kernels": kernels},
                "scalars": {f"sharing {r}": totals[r]["mean"] for r in ks.RATIOS}}

    # -- validation -------------------------------------------------------------------------------------------------
    @classmethod
    def check(cls, info, backbone, params: MTALParams) -> list[str]:
        name = getattr(cls, "registry_name", "mtal")
        problems = []
        if not any(layer.kind == "conv" for layer in plan_for(info, backbone).layers):
            problems.append(f"{name} shares convolution kernels, and this backbone has no conv layer "
                            "(use backbone kind: vgg or conv)")
        if params.relations == "groups" and not info.metadata.get("groups"):
            problems.append(f"{name}: relations: groups needs the dataset's task groups, and dataset {info.name!r} "
                            "declares none (use relations: none, i.e. mtal)")
        return problems


@METHODS.register("mtal_r")
class MTALR(MTAL):
    """MTAL_R: MTAL whose candidate task pairs are the pairs inside the dataset's prior task groups
    (``relations: groups`` by default; every other option as ``mtal``)."""

    Params = MTALRParams


def candidate_pairs(info, relations: str) -> list[tuple[int, int]]:
    """Unordered task pairs (i < j) that may share: all of them, or those inside one of the dataset's groups."""
    T = info.n_tasks
    if relations == "none":
        return [(i, j) for i in range(T) for j in range(i + 1, T)]
    index = {name: t for t, name in enumerate(info.task_names)}
    group_of = {index[n]: g for g, members in enumerate(info.metadata.get("groups", [])) for n in members
                if n in index}
    return [(i, j) for i in range(T) for j in range(i + 1, T)
            if i in group_of and group_of.get(j) == group_of[i]]


@torch.no_grad()
def initialise_kernels(model: MTAL, params: MTALParams) -> None:
    """``shared``: every task's conv kernels start as task 0's; ``shared_noise``: plus N(0, (init_noise x the
    layer's Kaiming std)^2) per task. ``independent`` keeps each trunk's own Kaiming draw."""
    if params.init == "independent":
        return
    for layer in model.conv_layers:
        first = model.trunks[0].blocks[layer.index].affine.weight
        std = (2.0 / first[0].numel()) ** 0.5
        for trunk in model.trunks[1:]:
            w = trunk.blocks[layer.index].affine.weight
            w.copy_(first)
            if params.init == "shared_noise":
                w.add_(torch.randn_like(w) * params.init_noise * std)
