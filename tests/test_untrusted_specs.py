"""Specs are untrusted input. Generated specs (a good spec with fields replaced by arbitrary values, keys added,
its text cut or bytes flipped) go through `mtlbench validate`: each either validates -- and then plans its
runs, every record inside the output folder -- or is refused with exit 2 and `error:` lines naming the file;
never a traceback, never a hang. The committed specs and records stay valid under the schema's ranges.

The default suite runs a bounded number of examples (a few seconds, derandomized: the same examples on every
run); the slow-marked versions run many more.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from typer.testing import CliRunner

from mtlbench.cli import app
from tests.conftest import REPO

runner = CliRunner()
# hypothesis's caches go to the temporary folder, not the checkout (a test run writes nothing there)
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "mtlbench-hypothesis"))

GOOD = {
    "name": "good",
    "data": {"dataset": "synthetic_vector",
             "options": {"n_groups": 1, "tasks_per_group": 2, "outlier": False, "input_dim": 16,
                         "n_examples": 300, "n_classes": 6}},
    "backbone": {"hidden": [16]},
    "methods": [{"name": "hard_share", "label": "Hard-Share"}, {"name": "taan", "label": "TAAN",
                                                                "params": {"M": 4, "reg": "dis"}}],
    "optimizer": {"name": "adam", "lr": 0.001, "betas": [0.9, 0.98], "lr_mult": {"heads": 2.0}},
    "training": {"iterations": 10, "batch_per_task": 16, "eval_every": 5, "patience": 2, "threads": 1},
    "seeds": [0, 1],
    "output": {"dir": "OUT"},
}

# values a careless or hostile spec may hold; sizes are kept small so a spec that validates stays cheap to plan
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-3, 40), st.sampled_from([2**32 - 1, 2**32, 2**63, -2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1.0, 0.999, 1e-300, 1e300]),
    st.text(max_size=12), st.sampled_from(["..", ".", "../x", "/etc", "a/b", "", "auto", "cpu", "cuda:9",
                                           "taan", "stl", "{seed}", "\t", "~", "*"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=8)


def paths(node, here=()):
    """Every path into a nested dict / list."""
    yield here
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*here, i))


PATHS = [p for p in paths(GOOD) if p]
KEYS = sorted({str(p[-1]) for p in PATHS if isinstance(p[-1], str)})


def with_value(spec: dict, path: tuple, value) -> dict:
    spec = json.loads(json.dumps(spec))
    dig(spec, path[:-1])[path[-1]] = value
    return spec


@st.composite
def edited_specs(draw) -> dict:
    """GOOD with a few fields replaced by arbitrary values and maybe a key added somewhere."""
    spec = GOOD
    for _ in range(draw(st.integers(1, 3))):
        spec = with_value(spec, draw(st.sampled_from([p for p in paths(spec) if p])), draw(values))
    if draw(st.booleans()):
        at = draw(st.sampled_from([p for p in paths(spec) if isinstance(dig(spec, p), dict)]))
        spec = with_value(spec, (*at, draw(st.sampled_from(KEYS) | st.text(max_size=6))), draw(values))
    return spec


def dig(spec, path):
    node = spec
    for part in path:
        node = node[part]
    return node


@st.composite
def damaged_texts(draw) -> bytes:
    """GOOD's YAML text cut short, with bytes flipped, or with lines swapped and re-indented."""
    text = yaml.safe_dump(GOOD, sort_keys=False).encode()
    how = draw(st.sampled_from(["cut", "flip", "lines", "insert"]))
    if how == "cut":
        return text[:draw(st.integers(0, len(text)))]
    if how == "flip":
        data = bytearray(text)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    lines = text.split(b"\n")
    if how == "lines":
        i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], b" " * draw(st.integers(0, 3)) + lines[i]
        return b"\n".join(lines)
    i = draw(st.integers(0, len(lines)))
    lines.insert(i, draw(st.sampled_from([b"\t", b"&a", b"*a", b"<<: *a", b"? [1]", b"- x", b"!!python/none",
                                          b"!!binary AAA", b"---", b"...", b"%YAML 1.1", b"{", b"]", b"'"])))
    return b"\n".join(lines)


