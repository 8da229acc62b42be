"""MMoE (Ma et al. 2018): gates are per-task softmaxes over experts; one expert is Hard-Share."""
from __future__ import annotations

import torch

from mtlbench.nn.backbone import BackboneSpec
from mtlbench.nn.method import count_parameters
from mtlbench.registry import METHODS
from mtlbench.store.dataset import DataInfo, TaskInfo

MMoE, HardShare = METHODS.get("mmoe"), METHODS.get("hard_share")


def info_of(shape, n_tasks=3) -> DataInfo:
    return DataInfo("toy", [TaskInfo(f"t{t}", 2 + t, "multiclass", shape) for t in range(n_tasks)], "per_task", "acc")


def test_one_expert_is_hard_share():
    torch.manual_seed(0)
    info, spec = info_of((7,)), BackboneSpec(hidden=[6, 5])
    model = MMoE(info, spec, MMoE.Params(num_experts=1))
    hard = HardShare(info, spec, HardShare.Params())
    hard.trunk.load_state_dict(model.experts[0].state_dict())
    hard.heads.load_state_dict(model.heads.state_dict())
    xs = [torch.randn(4, 7) for _ in range(3)]
    for a, b in zip(model(xs), hard(xs)):
        torch.testing.assert_close(a, b)


def test_gates_mix_experts_per_task_and_counts():
    torch.manual_seed(1)
    info, spec = info_of((7,), n_tasks=2), BackboneSpec(hidden=[6, 5])
    model = MMoE(info, spec, MMoE.Params(num_experts=4, gate_std=1.0))
    xs = [torch.randn(50, 7) for _ in range(2)]
    means = model.gate_means(xs)
    assert means.shape == (2, 4) and torch.allclose(means.sum(1), torch.ones(2))
    x = xs[0][:3]
    gate = torch.softmax(x @ model.gates[0].weight.T, -1)
    experts = torch.stack([e(x) for e in model.experts], 1)
    torch.testing.assert_close(model.forward_task(x, 0), model.heads[0]((gate[..., None] * experts).sum(1)))
    trunk = 7 * 6 + 6 + 6 * 5 + 5
    assert count_parameters(model) == 4 * trunk + 2 * 4 * 7 + (5 * 2 + 2) + (5 * 3 + 3)


def test_heterogeneous_inputs_reach_the_experts_through_their_stems():
    """Task a (7-d) gets a linear stem to the trunk's 8-d input; its gate reads the stemmed input."""
    info = DataInfo("m", [TaskInfo("a", 2, "multiclass", (7,)), TaskInfo("b", 2, "multiclass", (8,))], "per_task", "a")
    model = MMoE(info, BackboneSpec(hidden=[5]), MMoE.Params(num_experts=2))
    assert model.plan.input_shape == (8,) and model.gates[0].in_features == 8
    x = torch.randn(3, 7)
    h = model.stems[0](x)
    experts = torch.stack([e(h) for e in model.experts], 1)
    gate = torch.softmax(h @ model.gates[0].weight.T, -1)
    torch.testing.assert_close(model.forward_task(x, 0), model.heads[0]((gate[..., None] * experts).sum(1)))
