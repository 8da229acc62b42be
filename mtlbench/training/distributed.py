"""One run across processes: ``torchrun --nproc_per_node N -m mtlbench train SPEC`` (multi-node with torchrun's
``--nnodes``, ``--node_rank``, ``--rdzv_endpoint`` as usual). Data-parallel (``DistributedDataParallel``):

- every rank builds the same model and draws the same global batch of every task, keeping its own disjoint
  slice (``TaskSampler``), so all ranks together see exactly the one-process batch;
- DDP wraps the ``Objective``: one forward (task losses + regularizer) and one backward per step. DDP
  *averages* gradients over ranks, so each rank back-propagates ``world x`` its local share of the task loss
  (its rows' losses summed and divided by the task's *global* batch size) plus the regularizer unscaled: the
  average is then exactly the gradient of the one-process objective, the regularizer counted once;
- weights stay identical on every rank (same start, same averaged gradients, same optimizer), so weight-based
  updates after a step (MRN's covariances) are identical everywhere without communication; buffers are
  broadcast from rank 0 at every forward (DDP's default);
- BatchNorm: with ``training.sync_batchnorm: true`` every BatchNorm uses the statistics of the global batch
  (``SyncedBatchNorm`` below, on any backend, gloo included), so the run matches the one-process run;
  otherwise each rank normalises with its own slice's statistics and the running statistics kept (used at
  evaluation) are rank 0's;
- the loss is summed over ranks before the NaN guard reads it, so every rank stops at the same iteration;
- only rank 0 evaluates, saves checkpoints and writes records and weights; the selection score is broadcast,
  so early stopping is decided identically everywhere. A resumed run's state is read by rank 0 and broadcast.

Methods fitted in closed form cannot be split across ranks and are refused at validation under torchrun; so is
a ``batch_per_task`` smaller than the number of ranks. Dropout draws its masks from the same random stream on
every rank. Multi-node runs need an output directory that every node sees.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mtlbench.config.launcher import env_world


@dataclass
class Dist:
    """Where this process stands in a data-parallel run; the defaults are the one-process run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    sync_group: Any = field(default=None, repr=False)  # the process group of SyncedBatchNorm

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return t
        t = t.clone()
        dist.all_reduce(t)
        return t

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


SINGLE = Dist()


def start(device_name: str) -> Dist:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU); SINGLE without torchrun."""
    world = env_world()
    if world == 1:
        return SINGLE
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world, local, dist.new_group())


def stop(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def session(device_name: str):
    d = start(device_name)
    try:
        yield d
    finally:
        stop(d)


def wrap(objective: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """The objective as the step calls it: itself in one process, DDP-wrapped across processes."""
    if d.world == 1:
        return objective
    ids = [device.index if device.index is not None else d.local_rank] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(objective, device_ids=ids, gradient_as_bucket_view=True)


def unwrap(objective: nn.Module) -> nn.Module:
    return objective.module if isinstance(objective, nn.parallel.DistributedDataParallel) else objective


class AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of each rank's input is the sum of all ranks' output
    gradients (each rank's output feeds every rank's loss)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        t = t.clone()
        dist.all_reduce(t, group=group)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class SyncedBatchNorm(_BatchNorm):
    """BatchNorm over the global batch of a data-parallel step, on any backend (torch's SyncBatchNorm needs
    an accelerator). In training the per-channel mean and the (biased) variance are reduced over all ranks
    with a differentiable all-reduce (two passes: mean, then the squared deviations), so the gradient flows
    through the statistics as in one process; the running statistics are updated with the unbiased global
    variance, identically on every rank. In evaluation it is an ordinary BatchNorm (no communication).
    Parameters, buffers and state_dict keys are those of the BatchNorm it replaces."""

    group: Any = None

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        group = self.group or dist.group.WORLD
        xf = x.float()  # statistics in float32 also under autocast
        dims, shape = [0, *range(2, x.dim())], [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device)
        dist.all_reduce(count, group=group)
        mean = AllReduceSum.apply(xf.sum(dims), group) / count
        var = AllReduceSum.apply(((xf - mean.view(shape)) ** 2).sum(dims), group) / count
        if self.track_running_stats:
            self.update_running(mean.detach(), var.detach() * count / (count - 1).clamp(min=1))
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def update_running(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.lerp_(mean, m)
        self.running_var.lerp_(var, m)


def convert_batchnorm(module: nn.Module, group: Any) -> nn.Module:
    """Turn every BatchNorm under ``module`` into a SyncedBatchNorm in place (same parameters and buffers)."""
    for name, child in module.named_children():
        if isinstance(child, _BatchNorm) and not isinstance(child, SyncedBatchNorm):
            synced = SyncedBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats)
            synced.load_state_dict(child.state_dict())  # before the model moves to its device
            synced.group = group
            synced.train(child.training)
            setattr(module, name, synced)
        else:
            convert_batchnorm(child, group)
    return module

