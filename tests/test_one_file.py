"""Adding a method or a dataset is adding one file: dropped into methods/ or data/ of a copy of the package, each is
found by name, validated and trained, with no edit anywhere else."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mtlbench

PACKAGE = Path(mtlbench.__file__).parent

METHOD = '''"""Hard-Share under a name of its own: a new method, one file."""
from mtlbench.methods.hard_share import HardShare
from mtlbench.registry import METHODS


@METHODS.register("hard_share_twin")
class HardShareTwin(HardShare):
    """Hard-Share under a name of its own."""
'''

DATASET = '''"""The planted-groups vector data under a name of its own: a new dataset, one file."""
from mtlbench.data.synthetic import SyntheticVector
from mtlbench.registry import DATASETS


@DATASETS.register("planted_twin")
class PlantedTwin(SyntheticVector):
    description = "synthetic_vector under another name"
'''

SPEC = """name: one_file
data: {dataset: planted_twin, options: {n_groups: 1, tasks_per_group: 2, input_dim: 8, n_examples: 200}}
backbone: {hidden: [8]}
methods: [{name: hard_share_twin}]
training: {iterations: 10, batch_per_task: 8, eval_every: 5, threads: 1}
output: {dir: runs}
"""


def mtlbench_in(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-m", "mtlbench", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_new_method_and_dataset_file_are_found_validated_and_trained(tmp_path):
    copy = tmp_path / "mtlbench"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "methods" / "hard_share_twin.py").write_text(METHOD)
    (copy / "data" / "planted_twin.py").write_text(DATASET)
    (tmp_path / "spec.yaml").write_text(SPEC)

    listed = mtlbench_in(tmp_path, "list", "methods")
    assert listed.returncode == 0 and "hard_share_twin" in listed.stdout, listed.stdout + listed.stderr
    trained = mtlbench_in(tmp_path, "train", "spec.yaml", "--no-progress", "--format", "csv")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert (tmp_path / "runs" / "one_file" / "hard_share_twin" / "seed0.json").exists()
    # nothing else of the copy was touched: the package is the original plus the two files
    added = {p.relative_to(copy).as_posix() for p in copy.rglob("*.py")} - \
        {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    assert added == {"methods/hard_share_twin.py", "data/planted_twin.py"}
