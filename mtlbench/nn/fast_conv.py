"""The fast conv-block path (``training.kernel``): the same function as the eager blocks, computed with fewer
passes over the large activation tensors.

A conv block is conv -> BatchNorm -> activation -> max-pool. On the TAAN Omniglot net (250 drawings of
105 x 105, one thread) the eager step spends most of its time in passes over the first layers' outputs, not in
arithmetic. The fast path changes three things, none of which changes the mathematics:

- channels_last: the conv weights are stored NHWC (``configure``), so oneDNN's convolutions run in their
  native layout (measured: convolution forward + backward ~3x faster) and every block's output stays NHWC;
- ReLU blocks: BatchNorm (an increasing affine map per channel where gamma / sigma > 0, decreasing where it
  is < 0) and ReLU (non-decreasing) commute with max-pooling -- max-pool of z, or min-pool where the channel's
  scale is negative, then the affine map and ReLU on the pooled, 4x smaller tensor. The batch statistics are
  still those of the whole z (one ``var_mean`` pass), so values and gradients are the eager block's; the
  running statistics are updated as ``nn.BatchNorm2d`` updates them;
- other activations (TAAN's adaptive activation, none): BatchNorm as the same affine map from ``var_mean``
  statistics (ATen's channels_last BatchNorm is slow for the few channels of these nets), activation, pool.

``kernel``: ``eager`` (the reference, the blocks as written), ``fused`` (this path; refused at validate where no
trunk has conv blocks), ``auto`` (fused for conv and vgg trunks, eager otherwise). It is a how-to-run field
(results.HOW_TO_RUN): runs at either kernel have the same identity.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

KERNELS = ("auto", "eager", "fused")


def wanted(kernel: str, trunk_kind: str | None) -> bool:
    """Whether ``kernel`` runs the fast path on a trunk of this kind (None: no trunk)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    return kernel == "fused" or (kernel == "auto" and trunk_kind in ("conv", "vgg"))


def configure(model: nn.Module, kernel: str) -> nn.Module:
    """Switch every block of ``model`` to the fast path (or back to eager) as ``kernel`` says; returns model."""
    plan = getattr(model, "plan", None)
    fast = wanted(kernel, plan.kind if plan is not None else None)
    for m in model.modules():
        if hasattr(type(m), "fast"):  # a layer-plan Block (duck-typed: the blocks are built above this module)
            m.fast = fast
        if fast and isinstance(m, nn.Conv2d):
            m.to(memory_format=torch.channels_last)
    return model


def forward(block, x: torch.Tensor, segments) -> torch.Tensor:
    """``Block.forward`` on the fast path. In evaluation a BatchNorm after a plain conv is folded into the conv's
    weights and bias (one pass less over the conv's output; the same affine map)."""
    conv, norm = block.affine, block.norm
    if not (isinstance(conv, nn.Conv2d) and type(norm) is nn.BatchNorm2d and not in_training(norm)
            and x.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled(x.device.type)):
        return finish(block, conv(x), segments)
    scale, shift = norm_scale_shift(x, norm)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    bias = shift if conv.bias is None else torch.addcmul(shift, conv.bias, scale)
    z = conv._conv_forward(x, weight, bias)
    return finish_normed(block, z, segments)


def finish_normed(block, z: torch.Tensor, segments) -> torch.Tensor:
    """``finish`` of a conv output that BatchNorm has already been applied to (folded into the conv)."""
    k = pool_size(block.pool)
    if getattr(block.act, "commutes_with_max_pool", False) and k is not None:
        y = torch.relu(z if k == 1 else F.max_pool2d(z, k))
    else:
        y = block.pool(block.act(z, segments))
    return block.drop(y.contiguous(memory_format=torch.channels_last))


