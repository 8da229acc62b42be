"""The package's imports are layered (mtlbench/_layers.py holds the order), and the check catches what it must."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mtlbench
from mtlbench._layers import check

PACKAGE = Path(mtlbench.__file__).parent


def test_the_package_has_no_cycle_and_no_upward_import():
    assert check(PACKAGE, "mtlbench") == []


def test_python_m_layers_says_so():
    done = subprocess.run([sys.executable, "-m", "mtlbench._layers"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no cycle" in done.stdout


def plant(root: Path, files: dict[str, str]) -> Path:
    """A temporary package named like ours (so the real layer order applies) holding ``files``."""
    pkg = root / "mtlbench"
    for rel, text in {"__init__.py": "", **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != pkg and not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text("")
        path.write_text(text)
    return pkg


def test_a_planted_cycle_fails_even_through_a_lazy_import(tmp_path):
    pkg = plant(tmp_path, {
        "store/a.py": "from mtlbench.store.b import B\nA = 1\n",
        "store/b.py": "def f():\n    from mtlbench.store import a\n    return a\nB = 2\n",
    })
    assert check(pkg, "mtlbench") == ["import cycle: mtlbench.store.a -> mtlbench.store.b -> mtlbench.store.a"]


def test_a_planted_upward_import_fails(tmp_path):
    pkg = plant(tmp_path, {
        "config/schema.py": "from mtlbench.launch.settings import LauncherSpec\n",
        "launch/settings.py": "LauncherSpec = object\n",
        "nn/plan.py": "import mtlbench.methods.stl\n",
        "methods/stl.py": "from ..nn import plan\n",  # downward (relative): allowed
    })
    assert check(pkg, "mtlbench") == [
        "mtlbench.config.schema imports mtlbench.launch.settings: launch is in a higher layer than config",
        "mtlbench.nn.plan imports mtlbench.methods.stl: methods is in a higher layer than nn",
        "import cycle: mtlbench.methods.stl -> mtlbench.nn.plan -> mtlbench.methods.stl",
    ]


def test_siblings_of_one_layer_may_not_import_each_other(tmp_path):
    pkg = plant(tmp_path, {"report/a.py": "from mtlbench.training import run\n", "training/run.py": ""})
    assert check(pkg, "mtlbench") == [
        "mtlbench.report.a imports mtlbench.training.run: training is in the same layer as report"]


def test_a_new_top_level_part_must_be_placed(tmp_path):
    pkg = plant(tmp_path, {"helpers.py": "X = 1\n"})
    assert check(pkg, "mtlbench") == [
        "mtlbench.helpers: mtlbench.helpers is in no layer (add it to LAYERS in mtlbench/_layers.py)"]