def validate_outcome(folder: Path, text: bytes) -> None:
    """The property: exit 0 and a plan of runs inside the output folder, or exit 2 with error lines only."""
    out = folder / "out"
    spec = folder / "spec.yaml"
    spec.write_bytes(text.replace(b"OUT", str(out).encode()))
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert_plan_inside(spec, out)
        return
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines and all(line.startswith(f"error: {spec}") for line in lines), result.output
    assert not out.exists()  # refused: nothing written


def assert_plan_inside(spec: Path, out: Path) -> None:
    from mtlbench.config.loader import load_spec
    from mtlbench.training.run_plan import plan_cells
    resolved = load_spec(spec)
    root = Path(resolved.spec.output.dir).resolve()
    for cell in plan_cells(resolved, resolved.spec.seeds, resolved.spec.output.dir):
        assert root in cell.record_path.resolve().parents, cell.record_path


def as_text(spec: dict) -> bytes:
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True).encode()


QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
FEW = settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=QUIET)
MANY = settings(max_examples=1500, deadline=None, database=None, suppress_health_check=QUIET)


@FEW
@given(spec=edited_specs())
def test_generated_specs_validate_or_are_refused_in_one_line_each(spec, tmp_path_factory):
    validate_outcome(tmp_path_factory.mktemp("gen"), as_text(spec))


@FEW
@given(text=damaged_texts())
def test_damaged_spec_texts_validate_or_are_refused_in_one_line_each(text, tmp_path_factory):
    validate_outcome(tmp_path_factory.mktemp("txt"), text)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@MANY
@given(spec=edited_specs())
def test_many_generated_specs(spec, tmp_path_factory):
    validate_outcome(tmp_path_factory.mktemp("gen"), as_text(spec))


@pytest.mark.slow
@pytest.mark.timeout(1800)
@MANY
@given(text=damaged_texts())
def test_many_damaged_spec_texts(text, tmp_path_factory):
    validate_outcome(tmp_path_factory.mktemp("txt"), text)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(label=st.text(max_size=8) | st.sampled_from(["..", ".", "../..", "/", "a/../..", "..\\..", "~"]))
def test_no_label_reaches_outside_the_spec_folder(label, tmp_path_factory):
    """A label either is refused or names a folder of its own inside <out>/<spec name>/ (slug keeps letters,
    digits and _.+-, so only a label of dots could climb)."""
    from pydantic import ValidationError

    from mtlbench.config.schema import MethodEntry
    from mtlbench.results import record_path
    try:
        MethodEntry(name="stl", label=label)
    except ValidationError:
        return
    out = tmp_path_factory.getbasetemp() / "out"
    path = record_path(out, "spec", label or "stl", 0).resolve()
    assert path.parent.parent == (out / "spec").resolve() and path.parent.name not in (".", "..")


def test_a_json_spec_indented_with_tabs_reads_as_its_yaml(tmp_path):
    """JSON is YAML but for tabs between tokens (YAML refuses them): such a file validates as the same spec,
    and its problems name YAML's line numbers."""
    spec = with_value(GOOD, ("output", "dir"), str(tmp_path / "out"))
    (tmp_path / "spec.json").write_text(json.dumps(spec, indent="\t"))
    assert runner.invoke(app, ["validate", str(tmp_path / "spec.json")]).exit_code == 0
    bad = with_value(spec, ("training", "iterations"), 0)
    (tmp_path / "bad.json").write_text(json.dumps(bad, indent="\t"))
    result = runner.invoke(app, ["validate", str(tmp_path / "bad.json")])
    line = 1 + json.dumps(bad, indent="\t").splitlines().index('\t\t"iterations": 0,')
    assert result.exit_code == 2
    assert result.output == (f"error: {tmp_path}/bad.json:{line}: training.iterations: expected: input should be "
                             "greater than or equal to 1 (got 0)\n")


