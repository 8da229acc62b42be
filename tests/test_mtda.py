"""MTDA (multi-task discriminant analysis, a reimplementation): what its closed-form alternation provably does.

The planted case the method is meant for -- two tasks in different feature spaces (30-d and 50-d) that share
one discriminant direction, six examples per class -- is checked against regularised LDA fitted on each task
alone, written here independently (raw coordinates, scipy's generalised eigensolver). The finding: at
convergence MTDA classifies every test point exactly as per-task LDA does, so it gains nothing over it. That
follows from the objective: each task's trace ratio depends on P_t only through span(P_t W), and P_t can reach
any subspace, so the P-step gives every task its own LDA optimum whatever the shared W is. Only the starting
point (``iterations: 0``: PCA P_t, W fitted to the pooled scatter) lets one task's labels shape another's
projection, and it predicts differently."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.paper_tables import get_paper_table
from mtlbench.errors import MTLBenchError
from mtlbench.methods.mtda import MTDA, MTDAParams, objective, orthonormal, task_scatter
from mtlbench.nn.backbone import BackboneSpec
from mtlbench.nn.method import count_parameters
from mtlbench.report.render import to_latex, to_markdown
from mtlbench.report.tables import build_table
from mtlbench.results import RunRecord
from mtlbench.store.dataset import DataInfo, TaskInfo, TaskSplit
from tests.conftest import REPO, small_data

runner = CliRunner()
F64 = torch.float64


def planted(seed: int, n_classes: int = 2, dims=(30, 50), latent: int = 6, per_class: int = 6, test_per_class=200):
    """Tasks that see one latent space through their own random orthonormal embeddings (plus noise); the class
    means (shared by the tasks) differ along the same latent direction(s)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.zeros(n_classes, latent, dtype=F64)
    means[:, : n_classes - 1] = 1.2 * torch.randn(n_classes, n_classes - 1, generator=g, dtype=F64)
    tasks, train, test = [], [], []
    for t, d in enumerate(dims):
        embed = torch.linalg.qr(torch.randn(d, latent, generator=g, dtype=F64))[0]

        def draw(n):
            y = torch.arange(n_classes).repeat_interleave(n)
            z = means[y] + torch.randn(len(y), latent, generator=g, dtype=F64)
            return TaskSplit((z @ embed.T + 0.3 * torch.randn(len(y), d, generator=g, dtype=F64)).float(), y)  # noqa: B023 -- called within this iteration
        tasks.append(TaskInfo(f"t{t}", n_classes, "multiclass", (d,)))
        train.append(draw(per_class))
        test.append(draw(test_per_class))
    return DataInfo("planted", tasks, "per_task", "accuracy"), train, test


def fitted(info, train, **params) -> MTDA:
    model = MTDA(info, BackboneSpec(), MTDAParams(**params))
    model.fit(train)
    return model


def predictions(model, splits) -> list[torch.Tensor]:
    return [model.forward_task(s.x, t).argmax(1) for t, s in enumerate(splits)]


def raw_scatter(split: TaskSplit, n_classes: int, reg: float):
    """(mean, S_tot, S_b, lambda, class means) of one task in its raw coordinates, with numpy."""
    x, y = split.x.double().numpy(), split.y.numpy()
    xc = x - x.mean(0)
    means = np.stack([xc[y == k].mean(0) for k in range(n_classes)])
    between = sum((y == k).sum() * means[k][:, None] @ means[k][None] for k in range(n_classes))
    lam = reg * np.trace(xc.T @ xc) / (len(x) - 1)  # the mean retained variance: centred data have rank n - 1
    return x.mean(0), xc.T @ xc, between, lam, means


def lda_alone(split: TaskSplit, n_classes: int, reg: float):
    """Regularised LDA on one task in its raw coordinates: top (classes - 1) generalised eigenvectors of
    (S_b, S_tot + lambda I), nearest class mean under the projected (S_w + lambda I) metric."""
    mean, total, between, lam, means = raw_scatter(split, n_classes, reg)
    ridge = lam * np.eye(len(total))
    a = scipy.linalg.eigh(between, total + ridge)[1][:, ::-1][:, : n_classes - 1]
    whiten = np.linalg.inv(np.linalg.cholesky(a.T @ (total - between + ridge) @ a)).T
    centers = torch.from_numpy(means @ a @ whiten)
    return lambda s: torch.cdist(torch.from_numpy((s.x.double().numpy() - mean) @ a @ whiten), centers).argmin(1)


