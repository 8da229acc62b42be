"""What the tower methods share (Cross-Stitch, NDDR-CNN): one tower (the backbone trunk, STL's key names) and one
head per task; every tower runs on every task's rows, because the units after chosen layers mix the towers'
features of the *same* examples -- T tower passes over T batches per step, O(T^2) work; task t's logits are
read from tower t on its own rows. Towers may start from an ``stl`` run's weights (``tower_init: stl``).

(The leading underscore keeps the registry's discovery from importing this as a method module.)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from mtlbench.nn.backbone import make_heads
from mtlbench.nn.layer_plan import Trunk, run_towers
from mtlbench.nn.method import MTLMethod
from mtlbench.nn.method_helpers import (
    load_stl_towers,
    position_problems,
    resolve_positions,
    segments_of,
    stl_checkpoint_problems,
)


class FusedTowers(MTLMethod):
    """Subclasses call ``build_towers()``, add their units, call ``init_towers()``, and implement ``fuse_units``."""

    def build_towers(self) -> None:
        self.trunks = nn.ModuleList(Trunk(self.plan) for _ in self.info.tasks)
        self.heads = make_heads(self.plan.out_features, self.info.tasks)
        self.positions = resolve_positions(self.plan, self.params.positions)

    def init_towers(self) -> None:
        if self.params.tower_init == "stl":
            load_stl_towers(self, self.params.stl_checkpoint)

    def fuse_units(self) -> dict[int, Callable[[torch.Tensor], torch.Tensor]]:
        """{layer index: unit}, each unit mapping the towers' stacked features [T, rows, ...] to the same shape."""
        raise NotImplementedError

    def forward_all(self, hs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        segments = segments_of(hs)
        towers = self._towers(torch.cat(list(hs)), segments)
        per_task = towers.split([n for _, n in segments], dim=1)  # [T, n_t, features] each
        return [self.heads[t](h[t]) for t, h in enumerate(per_task)]

    def forward_one(self, h: torch.Tensor, task: int) -> torch.Tensor:
        return self.heads[task](self._towers(h, [(task, len(h))])[task])

    def _towers(self, x: torch.Tensor, segments) -> torch.Tensor:
        """Every tower on every row, fused at the chosen layers: [T, rows, features]."""
        towers = [trunk.blocks for trunk in self.trunks]
        return torch.stack(run_towers(self.plan, towers, [x] * len(towers), segments, fuse=self.fuse_units()))

    def tower_summary(self) -> dict:
        return {"positions": self.positions, "position_names": [self.plan.layers[i].name for i in self.positions],
                "tower_batch_passes_per_iteration": self.info.n_tasks ** 2}

    @classmethod
    def tower_problems(cls, info, backbone, params) -> list[str]:
        name = cls.registry_name
        problems = position_problems(info, backbone, params.positions, name)
        if params.tower_init == "stl":
            problems += stl_checkpoint_problems(params.stl_checkpoint, info, backbone, name, "tower_init: stl")
        return problems
