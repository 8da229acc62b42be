"""Optimizer parameter groups from the method's named groups and the spec's per-group multipliers.

A method names its groups (``MTLMethod.groups``: ``heads``, ``stems``, ``trunk`` and its own, e.g. TAAN's
``alpha``); every trainable parameter is in exactly one. A group trains at

    lr           = optimizer.lr * the method's own multiplier (NDDR: 100 on its reductions) * optimizer.lr_mult[group]
    weight decay = optimizer.weight_decay * optimizer.weight_decay_mult[group]

Named groups with equal settings share one torch group (parameters in model order), so a spec without
multipliers builds the single group it always did, and a saved optimizer state keeps its layout.
"""
from __future__ import annotations

from typing import Any

from mtlbench.config.schema import OptimizerSpec
from mtlbench.nn.method import MTLMethod


def group_settings(model: MTLMethod, o: OptimizerSpec) -> dict[str, dict[str, float]]:
    """group -> {"lr", "weight_decay"} as the optimizer uses them."""
    own = model.group_lr_mult()
    return {g: {"lr": o.lr * own.get(g, 1.0) * o.lr_mult.get(g, 1.0),
                "weight_decay": o.weight_decay * o.weight_decay_mult.get(g, 1.0)}
            for g in model.group_names()}


def optimizer_groups(model: MTLMethod, o: OptimizerSpec) -> list[dict[str, Any]]:
    """torch param groups, each with its ``lr``, ``weight_decay`` and ``groups`` (the named groups it holds)."""
    settings, merged = group_settings(model, o), {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        group = model.group_of(name)
        s = settings[group]
        entry = merged.setdefault((s["lr"], s["weight_decay"]), {"params": [], **s, "groups": []})
        entry["params"].append(p)
        if group not in entry["groups"]:
            entry["groups"].append(group)
    return list(merged.values())
