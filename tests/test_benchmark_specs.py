"""Every spec under benchmarks/ is valid (keys, types, method names and options; data checked where present), and
every row of a spec that names a paper table lines up with the paper's row of that name -- a row of ours the
paper does not have (a baseline it did not run) is fine, a near-miss label (a typo) is not: its numbers would be
printed apart from the paper's."""
import difflib
import re
from pathlib import Path

import pytest

from mtlbench.config.loader import load_spec
from mtlbench.config.paper_tables import paper_tables

SPECS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.yaml"))


def near_misses(rows: list[str], paper_rows: list[str]) -> list[str]:
    """'ours -> paper' for each of our rows that is not a paper row but looks like one."""
    out = []
    for row in rows:
        close = difflib.get_close_matches(row, paper_rows, n=1, cutoff=0.75)
        if row not in paper_rows and close:
            out.append(f"{row} -> {close[0]}")
    return out


def row_labels(paper: dict) -> list[str]:
    """The labels our rows may carry: the paper's rows, and for a grid (a sweep table) each row + column suffix."""
    rows = list(paper["rows"])
    if paper.get("grid"):
        from mtlbench.report.grid import our_label
        rows += [our_label(r, paper["grid"], c) for r in paper["rows"] for c in paper["grid"]["columns"]]
    return rows


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_benchmark_spec_is_valid(path):
    resolved = load_spec(path, check_data=False)
    spec = resolved.spec
    if not resolved.dataset.needs_path:  # embedded data is always there: check the backbone's shapes on it too
        load_spec(path)
    if spec.table:
        paper_rows = row_labels(paper_tables()[spec.table])
        assert not near_misses([m.shown_as for m in spec.methods], paper_rows), f"rows of {path.name} mislabelled"


def test_near_misses_catch_a_typo_but_not_an_extra_baseline():
    paper = list(paper_tables()["taan_table3_omniglot"]["rows"])
    assert near_misses(["DMTRL_Tucker", "TAAN", "Hard-Share", "Soft Order"], paper) == \
        ["DMTRL_Tucker -> DMTRL-Tucker", "Soft Order -> Soft-Order"]


def test_a_grid_table_accepts_its_cells_labels_and_catches_a_typo():
    paper = row_labels(paper_tables()["taan_figure3_omniglot_regularizers"])
    assert near_misses(["TAAN+L_dis c=0.3", "TAAN", "TAAN+L_dis c=.3"], paper) == [
        "TAAN+L_dis c=.3 -> TAAN+L_dis c=0.3"]


def header(path: Path) -> str:
    """The comment block above a spec's first key: what a reader sees first (how to run it, what it costs)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_benchmark_spec_header_has_no_unfilled_placeholder(path):
    # A header line that is one upper-case word ("#   COST") is a template slot someone forgot to fill in.
    slots = re.findall(r"^#\s+([A-Z_]{3,})\s*$", header(path), re.M)
    assert not slots, f"{path.name}: unfilled header placeholder(s) {slots}"


PAPER_PROTOCOL_SPECS = ["taan_table1_youtube8m", "taan_table3_omniglot", "taan_table3_omniglot_taan_code",
                        "taan_table3_omniglot_taan_code_val", "taan_table3_omniglot_cpu5"]


@pytest.mark.parametrize("name", PAPER_PROTOCOL_SPECS)
def test_paper_protocol_spec_states_its_measured_cost(name):
    # Hours-long specs say, before anyone starts one, what a seed costs here: a per-step figure and the total.
    text = header(Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.yaml")
    assert re.search(r"s/step|per step", text), f"{name}.yaml: no per-step cost in the header"
    assert re.search(r"\d+(\.\d+)? (h|min)\b.*seeds?|per seed|/seed", text), f"{name}.yaml: no projected total"


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_dmtrl_rows_factorise_the_stl_weights_of_their_own_seed(path):
    # A fixed seed0.pt would make every seed of a DMTRL row start from STL seed 0 (and, on a cluster, wait for
    # that one job): the seeds would not be independent replicates.
    spec = load_spec(path, check_data=False).spec
    fixed = [m.row for m in spec.methods
             if m.name.startswith("dmtrl") and (m.params or {}).get("stl_checkpoint")
             and "{seed}" not in m.params["stl_checkpoint"]]
    assert not fixed, f"{path.name}: stl_checkpoint without {{seed}} in {fixed}"
