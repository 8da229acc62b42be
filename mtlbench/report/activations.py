"""MTAL Figures 10-11: what a shared kernel pair sees. For the first and second conv layers of an MTAL run, the
shared kernel pairs (filter k of task i with its partner in task j) with each task's activation map of that filter
on one test image of its own, from the run's selected weights (``seed<k>.pt``) and the spec's prepared data. A
layer where no pair is shared (random starts share few kernels past the first layer) shows its most similar
pairs instead, marked "not shared" with their cosine. Needs torch and the data, unlike the rest of `report`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mtlbench.errors import InputError
from mtlbench.results import RunRecord

PAIRS = 3  # pairs drawn per layer
LAYERS = 2  # the first and the second conv layer (Figures 10 and 11)


@dataclass
class PairMaps:
    """One kernel pair of one layer and what each side's filter makes of its task's image."""
    tasks: tuple[str, str]
    filters: tuple[int, int]
    cosine: float
    shared: bool
    images: tuple  # each task's input image [H, W] (its first channel)
    maps: tuple  # each task's activation map of its filter [H', W']


def run_model(record: RunRecord):
    """(the run's model with its selected weights, its data) rebuilt from the record's spec."""
    from mtlbench.config.schema import RunSpec
    from mtlbench.registry import DATASETS, METHODS
    weights = Path(record.path).with_suffix(".pt")
    if not weights.exists():
        raise InputError(f"{record.path}: no selected weights beside it ({weights.name}); activation maps need them")
    spec = RunSpec.model_validate(record.spec)
    entry = next(m for m in spec.methods if m.row == record.row)
    cls, source = METHODS.get(entry.name), DATASETS.get(spec.data.dataset)
    data = source.load(source.Options.model_validate(spec.data.options), spec.data.split_seed,
                       spec.data.path).only_tasks(entry.tasks)
    model = cls(data.info, spec.backbone_for(entry), cls.Params.model_validate(entry.params))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval(), data


@torch.no_grad()
def pair_maps(model, data, layer, pairs: int = PAIRS) -> list[PairMaps]:
    """The layer's shared pairs of highest cosine (or, when none is shared, its most similar pairs)."""
    _, sel, _, _ = model.share(layer)
    cos = sel.cosine.clone()
    T = cos.shape[1]
    upper = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    candidates, _ = model.indices(cos.device)
    allowed = upper & candidates
    shared = sel.mask & allowed
    pool = shared if shared.any() else allowed.expand_as(cos)
    order = torch.where(pool, cos, torch.tensor(-float("inf"))).flatten().argsort(descending=True)
    picked = [divmod_3(int(i), T) for i in order[:pairs] if pool.flatten()[i]]
    images = [split.batch(torch.arange(1))[0] for split in data.split("test")]
    out = []
    for k, i, j in picked:
        partner = k if sel.partner is None else int(sel.partner[k, i, j])
        maps = (activation(model, layer, images[i], i)[0, k], activation(model, layer, images[j], j)[0, partner])
        out.append(PairMaps((model.info.task_names[i], model.info.task_names[j]), (k, partner),
                            float(cos[k, i, j]), bool(shared[k, i, j]), (first_channel(images[i]),
                            first_channel(images[j])), maps))
    return out


def divmod_3(flat: int, T: int) -> tuple[int, int, int]:
    k, rest = divmod(flat, T * T)
    return (k, *divmod(rest, T))


def first_channel(x: torch.Tensor) -> torch.Tensor:
    """A task's input as an image: [H, W] of its first channel (a feature vector as one row)."""
    x = x[0]
    return x[0] if x.dim() == 3 else x.reshape(1, -1)


def activation(model, layer, x: torch.Tensor, task: int) -> torch.Tensor:
    """Task ``task``'s activation of conv ``layer`` (after its normalisation and ReLU) on input ``x``."""
    seen = []
    hook = model.trunks[task].blocks[layer.index].act.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        model.forward_task(x, task)
    finally:
        hook.remove()
    return seen[0]


def activation_figures(record: RunRecord, figures: Path | None) -> list[Path]:
    """One PNG per layer (conv1_1: Figure 10, the next: Figure 11) for an MTAL record; [] for other methods."""
    if not record.summary.get("mtal"):
        return []
    from mtlbench.report.plots import pair_maps_png
    model, data = run_model(record)
    path = Path(record.path)
    out = []
    for layer in model.conv_layers[:LAYERS]:
        png = (figures or path.parent / "figures") / f"{path.stem}_activations_{layer.name}.png"
        out.append(pair_maps_png(pair_maps(model, data, layer),
                                 f"{record.row} seed {record.seed}, {layer.name}: kernel pairs and their activations",
                                 png))
    return out