def test_converged_mtda_classifies_the_planted_tasks_exactly_as_per_task_lda():
    """No margin over per-task LDA: the same prediction for every test point of both tasks over five seeds
    (a 3-d common space, so W is not square); the pooled start predicts differently."""
    start_differs = 0
    for seed in range(5):
        info, train, test = planted(seed)
        model = fitted(info, train, shared_dim=3)
        alone = [lda_alone(s, 2, 0.01)(te) for s, te in zip(train, test)]
        ours = predictions(model, test)
        assert all(torch.equal(a, o) for a, o in zip(alone, ours)), f"seed {seed}"
        assert model.fit_facts["objective"][-1] == pytest.approx(model.fit_facts["objective_optimum"], rel=1e-12)
        start = predictions(fitted(info, train, shared_dim=3, iterations=0), test)
        start_differs += any(not torch.equal(s, o) for s, o in zip(start, ours))
    assert start_differs >= 3


def test_the_objective_never_decreases_and_reaches_the_closed_form_optimum():
    """Three classes (r = 2), a 4-d common space: J after every alternation is >= the one before and ends at the
    sum over tasks of their top-2 generalised eigenvalues (computed here by scipy, in raw coordinates); no
    feasible (P, W) drawn at random does better."""
    info, train, _ = planted(3, n_classes=3)
    model = fitted(info, train, shared_dim=4)
    history = model.fit_facts["objective"]
    assert all(b >= a for a, b in itertools.pairwise(history)) and history[0] < history[-1] - 0.1
    optimum = 0.0
    for split in train:
        _, total, between, lam, _ = raw_scatter(split, 3, 0.01)
        optimum += scipy.linalg.eigh(between, total + lam * np.eye(len(total)), eigvals_only=True)[-2:].sum()
    assert history[-1] == pytest.approx(optimum, rel=1e-9)
    scatters = [task_scatter(s.x.double(), s.y, 3, 100, 0.01) for s in train]
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        ps = [orthonormal(torch.randn(sc.basis.shape[1], 4, generator=g, dtype=F64)) for sc in scatters]
        assert objective(ps, orthonormal(torch.randn(4, 2, generator=g, dtype=F64)), scatters) < history[-1]


def test_projections_are_orthonormal_in_each_tasks_own_coordinates():
    data = small_data("image", size_step=4)  # 16, 20, 24 px
    model = fitted(data.info, data.split("train"), shared_dim=3)
    for part, task in zip(model.parts, data.info.tasks):
        p = part.proj.detach()
        assert p.shape == (math.prod(task.input_shape), 3)
        assert torch.allclose(p.T @ p, torch.eye(3, dtype=F64), atol=1e-10)
    w = model.shared.detach()
    assert w.shape == (3, 3) and torch.allclose(w.T @ w, torch.eye(3, dtype=F64), atol=1e-12)


def test_the_fit_is_deterministic():
    data = small_data("image", size_step=4)
    a, b = (fitted(data.info, data.split("train"), shared_dim=5).state_dict() for _ in range(2))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_common_space_width_does_not_change_the_converged_classifier():
    data = small_data("image", size_step=4)
    narrow, wide = (fitted(data.info, data.split("train"), shared_dim=d) for d in (3, 12))
    for t, s in enumerate(data.split("test")):
        x = s.batch(torch.arange(len(s)))[0]
        assert torch.allclose(narrow.forward_task(x, t), wide.forward_task(x, t), rtol=1e-6, atol=1e-6)


def test_parameters_are_the_projections_and_w():
    data = small_data("image", size_step=4)
    model = MTDA(data.info, BackboneSpec(), MTDAParams(shared_dim=5))
    assert model.r == 3  # four classes per task
    assert count_parameters(model) == (16 * 16 + 20 * 20 + 24 * 24) * 5 + 5 * 3
    assert count_parameters(MTDA(data.info, BackboneSpec(), MTDAParams())) == (256 + 400 + 576) * 3 + 3 * 3


