"""MRN -- Multilinear Relationship Networks [long2017]. Registered as ``mrn_t`` (task covariance only) and
``mrn_full`` (task, output-feature and input-feature covariances).

What it implements: task-specific layers whose weights, stacked over tasks into
W in R^{D1 x D2 x T}, carry a tensor-normal prior vec(W) ~ N(0, Sigma_task (x) Sigma_out (x) Sigma_in). With the
covariances fixed, the regularizer in per-task matrix form (W_t in R^{D2 x D1}, precisions Omega = Sigma^-1) is

    R(W) = sum_{s,t} Omega_task[s,t] tr(W_s^T Omega_out W_t Omega_in),

computed as M_t = Omega_out W_t Omega_in (batched), R = sum_t <W_t, sum_s Omega_task[t,s] M_s> -- no Kronecker
product is ever formed. The loss gets ``c * R``. The paper's MAP objective is sum_n J + R / 2 with the
data term *summed* over examples; the trainer averages the loss, so the paper's weighting is c = 1 / (2 N) for
N training examples over all tasks -- set ``c`` so for an exact match. Every ``update_interval`` optimizer steps
(``after_step``) the precisions are
re-estimated in the order task -> out -> in, each from the freshly updated others, without gradient:
- ``update_rule: paper``: the closed-form flip-flop MLE, e.g.
  Sigma_task[s,t] = tr(W_s^T Omega_out W_t Omega_in) / (D1 D2) + eps delta_st, inverted exactly (eigh, float64).
- ``update_rule: official``: thuml/MTlearn as re-used by yingrliu/TAAN-MTL: no 1/(D1 D2), + 1e-5 I, SVD with
  singular values mapped s -> 1/s if s > 0.1 else s, trace capped at 3000, and Omega_in *accumulated*
  (Omega_in <- Omega_in + 3e-4 new) as in the TAAN code.
Conv layers in the task-specific part are regularised through their flattened kernels (D1 = C_in k k).

Options: ``task_layers`` (how many of the last hidden blocks are task-specific and regularised; ``all`` = no
shared trunk, as in the TAAN tables; the MRN paper used fc7+fc8 on a shared, pre-trained trunk),
``prior_on_heads`` (also regularise the output layers -- the paper's fc8; needs equal class counts),
``c`` (default by rule: 1e-6 with ``paper``, i.e. 1 / (2 N) for N = 5e5 examples; 1e-3 with ``official``,
TAAN's ``--mrn_constant``), ``eps``, ``update_interval`` (100 as the official code; TAAN 50).
``fidelity: taan_code`` selects ``update_rule: official`` and ``update_interval: 50``.

Known limits / differences: the TAAN code never calls its update (all Omega stay I there, MRN_t == MRN_full);
here the updates run (our decision). The log-det terms of the MAP objective do not
depend on the weights and are not added to the loss. The precisions are registered buffers (checkpointed,
moved with the model); MRN_t keeps Omega_out = Omega_in = I. Each update costs
O(T D1 D2 (D1 + D2) + T^2 D1 D2) per regularised layer, and with learned feature covariances so does every
regularizer evaluation. The naming of MRN_t as the task-covariance-only variant is our reading (inferred, not
printed in the paper).
Measured behaviour (tests/test_mrn.py, 6 tasks in 2 planted groups, Adam): with the paper rule the prior's
strength grows as the weights shrink (Omega ~ 1 / variance) and at the MLE the penalty is c times the number
of regularised weights, so a large ``c`` collapses the regularised weights (toy: c = 1e-2 did, 1e-3 did not).
On our YouTube-8M copy (3 x 128 MLP, 300 iterations, mAP@10; STL 0.754): paper rule c = 1e-3 0.523, 1e-4
0.598, 1e-5 0.668, 1e-6 0.759; official rule c = 1e-3 0.757 (MRN_full: 1e-5 0.712, 1e-6 0.745, official 0.756).
MRN_full estimates three covariances from one weight tensor; when
D1 is close to T * D2 the input covariance is nearly singular and with the default ``eps`` the learned task
covariance can come out unstructured (seed-dependent); ``eps: 1e-2`` recovered the planted groups there.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from mtlbench.nn.backbone import make_heads
from mtlbench.nn.layer_plan import Trunk, plan_for, run_towers
from mtlbench.nn.method import MethodParams, MTLMethod
from mtlbench.nn.method_helpers import apply_fidelity, fresh_copy, raise_if_refused, segments_of
from mtlbench.registry import METHODS

TAAN_CODE = {"update_rule": "official", "update_interval": 50}
DEFAULT_C = {"paper": 1e-6, "official": 1e-3}
OFFICIAL_EPS, OFFICIAL_TRACE_CAP, OFFICIAL_KEEP_BELOW, OFFICIAL_IN_RATE = 1e-5, 3000.0, 0.1, 3e-4


class MRNParams(MethodParams):
    fidelity: Literal["paper", "taan_code"] = "paper"
    task_layers: Annotated[int, Field(ge=0)] | Literal["all"] = Field(
        default="all", description="last hidden blocks made task-specific (0 = heads only, or all)")
    prior_on_heads: bool = False
    c: float | None = Field(default=None, ge=0.0, description="weight of the prior term; null = 1e-6 (paper rule) "
                                                                "or 1e-3 (official rule)")
    update_rule: Literal["paper", "official"] = "paper"
    update_interval: int = Field(default=100, ge=1)
    eps: float = Field(default=1e-5, gt=0.0, description="ridge added to each covariance (paper rule)")

    @model_validator(mode="before")
    @classmethod
    def _fidelity(cls, data):
        return apply_fidelity(data, TAAN_CODE)


class TensorNormalPrior(nn.Module):
    """Precisions of one regularised layer (buffers) and the prior's penalty / flip-flop updates."""

    def __init__(self, n_tasks: int, d_out: int, d_in: int):
        super().__init__()
        self.register_buffer("omega_task", torch.eye(n_tasks))
        self.register_buffer("omega_out", torch.eye(d_out))
        self.register_buffer("omega_in", torch.eye(d_in))

    def penalty(self, w: torch.Tensor, modes: Sequence[str]) -> torch.Tensor:
        """R(W) for the stack w [T, D2, D1]."""
        m = sandwich(w, self.omega_out, self.omega_in, modes)
        mixed = torch.einsum("ts,sij->tij", self.omega_task, m)
        return (w * mixed).sum()

    @torch.no_grad()
    def update(self, w: torch.Tensor, modes: Sequence[str], rule: str, eps: float) -> None:
        w = w.detach().double()
        for mode in ("task", "out", "in"):
            if mode not in modes:
                continue
            scatter = self._scatter(w, mode, modes)
            if rule == "paper":
                new = paper_precision(scatter / self._normaliser(w, mode), eps)
            else:
                new = official_precision(scatter)
            buf = getattr(self, f"omega_{mode}")
            value = buf.double() + OFFICIAL_IN_RATE * new if (rule == "official" and mode == "in") else new
            buf.copy_(value.to(buf.dtype))

    def _scatter(self, w: torch.Tensor, mode: str, modes: Sequence[str]) -> torch.Tensor:
        """Mode unfolding times the Kronecker product of the other two precisions times its transpose."""
        o_task, o_out, o_in = (b.double() for b in (self.omega_task, self.omega_out, self.omega_in))
        if mode == "task":
            return w.flatten(1) @ sandwich(w, o_out, o_in, modes).flatten(1).T
        mixed = torch.einsum("st,tij->sij", o_task, w)  # V_s = sum_t Omega_task[s,t] W_t
        if mode == "out":
            return torch.einsum("sij,skj->ik", sandwich(w, o_out, o_in, ["in"] if "in" in modes else []), mixed)
        return torch.einsum("sji,sjk->ik", sandwich(w, o_out, o_in, ["out"] if "out" in modes else []), mixed)

    @staticmethod
    def _normaliser(w: torch.Tensor, mode: str) -> float:
        t, d_out, d_in = w.shape
        return {"task": d_out * d_in, "out": t * d_in, "in": t * d_out}[mode]


