"""Methods and datasets from outside the package, through the real command line: the example plugin
(examples/plugin_example.py, a method and a dataset in one file) trains via ``--plugin``, via ``module:Class``
names with its folder on PYTHONPATH and via an installed entry point; ``list`` says where each entry comes from;
a plugin's code is part of its rows' run identity (an edited plugin is a new run; built-in rows keep the
identities they always had); every bad plugin is one line and exit 2."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.registry import Registry
from mtlbench.results import identity_hash, load_records, read_record
from tests.conftest import REPO

runner = CliRunner()
EXAMPLE = REPO / "examples" / "plugin_example.py"

SPEC = """\
name: plug
data:
  dataset: DATASET
  options: {n_groups: 2, tasks_per_group: 2, per_task: 200}
backbone: {hidden: [16]}
methods:
  - {name: stl, label: STL}
  - {name: METHOD, label: Gated}
training: {iterations: ITERATIONS, batch_per_task: 16, eval_every: 10, threads: 1}
output: {dir: OUT}
"""


def spec_file(tmp: Path, method="gated_share", dataset="planted_groups", iterations=20, name="spec.yaml") -> Path:
    path = tmp / name
    path.write_text(SPEC.replace("METHOD", method).replace("DATASET", dataset)
                    .replace("ITERATIONS", str(iterations)).replace("OUT", str(tmp / "runs")))
    return path


@pytest.fixture(autouse=True)
def registries_as_they_were():
    """Whatever a test's plugins register is gone afterwards (the registries are process-wide)."""
    for r in Registry.all:
        r.names()  # discovered before the snapshot, so the built-ins are in it
    saved = [(r, dict(r._entries), dict(r._origins), dict(r._failed)) for r in Registry.all]
    modules = set(sys.modules)
    from mtlbench import plugins
    files = dict(plugins._files)
    yield
    for r, *dicts in saved:  # in place: a test's monkeypatch may hold the very dict
        for now, then in zip((r._entries, r._origins, r._failed), dicts):
            now.clear()
            now.update(then)
    for name in set(sys.modules) - modules:  # the plugins' modules, not what they imported from torch & co
        file = getattr(sys.modules[name], "__file__", None) or ""
        if name.startswith("mtlbench_plugin_") or (file and not file.startswith((str(REPO), sys.base_prefix,
                                                                                  sys.prefix))):
            del sys.modules[name]
    plugins._files.clear()
    plugins._files.update(files)


