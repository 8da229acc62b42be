"""A method with a closed-form fit (``closed_form = True``) is fitted once instead of stepped: no optimizer, no
step loop, the fitted model is the selected one; its record says so, and `mtlbench timing` reports its fit time
instead of step times."""
from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.metrics import map_at_k
from mtlbench.training.run import load_data, run_spec
from tests.conftest import TINY_SPEC
from tests.fake_methods import RidgeFit, register
from tests.test_training import chance

runner = CliRunner()


def ridge_spec(write_spec, tmp_path, monkeypatch):
    register(monkeypatch, "ridge", RidgeFit)
    monkeypatch.setattr(RidgeFit, "fits", 0)
    text = TINY_SPEC.replace("{out}", str(tmp_path / "runs")).replace("name: stl\n    label: STL",
                                                                      "name: ridge\n    label: Ridge")
    return write_spec(text.replace("iterations: 300", "iterations: 60"))


def test_a_closed_form_method_is_fitted_once_and_evaluated(write_spec, tmp_path, monkeypatch):
    resolved = load_spec(ridge_spec(write_spec, tmp_path, monkeypatch))
    ridge, hard_share = run_spec(resolved)
    # RidgeFit has no trainable parameter: building an optimizer for it would raise, so none was built
    assert RidgeFit.fits == 1 and ridge.trained_by == "fit" and hard_share.trained_by == "steps"
    assert (ridge.iterations_run, ridge.best_iteration, ridge.history, ridge.status) == (0, 0, [], "ok")
    assert ridge.metrics["test"]["map@10"].mean > chance(load_data(resolved), map_at_k) + 0.2
    stored = json.loads(ridge.path.read_text())
    assert stored["trained_by"] == "fit" and stored["train_time_s"] > 0
    weights = torch.load(ridge.path.with_suffix(".pt"), weights_only=True)
    assert weights["w0"].abs().sum() > 0  # the fitted heads, not the zeros it was built with


def test_timing_reports_the_fit_time_of_a_closed_form_method(write_spec, tmp_path, monkeypatch):
    spec = ridge_spec(write_spec, tmp_path, monkeypatch)
    result = runner.invoke(app, ["timing", str(spec), "--iterations", "2", "--blocks", "2", "--warmup", "1",
                                 "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = {r["row"]: r for r in json.loads((tmp_path / "runs" / "tiny" / "timing.json").read_text())["results"]}
    ridge, hs = rows["Ridge"], rows["Hard-Share"]
    assert RidgeFit.fits == 1 and ridge["fit_s"] > 0 and hs["fit_s"] is None
    assert ridge["train_s"] is None and ridge["ratio_train"] is None and ridge["train_blocks"] is None
    assert ridge["infer_s"] > 0 and ridge["ratio_infer"] > 0 and hs["train_s"] > 0
    assert "method,train s,train range,infer s,infer range,data s,train / Hard-Share,infer / Hard-Share,params,fit s" \
        in result.output
    assert "\nRidge,—,—," in result.output