def sandwich(w: torch.Tensor, omega_out: torch.Tensor, omega_in: torch.Tensor, modes: Sequence[str]):
    """Omega_out W_t Omega_in for every t; a precision that is not learned is the identity and is skipped."""
    w = omega_out @ w if "out" in modes else w
    return w @ omega_in if "in" in modes else w


def paper_precision(cov: torch.Tensor, eps: float) -> torch.Tensor:
    cov = 0.5 * (cov + cov.T) + eps * torch.eye(len(cov), dtype=cov.dtype, device=cov.device)
    vals, vecs = torch.linalg.eigh(cov)
    return (vecs / vals) @ vecs.T


def official_precision(raw: torch.Tensor) -> torch.Tensor:
    raw = raw + OFFICIAL_EPS * torch.eye(len(raw), dtype=raw.dtype, device=raw.device)
    u, s, vh = torch.linalg.svd(raw)
    s = torch.where(s > OFFICIAL_KEEP_BELOW, 1.0 / s, s)  # small singular values are kept, not inverted
    omega = (u * s) @ vh
    trace = torch.trace(omega)
    return omega * (OFFICIAL_TRACE_CAP / trace) if trace > OFFICIAL_TRACE_CAP else omega


class MRN(MTLMethod):
    """Task-specific layers under a tensor-normal prior whose precisions are re-estimated every interval.

    Params (YAML)::

        fidelity: paper        # paper | taan_code (= update_rule: official, update_interval: 50)
        task_layers: all       # all (TAAN tables: no shared trunk) | k (the last k hidden layers)
        prior_on_heads: false  # also put the prior on the output layers (MRN paper's fc8; equal class counts)
        c: null                # prior weight; null = 1e-6 (paper: ~1/(2N)) | 1e-3 (official, TAAN's constant)
        update_rule: paper     # paper (normalised MLE, exact inverse) | official (thuml/MTlearn + TAAN)
        update_interval: 100   # optimizer steps between covariance updates (official 100, TAAN 50)
        eps: 1.0e-5            # ridge added to each covariance by the paper rule

    ``mrn_t`` learns the task covariance only; ``mrn_full`` learns task, output and input covariances.
    """

    Params = MRNParams
    cite = "long2017"  # mtlbench/config/bibliography.yaml
    shared_params = ("shared.*",)  # the layers below the task-specific ones
    covariances: ClassVar[tuple[str, ...]] = ()

    def __init__(self, info, backbone, params: MRNParams):
        super().__init__(info, backbone, params)
        raise_if_refused(type(self), info, backbone, params)
        trunk = Trunk(self.plan)
        self.n_blocks = len(self.plan.layers)
        self.n_shared = self.n_blocks - n_task_layers(params, self.n_blocks)
        self.shared = nn.ModuleList(trunk.blocks[: self.n_shared])
        # task 0 keeps the trunk's own blocks; the others get fresh draws of the same layers
        self.towers = nn.ModuleList(
            nn.ModuleList(trunk.blocks[self.n_shared:] if t == 0 else
                          [fresh_copy(b) for b in trunk.blocks[self.n_shared:]])
            for t in range(info.n_tasks))
        self.heads = make_heads(self.plan.out_features, info.tasks)
        self.priors = nn.ModuleList(TensorNormalPrior(info.n_tasks, *w.shape[1:]) for w in self.stacks())
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.long))

    # -- forward --------------------------------------------------------------------------------------------
    def forward_all(self, hs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        segments = segments_of(hs)
        h = self._shared(torch.cat(list(hs)), segments)
        return self._task_parts(list(h.split([n for _, n in segments])), range(len(hs)))

    def forward_one(self, h: torch.Tensor, task: int) -> torch.Tensor:
        return self._task_parts([self._shared(h, [(task, len(h))])], [task])[0]

    def _shared(self, x: torch.Tensor, segments) -> torch.Tensor:
        return run_towers(self.plan, [self.shared], [x], segments, layers=self.plan.layers[: self.n_shared])[0]

    def _task_parts(self, hs: list[torch.Tensor], tasks) -> list[torch.Tensor]:
        towers = [self.towers[t] for t in tasks]
        hs = run_towers(self.plan, towers, hs, layers=self.plan.layers[self.n_shared:])
        return [self.heads[t](h) for t, h in zip(tasks, hs)]

    # -- the prior ------------------------------------------------------------------------------------------
    def stacks(self) -> list[torch.Tensor]:
        """Weights of each regularised layer stacked over tasks, [T, D2, D1] (conv kernels flattened)."""
        out = [torch.stack([tower[i].affine.weight.flatten(1) for tower in self.towers])
               for i in range(self.n_blocks - self.n_shared)]
        if self.params.prior_on_heads:
            out.append(torch.stack([head.weight for head in self.heads]))
        return out

    @property
    def c(self) -> float:
        if self.params.c is not None:
            return self.params.c
        return DEFAULT_C[self.params.update_rule]

    def regularizer(self) -> torch.Tensor | None:
        if self.c == 0 or not self.priors:
            return None
        total = sum(p.penalty(w, self.covariances) for p, w in zip(self.priors, self.stacks()))
        return self.c * total

    def after_step(self, step: int) -> None:
        if step > 0 and step % self.params.update_interval == 0:
            self.update_covariances()

    def update_covariances(self) -> None:
        for prior, w in zip(self.priors, self.stacks()):
            prior.update(w, self.covariances, self.params.update_rule, self.params.eps)
        self.n_updates += 1

    def task_covariances(self) -> list[torch.Tensor]:
        """Sigma_task of each regularised layer (the inverse of the stored precision)."""
        return [torch.linalg.inv(p.omega_task.double()).float() for p in self.priors]

    def summary(self) -> dict:
        return {"mrn": {"covariances": list(self.covariances), "update_rule": self.params.update_rule, "c": self.c,
                        "covariance_updates": int(self.n_updates),
                        "regularised_layers": len(self.priors),
                        "regularised_layer_names": [layer.name for layer in self.plan.layers[self.n_shared:]]
                        + (["heads"] if self.params.prior_on_heads else []),
                        "task_covariance": [s.cpu().tolist() for s in self.task_covariances()]}}

    @classmethod
    def check(cls, info, backbone, params) -> list[str]:
        name = cls.registry_name if hasattr(cls, "registry_name") else "mrn"
        problems = []
        n_blocks = len(plan_for(info, backbone).layers)
        if params.task_layers != "all" and params.task_layers > n_blocks:
            problems.append(f"{name}: task_layers = {params.task_layers} but the backbone has only {n_blocks} "
                            f"hidden layers")
        if params.prior_on_heads and len({t.n_classes for t in info.tasks}) > 1:
            problems.append(f"{name}: prior_on_heads stacks the output layers, which needs every task to have the "
                            f"same number of classes (dataset {info.name!r} has "
                            f"{sorted({t.n_classes for t in info.tasks})})")
        if params.task_layers == 0 and not params.prior_on_heads:
            problems.append(f"{name}: task_layers = 0 without prior_on_heads leaves no layer for the prior")
        return problems


def n_task_layers(params: MRNParams, n_blocks: int) -> int:
    return n_blocks if params.task_layers == "all" else params.task_layers


@METHODS.register("mrn_t")
class MRNTask(MRN):
    """MRN_t: only the task covariance is learned (Omega_out = Omega_in = I), the official code's only mode.
    Options: see ``MRN``."""

    covariances = ("task",)


@METHODS.register("mrn_full")
class MRNFull(MRN):
    """MRN_full: task, output-feature and input-feature covariances are all learned. Options: see ``MRN``."""

    covariances = ("task", "out", "in")
