"""The loss-weighting axis (``weighting:`` of a method row; mtlbench/weighting/, training/weighted.py).

- ew is the plain step: a committed ci_smoke record retrained with ``weighting: ew`` written out is the same
  record (same identity, same numbers);
- every weighting of the reference grid trains TAAN and Hard-Share (registry-parametrised, a few steps), with
  task weights and backward passes in the history;
- the per-task gradients of one batched backward pass are those of T separate passes;
- GradNorm's step against a hand computation on a tiny problem;
- resume mid-run with uw / famo / dwa ends as the uninterrupted run;
- a 2-rank torchrun with pcgrad ends with the one-process weights to float tolerance;
- validate refuses an unknown weighting (did you mean), options of the wrong type, a gradient weighting on a
  method that shares nothing, a solver weighting whose solver is missing: exit 2, one line.
"""
from __future__ import annotations

import io
import json

import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.registry import WEIGHTINGS
from mtlbench.results import read_record
from mtlbench.training.run import load_data, run_spec
from mtlbench.training.run_plan import plan_cells
from mtlbench.training.trainer import train_run
from mtlbench.training.weighted import per_task_gradients
from mtlbench.weighting.base import StepContext
from tests.conftest import REPO
from tests.test_distributed import torchrun
from tests.test_resume import Killed, killed_at

runner = CliRunner()

GRID = ["ew", "uw", "dwa", "famo", "rlw", "pcgrad", "mgda", "imtl_g", "aligned_mtl", "upgrad", "cagrad", "nash_mtl"]

SPEC = """
name: w
data:
  dataset: synthetic_vector
  options: {{n_groups: 1, tasks_per_group: 2, outlier: true, input_dim: 16, n_examples: 300, n_classes: 6}}
backbone: {{hidden: [16, 16]}}
methods:
{methods}
optimizer: {{lr: 0.01}}
training: {{iterations: {iterations}, batch_per_task: 16, eval_every: 5, checkpoint_every: 5, threads: 1}}
output: {{dir: {out}}}
"""


def spec(write_spec, tmp_path, methods: str, iterations: int = 10):
    return write_spec(SPEC.format(methods=methods, iterations=iterations, out=tmp_path / "runs"))


def test_ew_written_out_retrains_the_committed_record(write_spec, tmp_path):
    # (the committed TAAN record is not bit-exact on every machine: its activation kernel's float order
    # depends on whether torch.compile works here; Hard-Share and STL retrain exactly)
    text = (REPO / "benchmarks/ci_smoke.yaml").read_text()
    text = text.replace("    label: STL\n", "    label: STL\n    weighting: ew\n")
    text = text.replace("    label: Hard-Share\n", "    label: Hard-Share\n    weighting: {name: ew}\n")
    path = write_spec(text.replace("dir: results/runs", f"dir: {tmp_path / 'runs'}"))
    resolved = load_spec(path)
    for row in ("STL", "Hard-Share"):
        want = read_record(REPO / "results/reference/ci_smoke" / row / "seed0.json")
        cell = next(c for c in plan_cells(resolved, [0], tmp_path / "runs") if c.row == row)
        got, _ = train_run(resolved, cell, load_data(resolved))
        assert got.identity == want.identity  # same run: `train` would skip the committed record
        # records written before history[].task_loss existed lack it; every field they have must be equal
        history = [{k: v for k, v in h.items() if k != "task_loss"} for h in got.history]
        assert got.metrics == want.metrics and history == want.history
        assert "weighting" not in got.spec["methods"][resolved.spec.methods.index(cell.method.entry)]


@pytest.mark.parametrize("name", GRID + [n for n in ("gradnorm", "graddrop", "gradvac", "fairgrad", "dualproj",
                                                     "config", "geometric_mean", "imtl_l", "stch")])
def test_every_weighting_trains_taan_and_hard_share(name, write_spec, tmp_path):
    if missing := WEIGHTINGS.get(name).missing():
        pytest.skip(f"{name} needs {missing} (the solvers extra)")
    methods = (f"  - {{name: hard_share, label: HS, weighting: {name}}}\n"
               f"  - {{name: taan, label: TAAN, weighting: {name}}}")
    records = run_spec(load_spec(spec(write_spec, tmp_path, methods)))
    for rec in records:
        assert rec.status == "ok" and rec.metrics["test"]
        if name == "ew":
            assert "task_weights" not in rec.history[-1]
            continue
        last = rec.history[-1]
        assert last["backward_passes"] == rec.env["backward_passes_per_step"] >= 1
        if last["task_weights"] is not None:
            assert len(last["task_weights"]) == 3 and all(map(torch.isfinite, torch.tensor(last["task_weights"])))
    assert len({json.dumps(r.model_dump(mode="json")["metrics"]) for r in records}) == 2


