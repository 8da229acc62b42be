"""Gradient weightings: TorchJD's aggregators of the per-task gradients of the shared parameters.

The step (step.py) computes the Jacobian J [T, n] of the task losses with respect to the shared parameters --
in one batched backward pass where the method's graph allows it (``torch.autograd.grad(...,
is_grads_batched=True)``), else one pass per task -- all-reduces it under torchrun, unscales it under fp16,
and hands it here. The aggregate replaces the shared parameters' gradient; each task-specific parameter gets
its own task's gradient.

Solver-based aggregators need the solvers extra, ``pip install "mtlbench[solvers]"`` (CAGrad and Nash-MTL
cvxpy, UPGrad and DualProj quadprog); ``validate`` refuses them, with that line, where a solver is missing.
"""
from __future__ import annotations

from pydantic import Field
from torchjd import aggregation as A

from mtlbench.registry import WEIGHTINGS
from mtlbench.weighting.base import GradientWeighting, StepContext, WeightingOptions, torch_state

SOLVERS_INSTALL = 'pip install "mtlbench[solvers]"'


class AggregatorWeighting(GradientWeighting):
    """A TorchJD aggregator on J. Weighted aggregators report the weight of each task's row."""

    def __init__(self, options, ctx: StepContext):
        super().__init__(options, ctx)
        self.aggregator = self.make(options, ctx)

    def make(self, options, ctx: StepContext) -> A.Aggregator:
        raise NotImplementedError

    def aggregate(self, jacobian, losses):
        agg = self.aggregator
        if isinstance(agg, A.WeightedAggregator):  # what its forward does, keeping the weights
            weights = agg.weighting(jacobian)
            return weights @ jacobian, weights.detach()
        return agg(jacobian), None


def simple(name: str, cls, cite: str, doc: str):
    """Register an aggregator without options (``cite``: its paper's key in mtlbench/config/bibliography.yaml)."""
    weighting = type(cls.__name__ + "Weighting", (AggregatorWeighting,),
                     {"cite": cite, "__doc__": doc, "make": lambda self, options, ctx: cls()})
    return WEIGHTINGS.register(name)(weighting)


simple("pcgrad", A.PCGrad, "yu2020", "Each task gradient projected off the others it conflicts with, then summed.")
simple("imtl_g", A.IMTLG, "liu2021imtl", "The combination whose projections on every task gradient are equal.")
simple("config", A.ConFIG, "liu2025config", "The direction with equal positive cosine to every task gradient.")


class MGDAOptions(WeightingOptions):
    epsilon: float = Field(default=1e-3, gt=0, description="Frank-Wolfe stopping tolerance")
    max_iters: int = Field(default=100, ge=1, description="Frank-Wolfe iterations at most")


@WEIGHTINGS.register("mgda")
class MGDAWeighting(AggregatorWeighting):
    """The minimum-norm point of the convex hull of the task gradients (Frank-Wolfe)."""

    Options = MGDAOptions
    cite = "sener2018"  # mtlbench/config/bibliography.yaml

    def make(self, options, ctx):
        return A.MGDA(epsilon=options.epsilon, max_iters=options.max_iters)


class AlignedOptions(WeightingOptions):
    scale_mode: str = Field(default="min", pattern="^(min|median|rmse)$",
                            description="how the aligned gradients are scaled: min | median | rmse")


@WEIGHTINGS.register("aligned_mtl")
class AlignedMTLWeighting(AggregatorWeighting):
    """The task gradients' system made well-conditioned (aligned) before combining."""

    Options = AlignedOptions
    cite = "senushkin2023"  # mtlbench/config/bibliography.yaml

    def make(self, options, ctx):
        return A.AlignedMTL(scale_mode=options.scale_mode)


@WEIGHTINGS.register("upgrad")
class UPGradWeighting(AggregatorWeighting):
    """The mean of the task gradients each projected onto the dual cone of all of them."""

    cite = "quinton2024"  # mtlbench/config/bibliography.yaml

    requires = ("qpsolvers", "quadprog")  # its projection onto the dual cone is a quadratic program
    install = SOLVERS_INSTALL

    def make(self, options, ctx):
        return A.UPGrad()


