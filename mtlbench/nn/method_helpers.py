"""Pieces the baseline methods share: per-task copies of backbone blocks, row segments of a concatenated batch,
the ``fidelity: taan_code`` switch and STL-checkpoint loading.

(The leading underscore keeps the registry's discovery from importing this as a method module.)
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from mtlbench.nn.backbone import BackboneSpec, Segments, init_shared
from mtlbench.nn.layer_plan import Plan, PlanError, plan_for
from mtlbench.store.dataset import DataInfo


# -- option handling ------------------------------------------------------------------------------------------
def apply_fidelity(data: Any, taan_code_defaults: dict[str, Any]) -> Any:
    """``fidelity: taan_code`` switches the *defaults* of the options where yingrliu/TAAN-MTL (the code behind
    the TAAN tables) differs from the paper; options the spec names explicitly still win."""
    if isinstance(data, dict) and data.get("fidelity") == "taan_code":
        return {**taan_code_defaults, **data}
    return data


# -- refusals ----------------------------------------------------------------------------------------------------
def raise_if_refused(cls: Any, info: DataInfo, backbone: BackboneSpec, params: Any) -> None:
    """Constructors call this so that a method built without `validate` fails with the same lines."""
    from mtlbench.errors import SpecError

    problems = cls.check(info, backbone, params)
    if problems:
        raise SpecError(problems)


# -- fuse positions (Cross-Stitch, NDDR) ------------------------------------------------------------------------
# stages: every stage end (every layer of the mlp and conv kinds, the pooling stages of vgg); all: every layer;
# or a list of layer indices / names (fc1, conv3_3)
Positions = Literal["stages", "all"] | list[int | str]


def resolve_positions(plan: Plan, positions: Positions) -> list[int]:
    """Layer indices after which a unit sits (unknown entries are left out; ``position_problems`` names them)."""
    if positions == "stages":
        return plan.stage_ends()
    if positions == "all":
        return [layer.index for layer in plan.layers]
    found = [plan.index_of(p) if isinstance(p, str) else p for p in positions]
    return sorted({i for i in found if i is not None and 0 <= i < len(plan.layers)})


def position_problems(info: DataInfo, backbone: BackboneSpec, positions: Positions, method: str) -> list[str]:
    try:
        plan = plan_for(info, backbone)
    except PlanError:
        return []  # the backbone's own problem is reported once, by validate
    if isinstance(positions, str):
        return []
    n = len(plan.layers)
    bad = [p for p in positions if (plan.index_of(p) if isinstance(p, str) else p) not in range(n)]
    if bad:
        names = ", ".join(layer.name for layer in plan.layers)
        return [f"{method}: positions {bad} are not layers of this backbone (indices 0..{n - 1} or names {names})"]
    return []


# -- blocks ---------------------------------------------------------------------------------------------------
def fresh_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with its own, freshly drawn weights (same init as the backbone's)."""
    clone = copy.deepcopy(module)
    init_shared(clone)
    for m in clone.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.reset_parameters()
    return clone


def segments_of(xs: Sequence[torch.Tensor]) -> list[tuple[int, int]]:
    return [(t, len(x)) for t, x in enumerate(xs)]


def row_task_index(segments: Segments, device: torch.device) -> torch.Tensor:
    """Task index of every row of a concatenated batch."""
    tasks = torch.tensor([t for t, _ in segments], device=device)
    counts = torch.tensor([n for _, n in segments], device=device)
    return tasks.repeat_interleave(counts)


# -- STL checkpoints (DMTRL's `init: stl`, Cross-Stitch's `tower_init: stl`) -----------------------------------
def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError("not a state_dict")
    return obj


def load_stl_towers(model: nn.Module, path: str) -> None:
    """Stems, trunks and heads of an ``stl`` checkpoint into a model whose towers use STL's key names."""
    state = load_state(path)
    model.load_state_dict({k: v for k, v in state.items() if k.startswith(("stems.", "trunks.", "heads."))},
                          strict=False)


def stl_shapes(info: DataInfo, backbone: BackboneSpec) -> dict[str, torch.Size]:
    """Shapes of every entry of an STL model's state_dict for this dataset and backbone (built on the meta
    device: nothing is allocated or initialised). STL is looked up by its registered name: the layer machinery
    never imports a method module."""
    from mtlbench.registry import METHODS

    STL = METHODS.get("stl")
    with torch.device("meta"):
        model = STL(info, backbone, STL.Params())
    return {k: v.shape for k, v in model.state_dict().items()}


def stl_checkpoint_problems(path: str | None, info: DataInfo, backbone: BackboneSpec, method: str,
                            field: str) -> list[str]:
    if not path:
        return [f"{method}: {field} needs `stl_checkpoint: PATH` (the seed<k>.pt an `stl` run of the same "
                f"dataset and backbone saved beside its JSON record)"]
    p = Path(path)
    if not p.is_file():
        return [f"{method}: stl_checkpoint {path} does not exist (train the `stl` cell of this spec first)"]
    try:
        state = load_state(p)
    except Exception as e:  # torch raises many kinds; the user needs the file and the reason
        return [f"{method}: stl_checkpoint {path} cannot be read as a state_dict ({type(e).__name__}: {e})"]
    want = stl_shapes(info, backbone)
    missing = [k for k in want if k not in state]
    if missing:
        return [f"{method}: stl_checkpoint {path} is not an STL model of this spec (missing {missing[0]!r} "
                f"and {len(missing) - 1} more keys)"]
    wrong = [k for k, s in want.items() if tuple(state[k].shape) != tuple(s)]
    if wrong:
        k = wrong[0]
        return [f"{method}: stl_checkpoint {path} has {k} of shape {tuple(state[k].shape)}, this spec needs "
                f"{tuple(want[k])} (was it trained with another backbone or dataset?)"]
    return []
