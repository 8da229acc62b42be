"""The style gate: `ruff check` (the rules chosen in pyproject.toml) finds nothing in the project's Python.

It runs inside pytest so the README's one test command (and CI, which runs exactly it) fails on a finding. ruff is
a pinned test extra (`pip install -e ".[test]"`); where it is missing the test skips on a developer's machine but
FAILS under CI (CI=true), so a broken install cannot pass the gate silently. Fix findings with
`ruff check --fix mtlbench tests benchmarks examples` and by hand for the rest."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHECKED = ["mtlbench", "tests", "benchmarks", "examples", "data_prep"]  # every folder that holds (or may hold) Python


def pinned_ruff() -> str:
    """The ruff version the test extra pins: findings differ between ruff versions, so the gate names the one."""
    found = re.search(r'"ruff==([^"]+)"', (REPO / "pyproject.toml").read_text())
    assert found, "pyproject.toml's test extra must pin ruff (ruff==X.Y.Z)"
    return found.group(1)


def refuse(why: str) -> None:
    """No usable ruff: a skip on a developer's machine, a failure under CI (the gate must not pass unrun)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{why} (CI is set: the style gate cannot be skipped)")
    pytest.skip(why)


def ruff_or_refuse() -> list[str]:
    """The command that runs the installed ruff of the pinned version."""
    if importlib.util.find_spec("ruff") is None:
        refuse(f"ruff is not installed (pip install 'ruff=={pinned_ruff()}', part of the test extra)")
    ruff = [sys.executable, "-m", "ruff"]
    version = subprocess.run([*ruff, "--version"], capture_output=True, text=True, check=False)
    if version.returncode != 0:
        refuse(f"ruff does not run: {version.stderr.strip() or version.stdout.strip()}")
    if version.stdout.split()[-1] != pinned_ruff():
        refuse(f"{version.stdout.strip()} is installed; the gate's rules are checked with ruff {pinned_ruff()}")
    return ruff


def ruff_check(ruff: list[str], paths: list[str], *extra: str) -> subprocess.CompletedProcess:
    # --no-cache: a test run writes nothing into the working tree
    return subprocess.run([*ruff, "check", "--no-cache", "--output-format", "concise", *extra, *paths],
                          cwd=REPO, capture_output=True, text=True, check=False)


def test_ruff_finds_nothing():
    ruff = ruff_or_refuse()
    paths = [p for p in CHECKED if (REPO / p).is_dir()]
    result = ruff_check(ruff, paths)
    assert result.returncode == 0, f"ruff check {' '.join(paths)}:\n{result.stdout}{result.stderr}"


def test_the_gate_fails_on_a_finding(tmp_path):
    """The same check with the project's rules reports a planted finding of each kind we select (so the gate can
    fail: an unsorted import, a mutable default argument, a needless Optional)."""
    ruff = ruff_or_refuse()
    planted = tmp_path / "planted.py"
    planted.write_text("from typing import Optional\nimport sys\nimport os\n\n\n"
                       "def f(x: Optional[int] = None, seen=[]):\n    return os, sys, x, seen\n")
    result = ruff_check(ruff, [str(planted)], "--config", str(REPO / "pyproject.toml"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert {"I001", "B006", "UP045"} <= set(re.findall(r"\b([A-Z]+\d+)\b", result.stdout)), result.stdout
