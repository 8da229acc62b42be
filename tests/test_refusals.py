"""One rule in every command, through the real command line: bad input is refused before any work with one line
and exit 2, and nothing is written; a failure while running is one line and exit 1; never a traceback.

A catalogue: each case builds its input, runs one command, and states the exact line it must print and the
exit code. Typer's own usage errors (a missing argument, an option of the wrong type) are listed apart: click
words them, and mtlbench prints them on one line, exit 2, before any work as well.
"""
from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from tests.data_support import flip_byte, write_toy

runner = CliRunner()

GOOD = """\
name: good
data:
  dataset: synthetic_vector
  options: {n_groups: 1, tasks_per_group: 2, outlier: false, input_dim: 16, n_examples: 300, n_classes: 6}
backbone: {hidden: [16]}
methods:
  - name: hard_share
    label: Hard-Share
training: {iterations: 10, batch_per_task: 16, eval_every: 5, threads: 1}
output: {dir: OUT}
"""
IMAGES = """\
name: images
data:
  dataset: synthetic_image
  options: {n_groups: 1, tasks_per_group: 2, outlier: false, image_size: 8, per_class: 10, n_classes: 3}
backbone: {kind: mlp, hidden: [8]}
methods: [{name: hard_share, label: Hard-Share}]
training: {iterations: 5, batch_per_task: 8, eval_every: 5, threads: 1}
output: {dir: OUT}
"""
TOY_SPEC = """\
name: toy
data: {dataset: image_folder, path: TOY}
backbone: {kind: mlp, hidden: [8]}
methods: [{name: stl}]
training: {iterations: 5, batch_per_task: 8, eval_every: 5, threads: 1}
output: {dir: OUT}
"""


@dataclass
class World:
    """What every case may read (never write): trained records, a prepared directory, a source image folder."""

    root: Path

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def good(self) -> Path:
        return self.root / "good.yaml"

    @property
    def images(self) -> Path:
        return self.root / "images.yaml"

    @property
    def toy(self) -> Path:
        return self.root / "toy"

    @property
    def source(self) -> Path:
        return self.root / "source"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    w = World(tmp_path_factory.mktemp("world"))
    w.good.write_text(GOOD.replace("OUT", str(w.runs)))
    w.images.write_text(IMAGES.replace("OUT", str(w.runs)))
    for spec in (w.good, w.images):
        result = runner.invoke(app, ["train", str(spec), "--no-progress", "--format", "csv"])
        assert result.exit_code == 0, result.output
    write_toy(w.toy)
    image_source(w.source)
    return w