def cli(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


# -- three ways in --------------------------------------------------------------------------------------------------
def test_the_example_plugin_trains_through_the_cli(tmp_path):
    spec = spec_file(tmp_path, iterations=40)
    result = cli("train", spec, "--plugin", EXAMPLE, "--no-progress", "--format", "csv")
    assert result.exit_code == 0, result.output
    gated = read_record(tmp_path / "runs" / "plug" / "Gated" / "seed0.json")
    stl = read_record(tmp_path / "runs" / "plug" / "STL" / "seed0.json")
    assert gated.method == "gated_share" and gated.dataset == "planted_groups"
    assert gated.tasks == ["G1T1", "G1T2", "G2T1", "G2T2"]
    gates = gated.summary["gates"]  # one gate per task and hidden layer, moved by training
    assert len(gates) == 4 and all(len(g) == 1 and 0 < g[0] < 1 for g in gates) and any(g[0] != 0.5 for g in gates)
    assert gated.metrics["test"]["accuracy"].mean > 1 / 3  # above chance on 3 classes
    digest = __import__("hashlib").sha256(EXAMPLE.read_bytes()).hexdigest()[:16]
    assert gated.plugins == {"method": digest, "dataset": digest}
    assert stl.plugins == {"dataset": digest}  # a built-in method on the plugin's dataset
    again = cli("train", spec, "--plugin", EXAMPLE, "--no-progress", "--format", "csv")
    assert again.exit_code == 0 and again.output.count("finished, skipped") == 2, again.output


def test_a_weighting_from_the_plugin_trains_and_resumes_with_its_state(tmp_path, steps_taken):
    """The example's first_loss_scaled weighting: its code is in the row's identity, its weights are 1/(T L_t at
    the first step) -- not ew's 1/T -- and its first losses (a buffer) come back with a resumed run's state."""
    import io

    import torch

    from mtlbench.config.loader import load_spec
    from mtlbench.plugins import load_plugin_file
    from mtlbench.training.run import load_data
    from mtlbench.training.run_plan import plan_cells
    from mtlbench.training.trainer import train_run
    from tests.test_resume import Killed, killed_at
    path = spec_file(tmp_path, method="hard_share", iterations=20)
    path.write_text(path.read_text().replace("label: Gated}", "label: HS, weighting: first_loss_scaled}"))
    result = cli("train", path, "--plugin", EXAMPLE, "--no-progress", "--format", "csv", "--rows", "HS")
    assert result.exit_code == 0, result.output
    record = read_record(tmp_path / "runs" / "plug" / "HS" / "seed0.json")
    digest = __import__("hashlib").sha256(EXAMPLE.read_bytes()).hexdigest()[:16]
    assert record.plugins == {"dataset": digest, "weighting": digest}
    weights = [h["task_weights"] for h in record.history]
    assert all(w == weights[0] for w in weights)  # fixed after the first step
    assert len(set(weights[0])) == 4 and all(0.1 < w < 0.5 and w != 0.25 for w in weights[0])
    load_plugin_file(EXAMPLE)
    resolved = load_spec(path)
    cell = next(c for c in plan_cells(resolved, [0], tmp_path / "again") if c.row == "HS")
    data = load_data(resolved)
    box: list = []
    with pytest.raises(Killed):
        train_run(resolved, cell, data, checkpoint=killed_at(10, box))
    steps_taken.clear()
    resumed, _ = train_run(resolved, cell, data, resume=torch.load(io.BytesIO(box[0]), weights_only=True))
    assert steps_taken == list(range(11, 21))
    assert (resumed.history, resumed.metrics) == (record.history, record.metrics)


def test_list_says_where_each_entry_comes_from(tmp_path):
    result = cli("list", "methods", "--plugin", EXAMPLE, "--pattern", "*a*_share")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in result.output.splitlines()
            if line.startswith("│")}
    assert rows == {"gated_share": str(EXAMPLE), "hard_share": "built-in"}