def finish(block, z: torch.Tensor, segments) -> torch.Tensor:
    """``Block.finish`` on the fast path: BatchNorm, activation, pooling, dropout of a conv block's output z."""
    if z.dim() != 4 or not plain_norm(block.norm) or z.dtype not in (torch.float32, torch.float64) \
            or torch.is_autocast_enabled(z.device.type):
        # dense layers; SyncBatchNorm (statistics over ranks); mixed precision (ATen's BatchNorm accumulates
        # reduced-precision inputs in float32): the block as written
        return block.drop(block.pool(block.act(block.norm(z), segments)))
    k = pool_size(block.pool)
    if getattr(block.act, "commutes_with_max_pool", False) and k is not None:
        y = relu_block(z, block.norm, k)
    elif getattr(block.act, "elementwise", False) and k is not None and k > 1 and in_training(block.norm) \
            and torch.is_grad_enabled():
        y = elementwise_block(z, block.norm, block.act, segments, k)
    else:
        y = block.pool(block.act(affine_norm(z, block.norm), segments))
    return block.drop(y.contiguous(memory_format=torch.channels_last))


def elementwise_block(z: torch.Tensor, norm: nn.BatchNorm2d, act: nn.Module, segments, k: int) -> torch.Tensor:
    """max-pool(act(BN(z))) in training for an elementwise activation that does not commute with the pool
    (TAAN's): the activation runs on the whole map once without autograd, only to find each window's winner;
    then BatchNorm and the activation run again, differentiably, on the winners alone. The output is the
    pooled map (the same elements, the same operations); the backward of the activation (its table sums, the
    costliest pass) runs on the 4x smaller set, and BatchNorm's on the whole map is one dense pass plus a
    scatter (as relu_block's). Nothing of the size of the map is saved but z."""
    mean, rstd = batch_statistics(z, norm)
    with torch.no_grad():
        scale, shift = _affine(norm, mean, rstd)
        y = act(torch.addcmul(shift.view(1, -1, 1, 1), z, scale.view(1, -1, 1, 1)), segments)
        idx = F.max_pool2d(y, k, return_indices=True)[1]
        del y
    return act(_BatchNormAt.apply(z, norm.weight, norm.bias, norm, idx, mean, rstd), segments)


def in_training(norm: nn.Module) -> bool:
    """A BatchNorm that normalises by the batch's statistics (its training mode)."""
    return isinstance(norm, nn.BatchNorm2d) and (norm.training or not norm.track_running_stats)


def plain_norm(norm: nn.Module) -> bool:
    return isinstance(norm, nn.Identity) or type(norm) is nn.BatchNorm2d


def pool_size(pool: nn.Module) -> int | None:
    """k of a plain k x k, stride-k max-pool (the backbone's), 1 for no pooling, None for anything else."""
    if isinstance(pool, nn.Identity):
        return 1
    if (isinstance(pool, nn.MaxPool2d) and pool.stride in (pool.kernel_size, None) and pool.padding == 0
            and pool.dilation == 1 and not pool.ceil_mode and not pool.return_indices
            and isinstance(pool.kernel_size, int)):
        return pool.kernel_size
    return None


def channel_stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, biased variance) per channel of z [N, C, H, W], as products over z's own memory: the column sums
    and the Gram diagonal of z as an [N H W, C] matrix (channels_last) -- measured 5x faster than var_mean's
    strided reduction on these maps (C = 6 ... 64)."""
    z2 = as_rows(z)
    n = z2.shape[0]
    total = torch.ones(1, n, dtype=z.dtype, device=z.device) @ z2
    squares = torch.einsum("ij,ij->j", z2, z2) if z2.shape[1] > 64 else (z2.T @ z2).diagonal()
    mean = total[0] / n
    return mean, (squares / n - mean * mean).clamp_min(0.0)


def as_rows(z: torch.Tensor) -> torch.Tensor:
    """z [N, C, H, W] as [N H W, C]: a view of a channels_last tensor, a copy otherwise."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def column_sums(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Per channel sum of a (b None) or of a * b, over [N, C, H, W] tensors."""
    a2 = as_rows(a)
    if b is None:
        return (torch.ones(1, a2.shape[0], dtype=a.dtype, device=a.device) @ a2)[0]
    b2 = as_rows(b)
    return torch.einsum("ij,ij->j", a2, b2) if a2.shape[1] > 64 else (a2.T @ b2).diagonal()


