"""Which training rows each iteration sees: one mini-batch per task, drawn by ``TaskSampler``, and how a batch
reaches the device (``stage``)."""
from __future__ import annotations

import torch

from mtlbench.store.dataset import TaskSplit


class TaskSampler:
    """Per-task shuffled passes over each task's training rows, from one seeded generator per task, so a
    task's batch order does not depend on how many other tasks there are.

    Its whole state (each task's generator, current order and position) round-trips through ``state_dict`` /
    ``load_state_dict``, so a resumed run draws the batches an uninterrupted run would have drawn.

    Data-parallel runs (``rank`` of ``world`` processes): every rank draws the same global batch of every task
    and keeps its own contiguous slice (``tensor_split``: sizes differ by at most one row), so the slices of all
    ranks are disjoint and their union is exactly the one-process batch. ``totals`` holds the global batch size
    of each task of the last draw (the denominator of the task's mean loss). The state is the same on every
    rank, so the state saved by rank 0 resumes every rank -- with any number of ranks."""

    def __init__(self, splits: list[TaskSplit], batch: int, seed: int, rank: int = 0, world: int = 1):
        self.splits, self.batch, self.rank, self.world = splits, batch, rank, world
        self.totals = [0] * len(splits)
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
        self.totals[t] = len(rows)
        return rows if self.world == 1 else rows.tensor_split(self.world)[self.rank]

    def next_batches(self, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [tuple(stage(v, device) for v in split.batch(self.rows(t))) for t, split in enumerate(self.splits)]

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


def stage(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on ``device``. For an accelerator the rows are first put in page-locked (pinned) memory,
    so the copy runs asynchronously (``non_blocking``) while the host goes on; the caching host allocator keeps
    the pinned block alive until the copy is done. On the CPU the tensor is used as it is."""
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)
