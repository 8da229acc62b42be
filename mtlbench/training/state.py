"""Everything a training run needs to continue exactly where it stopped, in one object.

``TrainState`` holds the model, optimizer, batch sampler and (fp16) loss scaler, the iteration, the best-so-far
(score, iteration and weights), the patience counter, the evaluation history and the training time;
``state_dict()`` adds the random-number states (Python, NumPy, torch CPU and, when present, CUDA). Saved
atomically beside the run's record (``seed<k>.state.pt``) with the run identity, and loaded only by a run of
the same identity, a run resumed from it continues bit for bit as the uninterrupted run would have (on CPU).

The best weights are a CPU copy, so keeping them never needs a second model on the accelerator.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch

from mtlbench.io import atomic_write
from mtlbench.methods.base import MTLMethod
from mtlbench.training.evaluate import improved
from mtlbench.training.precision import Precision
from mtlbench.training.sampler import TaskSampler


def cpu_copy(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = torch.from_numpy(np_state["state"]["key"].astype(np.int64))
    return {"python": random.getstate(), "numpy": np_state, "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np_state = {**state["numpy"], "state": {**state["numpy"]["state"]}}
    np_state["state"]["key"] = state["numpy"]["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainState:
    def __init__(self, model: MTLMethod, optimizer: torch.optim.Optimizer, sampler: TaskSampler, higher: bool,
                 precision: Precision | None = None):
        self.model, self.optimizer, self.sampler, self.higher = model, optimizer, sampler, higher
        self.precision = precision or Precision()
        self.iteration = 0
        self.best_score = -math.inf if higher else math.inf
        self.best_iteration = 0
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.bad_evals = 0  # evaluations since the best one
        self.history: list[dict] = []
        self.train_time = 0.0  # seconds spent in the training loop, over every session of this run

    def evaluated(self, score: float) -> None:
        """Keep the weights when ``score`` is the best so far (the first evaluation always counts)."""
        if improved(score, self.best_score, self.higher) or self.best_weights is None:
            self.best_score, self.best_iteration = score, self.iteration
            self.best_weights = cpu_copy(self.model.state_dict())
            self.bad_evals = 0
        else:
            self.bad_evals += 1

    def finished(self, iterations: int, patience: int | None) -> bool:
        return self.iteration >= iterations or bool(patience and self.bad_evals >= patience)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sampler": self.sampler.state_dict(), "rng": rng_state(), "iteration": self.iteration,
                "best": {"score": self.best_score, "iteration": self.best_iteration, "weights": self.best_weights},
                "bad_evals": self.bad_evals, "history": self.history, "train_time": self.train_time,
                "precision": self.precision.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        best = state["best"]
        self.best_score, self.best_iteration, self.best_weights = best["score"], best["iteration"], best["weights"]
        self.iteration, self.bad_evals = state["iteration"], state["bad_evals"]
        self.history, self.train_time = list(state["history"]), state["train_time"]
        self.precision.load_state_dict(state.get("precision"))  # absent from states saved before mixed precision
        set_rng_state(state["rng"])  # last: nothing above may draw a random number after it

    def save(self, path: Path, identity: str) -> None:
        payload = {"identity": identity, "state": self.state_dict()}
        atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_state_file(path: Path, identity: str, mmap: bool = False) -> tuple[dict | None, str]:
    """(the saved state, "") when ``path`` holds a state of the run ``identity``; (None, why not) otherwise.
    ``mmap``: tensors are mapped, not read -- cheap for a look at the iteration (`mtlbench status`) even when
    the weights and optimizer moments take hundreds of MB."""
    if not path.exists():
        return None, "no state file"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # a state file is a cache: an unreadable one is retrained, never fatal
        return None, f"unreadable ({type(e).__name__})"
    if not isinstance(payload, dict) or payload.get("identity") != identity:
        return None, "made by another spec or code version"
    return payload["state"], ""
