"""One bibliography: every method and loss weighting of the package cites an entry of
mtlbench/config/bibliography.yaml, the entries are complete, and `mtlbench list methods|weightings` shows them.
The TAAN entry is pinned: it was wrong in code once."""
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.bibliography import bibliography, cited_by, reference
from mtlbench.registry import METHODS, WEIGHTINGS, UnknownNameError

PACKAGE = Path(__file__).resolve().parents[1] / "mtlbench"


def package_methods():
    return [(name, cls) for name, cls in METHODS if cls.__module__.startswith("mtlbench.")]


@pytest.mark.parametrize("name", [name for name, _ in package_methods()])
def test_every_method_cites_an_entry(name):
    ref = cited_by(METHODS.get(name))
    assert ref is not None, f"{name}: set cite = '<key of mtlbench/config/bibliography.yaml>'"
    assert ref.authors and ref.title and ref.year >= 1990


def test_taan_is_liu_et_al_aaai_2020():
    ref = reference("liu2020")
    assert ref.authors == ["Yingru Liu", "Xuewen Yang", "Dongliang Xie", "Xin Wang", "Li Shen", "Haozhi Huang",
                           "Niranjan Balasubramanian"]
    assert ref.title == ("Adaptive Activation Network and Functional Regularization for Efficient and Flexible "
                         "Deep Multi-Task Learning")
    assert (ref.short_venue, ref.year, ref.arxiv) == ("AAAI", 2020, "1911.08065")
    assert cited_by(METHODS.get("taan")) == ref
    assert ref.short() == "Liu et al., AAAI 2020"


def test_the_papers_of_the_tables():
    assert cited_by(METHODS.get("mtal")) == cited_by(METHODS.get("mtal_r")) == reference("feng2021")
    assert reference("feng2021").authors == ["Quan Feng", "Songcan Chen"]
    expected = {"hard_share": ("Caruana", 1997), "soft_order": ("Meyerson & Miikkulainen", 2018),
                "mrn_t": ("Long et al.", 2017), "dmtrl_tucker": ("Yang & Hospedales", 2017),
                "cross_stitch": ("Misra et al.", 2016), "nddr": ("Gao et al.", 2019), "mmoe": ("Ma et al.", 2018),
                "mtda": ("Zhang & Yeung", 2011)}
    for name, (who, year) in expected.items():
        ref = cited_by(METHODS.get(name))
        assert ref.short().startswith(who + ",") and ref.year == year, (name, ref.short())


def test_full_entry_has_links_and_unknown_keys_are_refused():
    full = reference("liu2020").full()
    assert full.startswith("Yingru Liu, Xuewen Yang") and "https://arxiv.org/abs/1911.08065" in full
    assert "https://doi.org/10.1609/aaai.v34i04.5930" in full
    with pytest.raises(UnknownNameError, match="did you mean 'liu2020'"):
        reference("liu2002")


def test_no_second_copy_of_a_citation_in_code():
    """Code names papers by key; a paper's title appears only in the bibliography."""
    titles = {ref.title for ref in bibliography().values()}
    for path in PACKAGE.rglob("*.py"):
        text = " ".join(path.read_text(encoding="utf-8").split())
        for title in titles:
            assert title not in text, f"{path.relative_to(PACKAGE.parent)} repeats {title!r}: name its key"


def test_bibliography_is_package_data():
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    section = pyproject.split("[tool.setuptools.package-data]")[1].split("\n[")[0]
    assert '"config/bibliography.yaml"' in section, "pyproject.toml must ship the bibliography as package data"


def test_list_methods_shows_the_short_citation():
    out = CliRunner().invoke(app, ["list", "methods"], env={"COLUMNS": "200"}).output
    line = next(row for row in out.splitlines() if " taan " in row)
    assert "Liu et al., AAAI 2020" in line


@pytest.mark.parametrize("name", [n for n, cls in WEIGHTINGS if cls.__module__.startswith("mtlbench.") and n != "ew"])
def test_every_weighting_cites_an_entry(name):
    ref = cited_by(WEIGHTINGS.get(name))
    assert ref is not None, f"{name}: set cite = '<key of mtlbench/config/bibliography.yaml>'"
    assert ref.authors and ref.title and ref.year >= 2017


def test_list_weightings_shows_the_short_citation():
    out = CliRunner().invoke(app, ["list", "weightings"], env={"COLUMNS": "200"}).output
    assert "Yu et al., NeurIPS 2020" in next(row for row in out.splitlines() if " pcgrad " in row)
    assert "Kendall et al., CVPR 2018" in next(row for row in out.splitlines() if " uw " in row)