def test_hard_share_per_task_gradients_take_one_batched_pass():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    xs = torch.randn(3, 4, 5)  # one batch per task, through the shared net
    losses = torch.stack([net(xs[t])[:, t].pow(2).mean() for t in range(3)])
    params = list(net.parameters())

    class W:
        batched = True
    grads, passes = per_task_gradients(W(), losses, params)
    assert passes == 1
    for t in range(3):
        want = torch.autograd.grad(losses[t], params, retain_graph=True)
        for g, wg in zip(grads, want):
            torch.testing.assert_close(g[t], wg)


def test_gradnorm_step_matches_the_hand_computation():
    gn = WEIGHTINGS.get("gradnorm")(WEIGHTINGS.get("gradnorm").Options(alpha=1.0), StepContext(2, 1))
    with torch.no_grad():
        gn.w.copy_(torch.tensor([0.5, 1.5]))
    gn.initial_losses.copy_(torch.tensor([2.0, 1.0]))
    gn.started.fill_(True)
    jac = torch.tensor([[3.0, 4.0], [0.0, 1.0]])  # ||g_1|| = 5, ||g_2|| = 1
    losses = torch.tensor([1.0, 1.0])  # L/L0 = (0.5, 1): r = (2/3, 4/3)
    direction, weights = gn.aggregate(jac, losses)
    # G = (2.5, 1.5), mean 2, targets 2 r = (4/3, 8/3): sign(G - target) = (+1, -1); dL_grad/dw = (+5, -1)
    torch.testing.assert_close(gn.w.grad, torch.tensor([5.0, -1.0]))
    torch.testing.assert_close(direction, 0.5 * jac[0] + 1.5 * jac[1])
    torch.testing.assert_close(weights, torch.tensor([0.5, 1.5]))
    with torch.no_grad():
        gn.w.copy_(torch.tensor([1.0, 3.0]))
    gn.after_step(None)  # renormalised to sum to T = 2
    torch.testing.assert_close(gn.w.detach(), torch.tensor([0.5, 1.5]))