def test_one_nearest_neighbour_and_a_class_absent_from_training():
    info, train, test = planted(1, n_classes=3)
    absent = TaskSplit(train[0].x[train[0].y != 2], train[0].y[train[0].y != 2])
    model = fitted(info, [absent, train[1]], classifier="1nn")
    logits = model.forward_task(test[0].x, 0)
    assert torch.isinf(logits[:, 2]).all() and (logits.argmax(1) != 2).all()
    data = small_data("image", size_step=4)
    model = fitted(data.info, data.split("train"), classifier="1nn")
    for t, s in enumerate(data.split("test")):
        x, y = s.batch(torch.arange(len(s)))
        assert (model.forward_task(x, t).argmax(1) == y).double().mean() > 0.5  # four classes: chance is 1/4


def test_refusals_name_the_problem():
    vector = small_data("vector")
    assert "multi-class tasks only" in MTDA.check(vector.info, BackboneSpec(), MTDAParams())[0]
    info = small_data("image", size_step=4).info
    assert "n_components: 4 > 3" in MTDA.check(info, BackboneSpec(), MTDAParams(n_components=4))[0]
    assert "shared_dim: 2 < n_components 3" in MTDA.check(info, BackboneSpec(), MTDAParams(shared_dim=2))[0]
    assert "shared_dim: 40 > 30" in MTDA.check(info, BackboneSpec(), MTDAParams(shared_dim=40, pca_dim=30))[0]
    info, train, _ = planted(0)
    with pytest.raises(MTLBenchError, match=r"^mtda: task 't0' has 12 training examples spanning 11 dimensions, "
                                            r"fewer than shared_dim 20; lower params.shared_dim$"):
        fitted(info, train, shared_dim=20)


SPEC = """
name: mtda_run
data:
  dataset: synthetic_image
  options: {n_groups: 2, tasks_per_group: 1, outlier: true, image_size: 16, size_step: 4, per_class: 20, n_classes: 4}
methods:
  - {name: mtda, label: MTDA, params: {shared_dim: 6}}
  - {name: stl, label: STL}
backbone: {kind: mlp, hidden: [16]}
training: {iterations: 4, batch_per_task: 8, eval_every: 2, threads: 1}
output: {dir: OUT}
"""


def test_a_spec_with_mtda_trains_and_its_table_marks_the_reimplementation(write_spec, tmp_path):
    spec = write_spec(SPEC.replace("OUT", str(tmp_path / "runs")))
    result = runner.invoke(app, ["train", str(spec)])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "runs" / "mtda_run" / "MTDA" / "seed0.json").read_text())
    assert record["trained_by"] == "fit" and record["iterations_run"] == 0 and record["n_params"] == 1232 * 6 + 18
    assert record["summary"]["reimplementation"].startswith("rebuilt from the paper's abstract")
    assert record["metrics"]["test"]["accuracy"]["mean"] > 0.6  # four classes: chance is 0.25
    shown = runner.invoke(app, ["compare", str(spec), "--format", "markdown"]).output
    assert "| MTDA † |" in shown and "- † MTDA: reimplementation, rebuilt from the paper's abstract" in shown
    assert "| STL |" in shown


def test_an_invalid_option_is_refused_at_validate(write_spec, tmp_path):
    spec = write_spec(SPEC.replace("OUT", str(tmp_path)).replace("{shared_dim: 6}", "{classifier: knn}"))
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2 and "spec.yaml:6: methods[0].params.classifier" in result.output, result.output
    spec = write_spec(SPEC.replace("OUT", str(tmp_path)).replace("{shared_dim: 6}", "{n_components: 9}"))
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2 and "n_components: 9 > 3" in result.output, result.output


