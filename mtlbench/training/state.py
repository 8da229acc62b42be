"""Everything a training run needs to continue exactly where it stopped, in one object.

``TrainState`` holds the model, optimizer, batch sampler and (fp16) loss scaler, the iteration, the best-so-far
(score, iteration and weights), the patience counter, the evaluation history and the training time;
``state_dict()`` adds the random-number states (Python, NumPy, torch CPU and, when present, CUDA). Saved
atomically beside the run's record (``seed<k>.state.pt``) with the run identity, and loaded only by a run of
the same identity, a run resumed from it continues bit for bit as the uninterrupted run would have (on CPU).

The best weights are a CPU copy, so keeping them never needs a second model on the accelerator.
"""
from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path

import numpy as np
import torch

from mtlbench.io import atomic_write
from mtlbench.nn.method import MTLMethod
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


class UnfitState(Exception):
    """A saved state of this run's identity whose contents do not fit the run's model or optimizer (a state
    from code that changed without a new TRAINING_VERSION); the run trains from the start instead."""


class TrainState:
    def __init__(self, model: MTLMethod, optimizer: torch.optim.Optimizer, sampler: TaskSampler, higher: bool,
                 precision: Precision | None = None, weighting=None):
        self.model, self.optimizer, self.sampler, self.higher = model, optimizer, sampler, higher
        self.precision = precision or Precision()
        self.weighting = weighting  # a loss weighting's state (UW, DWA, FAMO, ...); None for ew
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
        out = self._state_dict()
        if self.weighting is not None:  # absent for ew: its state files are as before
            out["weighting"] = self.weighting.state()
        return out

    def _state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sampler": self.sampler.state_dict(), "rng": rng_state(), "iteration": self.iteration,
                "best": {"score": self.best_score, "iteration": self.best_iteration, "weights": self.best_weights},
                "bad_evals": self.bad_evals, "history": self.history, "train_time": self.train_time,
                "precision": self.precision.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        try:
            self._load(state)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
            why = " ".join(str(e).split())[:120]
            raise UnfitState(f"it does not fit this run: {type(e).__name__}: {why}") from None

    def _load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        best = state["best"]
        self.best_score, self.best_iteration, self.best_weights = best["score"], best["iteration"], best["weights"]
        self.iteration, self.bad_evals = state["iteration"], state["bad_evals"]
        self.history, self.train_time = list(state["history"]), state["train_time"]
        self.precision.load_state_dict(state.get("precision"))  # absent from states saved before mixed precision
        if self.weighting is not None:
            self.weighting.load_state(state["weighting"])
        set_rng_state(state["rng"])  # last: nothing above may draw a random number after it

    def save(self, path: Path, identity: str, key: dict | None = None) -> None:
        """The state, the run it belongs to (its identity, and its run key to say what differs when another
        run finds it) and a digest of its contents: a file damaged on disk is then never resumed from."""
        state = self.state_dict()
        payload = {"identity": identity, "key": key, "digest": state_digest(state), "state": state}
        atomic_write(path, lambda tmp: torch.save(payload, tmp))


def state_digest(obj) -> str:
    """sha256 over every tensor's bytes (with dtype and shape) and every other value of a state, in order.
    torch.load checks no checksum of tensor data: a flipped byte there loads as a wrong weight."""
    h = hashlib.sha256()

    def feed(x) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous().reshape(-1)
            h.update(f"T{t.dtype}{tuple(x.shape)}".encode())
            if t.numel():
                h.update(t.view(torch.uint8).numpy())
        elif isinstance(x, dict):
            h.update(b"{")
            for k, v in x.items():
                feed(k), feed(v)
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[" if isinstance(x, list) else b"(")
            for v in x:
                feed(v)
            h.update(b"]")
        else:
            h.update(f"{type(x).__name__}:{x!r};".encode())
    feed(obj)
    return h.hexdigest()


def load_state_file(path: Path, identity: str, mmap: bool = False) -> tuple[dict | None, str]:
    """(the saved state, "") when ``path`` holds an intact state of the run ``identity``; (None, why not)
    otherwise. ``mmap``: tensors are mapped, not read, and the digest is not checked -- cheap for a look at
    the iteration (`mtlbench status`) even when the weights and optimizer moments take hundreds of MB."""
    payload, why = read_state_payload(path, mmap)
    if payload is None:
        return None, why
    if payload.get("identity") != identity:
        return None, "made by another spec or code version"
    if not mmap and "digest" in payload and state_digest(payload["state"]) != payload["digest"]:
        return None, "corrupt: its contents no longer match the digest saved with them"
    return payload["state"], ""


def read_state_payload(path: Path, mmap: bool = True) -> tuple[dict | None, str]:
    """(the file's payload, "") or (None, why it cannot be one: missing, truncated, not a state)."""
    if not path.exists():
        return None, "no state file"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        return None, f"unreadable: truncated or not a mtlbench state ({type(e).__name__})"
    if not isinstance(payload, dict) or not isinstance(payload.get("state"), dict):
        return None, "unreadable: not a mtlbench state"
    return payload, ""


def foreign_state(path: Path, identity: str, key: dict) -> str | None:
    """Why the state file at ``path`` belongs to another run (another spec, code or plugin version: what
    differs), or None when it is this run's, absent or damaged (a damaged one is retrained; a foreign one
    may be the progress of hours that restoring the spec would resume, so it is never trained over)."""
    payload, _ = read_state_payload(path, mmap=True)
    if payload is None or payload.get("identity") == identity:
        return None
    from mtlbench.results import key_differences
    old = payload.get("key")
    if not isinstance(old, dict):
        return "made by another spec or code version"
    diffs = [d.removeprefix("experiment.") for d in key_differences(old, key)]
    return "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
