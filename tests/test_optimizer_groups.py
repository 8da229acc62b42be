"""Per-group learning rates and weight decay reach the real optimizer: methods name their parameter groups, the
spec scales them (optimizer.lr_mult / weight_decay_mult), a method's own multiplier (NDDR) multiplies in, and an
unknown group name is refused at validate with the groups the spec's methods have."""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.training.step import Objective, make_optimizer, train_step
from mtlbench.training.trainer import build_model
from tests.conftest import small_data

SPEC = """
name: groups
data:
  dataset: synthetic_vector
  options: {n_groups: 2, tasks_per_group: 2, outlier: true, input_dim: 64, n_examples: 1200, n_classes: 8}
backbone: {hidden: [16, 16]}
methods:
  - {name: {method}}
optimizer: {optimizer}
"""


def built(write_spec, method: str, optimizer: str):
    resolved = load_spec(write_spec(SPEC.replace("{method}", method).replace("{optimizer}", optimizer)))
    data = small_data("vector")
    torch.manual_seed(0)
    model = build_model(resolved, resolved.methods[0], data)
    return model, make_optimizer(resolved, model), data


def group_holding(optimizer, p: torch.nn.Parameter) -> dict:
    return next(g for g in optimizer.param_groups if any(q is p for q in g["params"]))


def one_step(model, optimizer, data, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Each parameter's change in one training step (the task loss times ``scale``)."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batches = [s.batch(torch.arange(16)) for s in data.split("train")]
    objective = Objective(model, data.info.tasks)
    loss, _ = objective(batches)
    optimizer.zero_grad()
    (loss * scale).backward()
    optimizer.step()
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}


def test_heads_train_at_fifty_times_the_trunk_rate(write_spec):
    model, opt, data = built(write_spec, "hard_share", "{name: adam, lr: 1.0e-5, lr_mult: {heads: 50}}")
    head, trunk = model.heads[0].weight, model.trunk.blocks[0].affine.weight
    assert group_holding(opt, head)["lr"] == pytest.approx(5e-4)
    assert group_holding(opt, trunk)["lr"] == pytest.approx(1e-5)
    assert group_holding(opt, head)["groups"] == ["heads"]
    # Adam's first step moves every weight with a non-zero gradient by ~lr: the heads' steps are 50x the trunk's
    delta = one_step(model, opt, data)
    def moved(d):
        return d[d != 0].abs().median().item()
    assert moved(delta["heads.0.weight"]) / moved(delta["trunk.blocks.0.affine.weight"]) == pytest.approx(50, rel=0.05)


def test_weight_decay_only_where_asked(write_spec):
    optimizer = "{name: sgd, lr: 0.1, momentum: 0, weight_decay: 0.5, weight_decay_mult: {trunk: 0, stems: 0}}"
    model, opt, data = built(write_spec, "taan", optimizer)
    decay = {g: group_holding(opt, pairs[0][1])["weight_decay"] for g, pairs in model.named_groups().items() if pairs}
    assert decay == {"heads": 0.5, "trunk": 0.0, "alpha": 0.5}
    # a zero loss leaves only the decay: SGD shrinks exactly the decayed weights, by lr * wd
    delta = one_step(model, opt, data, scale=0.0)
    head = model.heads[1].weight
    assert torch.allclose(delta["heads.1.weight"], -0.05 * (head.detach() - delta["heads.1.weight"]))
    assert delta["heads.1.weight"].abs().sum() > 0
    assert not delta["trunk.blocks.0.affine.weight"].any()


def test_an_unscaled_spec_keeps_one_group(write_spec):
    _, opt, _ = built(write_spec, "hard_share", "{lr: 0.001, weight_decay: 0.005}")
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.005
    assert opt.param_groups[0]["groups"] == ["trunk", "heads"]


def test_nddr_multiplier_still_holds_and_the_spec_multiplies_on_top(write_spec):
    model, opt, _ = built(write_spec, "nddr", "{lr: 0.001, lr_mult: {heads: 50, reductions: 2}}")
    assert group_holding(opt, model.units[0].reduce.weight)["lr"] == pytest.approx(0.001 * 100 * 2)
    assert group_holding(opt, model.units[0].norm.weight)["lr"] == pytest.approx(0.001)
    assert group_holding(opt, model.heads[0].weight)["lr"] == pytest.approx(0.05)
    assert group_holding(opt, model.trunks[0].blocks[0].affine.weight)["lr"] == pytest.approx(0.001)


def test_unknown_group_is_refused_with_the_groups_there_are(write_spec):
    text = SPEC.replace("  - {name: {method}}", "  - {name: hard_share}\n  - {name: taan, params: {M: 4}}")
    path = write_spec(text.replace("{optimizer}", "{lr: 0.001, lr_mult: {head: 50}}"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert (f"{path}:9: optimizer.lr_mult.head: no method of this spec has a parameter group 'head'; did you "
            "mean 'heads'? (groups of every method: heads, stems, trunk; of taan: alpha, hinges)") in result.output


def test_a_group_of_one_method_does_not_apply_to_another(write_spec):
    text = SPEC.replace("  - {name: {method}}", "  - {name: hard_share}\n  - {name: taan, params: {M: 4}}")
    resolved = load_spec(write_spec(text.replace("{optimizer}", "{lr: 0.001, weight_decay: 0.1, "
                                                                "weight_decay_mult: {alpha: 0}}")))
    data = small_data("vector")
    hard, taan = (build_model(resolved, m, data) for m in resolved.methods)
    assert [g["weight_decay"] for g in make_optimizer(resolved, hard).param_groups] == [0.1]
    alpha = taan.trunk.blocks[0].act.alpha
    assert group_holding(make_optimizer(resolved, taan), alpha)["weight_decay"] == 0.0


def test_the_trainer_step_uses_the_groups(write_spec):
    """The trainer's own step: a tiny heads multiplier leaves the heads nearly still while the trunk moves."""
    model, opt, data = built(write_spec, "hard_share", "{lr: 0.01, lr_mult: {heads: 1.0e-6}}")
    before = model.heads[0].weight.detach().clone(), model.trunk.blocks[0].affine.weight.detach().clone()
    batches = [s.batch(torch.arange(16)) for s in data.split("train")]
    train_step(Objective(model, data.info.tasks), opt, batches, 1)
    assert (model.heads[0].weight - before[0]).abs().max() < 1e-7
    assert (model.trunk.blocks[0].affine.weight - before[1]).abs().max() > 1e-3


def test_records_written_before_the_groups_keep_their_identity():
    """Empty multipliers are left out of the dumped spec, so the committed reference records (written before
    the groups existed) are still runs of their specs for `train` (skip) and `compare` (grouping)."""
    import json

    from mtlbench.config.schema import OptimizerSpec
    from tests.conftest import REPO

    paths = sorted((REPO / "results" / "reference").rglob("seed*.json"))
    assert paths
    for path in paths:
        stored = json.loads(path.read_text())["spec"]["optimizer"]
        assert OptimizerSpec.model_validate(stored).model_dump(mode="json") == stored, path
    assert OptimizerSpec(lr_mult={"heads": 50}).model_dump()["lr_mult"] == {"heads": 50}
