"""The README stays a front page: at most 250 lines, the two commands exactly as CI runs them, every shell
block either run here or marked long with its measured cost, and stable markers around the results."""
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtlbench.cli import app

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
MAIN_JOB = ("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e . && "
            "mtlbench train benchmarks/quickstart.yaml")
TESTS = ('python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e ".[test]" && '
         "python -m pytest")
SHELL = re.compile(r"(?P<before>[^\n]*)\n+```(?:bash|sh|shell|console)\n(?P<body>.*?)```", re.S)
LONG = re.compile(r"<!-- long: .*\d.*\b(s|min|h)\b.* -->")


def shell_blocks(text: str) -> list[tuple[str, str]]:
    """(the line before the block, the block) for every fenced shell block."""
    return [(m["before"], m["body"]) for m in SHELL.finditer(text)]


def commands(body: str) -> list[str]:
    joined = body.replace("\\\n", " ")
    return [line.split(" #")[0].strip() for line in joined.splitlines() if line.strip()]


def test_readme_is_a_front_page():
    assert len(README.splitlines()) <= 250


def test_the_two_commands_are_the_ones_ci_runs():
    assert f"```bash\n{MAIN_JOB}\n```" in README and f"```bash\n{TESTS}\n```" in README
    assert (REPO / ".ci" / "run").read_text().strip().splitlines()[-1] == TESTS


def test_results_sit_between_stable_markers():
    assert README.count("<!-- results:begin -->") == 1 and README.count("<!-- results:end -->") == 1
    assert README.index("<!-- results:begin -->") < README.index("<!-- results:end -->")


def test_a_long_block_needs_a_measured_cost():
    text = "x\n<!-- long: about 20 s on 2 cores -->\n```bash\nmake\n```\n\n<!-- long: slow -->\n```bash\nmake\n```\n"
    assert [bool(LONG.search(before)) for before, _ in shell_blocks(text)] == [True, False]


SHORT = [c for before, body in shell_blocks(README) if not LONG.search(before) for c in commands(body)]


def test_there_are_short_blocks_to_run():
    assert len(SHORT) >= 3 and len(shell_blocks(README)) >= 3


@pytest.mark.parametrize("command", SHORT)
def test_every_unmarked_shell_block_runs(command):
    """Unmarked blocks must be mtlbench commands that succeed here, on the committed files alone."""
    words = shlex.split(command)
    assert words[0] == "mtlbench", f"{command!r}: mark the block <!-- long: COST --> or make it an mtlbench command"
    result = CliRunner().invoke(app, words[1:], env={"COLUMNS": "120"})
    assert result.exit_code == 0, f"{command!r} -> {result.exit_code}: {result.output[-500:]}"


def test_the_spec_shown_is_the_quickstart():
    """The README's spec is benchmarks/quickstart.yaml without its comments and defaults."""
    import yaml

    from mtlbench.config.schema import RunSpec
    shown = yaml.safe_load(re.search(r"```yaml\n(.*?)```", README, re.S)[1])
    quickstart = yaml.safe_load((REPO / "benchmarks" / "quickstart.yaml").read_text())
    quickstart.pop("description")
    assert RunSpec.model_validate(shown) == RunSpec.model_validate(quickstart)