def image_source(root: Path) -> None:
    """<root>/Shapes/<class>/<n>.png: one task, two classes of 8x8 grey images."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in ("circle", "square"):
        (root / "Shapes" / c).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / "Shapes" / c / f"{i}.png")


# -- what cases build in their own folder ---------------------------------------------------------------------------
def spec_file(tmp: Path, text: str, name: str = "spec.yaml", **subs: str) -> Path:
    for key, value in {"OUT": str(tmp / "out"), **subs}.items():
        text = text.replace(key, value)
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


def toy_copy(w: World, tmp: Path, sealed: bool = True, edit: Callable[[dict], None] | None = None) -> Path:
    """A copy of the prepared toy directory, its manifest edited by ``edit`` (by hand, as a user would)."""
    toy = tmp / "toy"
    shutil.copytree(w.toy, toy)
    if not sealed:
        (toy / "manifest.sha256").unlink()
    if edit is not None:
        manifest = json.loads((toy / "manifest.json").read_text())
        edit(manifest)
        (toy / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return toy


def toy_spec(w: World, tmp: Path, **kw) -> Path:
    return spec_file(tmp, TOY_SPEC, TOY=str(toy_copy(w, tmp, **kw)))


def results_copy(w: World, tmp: Path) -> Path:
    shutil.copytree(w.runs, tmp / "runs")
    return tmp / "runs"


def set_classes(n: int) -> Callable[[dict], None]:
    def edit(m: dict) -> None:
        m["tasks"][0]["n_classes"] = n
        m["tasks"][0]["class_names"] = m["tasks"][0]["class_names"][:n]
    return edit


def rename_class(m: dict) -> None:
    m["tasks"][1]["class_names"][0] = "c9"


def rename_task(m: dict) -> None:
    m["tasks"][2]["name"] = "T7"


def shift_counts(m: dict) -> None:
    counts = m["tasks"][0]["counts"]["default"]
    counts["train"], counts["test"] = counts["train"] - 1, counts["test"] + 1


def toy_shape(m: dict) -> None:
    m["tasks"][0]["input_shape"] = [1, 8, 9]


def check_spec_for(w: World, tmp: Path, runs: Path | None = None, extra: str = "") -> Path:
    """The good spec reading its fresh records from ``runs`` (default: the trained ones)."""
    return spec_file(tmp, GOOD + extra, "good.yaml", OUT=str(runs or w.runs))


def poison_record(runs: Path) -> Path:
    record = runs / "good" / "Hard-Share" / "seed0.json"
    data = json.loads(record.read_text())
    data.update(status="diverged", failure="diverged at iteration 3: the task loss is nan", metrics=None,
                best_iteration=None)
    record.write_text(json.dumps(data))
    return record


def lower_scores(runs: Path, by: float) -> None:
    record = runs / "good" / "Hard-Share" / "seed0.json"
    data = json.loads(record.read_text())
    entry = data["metrics"]["test"]["map@10"]
    entry["mean"] -= by
    record.write_text(json.dumps(data))


def timing_file(folder: Path, ratio: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "timing.json").write_text(json.dumps({"reference": "Hard-Share", "results": [
        {"row": "Hard-Share", "ratio_train": 1.0, "ratio_infer": 1.0},
        {"row": "STL", "ratio_train": ratio, "ratio_infer": 1.5}]}))


# -- the catalogue ---------------------------------------------------------------------------------------------------
# name -> (build(world, tmp) -> argv, exit code, the exact line printed; {tmp} and {w} are filled in)
CASES: dict[str, tuple[Callable[[World, Path], list[str]], int, str]] = {}


def case(name: str, code: int, line: str):
    def add(build):
        CASES[name] = (build, code, line)
        return build
    return add


# train
case("train: spec file missing", 2, "error: {tmp}/nope.yaml: cannot read the spec (No such file or directory)")(
    lambda w, tmp: ["train", f"{tmp}/nope.yaml"])
case("train: spec is a directory", 2, "error: {tmp}: cannot read the spec (Is a directory)")(
    lambda w, tmp: ["train", str(tmp)])


@case("train: binary spec", 2, "error: {tmp}/spec.yaml: a binary file (NUL byte at offset 4), not a YAML spec")
def _(w, tmp):
    (tmp / "spec.yaml").write_bytes(b"\x7fELF\x00\x01\x02")
    return ["train", str(tmp / "spec.yaml")]


@case("train: spec not UTF-8", 2,
      "error: {tmp}/spec.yaml: not UTF-8 text (byte 0xe9 at offset 16); save the spec as UTF-8")
def _(w, tmp):
    (tmp / "spec.yaml").write_bytes(GOOD.replace("name: good", "name: good # caf\u00e9").encode("latin-1"))
    return ["train", str(tmp / "spec.yaml")]


@case("train: --out is a file", 2, "error: --out: {tmp}/afile is a file; expected a directory (created if missing)")
def _(w, tmp):
    (tmp / "afile").write_text("x")
    return ["train", str(w.good), "--out", str(tmp / "afile")]


@case("train: output.dir is a file", 2,
      "error: {tmp}/spec.yaml:10: output.dir: {tmp}/afile is a file; expected a directory (created if missing)")
def _(w, tmp):
    (tmp / "afile").write_text("x")
    return ["train", str(spec_file(tmp, GOOD, OUT=str(tmp / "afile")))]


case("train: a negative --seeds", 2, "error: --seeds: a seed is an integer from 0 to 4294967295 (got -1)")(
    lambda w, tmp: ["train", str(w.good), "--seeds", "0,-1", "--out", str(tmp / "out")])
case("train: a --seeds NumPy cannot take", 2,
     "error: --seeds: a seed is an integer from 0 to 4294967295 (got 18446744073709551616)")(
    lambda w, tmp: ["train", str(w.good), "--seeds", str(2**64), "--out", str(tmp / "out")])
case("train: a negative seed in the spec", 2,
     "error: {tmp}/spec.yaml:11: seeds[0]: expected: input should be greater than or equal to 0 (got -2)")(
    lambda w, tmp: ["train", str(spec_file(tmp, GOOD + "seeds: [-2]\n"))])
case("train: seeds not integers", 2,
     "error: --seeds: expected comma-separated integers such as 0,1,2 (got 'a,b')")(
    lambda w, tmp: ["train", str(w.good), "--seeds", "a,b", "--out", str(tmp / "out")])
case("train: no seeds", 2, "error: --seeds: expected comma-separated integers such as 0,1,2 (got ',')")(
    lambda w, tmp: ["train", str(w.good), "--seeds", ",", "--out", str(tmp / "out")])
case("train: unknown --format", 2, "error: --format: expected one of rich, markdown, latex, csv (got 'html')")(
    lambda w, tmp: ["train", str(w.good), "--format", "html", "--out", str(tmp / "out")])
case("train: unknown table", 2,
     "error: {tmp}/spec.yaml:2: table: unknown paper table 'taan_tabel3_omniglot'; did you mean "
     "'taan_table3_omniglot'? (known: taan_table1_youtube8m, taan_table2_timing, taan_table3_omniglot, "
     "mtal_table2_related_with_relations, mtal_table3_related_without_relations, "
     "mtal_table4_unrelated_with_relations, mtal_table5_unrelated_without_relations, mtal_table6_sharing_ratio, "
     "taan_figure3_omniglot_regularizers)")(
    lambda w, tmp: ["train",
                    str(spec_file(tmp, GOOD.replace("name: good\n", "name: good\ntable: taan_tabel3_omniglot\n")))])
case("train: CUDA asked for, none present", 2,
     "error: {tmp}/spec.yaml:9: training.device: 'cuda' asked for, but this torch build sees no CUDA device (use auto "
     "or cpu)")(
    lambda w, tmp: ["train", str(spec_file(tmp, GOOD.replace("threads: 1}", "threads: 1, device: cuda}")))])
case("train: conv net too deep for the images", 2,
     "error: {tmp}/spec.yaml:5: backbone: the trunk input 1x8x8 (every task's input, after its stem) is too small "
     "for this backbone: conv2 gets 6x3x3 and its 3x3 convolution (padding 0) and 2x2 max-pool would leave 0x0 "
     "(conv1 6x3x3); give a larger backbone.input size, more padding or fewer conv layers")(
    lambda w, tmp: ["train", str(spec_file(tmp, IMAGES.replace("kind: mlp, hidden: [8]", "kind: conv")))])
case("train: a method's own backbone too deep", 2,
     "error: {tmp}/spec.yaml:6: methods[0].backbone: the trunk input 1x8x8 (every task's input, after its stem) is "
     "too small for this backbone: conv2 gets 4x2x2 and its 5x5 convolution (padding 0) and 2x2 max-pool would "
     "leave 0x0 (conv1 4x2x2); give a larger backbone.input size, more padding or fewer conv layers")(
    lambda w, tmp: ["train", str(spec_file(tmp, IMAGES.replace(
        "{name: hard_share, label: Hard-Share}",
        "{name: hard_share, label: Hard-Share, backbone: {kind: conv, channels: [4, 4], kernel_size: 5}}")))])
case("train: manifest class count edited", 2,
     "error: {tmp}/spec.yaml:2: data.path: {tmp}/toy/manifest.json: edited after prepare wrote it (its sha256 no "
     "longer matches manifest.sha256); re-run the prepare command recorded in it with --force")(
    lambda w, tmp: ["train", str(toy_spec(w, tmp, edit=set_classes(2)))])
case("train: unsealed manifest class count edited", 2,
     "error: {tmp}/spec.yaml:2: data.path: {tmp}/toy/manifest.json: tasks[0] ('T0') n_classes: the manifest says 2, "
     "task-00.h5 holds class ids up to 2; re-run the prepare command recorded in it with --force")(
    lambda w, tmp: ["train", str(toy_spec(w, tmp, sealed=False, edit=set_classes(2)))])
case("train: class name edited", 2,
     "error: {tmp}/spec.yaml:2: data.path: {tmp}/toy/manifest.json: edited after prepare wrote it (its sha256 no "
     "longer matches manifest.sha256); re-run the prepare command recorded in it with --force")(
    lambda w, tmp: ["train", str(toy_spec(w, tmp, edit=rename_class))])


@case("train: a shard damaged after prepare", 2,
      "error: {tmp}/spec.yaml:2: data.path: {tmp}/toy/task-01.h5: shard sha256 does not match the manifest (corrupt); "
      "re-run prepare with --force")
def _(w, tmp):
    spec = toy_spec(w, tmp)
    flip_byte(tmp / "toy" / "task-01.h5", 2000)
    return ["train", str(spec)]


case("train: unknown weighting", 2,
     "error: {tmp}/spec.yaml:9: methods[0].weighting.name: unknown weighting 'pcgard'; did you mean 'pcgrad'? "
     "(known: aligned_mtl, cagrad, config, dualproj, dwa, ew, fairgrad, famo, geometric_mean, graddrop, gradnorm, "
     "gradvac, imtl_g, imtl_l, mgda, nash_mtl, pcgrad, rlw, stch, upgrad, uw)")(
    lambda w, tmp: ["train", str(spec_file(tmp, GOOD.replace("label: Hard-Share\n",
                                                             "label: Hard-Share\n    weighting: pcgard\n")))])
case("train: weighting option of the wrong type", 2,
     "error: {tmp}/spec.yaml:9: methods[0].weighting.options.temperature: expected: input should be a valid number, "
     "unable to parse string as a number (got 'hot')")(
    lambda w, tmp: ["train", str(spec_file(tmp, GOOD.replace(
        "label: Hard-Share\n", "label: Hard-Share\n    weighting: {name: dwa, options: {temperature: hot}}\n")))])
case("train: gradient weighting on a method sharing nothing", 2,
     "error: {tmp}/spec.yaml:9: methods[0].weighting.name: pcgrad combines the per-task gradients of the parameters "
     "the tasks share, and stl declares none shared; use a loss weighting (uw, dwa, famo, rlw, ...: mtlbench list "
     "weightings)")(
    lambda w, tmp: ["train", str(spec_file(tmp, GOOD.replace("name: hard_share\n    label: Hard-Share\n",
                                                             "name: stl\n    label: STL\n    weighting: pcgrad\n")))])


@case("train: a record of other settings in the way", 2,
      "error: {tmp}/runs/good/Hard-Share/seed0.json: holds a run made with other settings (optimizer.lr: 0.001 -> "
      "0.002); rerun with --force to retrain over it, or give the spec another name or output.dir")
def _(w, tmp):
    runs = results_copy(w, tmp)
    return ["train", str(spec_file(tmp, GOOD + "optimizer: {lr: 0.002}\n", OUT=str(runs)))]


@case("train: a stray file where a record goes", 2,
      "error: {tmp}/runs/good/Hard-Share/seed0.json: not a readable result record (Expecting value: line 1 column "
      "1 (char 0))")
def _(w, tmp):
    runs = results_copy(w, tmp)
    (runs / "good" / "Hard-Share" / "seed0.json").write_text("<html>")
    return ["train", str(spec_file(tmp, GOOD, OUT=str(runs)))]


@case("train: check section with an unknown key", 2,
      "error: {tmp}/spec.yaml:12: check.tolerence: unknown key; did you mean 'tolerance'? (allowed: metric, split, "
      "per_task, tolerance, std_k, min_seeds, min_tolerance, timing_tolerance)")
def _(w, tmp):
    return ["train", str(spec_file(tmp, GOOD + "check:\n  tolerence: 0.1\n"))]


case("train: a run diverges (a failure while running)", 1, "error: 1 run(s) diverged: Hard-Share seed 0")(
    lambda w, tmp: ["train", str(spec_file(tmp, GOOD + "optimizer: {name: sgd, lr: 1.0e+30}\n")), "--no-progress",
                    "--format", "csv"])

# validate
case("validate: a negative seed", 2,
     "error: {tmp}/spec.yaml:11: seeds[1]: expected: input should be greater than or equal to 0 (got -1)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD + "seeds: [0, -1]\n"))])
case("validate: a seed NumPy cannot take", 2,
     "error: {tmp}/spec.yaml:11: seeds[0]: expected: input should be less than or equal to 4294967295 (got "
     "4294967296)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD + "seeds: [4294967296]\n"))])
case("validate: a negative split seed", 2,
     "error: {tmp}/spec.yaml:4: data.split_seed: expected: input should be greater than or equal to 0 (got -3)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD.replace("  dataset: synthetic_vector\n",
                                                                "  dataset: synthetic_vector\n  split_seed: -3\n")))])
case("validate: a learning rate of nan", 2,
     "error: {tmp}/spec.yaml:11: optimizer.lr: expected: input should be a finite number (got nan)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD + "optimizer: {lr: .nan}\n"))])
case("validate: an infinite multiplier", 2,
     "error: {tmp}/spec.yaml:11: optimizer.lr_mult.heads: expected: input should be a finite number (got inf)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD + "optimizer: {lr_mult: {heads: .inf}}\n"))])
case("validate: beta2 of 1", 2,
     "error: {tmp}/spec.yaml:11: optimizer.betas[1]: expected: input should be less than 1 (got 1.0)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD + "optimizer: {betas: [0.9, 1.0]}\n"))])
case("validate: a zero width", 2,
     "error: {tmp}/spec.yaml:5: backbone.hidden[1]: expected: input should be greater than or equal to 1 (got 0)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD.replace("hidden: [16]", "hidden: [16, 0]")))])
case("validate: dropout of 1", 2,
     "error: {tmp}/spec.yaml:5: backbone.dropout: expected: input should be less than 1 (got 1.0)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD.replace("hidden: [16]", "hidden: [16], dropout: 1.0")))])
case("validate: MTAL's delta infinite", 2,
     "error: {tmp}/spec.yaml:9: methods[0].params.delta: expected: input should be a finite number (got -inf)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD.replace("label: Hard-Share", "label: MTAL\n    params: "
                                                                "{delta: -.inf}").replace("hard_share", "mtal")))])
case("validate: a DMTRL rank of 0", 2,
     "error: {tmp}/spec.yaml:7: methods[0].name: dmtrl_tt: eps_or_k values must be > 0 (got 0.0)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD.replace("label: Hard-Share", "label: T\n    params: "
                                                                "{eps_or_k: 0}").replace("hard_share", "dmtrl_tt")))])
case("validate: eval_every of 0", 2,
     "error: {tmp}/spec.yaml:9: training.eval_every: expected: input should be greater than or equal to 1 (got 0)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD.replace("eval_every: 5", "eval_every: 0")))])
case("validate: a name that climbs out of the output folder", 2,
     "error: {tmp}/spec.yaml:1: name: expected: value error, a name of dots only would write outside the output "
     "folder; use letters or digits (got '..')")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD.replace("name: good", "name: ..")))])
case("validate: a name with a slash", 2,
     "error: {tmp}/spec.yaml:1: name: expected: string should match pattern '^[A-Za-z0-9_.-]+$' (got '../../etc')")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD.replace("name: good", "name: ../../etc")))])
case("validate: a label that names the parent folder", 2,
     "error: {tmp}/spec.yaml:8: methods[0].label: expected: value error, the label would name the folder '..', "
     "not a folder of its own; use letters or digits (got '..')")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD.replace("label: Hard-Share", "label: '..'")))])


@case("validate: a !!python tag (never constructed)", 2,
      "error: {tmp}/spec.yaml:11: the tag !!python/object/apply:os.system is not allowed; a spec holds plain "
      "values (mappings, lists, scalars)")
def _(w, tmp):
    tagged = GOOD + f"description: !!python/object/apply:os.system ['touch {tmp}/pwned']\n"
    return ["validate", str(spec_file(tmp, tagged))]


case("validate: tabs for indentation", 2,
     "error: {tmp}/spec.yaml:3: not valid YAML (found character '\\t' that cannot start any token; YAML indents "
     "with spaces, not tabs)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD.replace("  dataset: synthetic_vector", "\tdataset: x")))])
case("validate: an alias inside its own anchor", 2,
     "error: {tmp}/spec.yaml:11: an alias inside its own anchor (a structure that contains itself)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD + "description: &d [*d]\n"))])


@case("validate: an alias bomb (billion laughs)", 2,
      "error: {tmp}/spec.yaml:17: expands through its aliases to more than 100000 YAML nodes (a spec has a few "
      "hundred); write the repeated parts out")
def _(w, tmp):
    bomb = "lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9))
    return ["validate", str(spec_file(tmp, GOOD + "description:\n" + "".join("  " + x + "\n" for x in
                                                                          bomb.splitlines())))]


case("validate: nested too deeply", 2,
     "error: {tmp}/spec.yaml:11: nested more than 50 levels deep; a spec is a few levels of keys")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD + "description: " + "[" * 60 + "]" * 60 + "\n"))])
case("validate: nested too deeply for the parser", 2,
     "error: {tmp}/spec.yaml: nested too deeply to read; a spec is a few levels of keys")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD + "description: " + "[" * 5000 + "]" * 5000 + "\n"))])


@case("validate: a spec of several MiB", 2,
      "error: {tmp}/spec.yaml: larger than 1024 KiB; a spec is a small YAML text, refused unread")
def _(w, tmp):
    (tmp / "spec.yaml").write_text(GOOD + "# " + "x" * (3 << 20) + "\n")
    return ["validate", str(tmp / "spec.yaml")]


case("validate: unknown table", 2,
     "error: {tmp}/spec.yaml:2: table: unknown paper table 'mine' (known: taan_table1_youtube8m, taan_table2_timing, "
     "taan_table3_omniglot, "
     "mtal_table2_related_with_relations, mtal_table3_related_without_relations, "
     "mtal_table4_unrelated_with_relations, mtal_table5_unrelated_without_relations, mtal_table6_sharing_ratio, "
     "taan_figure3_omniglot_regularizers)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD.replace("name: good\n", "name: good\ntable: mine\n")))])
case("validate: empty spec", 2,
     "error: {tmp}/spec.yaml:1: the spec must be a mapping of keys (name, data, methods, ...)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, ""))])


@case("validate: binary spec", 2,
      "error: {tmp}/spec.yaml: not UTF-8 text (byte 0x89 at offset 0); save the spec as UTF-8")
def _(w, tmp):
    (tmp / "spec.yaml").write_bytes(b"\x89PNG\r\n\x1a\n")
    return ["validate", str(tmp / "spec.yaml")]


case("validate: check metric for the wrong kind of task", 2,
     "error: {tmp}/spec.yaml:12: check.metric: accuracy scores multiclass tasks; dataset 'synthetic_vector' has "
     "multilabel tasks")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD + "check:\n  metric: accuracy\n"))])
case("validate: check tolerance negative", 2,
     "error: {tmp}/spec.yaml:12: check.tolerance: expected: input should be greater than or equal to 0 (got -0.1)")(
    lambda w, tmp: ["validate", str(spec_file(tmp, GOOD + "check:\n  tolerance: -0.1\n"))])
case("validate: class name edited", 2,
     "error: {tmp}/spec.yaml:2: data.path: {tmp}/toy/manifest.json: edited after prepare wrote it (its sha256 no "
     "longer matches manifest.sha256); re-run the prepare command recorded in it with --force")(
    lambda w, tmp: ["validate", str(toy_spec(w, tmp, edit=rename_class))])
case("validate: unsealed class count without its names", 2,
     "error: {tmp}/spec.yaml:2: data.path: {tmp}/toy/manifest.json: tasks[0] ('T0') n_classes: says 4 classes but "
     "class_names lists 3; re-run the prepare command recorded in it with --force")(
    lambda w, tmp: ["validate", str(toy_spec(w, tmp, sealed=False, edit=lambda m: m["tasks"][0].update(n_classes=4)))])
case("validate: unsealed task renamed", 2,
     "error: {tmp}/spec.yaml:2: data.path: {tmp}/toy/manifest.json: tasks[2] ('T7') name: the manifest says 'T7', "
     "task-02.h5 holds task 'T2'; re-run the prepare command recorded in it with --force")(
    lambda w, tmp: ["validate", str(toy_spec(w, tmp, sealed=False, edit=rename_task))])
case("validate: unsealed split counts edited", 2,
     "error: {tmp}/spec.yaml:2: data.path: {tmp}/toy/manifest.json: tasks[0] ('T0') counts.default: the manifest says "
     "{{'train': 38, 'val': 3, 'test': 19}}, task-00.h5 holds {{'train': 39, 'val': 3, 'test': 18}}; re-run the "
     "prepare command recorded in it with --force")(
    lambda w, tmp: ["validate", str(toy_spec(w, tmp, sealed=False, edit=shift_counts))])
case("validate: unsealed input shape edited", 2,
     "error: {tmp}/spec.yaml:2: data.path: {tmp}/toy/manifest.json: tasks[0] ('T0') input_shape: the manifest says "
     "[1, 8, 9], task-00.h5 holds inputs of [1, 8, 8]; re-run the prepare command recorded in it with --force")(
    lambda w, tmp: ["validate", str(toy_spec(w, tmp, sealed=False, edit=toy_shape))])

# compare
case("compare: a metric the records do not hold", 2,
     "error: --metric map@10: the records under {w}/runs/images hold accuracy on test, not map@10")(
    lambda w, tmp: ["compare", str(w.images), "--metric", "map@10"])
case("compare: unknown metric", 2,
     "error: --metric: unknown metric 'acuracy'; did you mean 'accuracy'? (known: accuracy, map@10, gap@20, hit@1)")(
    lambda w, tmp: ["compare", str(w.images), "--metric", "acuracy"])
case("compare: unknown split", 2, "error: --split: expected test or val (got 'train')")(
    lambda w, tmp: ["compare", str(w.good), "--split", "train"])
case("compare: --results not a directory", 2, "error: --results: {tmp}/nowhere is not a directory")(
    lambda w, tmp: ["compare", str(w.good), "--results", str(tmp / "nowhere")])
case("compare: neither a spec nor a table", 2,
     "error: omniglot_table: neither a spec file nor a paper table (mtlbench list tables)")(
    lambda w, tmp: ["compare", "omniglot_table"])
case("compare: a near-miss table name", 2,
     "error: unknown paper table 'taan_table2_timin'; did you mean 'taan_table2_timing'? (known: "
     "taan_table1_youtube8m, taan_table2_timing, taan_table3_omniglot, mtal_table2_related_with_relations, "
     "mtal_table3_related_without_relations, mtal_table4_unrelated_with_relations, "
     "mtal_table5_unrelated_without_relations, mtal_table6_sharing_ratio, taan_figure3_omniglot_regularizers)")(
    lambda w, tmp: ["compare", "taan_table2_timin"])


@case("compare: a truncated record", 2,
      "error: {tmp}/runs/good/Hard-Share/seed0.json: not a readable result record (Unterminated string starting at: "
      "line 1 column 2 (char 1))")
def _(w, tmp):
    runs = results_copy(w, tmp)
    (runs / "good" / "Hard-Share" / "seed0.json").write_text('{"schema')
    return ["compare", str(w.good), "--results", str(runs)]


@case("compare: a record from a newer mtlbench", 2,
      "error: {tmp}/runs/good/Hard-Share/seed0.json: record schema 99 is newer than this mtlbench reads (2); "
      "upgrade mtlbench")
def _(w, tmp):
    runs = results_copy(w, tmp)
    record = runs / "good" / "Hard-Share" / "seed0.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "schema_version": 99}))
    return ["compare", str(w.good), "--results", str(runs)]


# timing
case("timing: unknown reference method", 2,
     "error: --vs: unknown method 'hard_shar'; did you mean 'hard_share'? (known: cross_stitch, dmtrl_laf, "
     "dmtrl_tt, dmtrl_tucker, hard_share, mmoe, mrn_full, mrn_t, mtal, mtal_r, mtda, nddr, soft_order, stl, taan)")(
    lambda w, tmp: ["timing", str(w.good), "--vs", "hard_shar", "--out", str(tmp / "out")])


@case("timing: --out is a file", 2, "error: --out: {tmp}/afile is a file; expected a directory (created if missing)")
def _(w, tmp):
    (tmp / "afile").write_text("x")
    return ["timing", str(w.good), "--out", str(tmp / "afile")]


case("timing: a bad spec", 2,
     "error: {tmp}/spec.yaml:9: training.iterations: expected: input should be greater than or equal to 1 (got 0)")(
    lambda w, tmp: ["timing", str(spec_file(tmp, GOOD.replace("iterations: 10", "iterations: 0")))])

# report
case("report: nothing there", 2, "error: {tmp}/nope does not exist (expected a result record or a folder of them)")(
    lambda w, tmp: ["report", str(tmp / "nope")])
case("report: a folder without records", 2, "error: {tmp}: no result records (seed*.json) found")(
    lambda w, tmp: ["report", str(tmp)])
case("report: unknown --matrix", 2, "error: --matrix: expected distance, cosine or both (got 'heat')")(
    lambda w, tmp: ["report", str(w.runs), "--matrix", "heat"])


@case("report: a JSON file that is not a record", 2,
      "error: {tmp}/seed0.json: not a mtlbench result record (missing spec_name, row, method and 15 more)")
def _(w, tmp):
    (tmp / "seed0.json").write_text('{"loss": 1}')
    return ["report", str(tmp / "seed0.json")]


# check
case("check: --against missing", 2,
     "error: --against: {tmp}/reference is not a directory (expected a results folder such as results/reference)")(
    lambda w, tmp: ["check", str(w.good), "--against", str(tmp / "reference")])
case("check: --against holds no records of the spec", 2,
     "error: --against: {tmp} holds no records of 'good' (expected {tmp}/good/<row>/seed<k>.json)")(
    lambda w, tmp: ["check", str(w.good), "--against", str(tmp)])
case("check: no fresh records", 2,
     "error: no fresh records of 'good' under {tmp}/good; run `mtlbench train {w}/good.yaml` first (or point "
     "--results at them)")(
    lambda w, tmp: ["check", str(w.good), "--results", str(tmp), "--against", str(w.runs)])
case("check: negative tolerance", 2, "error: --tolerance: input should be greater than or equal to 0 (got -0.1)")(
    lambda w, tmp: ["check", str(w.good), "--against", str(w.runs), "--tolerance", "-0.1"])
case("check: unknown metric", 2,
     "error: --metric: unknown metric 'map@1'; did you mean 'map@10'? (known: accuracy, map@10, gap@20, hit@1)")(
    lambda w, tmp: ["check", str(w.good), "--against", str(w.runs), "--metric", "map@1"])
case("check: a metric the records do not hold", 2,
     "error: {w}/runs/good/Hard-Share/seed0.json: holds no accuracy on test (it has: gap@20, hit@1, map@10); choose "
     "check.metric / --metric among them")(
    lambda w, tmp: ["check", str(w.good), "--against", str(w.runs), "--metric", "accuracy"])
case("check: --junit names a directory", 2,
     "error: --junit: {tmp} is a directory; expected a file name such as check.xml")(
    lambda w, tmp: ["check", str(w.good), "--against", str(w.runs), "--junit", str(tmp)])
case("check: unknown --format", 2, "error: --format: expected one of rich, markdown, latex, csv (got 'xml')")(
    lambda w, tmp: ["check", str(w.good), "--against", str(w.runs), "--format", "xml"])


@case("check: a score fell (a failure while running)", 1,
      "error: 1 check(s) failed: Hard-Share map@10 mean: {score} against the reference's {ref} (-0.1000; allowed "
      "-0.0200 (absolute))")
def _(w, tmp):
    runs = results_copy(w, tmp)
    lower_scores(runs, 0.1)
    return ["check", str(check_spec_for(w, tmp, runs)), "--against", str(w.runs), "--format", "csv"]


@case("check: a fresh run diverged", 1,
      "error: 1 check(s) failed: Hard-Share: diverged for seed(s) 0 (no score)")
def _(w, tmp):
    runs = results_copy(w, tmp)
    poison_record(runs)
    return ["check", str(check_spec_for(w, tmp, runs)), "--against", str(w.runs), "--format", "csv"]


@case("check: a method lost its records", 1, "error: 1 check(s) failed: STL: no fresh record")
def _(w, tmp):
    ref = results_copy(w, tmp)
    shutil.copytree(ref / "good" / "Hard-Share", ref / "good" / "STL")
    for path in (ref / "good" / "STL").glob("seed*.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "row": "STL", "method": "stl"}))
    spec = check_spec_for(w, tmp, w.runs).read_text().replace("methods:\n", "methods:\n  - name: stl\n    label: STL\n")
    (tmp / "good.yaml").write_text(spec)
    return ["check", str(tmp / "good.yaml"), "--against", str(ref), "--format", "csv"]


@case("check: a timing ratio grew", 1,
      "error: 1 check(s) failed: STL train time / Hard-Share: 1.60x against the reference's 1.20x (allowed up to "
      "1.50x)")
def _(w, tmp):
    ref, fresh = results_copy(w, tmp), tmp / "fresh"
    shutil.copytree(w.runs, fresh)
    timing_file(ref / "good", 1.2)
    timing_file(fresh / "good", 1.6)
    return ["check", str(w.good), "--results", str(fresh), "--against", str(ref), "--format", "csv"]


# list
case("list: --params with datasets", 2, "error: --params goes with `mtlbench list methods`")(
    lambda w, tmp: ["list", "datasets", "--params", str(w.good)])
case("list: --params spec missing", 2, "error: {tmp}/nope.yaml: cannot read the spec (No such file or directory)")(
    lambda w, tmp: ["list", "methods", "--params", str(tmp / "nope.yaml")])

# prepare
@case("prepare: a vocabulary without Vertical1 labels", 2,
      "error: {tmp}/vocabulary.csv: no label with Vertical1 = 'Arts & Entertainment' (a task of TAAN's Table 1); "
      "expected the YouTube-8M vocabulary.csv")
def _(w, tmp):
    (tmp / "vocabulary.csv").write_text("Index,TrainVideoCount,Name,Vertical1\n0,10,Car,Autos & Vehicles\n")
    return ["prepare", "youtube8m", "--src", str(tmp), "--vocabulary", str(tmp / "vocabulary.csv"), "--out",
            str(tmp / "out"), "--no-progress"]


@case("prepare: a vocabulary that is not UTF-8", 2,
      "error: {tmp}/vocabulary.csv: not a YouTube-8M vocabulary ('utf-8' codec can't decode byte 0xe9 in position "
      "45: invalid continuation byte)")
def _(w, tmp):
    vocabulary = "Index,TrainVideoCount,Name,Vertical1\n0,10,Caf\u00e9,Food\n"
    (tmp / "vocabulary.csv").write_bytes(vocabulary.encode("latin-1"))
    return ["prepare", "youtube8m", "--src", str(tmp), "--vocabulary", str(tmp / "vocabulary.csv"), "--out",
            str(tmp / "out"), "--no-progress"]


case("prepare: source folder missing", 2,
     "error: {tmp}/raw does not exist (expected the Chars74K folder with hnd_64x64.npz and fnt_28x28.npz)")(
    lambda w, tmp: ["prepare", "chars74k", "--src", str(tmp / "raw"), "--out", str(tmp / "out"), "--no-progress"])
case("prepare: too few letters", 2, "error: --letters needs 10 distinct letters a-z (got 'abc')")(
    lambda w, tmp: ["prepare", "chars74k", "--src", str(tmp), "--letters", "abc", "--out", str(tmp / "out"),
                    "--no-progress"])
case("prepare: unknown COIL variant", 2, "error: --variant must be processed or unprocessed (got 'raw')")(
    lambda w, tmp: ["prepare", "coil20", "--src", str(tmp), "--variant", "raw", "--out", str(tmp / "out"),
                    "--no-progress"])
case("prepare: a source folder of the wrong shape", 2,
     "error: {w}/source: no task folder Art (found: Shapes)")(
    lambda w, tmp: ["prepare", "image-folder", "--src", str(w.source), "--task", "Art", "--out", str(tmp / "out"),
                    "--no-progress"])
case("prepare: bad --size", 2, "error: --size must be N or HxW with positive integers (got '0x8')")(
    lambda w, tmp: ["prepare", "image-folder", "--src", str(w.source), "--size", "0x8", "--out", str(tmp / "out"),
                    "--no-progress"])
case("prepare: split fractions outside (0, 1)", 2, "error: split fractions must lie in (0, 1): test 1.5, val 0.1")(
    lambda w, tmp: ["prepare", "image-folder", "--src", str(w.source), "--test-fraction", "1.5", "--out",
                    str(tmp / "out"), "--no-progress"])


@case("prepare: --out is a file", 2, "error: {tmp}/afile exists and is not a directory")
def _(w, tmp):
    (tmp / "afile").write_text("x")
    return ["prepare", "image-folder", "--src", str(w.source), "--out", str(tmp / "afile"), "--no-progress"]


@case("prepare: --out holds other files", 2,
      "error: {tmp}/mine exists, is not empty and holds no manifest.json; choose another --out (mtlbench only "
      "replaces directories it wrote)")
def _(w, tmp):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("x")
    return ["prepare", "image-folder", "--src", str(w.source), "--out", str(tmp / "mine"), "--no-progress"]


@case("prepare: --out already prepared", 2,
      "error: {tmp}/toy already holds a prepared dataset; pass --force to rebuild it")
def _(w, tmp):
    return ["prepare", "image-folder", "--src", str(w.source), "--out", str(toy_copy(w, tmp)), "--no-progress"]


# prepare verify
case("verify: nothing there", 2, "error: {tmp}/nope does not exist")(
    lambda w, tmp: ["prepare", "verify", str(tmp / "nope")])
case("verify: a file", 2, "error: {w}/good.yaml is not a directory (expected a prepared dataset directory)")(
    lambda w, tmp: ["prepare", "verify", str(w.good)])
case("verify: no manifest", 2, "error: {tmp} has no manifest.json: not a complete prepared dataset")(
    lambda w, tmp: ["prepare", "verify", str(tmp)])


@case("verify: manifest not JSON", 2,
      "error: {tmp}/toy/manifest.json: unreadable manifest (Expecting value: line 1 column 1 (char 0))")
def _(w, tmp):
    toy = toy_copy(w, tmp)
    (toy / "manifest.json").write_text("tasks: 3")
    return ["prepare", "verify", str(toy)]


@case("verify: a corrupt shard", 2,
      "error: {tmp}/toy/task-01.h5: shard sha256 does not match the manifest (corrupt); re-run prepare with --force")
def _(w, tmp):
    toy = toy_copy(w, tmp)
    flip_byte(toy / "task-01.h5", 2000)
    return ["prepare", "verify", str(toy)]


@case("verify: a missing shard", 2,
      "error: {tmp}/toy/task-02.h5: shard listed in the manifest is missing; re-run prepare with --force")
def _(w, tmp):
    toy = toy_copy(w, tmp)
    (toy / "task-02.h5").unlink()
    return ["prepare", "verify", str(toy)]


case("verify: a class name edited", 2,
     "error: {tmp}/toy/manifest.json: edited after prepare wrote it (its sha256 no longer matches manifest.sha256); "
     "re-run the prepare command recorded in it with --force")(
    lambda w, tmp: ["prepare", "verify", str(toy_copy(w, tmp, edit=rename_class))])
case("verify: unsealed class count edited", 2,
     "error: {tmp}/toy/manifest.json: tasks[0] ('T0') n_classes: the manifest says 2, task-00.h5 holds class ids "
     "up to 2; re-run the prepare command recorded in it with --force")(
    lambda w, tmp: ["prepare", "verify", str(toy_copy(w, tmp, sealed=False, edit=set_classes(2)))])


# -- the tests ---------------------------------------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, int]:
    """Every file and its size, but the memory of verified shard checksums: a cache that loading may fill
    before a later check refuses (its entries stay true; it holds no output of the command)."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".mtlbench-verified.json"}


