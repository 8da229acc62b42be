"""The embedded default: generated multi-task datasets whose task relationships are known by construction.

Tasks come in planted *groups*: every task of a group computes its targets through the same latent function
(a random projection of the input, one group-specific nonlinearity, group-shared class weights plus a small
task-specific perturbation). One further *outlier* task uses a nonlinearity of its own. The grouping is
recorded in ``info.metadata`` so analyses (TAAN's task-distance matrices, MRN's task covariance) can be checked
against it. Everything is a deterministic function of the options and the split seed and takes well under a
second; no file is read or written.

- ``synthetic_vector``: YouTube-8M shapes -- 1152-d inputs shared by all tasks (an example belongs to each
  task with probability ``membership``), multi-label targets, scored with mAP@10.
- ``synthetic_image``: per-task 1 x S x S images, multi-class targets, scored with accuracy (Omniglot-like;
  the outlier task is drawn as sparse dot patterns, a stand-in for Omniglot's Braille).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mtlbench.registry import DATASETS
from mtlbench.seeds import SEED_MAX
from mtlbench.store.dataset import SPLITS, DataInfo, DatasetSource, MTLData, TaskInfo, TaskSplit

# Group nonlinearities, in the order groups receive them; each is a shape TAAN's activation can represent
# (relu, |u|, a ReLU mirrored about 0), so tasks of different groups prefer visibly different activations.
GROUP_NONLINEARITIES = {
    "relu": torch.relu,
    "abs": torch.abs,
    "neg_relu": lambda u: torch.relu(-u),
}
# The outlier's: slope 1 for u > 0 and 2.5 for u < 0 -- learnable, and as an activation it needs alpha = -2.5
# at the hinge 0, far from both group A (alpha = 0) and group B (|u|: alpha = +1).
OUTLIER_NONLINEARITY = ("steep_neg", lambda u: torch.relu(u) - 2.5 * torch.relu(-u))


class SyntheticOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    n_groups: int = Field(default=2, ge=1, le=len(GROUP_NONLINEARITIES))
    tasks_per_group: int = Field(default=3, ge=1)
    outlier: bool = True
    n_classes: int = Field(default=20, ge=2)
    class_counts: list[int] | None = Field(default=None, description="classes of each task (overrides n_classes; "
                                           "one entry per task, e.g. YouTube-8M's 16 vertical sizes for timing)")
    latent_dim: int = Field(default=8, ge=1)
    task_noise: float = Field(default=0.3, ge=0.0, description="task-specific perturbation of group weights")
    data_seed: int = Field(default=1234, ge=0, le=SEED_MAX,
                           description="seed of the generating functions (not of the split)")

    @property
    def n_tasks(self) -> int:
        return self.n_groups * self.tasks_per_group + int(self.outlier)

    @model_validator(mode="after")
    def counts_match_tasks(self):
        if self.class_counts is not None and (len(self.class_counts) != self.n_tasks or min(self.class_counts) < 2):
            raise ValueError(f"class_counts needs {self.n_tasks} entries >= 2 (n_groups x tasks_per_group "
                             f"+ outlier), got {len(self.class_counts)}")
        return self


class SyntheticVectorOptions(SyntheticOptions):
    input_dim: int = Field(default=1152, ge=1)
    n_examples: int = Field(default=6000, ge=30)
    input_noise: float = Field(default=1.0, ge=0.0, description="std of the isotropic noise added to the inputs")
    membership: float = Field(default=0.6, gt=0.0, le=1.0, description="P(example belongs to a task)")
    positive_rate: float = Field(default=0.15, gt=0.0, lt=1.0, description="share of (example, class) labels on")


class SyntheticImageOptions(SyntheticOptions):
    image_size: int = Field(default=28, ge=8)
    per_class: int = Field(default=40, ge=10, description="images per class and task")
    pixel_noise: float = Field(default=0.4, ge=0.0)
    size_step: int = Field(default=0, ge=0, description="task t's images are image_size + t * size_step pixels "
                           "wide: heterogeneous inputs, as in the MTAL setting")


def class_counts(opts: SyntheticOptions, n_tasks: int) -> list[int]:
    return opts.class_counts or [opts.n_classes] * n_tasks


def task_layout(opts: SyntheticOptions) -> tuple[list[str], list[str], dict]:
    """Task names, the nonlinearity of each task, and the metadata describing the planted structure."""
    names, nonlin, groups = [], [], []
    for g, fn_name in enumerate(list(GROUP_NONLINEARITIES)[: opts.n_groups]):
        members = [f"{'ABC'[g]}{i + 1}" for i in range(opts.tasks_per_group)]  # A1, A2, ... B1, ...
        names += members
        nonlin += [fn_name] * len(members)
        groups.append(members)
    outliers = []
    if opts.outlier:
        names.append("X")  # the outlier
        nonlin.append(OUTLIER_NONLINEARITY[0])
        outliers.append(names[-1])
    return names, nonlin, {"groups": groups, "outliers": outliers, "nonlinearity": dict(zip(names, nonlin))}


def apply_nonlinearity(name: str, u: torch.Tensor) -> torch.Tensor:
    fn = GROUP_NONLINEARITIES.get(name) or OUTLIER_NONLINEARITY[1]
    return fn(u)


def task_weights(opts: SyntheticOptions, nonlin: list[str], gen: torch.Generator, fan_in: int) -> list:
    """Per-task class weights [C_t, fan_in]: group weights shared by the group's tasks (their first C_t rows)
    plus a small task-specific part."""
    counts = class_counts(opts, len(nonlin))
    group_w = {name: torch.randn(max(counts), fan_in, generator=gen) for name in dict.fromkeys(nonlin)}
    return [group_w[n][:c] + opts.task_noise * torch.randn(c, fan_in, generator=gen) for n, c in zip(nonlin, counts)]


def options_checksum(name: str, opts: BaseModel, split_seed: int) -> str:
    blob = json.dumps({"dataset": name, "options": opts.model_dump(), "split_seed": split_seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def split_ids(n: int, split_seed: int, fractions=(0.7, 0.1, 0.2)) -> dict[str, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    n_train, n_val = int(fractions[0] * n), int(fractions[1] * n)
    parts = (perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:])
    return {s: p.sort().values for s, p in zip(SPLITS, parts)}


@DATASETS.register("synthetic_vector")
class SyntheticVector(DatasetSource):
    Options = SyntheticVectorOptions
    description = "generated, YouTube-8M shapes: 1152-d shared inputs, multi-label tasks in planted groups"

    @classmethod
    def describe(cls, options: SyntheticVectorOptions, split_seed: int, path: Path | None = None) -> DataInfo:
        """The task list without generating the examples (what `validate` needs)."""
        names, _, meta = task_layout(options)
        tasks = [TaskInfo(n, c, "multilabel", (options.input_dim,))
                 for n, c in zip(names, class_counts(options, len(names)))]
        return DataInfo("synthetic_vector", tasks, "shared", "map@10", meta,
                        options_checksum("synthetic_vector", options, split_seed))

    @classmethod
    def load(cls, options: SyntheticVectorOptions, split_seed: int, path: Path | None = None) -> MTLData:
        o = options
        gen = torch.Generator().manual_seed(o.data_seed)
        names, nonlin, _ = task_layout(o)
        # Inputs lie near a latent_dim-dimensional subspace (as real video features are strongly correlated):
        # x = u A^T + noise, and every task's targets are a function of the latent u alone.
        u = torch.randn(o.n_examples, o.latent_dim, generator=gen)
        mixing = torch.randn(o.input_dim, o.latent_dim, generator=gen) / o.latent_dim ** 0.5
        x = u @ mixing.T + o.input_noise * torch.randn(o.n_examples, o.input_dim, generator=gen)
        weights = task_weights(o, nonlin, gen, o.latent_dim)
        member = torch.rand(o.n_examples, len(names), generator=gen) < o.membership
        member[torch.arange(o.n_examples), torch.randint(len(names), (o.n_examples,), generator=gen)] = True
        targets = [multilabel_targets(apply_nonlinearity(n, u) @ w.T, o.positive_rate) for n, w in zip(nonlin, weights)]
        ids = split_ids(o.n_examples, split_seed)
        splits = {s: [shared_split(x, targets[t], member[:, t], ids[s]) for t in range(len(names))] for s in SPLITS}
        return MTLData(cls.describe(o, split_seed), splits)


def multilabel_targets(scores: torch.Tensor, positive_rate: float) -> torch.Tensor:
    """Labels on where a class's standardised score is in its top ``positive_rate``; the top class is always on,
    so every example has at least one label (as every YouTube-8M video does)."""
    z = (scores - scores.mean(0)) / scores.std(0).clamp_min(1e-6)
    y = (z > torch.quantile(z, 1 - positive_rate, dim=0)).float()
    y[torch.arange(len(z)), z.argmax(1)] = 1.0
    return y


def shared_split(x: torch.Tensor, y: torch.Tensor, member: torch.Tensor, ids: torch.Tensor) -> TaskSplit:
    rows = ids[member[ids]]
    return TaskSplit(x, y[rows], index=rows)


@DATASETS.register("synthetic_image")
class SyntheticImage(DatasetSource):
    Options = SyntheticImageOptions
    description = "generated, Omniglot-like: per-task 1xSxS images, multi-class tasks in planted groups"

    @classmethod
    def describe(cls, options: SyntheticImageOptions, split_seed: int, path: Path | None = None) -> DataInfo:
        """The task list without generating the examples (what `validate` needs)."""
        names, _, meta = task_layout(options)
        sizes = [options.image_size + t * options.size_step for t in range(len(names))]
        tasks = [TaskInfo(n, c, "multiclass", (1, s, s))
                 for n, s, c in zip(names, sizes, class_counts(options, len(names)))]
        return DataInfo("synthetic_image", tasks, "per_task", "accuracy", meta,
                        options_checksum("synthetic_image", options, split_seed))

    @classmethod
    def load(cls, options: SyntheticImageOptions, split_seed: int, path: Path | None = None) -> MTLData:
        o = options
        gen = torch.Generator().manual_seed(o.data_seed)
        names, nonlin, _ = task_layout(o)
        n_max = max(class_counts(o, len(names)))
        banks = {fn: smooth_patterns(n_max, o.image_size, gen) for fn in dict.fromkeys(nonlin)}
        weights = task_weights(o, nonlin, gen, o.image_size ** 2)
        splits: dict[str, list[TaskSplit]] = {s: [] for s in SPLITS}
        for t, (fn, w) in enumerate(zip(nonlin, weights)):
            c = len(w)
            proto = dot_patterns(c, o.image_size, gen) if fn == OUTLIER_NONLINEARITY[0] else \
                banks[fn][:c] + 0.1 * w.view(c, o.image_size, o.image_size)
            proto = pad_to(proto, o.image_size + t * o.size_step)
            x, y = draw_images(proto, fn, o, gen)
            ids = split_ids(len(y), split_seed + 7919 * t)  # a different permutation per task, all seeded
            for s in SPLITS:
                splits[s].append(TaskSplit(x[ids[s]], y[ids[s]]))
        return MTLData(cls.describe(o, split_seed), splits)


def smooth_patterns(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """n smooth random images (noise blurred by average pooling), standardised."""
    noise = torch.randn(n, 1, size + 6, size + 6, generator=gen)
    smooth = torch.nn.functional.avg_pool2d(noise, 7, stride=1)[:, 0]
    return (smooth - smooth.mean()) / smooth.std()


def dot_patterns(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Sparse dots on a coarse grid (Braille-like cells), one pattern per class."""
    cells = (torch.rand(n, 3, 2, generator=gen) < 0.5).float()
    img = torch.zeros(n, size, size)
    step_r, step_c = size // 4, size // 3
    for r in range(3):
        for c in range(2):
            img[:, (r + 1) * step_r - 1:(r + 1) * step_r + 1, (c + 1) * step_c - 1:(c + 1) * step_c + 1] = \
                3.0 * cells[:, r, c, None, None]
    return img


def pad_to(images: torch.Tensor, size: int) -> torch.Tensor:
    extra = size - images.shape[-1]
    return torch.nn.functional.pad(images, (extra // 2, extra - extra // 2) * 2) if extra else images


def draw_images(proto: torch.Tensor, fn: str, o: SyntheticImageOptions, gen: torch.Generator):
    """``per_class`` noisy, randomly shifted copies of each class pattern, passed through the task's nonlinearity."""
    c = len(proto)
    y = torch.arange(c).repeat_interleave(o.per_class)
    imgs = proto[y] + o.pixel_noise * torch.randn(len(y), *proto.shape[1:], generator=gen)
    shifts = torch.randint(-2, 3, (len(y), 2), generator=gen)
    imgs = torch.stack([torch.roll(im, tuple(s.tolist()), dims=(0, 1)) for im, s in zip(imgs, shifts)])
    if fn != OUTLIER_NONLINEARITY[0]:
        imgs = apply_nonlinearity(fn, imgs)
    return imgs.unsqueeze(1).contiguous(), y