@pytest.mark.parametrize("name", ["uw", "famo", "dwa", "gradnorm", "nash_mtl"])
def test_resumed_weighted_run_ends_as_the_uninterrupted_run(name, write_spec, tmp_path, steps_taken):
    option = ", options: {period: 3}" if name == "dwa" else ""  # several DWA "epochs" before the kill
    methods = f"  - {{name: taan, label: TAAN, weighting: {{name: {name}{option}}}}}"
    resolved = load_spec(spec(write_spec, tmp_path, methods, iterations=20))
    cell = plan_cells(resolved, [0], tmp_path / "runs")[0]
    data = load_data(resolved)
    whole, whole_model = train_run(resolved, cell, data)
    box: list = []
    with pytest.raises(Killed):
        train_run(resolved, cell, data, checkpoint=killed_at(10, box))
    steps_taken.clear()
    resumed, model = train_run(resolved, cell, data, resume=torch.load(io.BytesIO(box[0]), weights_only=True))
    assert steps_taken == list(range(11, 21))
    assert resumed.history == whole.history and resumed.metrics == whole.metrics
    assert whole.history[-1]["task_weights"] != whole.history[0]["task_weights"]  # the weights did move
    for (k, a), b in zip(whole_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_two_gloo_ranks_with_pcgrad_train_what_one_process_trains(write_spec, tmp_path):
    methods = ("  - {name: hard_share, label: HS, weighting: pcgrad}\n"
               "  - {name: taan, label: TAAN, weighting: uw}")
    path = write_spec(SPEC.format(methods=methods, iterations=20, out=tmp_path / "one")
                      .replace("optimizer: {lr: 0.01}", "optimizer: {name: sgd, lr: 0.01, momentum: 0.9}")
                      .replace("batch_per_task: 16", "batch_per_task: 17"))
    one = run_spec(load_spec(path))
    done = torchrun(path, tmp_path / "two")
    assert done.returncode == 0, done.stderr[-3000:]
    for rec in one:
        got = read_record(tmp_path / "two" / "w" / rec.row / "seed0.json")
        assert got.env["world_size"] == 2
        assert [h["loss"] for h in got.history] == pytest.approx([h["loss"] for h in rec.history], rel=1e-5)
        assert got.history[-1]["task_weights"] == pytest.approx(rec.history[-1]["task_weights"], rel=1e-4)
        want_w = torch.load(tmp_path / "one" / "w" / rec.row / "seed0.pt")
        got_w = torch.load(tmp_path / "two" / "w" / rec.row / "seed0.pt")
        for k in want_w:
            torch.testing.assert_close(got_w[k], want_w[k], atol=2e-6, rtol=0, msg=f"{rec.row} {k}")


def test_fp16_weighted_steps_hand_the_aggregator_unscaled_gradients(write_spec, tmp_path, monkeypatch):
    """Under the fp16 loss scaler the step's gradients carry the scale (the scaler unscales them in its step)
    and the aggregator sees them unscaled: one pcgrad step's gradients / scale are the float32 step's to fp16
    noise, and the aggregator's input is as large as without the scaler (not 2**8 times larger)."""
    from mtlbench.training.precision import Precision
    from mtlbench.training.sampler import TaskSampler
    from mtlbench.training.step import Objective, make_optimizer, train_step
    from mtlbench.training.trainer import build_model
    from mtlbench.weighting import build_weighting
    resolved = load_spec(spec(write_spec, tmp_path, "  - {name: hard_share, label: HS, weighting: pcgrad}"))
    data, m = load_data(resolved), resolved.methods[0]
    seen = {}

    def one_step(amp: str):
        torch.manual_seed(0)
        model = build_model(resolved, m, data)
        weighting = build_weighting(m.entry.weighting, 3, [100], 16)
        real = weighting.aggregate
        weighting.aggregate = lambda jac, losses: (seen.__setitem__(amp, jac.norm()), real(jac, losses))[1]
        precision = Precision(amp)
        if precision.scaler is not None:  # a scale at which this step's fp16 gradients do not overflow
            precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
        opt = make_optimizer(resolved, model, weighting)
        monkeypatch.setattr(Precision, "step", lambda self, o: True)  # keep the gradients as the step left them
        batches = TaskSampler(data.split("train"), 16, 0).next_batches(torch.device("cpu"))
        train_step(Objective(model, data.info.tasks, precision, weighting), opt, batches, 1)
        return [p.grad / precision.scale() for p in model.parameters()], precision.scale()

    full, one = one_step("none")
    half, scale = one_step("fp16")
    assert one == 1.0 and scale == 2.0 ** 8
    for a, b in zip(half, full):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-3)
    assert seen["fp16"] == pytest.approx(float(seen["none"]), rel=2e-2)


def test_crossed_rows_and_a_weighting_sweep_are_rows_of_their_own(write_spec, tmp_path):
    methods = "  - {name: hard_share, label: HS, weighting: [ew, uw, {name: dwa, options: {temperature: 1.0}}]}"
    resolved = load_spec(spec(write_spec, tmp_path, methods))
    assert [m.entry.row for m in resolved.methods] == ["HS", "HS (uw)", "HS (dwa)"]
    dumped = resolved.spec.model_dump(mode="json")["methods"]
    assert "weighting" not in dumped[0] and dumped[2]["weighting"] == {"name": "dwa", "options": {"temperature": 1.0}}
    from mtlbench.config.sweep import expand_sweep
    text = SPEC.format(methods="  - {name: taan, label: TAAN}", iterations=5, out=tmp_path / "s")
    swept = expand_sweep(load_spec(write_spec(text + "sweep: {method: TAAN, param: weighting, values: [uw, pcgrad]}\n",
                                              "sweep.yaml")))
    assert [(m.entry.row, m.entry.weighting.name) for m in swept.methods] == [("TAAN weighting=uw", "uw"),
                                                                              ("TAAN weighting=pcgrad", "pcgrad")]


@pytest.mark.parametrize("methods, line", [
    ("  - {name: hard_share, weighting: pcgard}",
     "methods[0].weighting.name: unknown weighting 'pcgard'; did you mean 'pcgrad'?"),
    ("  - {name: hard_share, weighting: {name: dwa, options: {temperature: hot}}}",
     ("methods[0].weighting.options.temperature: expected: input should be a valid number, unable to parse string "
     "as a number (got 'hot')")),
    ("  - {name: stl, weighting: mgda}",
     ("methods[0].weighting.name: mgda combines the per-task gradients of the parameters the tasks share, and stl "
     "declares none shared; use a loss weighting (uw, dwa, famo, rlw, ...: mtlbench list weightings)")),
])
def test_validate_refuses_bad_weightings(methods, line, write_spec, tmp_path):
    path = spec(write_spec, tmp_path, methods)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:7: ") and line in lines[0], result.output
    assert "Traceback" not in result.output


