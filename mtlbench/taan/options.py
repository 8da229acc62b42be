"""Initialisation options of the adaptive activation, as YAML-friendly pydantic models.

    b_init: {kind: grid, lo: -3, hi: 3}        # default: linspace(lo, hi, M)
    b_init: {kind: uniform, lo: -0.5, hi: 0.5} # the authors' code (sorted after sampling)
    alpha_init: {kind: zero}                   # default: every task starts as exactly ReLU
    alpha_init: {kind: normal, std: 0.01}      # the authors' code
A bare kind (``b_init: grid``, ``alpha_init: zero``) means that kind with its default numbers.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


class _Option(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class GridInit(_Option):
    kind: Literal["grid"] = "grid"
    lo: float = -3.0
    hi: float = 3.0

    @model_validator(mode="after")
    def _ordered(self):
        if not self.hi > self.lo:
            raise ValueError(f"b_init grid needs hi > lo, got lo={self.lo}, hi={self.hi}")
        return self

    def sample(self, m: int) -> torch.Tensor:
        return torch.linspace(self.lo, self.hi, m)


class UniformInit(_Option):
    kind: Literal["uniform"] = "uniform"
    lo: float = -0.5
    hi: float = 0.5

    @model_validator(mode="after")
    def _ordered(self):
        if not self.hi > self.lo:
            raise ValueError(f"b_init uniform needs hi > lo, got lo={self.lo}, hi={self.hi}")
        return self

    def sample(self, m: int) -> torch.Tensor:
        return torch.sort(torch.empty(m).uniform_(self.lo, self.hi)).values


class ZeroInit(_Option):
    kind: Literal["zero"] = "zero"

    def sample(self, n_tasks: int, m: int) -> torch.Tensor:
        return torch.zeros(n_tasks, m)


class NormalInit(_Option):
    kind: Literal["normal"] = "normal"
    std: float = Field(default=0.01, gt=0)

    def sample(self, n_tasks: int, m: int) -> torch.Tensor:
        return torch.randn(n_tasks, m) * self.std


def _bare_kind(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


BInit = Annotated[GridInit | UniformInit, BeforeValidator(_bare_kind), Field(discriminator="kind")]
AlphaInit = Annotated[ZeroInit | NormalInit, BeforeValidator(_bare_kind), Field(discriminator="kind")]


class _Holder(BaseModel):
    b_init: BInit = GridInit()
    alpha_init: AlphaInit = ZeroInit()


def parse_b_init(value: Any) -> GridInit | UniformInit:
    return value if isinstance(value, (GridInit, UniformInit)) else _Holder(b_init=value).b_init


def parse_alpha_init(value: Any) -> ZeroInit | NormalInit:
    return value if isinstance(value, (ZeroInit, NormalInit)) else _Holder(alpha_init=value).alpha_init
