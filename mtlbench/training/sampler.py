"""Which training rows each iteration sees: one mini-batch per task, drawn by ``TaskSampler``."""
from __future__ import annotations

import torch

from mtlbench.data.base import TaskSplit


class TaskSampler:
    """Per-task shuffled passes over each task's training rows, from one seeded generator per task, so a
    task's batch order does not depend on how many other tasks there are.

    Its whole state (each task's generator, current order and position) round-trips through ``state_dict`` /
    ``load_state_dict``, so a resumed run draws the batches an uninterrupted run would have drawn. A
    data-parallel run would give each rank a disjoint slice of every task's batch from the same rows."""

    def __init__(self, splits: list[TaskSplit], batch: int, seed: int):
        self.splits, self.batch = splits, batch
        self.gens = [torch.Generator().manual_seed(seed * 100_003 + t) for t in range(len(splits))]
        self.order: list[torch.Tensor] = [torch.empty(0, dtype=torch.long) for _ in splits]
        self.pos = [0] * len(splits)

    def rows(self, t: int) -> torch.Tensor:
        n = len(self.splits[t])
        take = min(self.batch, n)
        if self.pos[t] + take > len(self.order[t]):
            self.order[t], self.pos[t] = torch.randperm(n, generator=self.gens[t]), 0
        rows = self.order[t][self.pos[t]:self.pos[t] + take]
        self.pos[t] += take
        return rows

    def next_batches(self, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for t, split in enumerate(self.splits):
            x, y = split.batch(self.rows(t))
            out.append((x.to(device, non_blocking=True), y.to(device, non_blocking=True)))
        return out

    def state_dict(self) -> dict:
        return {"generators": [g.get_state() for g in self.gens], "orders": [o.clone() for o in self.order],
                "positions": list(self.pos)}

    def load_state_dict(self, state: dict) -> None:
        if len(state["generators"]) != len(self.splits):
            raise ValueError(f"sampler state has {len(state['generators'])} tasks, the data has {len(self.splits)}")
        for g, s in zip(self.gens, state["generators"]):
            g.set_state(s)
        self.order = [o.clone() for o in state["orders"]]
        self.pos = list(state["positions"])
