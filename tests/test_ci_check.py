"""The project's own CI regression check. CI runs exactly the README's test command (`python -m pytest`, see
.ci/run), so this test is the CI job: it trains benchmarks/ci_smoke.yaml (3 methods x 3 seeds) and runs
`mtlbench check` against the committed reference records in results/reference/ci_smoke. It also shows that the
check can fail: a code regression (Hard-Share's heads zeroed) and a spec regression (a learning rate too small
to learn) are both caught, with exit 1, the row named, and a JUnit failure.

After a change that is meant to move the numbers, regenerate the reference:
    mtlbench train benchmarks/ci_smoke.yaml --out results/reference --force
"""
from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.methods.hard_share import HardShare

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "benchmarks" / "ci_smoke.yaml"
REFERENCE = REPO / "results" / "reference"
runner = CliRunner()


def train(spec: Path, out: Path) -> None:
    result = runner.invoke(app, ["train", str(spec), "--out", str(out), "--no-progress", "--format", "csv"])
    assert result.exit_code == 0, result.output


def check(spec: Path, fresh: Path, junit: Path, *extra: str):
    return runner.invoke(app, ["check", str(spec), "--results", str(fresh), "--against", str(REFERENCE),
                               "--junit", str(junit), "--format", "markdown", *extra])


def junit_cases(path: Path) -> dict[str, str | None]:
    """test case name -> failure type (None when it passed)."""
    suite = ET.parse(path).getroot().find("testsuite")
    return {f"{c.get('classname')} {c.get('name')}": (c.find("failure").get("type") if c.find("failure") is not None
                                                     else None) for c in suite.iter("testcase")}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ci")
    train(SPEC, out)
    return out


def test_a_fresh_run_of_the_same_code_passes_against_the_committed_reference(fresh, tmp_path):
    result = check(SPEC, fresh, tmp_path / "check.xml")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"**mtlbench check ci_smoke against {REFERENCE / 'ci_smoke'}: all 3 checks hold**")
    for row in ("STL", "Hard-Share", "TAAN"):
        assert f"\n| {row} | map@10 mean | " in result.output and "(3 x std) | ok |" in result.output
    assert junit_cases(tmp_path / "check.xml") == {"ci_smoke.STL map@10 mean": None,
                                                   "ci_smoke.Hard-Share map@10 mean": None,
                                                   "ci_smoke.TAAN map@10 mean": None}


def without_row(fresh: Path, tmp_path: Path, row: str) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(fresh, runs)
    shutil.rmtree(runs / "ci_smoke" / row)
    return runs


def test_zeroed_heads_are_a_regression(fresh, tmp_path, monkeypatch):
    built = HardShare.__init__

    def zeroed_heads(self, *args, **kwargs):  # the bug: heads that output 0 whatever the features
        built(self, *args, **kwargs)
        for p in self.heads.parameters():
            p.requires_grad_(False).zero_()
    monkeypatch.setattr(HardShare, "__init__", zeroed_heads)
    runs = without_row(fresh, tmp_path, "Hard-Share")
    train(SPEC, runs)  # STL and TAAN are finished (skipped); Hard-Share retrains with the bug
    result = check(SPEC, runs, tmp_path / "check.xml", "--format", "csv")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "method,checked,reference,fresh,change,allowed,status"
    assert [line.rsplit(",", 1)[1] for line in lines[1:]] == ["ok", "regressed", "ok"]
    assert result.stderr.startswith("error: 1 check(s) failed: Hard-Share map@10 mean: ")
    assert junit_cases(tmp_path / "check.xml")["ci_smoke.Hard-Share map@10 mean"] == "regressed"


def test_a_learning_rate_that_cannot_learn_is_a_regression(fresh, tmp_path):
    text = SPEC.read_text()
    assert "methods:\n  - name: stl\n    label: STL\n" in text and "lr: 0.003" in text
    variant = tmp_path / "ci_smoke.yaml"  # the same spec name and rows, Hard-Share only, lr 1e-7
    variant.write_text(text.replace("  - name: stl\n    label: STL\n", "")
                       .replace("  - name: taan\n    label: TAAN\n", "")
                       .replace("lr: 0.003", "lr: 1.0e-7"))
    train(variant, tmp_path / "runs")
    result = check(variant, tmp_path / "runs", tmp_path / "check.xml")
    assert result.exit_code == 1, result.output
    assert "**mtlbench check ci_smoke against" in result.output and ": 1 of 1 checks failed**" in result.output
    assert "| Hard-Share | map@10 mean |" in result.output and "| regressed |" in result.output
    assert "- the reference of Hard-Share was made with other settings: optimizer.lr: 0.003 -> 1e-07" in result.output
    (tmp_path / "zero.yaml").write_text(text.replace("lr: 0.003", "lr: 0"))  # exactly 0: refused by the spec
    zero = runner.invoke(app, ["validate", str(tmp_path / "zero.yaml")])
    assert zero.exit_code == 2 and "optimizer.lr: expected: input should be greater than 0 (got 0)" in zero.output


def test_per_task_checks_every_task(fresh, tmp_path):
    result = check(SPEC, fresh, tmp_path / "check.xml", "--per-task", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1 + 3 * 6  # header + 3 rows x (mean + 5 tasks)
    assert len(junit_cases(tmp_path / "check.xml")) == 18