def test_a_python_tag_is_never_constructed(tmp_path):
    """Not even in a field that is never read: the safe loader has no constructor for it."""
    marker = tmp_path / "constructed"
    spec = tmp_path / "spec.yaml"
    for tag in ("!!python/object/apply:os.system", "!!python/object/new:os.system", "!!python/name:os.system"):
        spec.write_text(as_text(with_value(GOOD, ("output", "dir"), str(tmp_path))).decode()
                        + f"description: {tag} ['touch {marker}']\n")
        result = runner.invoke(app, ["validate", str(spec)])
        assert result.exit_code == 2 and "is not allowed" in result.output, result.output
    assert not marker.exists()


def test_an_alias_bomb_is_measured_not_expanded(tmp_path):
    """A "billion laughs" document of ~600 bytes (10**9 nodes expanded) is refused by counting each shared
    node once; nine levels of nine aliases expanded would not fit in memory."""
    from mtlbench.config.loader import read_yaml
    from mtlbench.errors import SpecError
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
    (tmp_path / "bomb.yaml").write_text(bomb)
    with pytest.raises(SpecError, match="expands through its aliases to more than 100000 YAML nodes"):
        read_yaml(tmp_path / "bomb.yaml")
    # aliases within the limit are YAML as usual
    (tmp_path / "ok.yaml").write_text("base: &b {lr: 0.1}\nuse: *b\n")
    assert read_yaml(tmp_path / "ok.yaml")[0] == {"base": {"lr": 0.1}, "use": {"lr": 0.1}}


SPECS = sorted((REPO / "benchmarks").glob("*.yaml"))
RECORDS = sorted((REPO / "results" / "reference").rglob("seed*.json"))


def test_the_committed_specs_fit_the_limits():
    from mtlbench.config.loader import MAX_DEPTH, MAX_NODES, MAX_SPEC_BYTES

    def size(node, depth=0):
        kids = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
        sizes = [size(k, depth + 1) for k in kids]
        return 1 + sum(s for s, _ in sizes), max([depth, *(d for _, d in sizes)])
    for path in SPECS:
        nodes, depth = size(yaml.safe_load(path.read_text()))
        assert path.stat().st_size < MAX_SPEC_BYTES / 100 and nodes < MAX_NODES / 100 and depth < MAX_DEPTH / 4


def test_committed_records_keep_their_identity_under_the_ranges():
    """Adding ranges to the schema changed no committed record: each stored spec still validates (the method's
    params and the dataset's options too) and gives the identity the record was written with."""
    from mtlbench.registry import DATASETS, METHODS
    from mtlbench.results import identity_hash, read_record
    from mtlbench.training.run_plan import stored_key
    assert RECORDS
    for path in RECORDS:
        record = read_record(path)
        key = stored_key(record)
        assert key is not None, path
        assert record.identity is None or identity_hash(key) == record.identity, path  # None: schema 1
        entry = next(m for m in record.spec["methods"] if (m.get("label") or m["name"]) == record.row)
        METHODS.get(entry["name"]).Params.model_validate(entry.get("params") or {})
        DATASETS.get(record.spec["data"]["dataset"]).Options.model_validate(record.spec["data"]["options"])


def test_seed_range_is_what_every_seeded_library_accepts():
    import random

    import numpy as np
    import torch

    from mtlbench.seeds import SEED_MAX
    random.seed(SEED_MAX)
    np.random.seed(SEED_MAX)
    torch.manual_seed(SEED_MAX)
    with pytest.raises(ValueError):
        np.random.seed(SEED_MAX + 1)
    assert math.log2(SEED_MAX + 1) == 32