def test_a_module_class_name_trains_with_its_module_on_the_path(tmp_path, monkeypatch):
    shutil.copy(EXAMPLE, tmp_path / "my_gating.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = spec_file(tmp_path, method="my_gating:GatedShare", dataset="my_gating:PlantedGroups")
    result = cli("train", spec, "--no-progress", "--format", "csv")
    assert result.exit_code == 0, result.output
    gated = read_record(tmp_path / "runs" / "plug" / "Gated" / "seed0.json")
    assert gated.method == "my_gating:GatedShare" and len(gated.summary["gates"]) == 4
    assert set(gated.plugins) == {"method", "dataset"}


def write_distribution(site: Path) -> None:
    """An installed distribution as pip leaves one: the module, and its dist-info with entry_points.txt --
    one entry point naming a class, one naming a module whose import registers the dataset."""
    site.mkdir()
    shutil.copy(EXAMPLE, site / "gatedplug.py")
    info = site / "gatedplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gatedplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mtlbench.methods]\ngated_ep = gatedplug:GatedShare\n\n"
                                           "[mtlbench.datasets]\ngatedplug = gatedplug\n")


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The distribution on sys.path (as PYTHONPATH or a site directory puts it), and the registries not yet
    discovered, so that the next look-up loads the entry points as a fresh process does."""
    write_distribution(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for r in Registry.all:
        monkeypatch.setattr(r, "_discovered", False)
    return tmp_path / "site"


def test_an_installed_entry_point_trains(tmp_path, installed):
    # a plugin file makes every registry load its entry points: the methods' imports the module that the
    # datasets' entry point names, which still counts as registering
    other = bad_file(tmp_path, CLASH.replace('"taan"', '"other_share"'), "other.py")
    listed = cli("list", "methods", "--pattern", "gated_ep", "--plugin", other)
    assert listed.exit_code == 0, listed.output
    origin = " ".join(line.split("│")[-2].strip() for line in listed.output.splitlines() if line.startswith("│"))
    assert origin == "entry point gated_ep = gatedplug:GatedShare (mtlbench.methods, gatedplug 0.1)"
    done = cli("train", spec_file(tmp_path, method="gated_ep"), "--no-progress", "--format", "csv")
    assert done.exit_code == 0, done.output
    gated = read_record(tmp_path / "runs" / "plug" / "Gated" / "seed0.json")
    assert gated.method == "gated_ep" and gated.dataset == "planted_groups" and set(gated.plugins) == {
        "method", "dataset"}


# -- identity -------------------------------------------------------------------------------------------------------
def test_an_edited_plugin_is_a_new_run(tmp_path):
    plugin = tmp_path / "gating.py"
    shutil.copy(EXAMPLE, plugin)
    spec = spec_file(tmp_path)
    assert cli("train", spec, "--plugin", plugin, "--no-progress", "--format", "csv").exit_code == 0
    first = read_record(tmp_path / "runs" / "plug" / "Gated" / "seed0.json")
    plugin.write_text(plugin.read_text().replace("h = torch.relu(g * shared(h)", "h = torch.tanh(g * shared(h)"))
    refused = cli("train", spec, "--plugin", plugin, "--no-progress", "--format", "csv")
    assert refused.exit_code == 2 and "finished, skipped" not in refused.output
    assert refused.output.startswith(f"error: {tmp_path}/runs/plug/STL/seed0.json: holds a run made with other "
                                     f"settings (plugins.dataset: \"{first.plugins['dataset']}\" -> \""), \
        refused.output
    forced = cli("train", spec, "--plugin", plugin, "--no-progress", "--format", "csv", "--force")
    assert forced.exit_code == 0, forced.output
    second = read_record(tmp_path / "runs" / "plug" / "Gated" / "seed0.json")
    assert second.plugins["method"] != first.plugins["method"] and second.identity != first.identity
    assert second.history != first.history


def test_a_saved_state_of_another_plugin_version_is_refused(tmp_path):
    """The resume rule for state files: one made by another spec or code version -- here another plugin
    version -- is never loaded: refused before training (exit 2) until --force restarts the run."""
    import torch
    plugin = tmp_path / "gating.py"
    shutil.copy(EXAMPLE, plugin)
    spec = spec_file(tmp_path)
    from mtlbench.config.loader import load_spec
    from mtlbench.plugins import load_plugin_file
    from mtlbench.training.run_plan import plan_cells
    load_plugin_file(plugin)
    old = plan_cells(load_spec(spec), [0], tmp_path / "runs")[1]
    old.state_path.parent.mkdir(parents=True)
    torch.save({"identity": old.identity, "state": {"iteration": 10}}, old.state_path)
    plugin.write_text(plugin.read_text() + "\n# edited\n")
    args = ["train", spec, "--plugin", plugin, "--format", "csv", "--no-progress", "--rows", "Gated"]
    refused = cli(*args)
    assert (refused.exit_code, refused.output) == (2, (
        f"error: {old.state_path}: the saved state of an interrupted run made with other settings (made by another "
        "spec or code version); restore the spec to resume it, or delete the file (or rerun with --force) to train "
        "this run from the start\n"))
    assert cli(*args, "--force").exit_code == 0
    assert read_record(old.record_path).identity != old.identity and not old.state_path.exists()


def test_rows_of_built_ins_keep_the_identities_of_the_committed_records():
    from mtlbench.training.run_plan import stored_key
    records = [r for r in load_records(REPO / "results" / "reference") if r.identity]
    assert len(records) > 200
    for r in records:
        assert r.plugins is None and "plugins" not in json.loads(r.path.read_text())
        assert identity_hash(stored_key(r)) == r.identity, r.path


# -- launchers ------------------------------------------------------------------------------------------------------
def test_local_jobs_load_the_plugin_before_they_unpickle(tmp_path):
    pytest.importorskip("submitit")
    spec = spec_file(tmp_path)
    result = cli("train", spec, "--plugin", EXAMPLE, "--launcher", "local", "--rows", "Gated", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert "Gated seed 0: done after" in result.output
    inproc = tmp_path / "inproc"
    inproc.mkdir()
    assert cli("train", spec_file(inproc), "--plugin", EXAMPLE, "--no-progress", "--format", "csv").exit_code == 0
    a = read_record(tmp_path / "runs" / "plug" / "Gated" / "seed0.json")
    b = read_record(inproc / "runs" / "plug" / "Gated" / "seed0.json")
    assert (a.metrics, a.history, a.identity) == (b.metrics, b.history, b.identity)


def test_a_slurm_job_payload_carries_its_plugin_files(tmp_path):
    """What submitit writes for a Slurm job, read back in a fresh process, as the job's node would: the plugin file
    is loaded first, then the job's spec with the plugin's classes unpickles."""
    cloudpickle = pytest.importorskip("cloudpickle")
    from mtlbench.config.loader import load_spec
    from mtlbench.launch.job import CellJob
    from mtlbench.plugins import load_plugin_file
    load_plugin_file(EXAMPLE)
    job = CellJob(load_spec(spec_file(tmp_path)), 1, [0], tmp_path / "runs", False, 1)
    (tmp_path / "job.pkl").write_bytes(cloudpickle.dumps(job))
    read = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import pickle, sys
        job = pickle.load(open(sys.argv[1], "rb"))
        m = job.resolved.methods[job.index]
        print(m.cls.__name__, m.cls.registry_name, job.resolved.dataset.registry_name)
        """), str(tmp_path / "job.pkl")], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False)
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == ["GatedShare", "gated_share", "planted_groups"]