@pytest.mark.parametrize("name", list(CASES))
def test_catalogue(name, world, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    build, code, line = CASES[name]
    args = build(world, tmp_path)
    before = snapshot(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    expected = line.format(tmp=tmp_path, w=world.root, **fresh_scores(world, tmp_path, line))
    errors = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert errors == [expected], result.output
    if code == 2:  # refused: one line, nothing else printed, nothing written
        assert result.output == expected + "\n"
        assert snapshot(tmp_path) == before


def fresh_scores(world: World, tmp: Path, line: str) -> dict[str, str]:
    """The scores the 'a score fell' case prints, read from the records it compared."""
    if "{score}" not in line:
        return {}
    ref = json.loads((world.runs / "good" / "Hard-Share" / "seed0.json").read_text())["metrics"]["test"]["map@10"]
    return {"ref": f"{ref['mean']:.4f}", "score": f"{ref['mean'] - 0.1:.4f}"}


USAGE = {  # click's own usage errors, worded by click: one line, exit 2 before any work
    "train without a spec": (["train"], "Missing argument 'SPEC.yaml'"),
    "list of an unknown kind": (["list", "widgets"], "Invalid value for 'methods|datasets|tables|weightings'"),
    "timing with --iterations 0": (["timing", "x.yaml", "--iterations", "0"], "Invalid value for '--iterations'"),
    "check without --against": (["check", "x.yaml"], "Missing option '--against'"),
    "compare with an unknown option": (["compare", "x.yaml", "--colour"], "No such option: --colour"),
    "prepare verify without a folder": (["prepare", "verify"], "Missing argument 'path'"),
    "prepare of an unknown source": (["prepare", "mnist"], "No such command 'mnist'"),
}


@pytest.mark.parametrize("name", list(USAGE))
def test_usage_errors_are_one_line_and_exit_2(name):
    args, words = USAGE[name]
    result = runner.invoke(app, args, prog_name="mtlbench")
    command = "mtlbench " + ("prepare verify" if args[:2] == ["prepare", "verify"] else args[0])
    assert result.exit_code == 2, result.output
    [line] = result.output.splitlines()
    assert line.startswith(f"error: {command}: {words}") and line.endswith(f"(see {command} --help)"), line


def test_no_command_prints_the_help():
    result = runner.invoke(app, [], prog_name="mtlbench")
    assert result.exit_code == 2 and "Usage: mtlbench" in result.output and "train" in result.output
    assert "error" not in result.output


def test_the_catalogue_covers_every_command():
    commands = {name.split(":")[0] for name in CASES}
    assert commands == {"train", "validate", "compare", "timing", "report", "check", "list", "prepare", "verify"}
    assert len(CASES) >= 40


def test_a_full_disk_while_training_is_one_line_and_exit_1(world, tmp_path, monkeypatch):
    """A failure of the machine while working (here: no space left when a record is renamed into place)."""
    import errno
    import os

    import mtlbench.io as io_mod
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        real_replace(src, dst)
    monkeypatch.setattr(io_mod.os, "replace", replace)
    result = runner.invoke(app, ["train", str(world.good), "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines()[-1] == f"error: {tmp_path}/good/Hard-Share/seed0.json: No space left on device"


def test_report_without_matplotlib_refuses_before_printing(world, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = runner.invoke(app, ["report", str(world.runs)])
    assert result.exit_code == 2
    assert result.output == ("error: --plots: heat maps need matplotlib: pip install 'mtlbench[plot]' (in a "
                             "checkout: pip install -e '.[plot]'), or pass --no-plots\n")
    assert runner.invoke(app, ["report", str(world.runs), "--no-plots"]).exit_code == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_index_beyond_the_devices_is_refused(tmp_path):
    spec = spec_file(tmp_path, GOOD.replace("threads: 1}", "threads: 1, device: 'cuda:99'}"))
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert result.output == (f"error: {spec}:9: training.device: 'cuda:99' asked for, but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)\n")


@pytest.mark.parametrize("command", ["validate", "train"])
def test_a_fused_kernel_without_conv_blocks_is_refused(tmp_path, command):
    spec = spec_file(tmp_path, GOOD.replace("threads: 1}", "threads: 1, kernel: fused}"))
    result = runner.invoke(app, [command, str(spec)])
    assert result.exit_code == 2
    assert result.output == (f"error: {spec}:9: training.kernel: fused runs conv blocks, and every trunk of this "
                             f"spec is mlp; use auto or eager\n")


def test_a_fused_kernel_under_mixed_precision_is_refused(tmp_path):
    text = IMAGES.replace("{kind: mlp, hidden: [8]}", "{channels: [4], dense: [8]}")
    spec = spec_file(tmp_path, text.replace("threads: 1}", "threads: 1, kernel: fused, amp: bf16}"))
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert result.output.endswith("training.kernel: fused runs float32 and float64 blocks, not amp: bf16; use "
                                  "auto (eager under amp) or eager\n"), result.output
