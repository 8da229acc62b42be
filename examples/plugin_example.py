"""A method, a dataset and a loss weighting from outside mtlbench, in one file: `mtlbench train SPEC --plugin
plugin_example.py` (or `name: plugin_example:GatedShare` with this folder on PYTHONPATH, or an entry point; see
docs/plugins.md).

- ``gated_share``: every hidden layer has a shared and a task-private dense layer; each task mixes the two
  through its own learned gate, h = relu(g * shared(h) + (1 - g) * private_t(h)), g = sigmoid(gate[t, layer]).
  An illustration of the plugin interface, not a method of the benchmarked papers. The gates are stored in the
  record's summary: how much each task chose to share.
- ``planted_groups``: tasks in planted groups; every task of a group labels its own Gaussian inputs by the
  group's linear rule (argmax of x @ W_group), a share of labels flipped at random. Tasks of one group can help
  each other; tasks of different groups cannot.
- ``first_loss_scaled``: each task's loss divided by its loss at the first step, so that every task starts at
  weight 1/T of a loss of 1 -- a common hand-made baseline; the first losses are a buffer (saved with the run's
  state, so a resumed run goes on with them).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mtlbench.nn.method import MethodParams, MTLMethod
from mtlbench.registry import DATASETS, METHODS, WEIGHTINGS
from mtlbench.store.dataset import SPLITS, DataInfo, DatasetSource, MTLData, TaskInfo, TaskSplit
from mtlbench.weighting.base import LossWeighting


class GatedParams(MethodParams):
    gate_init: float = Field(default=0.0, description="initial gate logit (0: half shared, half private)")


@METHODS.register("gated_share")
class GatedShare(MTLMethod):
    """Shared and private dense layers per hidden layer, mixed by a learned gate per task and layer."""

    Params = GatedParams
    groups = {"gates": ("gates",)}

    def __init__(self, info, backbone, params):
        super().__init__(info, backbone, params)
        widths = [math.prod(self.plan.input_shape), *(math.prod(layer.out_shape) for layer in self.plan.layers)]
        pairs = list(itertools.pairwise(widths))
        self.shared = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.private = nn.ModuleList(nn.ModuleList(nn.Linear(a, b) for a, b in pairs) for _ in info.tasks)
        self.gates = nn.Parameter(torch.full((len(info.tasks), len(pairs)), params.gate_init))
        self.heads = nn.ModuleList(nn.Linear(widths[-1], t.n_classes) for t in info.tasks)

    def forward_one(self, h, task):
        h = h.flatten(1)
        for layer, (shared, private) in enumerate(zip(self.shared, self.private[task])):
            g = torch.sigmoid(self.gates[task, layer])
            h = torch.relu(g * shared(h) + (1 - g) * private(h))
        return self.heads[task](h)

    @classmethod
    def check(cls, info, backbone, params):
        return [] if info.input_kinds == {"vector"} else ["gated_share builds dense layers: vector inputs only"]

    def summary(self):
        return {"gates": torch.sigmoid(self.gates.detach()).cpu().tolist()}


class PlantedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_groups: int = Field(default=2, ge=1)
    tasks_per_group: int = Field(default=2, ge=1)
    input_dim: int = Field(default=16, ge=2)
    n_classes: int = Field(default=3, ge=2)
    per_task: int = Field(default=300, ge=30, description="examples per task (70 / 10 / 20 % train / val / test)")
    label_noise: float = Field(default=0.1, ge=0.0, lt=1.0, description="share of labels redrawn at random")
    data_seed: int = Field(default=0, ge=0)


@DATASETS.register("planted_groups")
class PlantedGroups(DatasetSource):
    Options = PlantedOptions
    description = "example plugin: tasks in planted groups, each group one linear labelling rule"

    @classmethod
    def load(cls, options, split_seed, path=None):
        gen = torch.Generator().manual_seed(options.data_seed)
        groups = [[f"G{g + 1}T{t + 1}" for t in range(options.tasks_per_group)] for g in range(options.n_groups)]
        tasks, splits = [], {s: [] for s in SPLITS}
        for members in groups:
            rule = torch.randn(options.input_dim, options.n_classes, generator=gen)
            for name in members:
                x = torch.randn(options.per_task, options.input_dim, generator=gen)
                y = (x @ rule).argmax(1)
                flip = torch.rand(options.per_task, generator=gen) < options.label_noise
                y[flip] = torch.randint(options.n_classes, (int(flip.sum()),), generator=gen)
                order = torch.randperm(options.per_task, generator=torch.Generator().manual_seed(split_seed))
                ends = [int(0.7 * options.per_task), int(0.8 * options.per_task), options.per_task]
                for split, rows in zip(SPLITS, torch.tensor_split(order, ends[:2])):
                    splits[split].append(TaskSplit(x[rows], y[rows]))
                tasks.append(TaskInfo(name, options.n_classes, "multiclass", (options.input_dim,)))
        blob = json.dumps({"options": options.model_dump(), "split_seed": split_seed}, sort_keys=True)
        info = DataInfo("planted_groups", tasks, "per_task", "accuracy", {"groups": groups},
                        hashlib.sha256(blob.encode()).hexdigest())
        return MTLData(info, splits)


@WEIGHTINGS.register("first_loss_scaled")
class FirstLossScaled(LossWeighting):
    """sum_t L_t / (T L_t at the first step): every task's loss measured against where it started."""

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        self.register_buffer("first", torch.zeros(ctx.n_tasks))

    def combine(self, losses):
        if not bool(self.first.any()):
            self.first.copy_(losses.detach())
        return (losses / (len(losses) * self.first.clamp_min(1e-8))).sum()