def test_a_job_whose_plugin_changed_while_it_waited_refuses_to_start(tmp_path):
    pytest.importorskip("cloudpickle")
    import pickle

    import cloudpickle

    from mtlbench.config.loader import load_spec
    from mtlbench.launch.job import CellJob
    from mtlbench.plugins import load_plugin_file
    from mtlbench.registry import PluginError
    plugin = tmp_path / "gating.py"
    shutil.copy(EXAMPLE, plugin)
    load_plugin_file(plugin)
    payload = cloudpickle.dumps(CellJob(load_spec(spec_file(tmp_path)), 1, [0], tmp_path / "runs", False, 1))
    plugin.write_text(plugin.read_text() + "\n# edited while queued\n")
    with pytest.raises(PluginError, match=r"gating.py: changed since this job was submitted \(sha256 [0-9a-f]{16} -> "
                                          r"[0-9a-f]{16}\); run the same `mtlbench train` command again"):
        pickle.loads(payload)


@pytest.mark.slow  # ~35 s on two busy cores; every rank parses the same command line, so little can break here
def test_two_torchrun_ranks_load_the_plugin_and_train_what_one_process_trains(tmp_path):
    """Every rank parses the same command line, --plugin included; the two ranks end where one process does."""
    import torch
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_file(tmp_path).read_text().replace("  - {name: stl, label: STL}\n", "")
                    + "optimizer: {name: sgd, lr: 0.01, momentum: 0.9}\n")
    assert cli("train", spec, "--plugin", EXAMPLE, "--out", tmp_path / "one", "--no-progress").exit_code == 0
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "mtlbench", "train", str(spec), "--plugin", str(EXAMPLE), "--out",
                           str(tmp_path / "two"), "--no-progress"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (read_record(tmp_path / d / "plug" / "Gated" / "seed0.json") for d in ("one", "two"))
    assert (two.env["world_size"], two.identity, two.plugins) == (2, one.identity, one.plugins)
    assert [h["loss"] for h in two.history] == pytest.approx([h["loss"] for h in one.history], rel=1e-5)
    a, b = (torch.load(tmp_path / d / "plug" / "Gated" / "seed0.pt") for d in ("one", "two"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-6, rtol=0, msg=k)


# -- bad plugins: one line, exit 2 ----------------------------------------------------------------------------------
def bad_file(tmp: Path, text: str, name: str = "bad.py") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


CLASH = """\
from mtlbench.methods.hard_share import HardShare
from mtlbench.registry import METHODS


@METHODS.register("taan")
class MyTaan(HardShare):
    pass
"""

# name -> (build(tmp) -> argv, the exact line; {tmp} is filled in)
CASES = {
    "a syntax error": (lambda t: ["validate", spec_file(t), "--plugin", bad_file(t, "x = (\n")],
                       "error: {tmp}/bad.py:1: not valid Python ('(' was never closed); expected a plugin file that "
                       "registers methods, datasets or weightings"),
    "an import that fails": (lambda t: ["train", spec_file(t), "--plugin", bad_file(t, "\n\nimport no_such_module\n")],
                             "error: {tmp}/bad.py:3: fails at import: ModuleNotFoundError: No module named "
                             "'no_such_module'"),
    "an exception at import": (lambda t: ["compare", spec_file(t), "--plugin",
                                          bad_file(t, "def f():\n    raise ValueError('no GPU here')\nf()\n")],
                               "error: {tmp}/bad.py:2: fails at import: ValueError: no GPU here"),
    "a plugin that registers nothing": (lambda t: ["status", spec_file(t), "--plugin", bad_file(t, "X = 1\n")],
                                        "error: {tmp}/bad.py: registers nothing; expected a class decorated "
                                        "with a registry's register, e.g. @METHODS.register(\"my_method\") (from "
                                        "mtlbench.registry import METHODS)"),
    "a built-in name reused": (lambda t: ["train", spec_file(t), "--plugin", bad_file(t, CLASH)],
                               "error: method 'taan' is registered twice: mtlbench.methods.taan and {tmp}/bad.py"),
    "one name from two files": (lambda t: ["validate", spec_file(t), "--plugin", EXAMPLE, "--plugin",
                                           shutil.copy(EXAMPLE, t / "copy_of_example.py")],
                                f"error: method 'gated_share' is registered twice: {EXAMPLE} and "
                                "{tmp}/copy_of_example.py"),
    "a function registered as a method": (
        lambda t: ["list", "methods", "--plugin",
                   bad_file(t, "from mtlbench.registry import METHODS\n\n"
                               "@METHODS.register('f')\ndef f():\n    pass\n")],
        "error: {tmp}/bad.py: method 'f' is the function 'f'; expected a method (a subclass of "
        "mtlbench.nn.method.MTLMethod)"),
    "a missing plugin file": (lambda t: ["timing", spec_file(t), "--plugin", t / "nowhere.py"],
                              "error: --plugin {tmp}/nowhere.py: no such file"),
    "a plugin that is no .py file": (lambda t: ["check", spec_file(t), "--against", t, "--plugin",
                                                bad_file(t, "x = 1\n", "plugin.txt")],
                                     "error: --plugin {tmp}/plugin.txt: expected a Python file ending in .py"),
    "a module:Class that does not import": (
        lambda t: ["validate", spec_file(t, method="no_such_pkg.gating:Gated"), "--plugin", EXAMPLE],
        "error: {tmp}/spec.yaml:8: methods[1].name: 'no_such_pkg.gating:Gated': module 'no_such_pkg.gating' does not "
        "import (ModuleNotFoundError: No module named 'no_such_pkg')"),
    "a module:Class that is not a method": (
        lambda t: ["train", spec_file(t, method="json:JSONDecoder"), "--plugin", EXAMPLE],
        "error: {tmp}/spec.yaml:8: methods[1].name: 'json:JSONDecoder' (" + json.__file__ + ") is the class "
        "'JSONDecoder'; expected a method (a subclass of mtlbench.nn.method.MTLMethod)"),
    "a module:Class without the class": (
        lambda t: ["validate", spec_file(t, method="json:Gated"), "--plugin", EXAMPLE],
        "error: {tmp}/spec.yaml:8: methods[1].name: 'json:Gated': module 'json' (" + json.__file__ + ") has no "
        "attribute 'Gated'"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_plugin_is_one_line_and_exit_2(name, tmp_path):
    build, line = CASES[name]
    result = cli(*build(tmp_path))
    assert (result.exit_code, result.output) == (2, line.replace("{tmp}", str(tmp_path)) + "\n")
    assert not (tmp_path / "runs").exists()


def test_an_entry_point_that_fails_to_load_is_one_line_and_exit_2(tmp_path, installed):
    (installed / "gatedplug.py").write_text("raise ImportError('needs libfoo')\n")
    result = cli("validate", spec_file(tmp_path))
    assert (result.exit_code, result.output) == (2, (
        "error: entry point gatedplug = gatedplug (mtlbench.datasets, gatedplug 0.1): fails to load: "
        "ImportError: needs libfoo\n"))