@WEIGHTINGS.register("dualproj")
class DualProjWeighting(AggregatorWeighting):
    """The mean gradient projected onto the dual cone of the task gradients."""

    cite = "quinton2024"  # mtlbench/config/bibliography.yaml

    requires = ("qpsolvers", "quadprog")  # its projection onto the dual cone is a quadratic program
    install = SOLVERS_INSTALL

    def make(self, options, ctx):
        return A.DualProj()


class GradDropOptions(WeightingOptions):
    pass


@WEIGHTINGS.register("graddrop")
class GradDropWeighting(AggregatorWeighting):
    """Per coordinate, the positive or the negative task gradients dropped at random by their sign purity."""

    cite = "chen2020graddrop"  # mtlbench/config/bibliography.yaml

    def make(self, options, ctx):
        return A.GradDrop()


class GradVacOptions(WeightingOptions):
    beta: float = Field(default=0.5, ge=0, le=1, description="EMA rate of the target cosine similarities")


@WEIGHTINGS.register("gradvac")
class GradVacWeighting(AggregatorWeighting):
    """PCGrad towards a running target cosine similarity per task pair instead of zero."""

    Options = GradVacOptions
    cite = "wang2021gradvac"  # mtlbench/config/bibliography.yaml

    def make(self, options, ctx):
        return A.GradVac(beta=options.beta)

    def extra(self):
        w = self.aggregator.gramian_weighting
        return {"phi": w._phi_t, "key": w._state_key}

    def load_extra(self, state):
        w = self.aggregator.gramian_weighting
        w._phi_t, w._state_key = state["phi"], state["key"]


class FairGradOptions(WeightingOptions):
    alpha: float = Field(default=1.0, gt=0, description="alpha-fairness of the task utilities (1: proportional)")


@WEIGHTINGS.register("fairgrad")
class FairGradWeighting(AggregatorWeighting):
    """Weights solving the alpha-fair utility maximisation of the tasks' loss decreases (scipy)."""

    Options = FairGradOptions
    cite = "ban2024"  # mtlbench/config/bibliography.yaml

    def make(self, options, ctx):
        return A.FairGrad(alpha=options.alpha)


class CAGradOptions(WeightingOptions):
    c: float = Field(default=0.4, ge=0, description="radius of the ball around the mean gradient (paper: 0.4)")


@WEIGHTINGS.register("cagrad")
class CAGradWeighting(AggregatorWeighting):
    """The direction within c ||g0|| of the mean gradient g0 that maximises the worst task's decrease."""

    Options = CAGradOptions
    cite = "liu2021cagrad"  # mtlbench/config/bibliography.yaml
    requires = ("cvxpy", "clarabel")
    install = SOLVERS_INSTALL

    def make(self, options, ctx):
        return A.CAGrad(c=options.c)


class NashOptions(WeightingOptions):
    max_norm: float = Field(default=1.0, ge=0, description="clip of the combined gradient's norm (0: none)")
    update_weights_every: int = Field(default=1, ge=1, description="steps between solves of the bargaining game")
    optim_niter: int = Field(default=20, ge=1, description="iterations of the concave-convex procedure")


@WEIGHTINGS.register("nash_mtl")
class NashMTLWeighting(AggregatorWeighting):
    """The Nash bargaining solution of the tasks (weights with (J J^T) a = 1 / a), by a sequence of convex
    problems."""

    Options = NashOptions
    cite = "navon2022"  # mtlbench/config/bibliography.yaml
    requires = ("cvxpy", "ecos")
    install = SOLVERS_INSTALL

    def make(self, options, ctx):
        return A.NashMTL(n_tasks=ctx.n_tasks, max_norm=options.max_norm,
                         update_weights_every=options.update_weights_every, optim_niter=options.optim_niter)

    def extra(self):
        w = self.aggregator.weighting
        return torch_state({"prvs_alpha": w.prvs_alpha, "normalization_factor": w.normalization_factor,
                            "init_gtg": w.init_gtg, "step": w.step})

    def load_extra(self, state):
        w = self.aggregator.weighting
        w.prvs_alpha = state["prvs_alpha"].numpy()
        w.normalization_factor = state["normalization_factor"].numpy()
        w.init_gtg = state["init_gtg"].numpy()
        w.step = state["step"]
        if w.step > 0:  # the convex problem, warm-started from the restored weights (the first solve builds it)
            w._init_optim_problem()
