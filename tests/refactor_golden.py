"""Short seeded CPU runs of the methods that existed before the layer plan, recorded on the code before that
refactor (tests/golden/methods_short_run.json) and re-run by tests/test_refactor_golden.py.

Only the method contract is used (constructor, forward, forward_task, regularizer, after_step, its optimizer
groups) and the training step is written out here, so the recording does not depend on the trainer's internals.

Regenerate (only on purpose, on code whose numbers you trust):
    python -m tests.refactor_golden tests/golden/methods_short_run.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from mtlbench.config.schema import OptimizerSpec
from mtlbench.nn.backbone import BackboneSpec
from mtlbench.registry import METHODS
from mtlbench.training.optim import optimizer_groups
from tests.conftest import small_data

GOLDEN = Path(__file__).with_name("golden") / "methods_short_run.json"
ITERATIONS, BATCH, LR = 30, 16, 3e-3

BACKBONES = {
    "vector": BackboneSpec(hidden=[32, 32, 32]),
    "vector_bn": BackboneSpec(hidden=[24, 24, 24], dense_batch_norm=True),
    "image": BackboneSpec(channels=[8, 8, 8], padding=1, dense=[16]),
    "image_valid": BackboneSpec(channels=[6, 12], dense=[16]),  # 'valid' convolutions, pooling, flatten
    "image_mlp": BackboneSpec(kind="mlp", hidden=[32, 32]),  # images flattened by the first layer
    "image_nodense": BackboneSpec(channels=[6, 12], padding=1, dense=[]),  # features = the last conv map
}

# (method, data kind, backbone key, params): every method on vector and image data, plus the code paths
# where the layer arithmetic differs (valid convolutions, MLP on images, no dense layers, partial sharing).
CASES = [
    *[(m, "vector", "vector", {}) for m in
      ["stl", "hard_share", "taan", "soft_order", "mrn_t", "mrn_full", "dmtrl_laf", "dmtrl_tucker", "dmtrl_tt",
       "cross_stitch", "mmoe"]],
    *[(m, "image", "image", {}) for m in
      ["stl", "hard_share", "taan", "soft_order", "mrn_t", "mrn_full", "dmtrl_laf", "dmtrl_tucker", "dmtrl_tt",
       "cross_stitch", "mmoe"]],
    ("taan", "vector", "vector", {"alpha_init": {"kind": "normal", "std": 0.3}, "reg": "dis"}),
    ("mrn_full", "vector", "vector", {"task_layers": 1, "update_interval": 10, "c": 1e-3}),
    ("mrn_t", "image", "image", {"task_layers": 2, "update_interval": 10}),
    ("cross_stitch", "vector", "vector", {"granularity": "channel", "positions": [0, 2], "init": "ones"}),
    ("cross_stitch", "image", "image_valid", {"fidelity": "taan_code"}),
    ("dmtrl_tucker", "vector", "vector", {"activation": "none", "bias_init": "ones"}),
    ("dmtrl_laf", "image", "image_valid", {}),
    ("soft_order", "vector", "vector", {"fidelity": "taan_code"}),
    ("hard_share", "vector", "vector_bn", {}),
    ("stl", "vector", "vector_bn", {}),
    ("hard_share", "image", "image_valid", {}),
    ("stl", "image", "image_mlp", {}),
    ("hard_share", "image", "image_mlp", {}),
    ("mrn_t", "image", "image_mlp", {"task_layers": 1}),
    ("stl", "image", "image_nodense", {}),
    ("cross_stitch", "image", "image_nodense", {}),
    ("mmoe", "image", "image_valid", {"num_experts": 3}),
]


def case_id(case) -> str:
    method, kind, backbone, params = case
    return f"{method}-{kind}-{backbone}-{json.dumps(params, sort_keys=True)}"


def task_loss(logits, y, task):
    if task.target == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="sum") / len(y)
    return F.cross_entropy(logits, y)


def short_run(case) -> dict:
    """Per-iteration losses of a seeded run and, after it, eval-mode logit sums of every task's val split."""
    method, kind, backbone, params = case
    torch.set_num_threads(1)
    data = small_data("vector" if kind == "vector" else "image")
    cls = METHODS.get(method)
    if method == "taan":  # eager kernels: compiled code differs in rounding from one CPU to another
        params = {"kernel": "eager", **params}
    torch.manual_seed(0)
    model = cls(data.info, BACKBONES[backbone], cls.Params(**params))
    optimizer = torch.optim.Adam(optimizer_groups(model, OptimizerSpec(lr=LR)), lr=LR)
    splits, tasks = data.split("train"), data.info.tasks
    losses = []
    for it in range(1, ITERATIONS + 1):
        batches = [s.batch((torch.arange(BATCH) + it * BATCH) % len(s)) for s in splits]
        logits = model([x for x, _ in batches])
        loss = sum(task_loss(lg, y, t) for lg, (_, y), t in zip(logits, batches, tasks)) / len(tasks)
        reg = model.regularizer()
        optimizer.zero_grad(set_to_none=True)
        (loss if reg is None else loss + reg).backward()
        optimizer.step()
        model.after_step(it)
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        evals = []
        for t, s in enumerate(data.split("val")):
            out = model.forward_task(s.batch(torch.arange(len(s)))[0], t)
            evals.append([float(out.sum()), float(out.abs().sum())])
    return {"losses": losses, "eval": evals}


def main(path: str) -> None:
    import logging
    logging.disable(logging.WARNING)  # DMTRL's random-init warning
    out = {case_id(c): short_run(c) for c in CASES}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1) + "\n")
    print(f"{len(out)} runs written to {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(GOLDEN))