def batch_statistics(z: torch.Tensor, norm: nn.BatchNorm2d):
    """(mean, rstd, scale, shift) of a training-mode BatchNorm on z; the running statistics updated as
    nn.BatchNorm2d updates them."""
    mean, var = channel_stats(z.detach())
    if norm.track_running_stats:
        update_running_stats(norm, mean, var, z.numel() // z.shape[1])
    rstd = torch.rsqrt(var + norm.eps)
    return mean, rstd


def _affine(norm, mean, rstd):
    scale = rstd if norm.weight is None else norm.weight.detach() * rstd
    shift = -mean * scale if norm.bias is None else norm.bias.detach() - mean * scale
    return scale, shift


def _norm_grads(norm, sum_g, sum_gx, needs):
    d_weight = sum_gx if norm.weight is not None and needs[1] else None
    d_bias = sum_g if norm.bias is not None and needs[2] else None
    return d_weight, d_bias


class _BatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm of a channels_last map, statistics and gradient sums as matrix products.
    dz = scale (g - mean(g) - xhat mean(g xhat)) = scale g + B z + A per channel."""

    @staticmethod
    def forward(ctx, z, weight, bias, norm):
        mean, rstd = batch_statistics(z, norm)
        scale, shift = _affine(norm, mean, rstd)
        ctx.save_for_backward(z, mean, rstd, scale)
        ctx.norm = norm
        return torch.addcmul(shift.view(1, -1, 1, 1), z, scale.view(1, -1, 1, 1))

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        z, mean, rstd, scale = ctx.saved_tensors
        n = z.numel() // z.shape[1]
        sum_g = column_sums(g)
        sum_gx = (column_sums(g, z) - mean * sum_g) * rstd
        dz = None
        if ctx.needs_input_grad[0]:
            b = -scale * rstd * sum_gx / n
            a = -scale * sum_g / n - b * mean
            dz = torch.addcmul(torch.addcmul(a.view(1, -1, 1, 1), z, b.view(1, -1, 1, 1)), g,
                               scale.view(1, -1, 1, 1))
        return (dz, *_norm_grads(ctx.norm, sum_g, sum_gx, ctx.needs_input_grad), None)


class _BatchNormReLUPool(torch.autograd.Function):
    """max-pool(relu(BN(z))) in training mode as relu(BN(signed pool of z)), saving z, the pool's indices and
    the small pooled tensors; the backward's dense part is one pass, scale g (at the pooled positions) +
    B z + A."""

    @staticmethod
    def forward(ctx, z, weight, bias, norm, k):
        mean, rstd = batch_statistics(z, norm)
        scale, shift = _affine(norm, mean, rstd)
        pooled, idx = signed_pool(z, scale, k)
        y = torch.relu(torch.addcmul(shift.view(1, -1, 1, 1), pooled, scale.view(1, -1, 1, 1)))
        ctx.save_for_backward(z, idx, pooled, y, mean, rstd, scale)
        ctx.norm = norm
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        z, idx, pooled, y, mean, rstd, scale = ctx.saved_tensors
        g = gy * (y > 0)  # the gradient at BatchNorm's output, non-zero only at the pooled positions
        return (*sparse_bn_backward(z, idx, pooled, g, mean, rstd, scale, ctx.norm, ctx.needs_input_grad),
                None, None)


class _BatchNormAt(torch.autograd.Function):
    """BN(z) at the flat positions ``idx`` [N, C, h, w] of each plane, with the batch statistics (mean, rstd) of
    the whole z (computed, and the running statistics updated, by the caller). The gradient arrives at those
    positions only, so the backward's dense part is one pass, B z + A, plus a scatter of scale g."""

    @staticmethod
    def forward(ctx, z, weight, bias, norm, idx, mean, rstd):
        scale, shift = _affine(norm, mean, rstd)
        n, c = z.shape[:2]
        z_at = z.flatten(2).gather(2, idx.reshape(n, c, -1)).view(idx.shape)
        ctx.save_for_backward(z, idx, z_at, mean, rstd, scale)
        ctx.norm = norm
        return torch.addcmul(shift.view(1, -1, 1, 1), z_at, scale.view(1, -1, 1, 1))

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        z, idx, z_at, mean, rstd, scale = ctx.saved_tensors
        dz, d_weight, d_bias = sparse_bn_backward(z, idx, z_at, g, mean, rstd, scale, ctx.norm,
                                                  ctx.needs_input_grad)
        return dz, d_weight, d_bias, None, None, None, None


def sparse_bn_backward(z, idx, z_at, g, mean, rstd, scale, norm, needs):
    """BatchNorm's backward where the gradient g at its output is zero but at the positions idx (whose z
    values are z_at): the sums over the small tensors, dz = B z + A everywhere plus scale g at idx."""
    n = z.numel() // z.shape[1]
    sum_g = column_sums(g)
    sum_gx = (column_sums(g, z_at) - mean * sum_g) * rstd
    dz = None
    if needs[0]:
        b = -scale * rstd * sum_gx / n
        a = -scale * sum_g / n - b * mean
        dz = torch.addcmul(a.view(1, -1, 1, 1), z, b.view(1, -1, 1, 1))
        n_, c = z.shape[:2]
        planes = dz.view(n_, c, -1)
        planes.scatter_add_(2, idx.reshape(n_, c, -1), (g * scale.view(1, -1, 1, 1)).reshape(n_, c, -1))
    return (dz, *_norm_grads(norm, sum_g, sum_gx, needs))


def signed_pool(z: torch.Tensor, scale: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled, flat indices within each plane): the max of each k x k window where the channel's scale is
    >= 0, the min where it is < 0 (the max of BN(z) either way)."""
    hi, hi_idx = F.max_pool2d(z, k, return_indices=True)
    low = scale < 0
    if not bool(low.any()):
        return hi, hi_idx
    neg, lo_idx = F.max_pool2d(-z, k, return_indices=True)
    mask = low.view(1, -1, 1, 1)
    return torch.where(mask, -neg, hi), torch.where(mask, lo_idx, hi_idx)


def norm_scale_shift(z: torch.Tensor, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per channel (scale, shift) with BN(z) = z * scale + shift from the running statistics (evaluation mode;
    training mode runs the autograd Functions above); None for no norm."""
    if isinstance(norm, nn.Identity):
        return None
    rstd = torch.rsqrt(norm.running_var + norm.eps)
    scale = rstd if norm.weight is None else norm.weight * rstd
    shift = -norm.running_mean * scale if norm.bias is None else norm.bias - norm.running_mean * scale
    return scale, shift


@torch.no_grad()
def update_running_stats(norm: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
    norm.num_batches_tracked.add_(1)
    m = (1.0 / float(norm.num_batches_tracked)) if norm.momentum is None else norm.momentum
    norm.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
    norm.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)


def affine_norm(z: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    if in_training(norm):
        return _BatchNorm.apply(z, norm.weight, norm.bias, norm)
    ss = norm_scale_shift(z, norm)
    if ss is None:
        return z
    scale, shift = ss
    return torch.addcmul(shift.view(1, -1, 1, 1), z, scale.view(1, -1, 1, 1))


def relu_block(z: torch.Tensor, norm: nn.Module, k: int) -> torch.Tensor:
    """max-pool(relu(BN(z))) computed as relu(BN(signed pool of z)): exact, the pool moved before the
    monotone maps (where BN's scale is negative the max becomes a min)."""
    if in_training(norm):
        if k == 1:
            return torch.relu(_BatchNorm.apply(z, norm.weight, norm.bias, norm))
        return _BatchNormReLUPool.apply(z, norm.weight, norm.bias, norm, k)
    ss = norm_scale_shift(z, norm)
    if ss is None:
        return torch.relu(z if k == 1 else F.max_pool2d(z, k))
    scale, shift = ss
    pooled = z if k == 1 else signed_pool(z, scale.detach(), k)[0]
    return torch.relu(torch.addcmul(shift.view(1, -1, 1, 1), pooled, scale.view(1, -1, 1, 1)))
