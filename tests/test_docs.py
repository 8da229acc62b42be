"""docs/ cannot drift from the code: its generated blocks equal what `python -m mtlbench.docs` writes now, the
pages stand alone (no link into the project's private notes, no dead relative link), and the examples of
docs/adding.md train as written."""
import re
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtlbench import docs
from mtlbench.cli import app
from mtlbench.config.schema import RunSpec
from mtlbench.registry import DATASETS, METHODS

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "docs").glob("*.md"))


def test_generated_blocks_are_current():
    stale = [str(p.relative_to(REPO)) for p in docs.stale()]
    assert not stale, f"{stale} stale: run `python -m mtlbench.docs` and commit the pages"


def test_check_mode_names_a_stale_page(tmp_path, monkeypatch, capsys):
    page = tmp_path / "specs.md"
    page.write_text("# Specs\n\n<!-- generated:spec-keys -->\n| old | table |\n<!-- /generated:spec-keys -->\n")
    monkeypatch.setattr(docs, "DOCS", tmp_path)
    assert docs.main(["--check"]) == 1 and "specs.md is stale" in capsys.readouterr().out
    assert docs.main([]) == 0 and "`training.sync_batchnorm`" in page.read_text()
    assert docs.main(["--check"]) == 0
    assert docs.main(["--bogus"]) == 2


def test_unknown_block_is_an_error():
    with pytest.raises(ValueError, match="unknown generated block 'nope'"):
        docs.render("<!-- generated:nope -->\n<!-- /generated:nope -->\n")


def spec_keys(model, prefix=""):
    """Every dotted key of the schema, found by walking the models independently of the generator."""
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        yield key
        sub, is_list = docs.section_model(field.annotation)
        if sub is not None and not (prefix.startswith("methods[]") and name == "backbone"):
            yield from spec_keys(sub, key + ("[]." if is_list else "."))


def test_spec_reference_lists_every_key_with_its_default():
    text = (REPO / "docs" / "specs.md").read_text()
    for key in spec_keys(RunSpec):
        assert f"| `{key}` |" in text, f"docs/specs.md lacks {key}"
    assert "| `training.iterations` | int | `1000` |" in text
    assert "| `optimizer.name` | adam \\| adamw \\| sgd |" in text


def test_methods_page_has_every_method_its_paper_and_options():
    text = (REPO / "docs" / "methods.md").read_text()
    for name, cls in METHODS:
        if not cls.__module__.startswith("mtlbench."):
            continue
        assert f"`{name}`" in text
        for option, field in cls.Params.model_fields.items():
            assert f"| `{field.alias or option}` |" in text, (name, option)
    assert "Yingru Liu, Xuewen Yang, Dongliang Xie" in text and "| `reg_coef` | float | `0.1` |" in text
    assert all(f"`{name}`" in (REPO / "docs" / "data.md").read_text() for name, _ in DATASETS)


PRIVATE = ("shared/spec", "protocol.md", "taan.md", "baselines.md", "mtal.md", "architecture.md", "/work/")


@pytest.mark.parametrize("page", [*PAGES, REPO / "README.md"], ids=lambda p: p.name)
def test_pages_stand_alone(page):
    text = page.read_text()
    for word in PRIVATE:
        assert word not in text, f"{page.name} points at {word!r}: the docs must stand alone"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def python_blocks(page: Path, heading: str) -> list[str]:
    section = page.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def load_example(code: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(code, f"docs/adding.md ({name})", "exec"), module.__dict__)
    return module


def test_adding_examples_train_as_written(tmp_path, monkeypatch):
    page = REPO / "docs" / "adding.md"
    (method_code,), (dataset_code,) = python_blocks(page, "Adding a method"), python_blocks(page, "Adding a dataset")
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))  # the examples leave no trace behind
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))
    for name in ("docs_example_method", "docs_example_dataset"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    load_example(method_code, "docs_example_method")
    load_example(dataset_code, "docs_example_dataset")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: adding\ndata: {dataset: my_dataset, options: {n_tasks: 2}}\nbackbone: {hidden: [16]}\n"
                    "methods: [{name: my_method}]\ntraining: {iterations: 20, eval_every: 10, threads: 1}\n"
                    f"output: {{dir: {tmp_path / 'runs'}}}\n")
    result = CliRunner().invoke(app, ["train", str(spec)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "adding" / "my_method" / "seed0.json").exists()


def test_every_page_is_in_the_docs_index():
    docs = Path(__file__).resolve().parents[1] / "docs"
    index = (docs / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in sorted(docs.glob("*.md")) if p.name != "README.md" and f"]({p.name})" not in index]
    assert not missing, f"docs/README.md does not list {missing}"
