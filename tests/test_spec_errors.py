"""A catalogue of bad specs: each is refused before training, exit code 2, with a line naming file:line: field."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.registry import DATASETS
from mtlbench.store.dataset import DatasetSource

runner = CliRunner()

GOOD = """\
name: bad
data:
  dataset: synthetic_vector
  options: {input_dim: 16, n_examples: 200}
methods:
  - name: hard_share
training:
  iterations: 5
"""

CASES = {
    "unknown top-level key": (
        GOOD + "trainig:\n  iterations: 3\n",
        "spec.yaml:9: trainig: unknown key; did you mean 'training'?"),
    "unknown nested key": (
        GOOD.replace("  iterations: 5", "  iteratons: 5"),
        "spec.yaml:8: training.iteratons: unknown key; did you mean 'iterations'?"),
    "wrong type": (
        GOOD.replace("iterations: 5", "iterations: many"),
        "spec.yaml:8: training.iterations: expected: input should be a valid integer"),
    "unknown method": (
        GOOD.replace("name: hard_share", "name: hard_shar"),
        "spec.yaml:6: methods[0].name: unknown method 'hard_shar'; did you mean 'hard_share'?"),
    "unknown dataset": (
        GOOD.replace("dataset: synthetic_vector", "dataset: synthetic_vectr"),
        "spec.yaml:3: data.dataset: unknown dataset 'synthetic_vectr'; did you mean 'synthetic_vector'?"),
    "unknown dataset option": (
        GOOD.replace("input_dim: 16", "input_dims: 16"),
        "spec.yaml:4: data.options.input_dims: unknown key; did you mean 'input_dim'?"),
    "unknown method param": (
        GOOD.replace("  - name: hard_share", "  - name: hard_share\n    params: {depth: 3}"),
        "spec.yaml:7: methods[0].params.depth: unknown key"),
    "default conv backbone on 28x28 images": (
        GOOD.replace("dataset: synthetic_vector", "dataset: synthetic_image")
            .replace("{input_dim: 16, n_examples: 200}", "{per_class: 10}"),
        "spec.yaml:3: backbone: the trunk input 1x28x28 (every task's input, after its stem) is too small for this "
        "backbone: conv4 gets 24x1x1 and its 3x3 convolution (padding 0) and 2x2 max-pool would leave 0x0 "
        "(conv1 6x13x13, conv2 12x5x5, conv3 24x1x1); give a larger backbone.input size, more padding or fewer "
        "conv layers (the default backbone: the spec has no backbone key)"),
    "backbone too deep for its input": (
        GOOD.replace("dataset: synthetic_vector", "dataset: synthetic_image")
            .replace("{input_dim: 16, n_examples: 200}", "{per_class: 10}")
        + "backbone:\n  kind: vgg\n  width: 0.125\n",
        "spec.yaml:9: backbone: the trunk input 1x28x28 (every task's input, after its stem) is too small for this "
        "backbone: conv5_3 gets 64x1x1 and its 3x3 convolution (padding 1) and 2x2 max-pool would leave 0x0"),
    "method's backbone override too deep": (
        GOOD.replace("dataset: synthetic_vector", "dataset: synthetic_image")
            .replace("{input_dim: 16, n_examples: 200}", "{per_class: 10}")
            .replace("  - name: hard_share",
                     "  - name: hard_share\n    backbone: {channels: [4, 4, 4, 4, 4], padding: 1}"),
        "spec.yaml:7: methods[0].backbone: the trunk input 1x28x28"),
    "conv trunk on vector-only data": (
        GOOD + "backbone:\n  kind: conv\n",
        "spec.yaml:9: backbone.input: every task of 'synthetic_vector' is a vector, so a conv trunk needs input: "
        "{channels: C, size: S} (or kind: mlp)"),
    "duplicate key": (
        GOOD + "training:\n  iterations: 9\n",
        "spec.yaml:9: duplicate key 'training' (first at line 7)"),
    "metric for the wrong kind of task": (
        GOOD + "evaluation:\n  metrics: [accuracy]\n",
        "spec.yaml:10: evaluation.metrics[0]: accuracy scores multiclass tasks; "
        "dataset 'synthetic_vector' has multilabel tasks"),
    "unknown metric": (
        GOOD + "evaluation:\n  metrics: [map@1O]\n",
        "spec.yaml:10: evaluation.metrics[0]: unknown metric 'map@1O'; did you mean 'map@10'?"),
    "missing required key": (
        GOOD.replace("methods:\n  - name: hard_share\n", ""),
        "spec.yaml:1: methods: required key is missing"),
    "bad value": (
        GOOD.replace("iterations: 5", "iterations: 0"),
        "spec.yaml:8: training.iterations: expected: input should be greater than or equal to 1 (got 0)"),
    "unknown device": (
        GOOD.replace("iterations: 5", "iterations: 5\n  device: gpu"),
        "spec.yaml:9: training.device: expected: value error, expected auto, cpu, cuda or cuda:N, got 'gpu'"),
    "not yaml": (
        GOOD.replace("methods:", "methods: [unclosed"),
        "spec.yaml:6: not valid YAML (expected ',' or ']'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_spec_is_refused_with_file_line_and_field(case, write_spec):
    text, expected = CASES[case]
    path = write_spec(text)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert expected in result.output.replace(str(path.parent) + "/", ""), result.output


def test_every_problem_is_reported_in_one_pass(write_spec):
    path = write_spec(GOOD.replace("name: hard_share", "name: hard_shar").replace("input_dim: 16", "input_dims: 16"))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "methods[0].name" in result.output and "data.options.input_dims" in result.output


def test_train_refuses_a_bad_spec_before_training(write_spec, tmp_path):
    path = write_spec(GOOD.replace("iterations: 5", "iteratons: 5"))
    result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists()


class NeedsPrepared(DatasetSource):
    needs_path = True
    prepare_command = "mtlbench prepare fake --src RAW --out prepared/fake"


@pytest.fixture
def prepared_dataset(monkeypatch):
    monkeypatch.setitem(DATASETS._entries, "fake_prepared", NeedsPrepared)


def test_missing_data_path_names_the_prepare_command(write_spec, prepared_dataset, tmp_path):
    text = GOOD.replace("dataset: synthetic_vector", f"dataset: fake_prepared\n  path: {tmp_path}/nowhere") \
        .replace("  options: {input_dim: 16, n_examples: 200}\n", "")
    result = runner.invoke(app, ["validate", str(write_spec(text))])
    assert result.exit_code == 2
    assert f"spec.yaml:4: data.path: {tmp_path}/nowhere does not exist; create it with " \
           "`mtlbench prepare fake --src RAW --out prepared/fake`" in \
           result.output.replace(str(tmp_path) + "/spec", "spec")


def test_unset_data_path_is_refused(write_spec, prepared_dataset):
    text = GOOD.replace("dataset: synthetic_vector", "dataset: fake_prepared") \
        .replace("  options: {input_dim: 16, n_examples: 200}\n", "")
    result = runner.invoke(app, ["validate", str(write_spec(text))])
    assert result.exit_code == 2
    assert "data: dataset 'fake_prepared' reads prepared data: set data.path" in result.output


def test_good_spec_validates(write_spec):
    result = runner.invoke(app, ["validate", str(write_spec(GOOD))])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_train_refuses_the_default_backbone_on_28x28_images_before_any_work(write_spec, tmp_path):
    """A new user's first image spec: `train` must stop at the shape check (exit 2, one line, nothing
    written), not die in the middle with a traceback."""
    path = write_spec(GOOD.replace("dataset: synthetic_vector", "dataset: synthetic_image")
                      .replace("{input_dim: 16, n_examples: 200}", "{per_class: 10}"))
    result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "spec.yaml:3: backbone: the trunk input 1x28x28" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
