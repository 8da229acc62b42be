from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from mtlbench.registry import DATASETS

# The tests' tensors are small: one thread is as fast, and it keeps a test from stalling when another process
# holds the second core (multi-threaded small ops then wait on a descheduled worker thread).
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Small versions of the embedded datasets: fast enough for a test, big enough to learn something.
SMALL_VECTOR = dict(n_groups=2, tasks_per_group=2, outlier=True, input_dim=64, n_examples=1200, n_classes=8)
SMALL_IMAGE = dict(n_groups=2, tasks_per_group=1, outlier=True, image_size=16, per_class=20, n_classes=4)


def small_data(kind: str, **overrides):
    name = {"vector": "synthetic_vector", "image": "synthetic_image"}[kind]
    source = DATASETS.get(name)
    opts = {**(SMALL_VECTOR if kind == "vector" else SMALL_IMAGE), **overrides}
    return source.load(source.Options(**opts), split_seed=0)


@pytest.fixture(autouse=True)
def _fresh_torch_state():
    """Tests must not depend on what an earlier test left in torch's global state."""
    threads = torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(threads)


@pytest.fixture
def steps_taken(monkeypatch):
    """A list that grows by one per optimizer step the trainer takes from here on. A resumed run that ends as the
    uninterrupted one proves little by itself (a resume that loaded nothing and retrained from the seed ends alike);
    the steps it took show it started where the state left off."""
    from mtlbench.training import trainer
    taken: list[int] = []

    def counted(*args, **kwargs):
        taken.append(args[3])  # the iteration
        return real(*args, **kwargs)

    real = trainer.train_step
    monkeypatch.setattr(trainer, "train_step", counted)
    return taken


@pytest.fixture
def write_spec(tmp_path):
    """write_spec(text) -> path of a spec file holding the dedented text."""
    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path
    return write


TINY_SPEC = """
name: tiny
data:
  dataset: synthetic_vector
  options: {n_groups: 2, tasks_per_group: 2, input_dim: 64, n_examples: 2000, input_noise: 0.3}
backbone:
  hidden: [64, 64]
methods:
  - name: stl
    label: STL
  - name: hard_share
    label: Hard-Share
optimizer: {lr: 0.003}
training:
  iterations: 300
  batch_per_task: 32
  eval_every: 50
  threads: 1
output:
  dir: {out}
"""
