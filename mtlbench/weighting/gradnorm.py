"""GradNorm (Chen et al., ICML 2018), written here because TorchJD has no GradNorm.

Learned task weights w (initialised to 1) scale the losses: the model is trained on sum_t w_t L_t. At every
step, with W the last shared layer's weight and G_t = ||grad_W (w_t L_t)|| = w_t ||grad_W L_t||:

    r_t      = (L_t / L_t(0)) / mean_k (L_k / L_k(0))        relative inverse training rate
    target_t = mean_k(G_k) * r_t ** alpha                      held constant
    L_grad   = sum_t |G_t - target_t|

w takes the optimizer step on dL_grad/dw (its own optimizer group: the spec's lr, no weight decay), and is then
renormalised to sum to T. The gradients grad_W L_t are rows of the per-task Jacobian the step computes anyway.
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from mtlbench.registry import WEIGHTINGS
from mtlbench.weighting.base import GradientWeighting, StepContext, WeightingOptions


class GradNormOptions(WeightingOptions):
    alpha: float = Field(default=1.5, ge=0, description="asymmetry: how strongly slow tasks are pushed (paper: "
                                                         "0.12 to 3; 1.5 on NYUv2)")


@WEIGHTINGS.register("gradnorm")
class GradNorm(GradientWeighting):
    """Task weights trained so that each task's gradient norm on the last shared layer follows its relative
    training rate."""

    Options = GradNormOptions
    cite = "chen2018"  # mtlbench/config/bibliography.yaml
    weighs_task_parameters = True

    def __init__(self, options, ctx: StepContext):
        super().__init__(options, ctx)
        self.w = nn.Parameter(torch.ones(ctx.n_tasks))
        self.register_buffer("initial_losses", torch.zeros(ctx.n_tasks))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))
        self.last_layer: slice | None = None  # columns of J: the last shared layer's weight (set by the step)

    def trained_parameters(self):
        return [self.w]

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor):
        """(update of the shared parameters, the task weights); sets w.grad = dL_grad/dw."""
        losses = losses.detach()
        if not bool(self.started):
            self.initial_losses.copy_(losses)
            self.started.fill_(True)
        w = self.w.detach()
        cols = self.last_layer if self.last_layer is not None else slice(None)
        norms = jacobian[:, cols].norm(dim=1)  # ||grad_W L_t||
        g = w * norms  # G_t
        ratio = losses / self.initial_losses
        r = ratio / ratio.mean()
        target = g.mean() * r ** self.options.alpha
        # d/dw_t sum_k |w_k n_k - target_k| with the target held constant = sign(G_t - target_t) n_t
        self.w.grad = torch.sign(g - target) * norms
        return w @ jacobian, w.clone()

    def after_step(self, losses_after):
        with torch.no_grad():  # renormalise: the weights sum to T
            self.w.mul_(self.ctx.n_tasks / self.w.sum())