def test_timing_reports_the_fit_time(write_spec, tmp_path):
    spec = write_spec(SPEC.replace("OUT", str(tmp_path / "runs")))
    result = runner.invoke(app, ["timing", str(spec), "--vs", "stl", "--iterations", "2", "--blocks", "2",
                                 "--warmup", "1", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = {r["row"]: r for r in json.loads((tmp_path / "runs" / "mtda_run" / "timing.json").read_text())["results"]}
    assert rows["MTDA"]["fit_s"] > 0 and rows["MTDA"]["train_s"] is None and rows["STL"]["fit_s"] is None


def mtal_record(row: str, summary: dict) -> RunRecord:
    values = {"HD": 0.8, "a": 0.8, "Typographic*": 0.9, "A": 0.85}
    return RunRecord(spec_name="mtal", row=row, method="mtda", seed=0, spec_file="s.yaml", spec={}, params={},
                     dataset="mtal_related", tasks=list(values), primary_metric="accuracy", selected_on="val",
                     best_iteration=0, iterations_run=0, history=[], n_params=1000, train_time_s=1.0,
                     wall_time_s=1.0, summary=summary,
                     metrics={"test": {"accuracy": {"tasks": values, "mean": sum(values.values()) / 4}}})


def test_mtal_tables_mark_our_mtda_row_not_the_papers():
    recs = [mtal_record("MTDA", {"reimplementation": "from the abstract"}), mtal_record("Single-task", {})]
    table = build_table(recs, paper=get_paper_table("mtal_table2_related_with_relations"), rows=["Single-task", "MTDA"])
    names = [(r[0], r[1].split(" ")[0]) for r in table.rows]
    assert ("MTDA †", "ours") in names and ("MTDA", "paper") in names and ("Single-task", "ours") in names
    assert "† MTDA: reimplementation, from the abstract" in table.notes
    assert r"MTDA $\dagger$" in to_latex(table) and "| MTDA † | ours" in to_markdown(table)


@pytest.mark.slow
def test_mtda_on_the_prepared_mtal_related_set():
    """Seed-0 split of the prepared Chars74K tasks (340 training images of 64x64 for HD, a, A; 6,400 of 28x28
    for Typographic*): every task well above chance (10 classes)."""
    from mtlbench.registry import DATASETS
    path = REPO / "prepared"
    if not (path / "chars74k").exists():
        pytest.skip(f"prepared data {path / 'chars74k'} not present (mtlbench prepare chars74k)")
    src = DATASETS.get("mtal_related")
    data = src.load(src.Options(), 0, path)
    model = fitted(data.info, data.split("train"))
    for t, s in enumerate(data.split("test")):
        x, y = s.batch(torch.arange(len(s)))
        assert (model.forward_task(x, t).argmax(1) == y).double().mean() > 0.75, data.info.tasks[t].name


def test_mtda_trains_one_seed_and_renders_n_1_without_spread_or_p_value(write_spec, tmp_path):
    """No seed changes MTDA's run (a deterministic fit; the split is data.split_seed's): another seed gives the
    same record, so a row of it trains the first seed alone and renders n = 1, never 'n=3, ± 0.000' and a p-value
    from copies; the STL row beside it still trains every seed."""
    text = SPEC.replace("OUT", str(tmp_path / "runs")) \
        .replace("output:", "seeds: [0, 1, 2]\noptimizer: {lr: 0.01}\noutput:")
    spec = write_spec(text)
    result = runner.invoke(app, ["train", str(spec)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "runs" / "mtda_run"
    assert sorted(p.name for p in (folder / "MTDA").glob("seed*.json")) == ["seed0.json"]
    assert sorted(p.name for p in (folder / "STL").glob("seed*.json")) == ["seed0.json", "seed1.json", "seed2.json"]
    other = write_spec(text.replace(str(tmp_path / "runs"), str(tmp_path / "other")), "other.yaml")
    assert runner.invoke(app, ["train", str(other), "--seeds", "7", "--rows", "MTDA"]).exit_code == 0
    metrics = [json.loads(p.read_text())["metrics"] for p in
               (folder / "MTDA" / "seed0.json", tmp_path / "other" / "mtda_run" / "MTDA" / "seed7.json")]
    assert metrics[0] == metrics[1]  # seed 7 is the same run as seed 0
    # records written before `train` knew it (five copies) render as the one run too
    for seed in (1, 2):
        (folder / "MTDA" / f"seed{seed}.json").write_text(
            (folder / "MTDA" / "seed0.json").read_text().replace('"seed": 0', f'"seed": {seed}'))
    shown = runner.invoke(app, ["compare", str(spec), "--format", "markdown", "--vs", "STL"]).output
    mtda = next(line for line in shown.splitlines() if line.startswith("| MTDA † |"))
    # columns: tasks, mean, pooled, params, seeds, p vs STL, then Delta_m
    assert "±" not in mtda and "| 1 | — |" in mtda, mtda
    stl = next(line for line in shown.splitlines() if line.startswith("| STL |"))
    assert "±" in stl and "| 3 | ref |" in stl, stl
    assert "MTDA: deterministic" in shown