def test_validate_refuses_a_solver_weighting_without_its_solver(write_spec, tmp_path, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cvxpy" else real(name, *a))
    path = spec(write_spec, tmp_path, "  - {name: taan, weighting: nash_mtl}")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.output.strip().endswith('methods[0].weighting.name: nash_mtl needs cvxpy, not installed: pip install '
                                          '"mtlbench[solvers]"'), result.output


def test_report_prints_and_draws_the_task_weights_over_time(write_spec, tmp_path):
    pytest.importorskip("matplotlib")
    records = run_spec(load_spec(spec(write_spec, tmp_path, "  - {name: hard_share, label: HS, weighting: uw}")))
    weights = [h["task_weights"] for h in records[0].history]
    assert len(weights) == 2 and weights[0] != weights[1]
    result = runner.invoke(app, ["report", str(records[0].path), "--figures", str(tmp_path / "fig")])
    assert result.exit_code == 0, result.output
    first = ", ".join(f"{t} {w:.3g}" for t, w in zip(records[0].tasks, weights[0]))
    assert f"HS seed 0: task weights (uw) at iteration 5: {first}; at 10: " in result.output
    assert (tmp_path / "fig" / "seed0_task_weights.png").stat().st_size > 0


@pytest.mark.parametrize("name, backbone", [("hard_share", "{hidden: [16, 16]}"), ("taan", "{hidden: [16, 16]}"),
                                            ("hard_share", "{kind: conv, channels: [4, 4], padding: 1, dense: [8], "
                                                           "conv_batch_norm: false}")])
def test_task_block_gradients_equal_the_jacobian(name, backbone, write_spec, tmp_path, monkeypatch):
    """The one-backward per-task gradients of the shared layers (task_blocks.py) are the rows of the Jacobian
    (one batched pass, or one pass per task), for dense and conv trunks; a trunk with BatchNorm mixes the tasks'
    rows and takes the Jacobian path."""
    from mtlbench.training import weighted
    from mtlbench.training.sampler import TaskSampler
    from mtlbench.training.step import Objective, make_optimizer, train_step
    from mtlbench.training.trainer import build_model
    from mtlbench.weighting import build_weighting
    text = SPEC.format(methods=f"  - {{name: {name}, label: R, weighting: upgrad}}", iterations=5,
                       out=tmp_path).replace("backbone: {hidden: [16, 16]}", f"backbone: {backbone}")
    if "conv" in backbone:
        text = text.replace(text[text.index("  dataset:"):text.index("backbone:")],
                            "  dataset: synthetic_image\n  options: {n_groups: 1, tasks_per_group: 2, outlier: true, "
                            "image_size: 8, per_class: 10, n_classes: 3}\n")
    resolved = load_spec(write_spec(text))
    data, m = load_data(resolved), resolved.methods[0]
    seen = {}

    def one_step(blocks: bool):
        if not blocks:
            monkeypatch.setattr(weighted, "shared_affines", lambda method, named: None)
        torch.manual_seed(0)
        model = build_model(resolved, m, data)
        w = build_weighting(m.entry.weighting, 3, [100], 16)
        real = w.aggregate
        w.aggregate = lambda jac, losses: (seen.__setitem__(blocks, jac.clone()), real(jac, losses))[1]
        batches = TaskSampler(data.split("train"), 16, 0).next_batches(torch.device("cpu"))
        opt = make_optimizer(resolved, model, w)
        train_step(Objective(model, data.info.tasks, weighting=w), opt, batches, 1)
        return {k: v.clone() for k, v in model.state_dict().items()}, w.backward_passes

    fast, passes = one_step(True)
    slow, _ = one_step(False)
    assert passes == 1
    torch.testing.assert_close(seen[True], seen[False], rtol=1e-5, atol=1e-6)
    for k in fast:
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-5, atol=1e-6, msg=k)


def test_a_batchnorm_trunk_is_no_task_block_trunk(write_spec, tmp_path):
    from mtlbench.training.task_blocks import shared_affines
    from mtlbench.training.trainer import build_model
    text = SPEC.format(methods="  - {name: hard_share, label: R, weighting: pcgrad}", iterations=5, out=tmp_path)
    resolved = load_spec(write_spec(text.replace("backbone: {hidden: [16, 16]}",
                                                 "backbone: {hidden: [16, 16], dense_batch_norm: true}")))
    model = build_model(resolved, resolved.methods[0], load_data(resolved))
    named = list(model.named_parameters())
    assert shared_affines(model, named) is None  # BatchNorm's parameters are shared but no affine layer's
