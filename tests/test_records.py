"""The typed result record: written and read in one place, strict about what a record is, and able to read the
records older mtlbench versions wrote (the committed references)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.config.loader import load_spec
from mtlbench.errors import MTLBenchError
from mtlbench.results import load_records, read_record, write_record
from mtlbench.training.run import run_spec
from tests.conftest import REPO, TINY_SPEC

runner = CliRunner()
REFERENCE = REPO / "results" / "reference"


def test_the_committed_reference_records_read_as_schema_1():
    records = load_records(REFERENCE)
    old = [r for r in records if r.schema_version == 1]  # the TAAN tables' references predate schema 2
    assert len(old) >= 14
    for r in old:
        assert (r.status, r.trained_by, r.identity) == ("ok", "steps", None), r.path
        assert r.written_by == "0.1.0+t1" and r.metrics["test"][r.primary_metric].mean > 0
    for r in records:  # later references (MTDA's) carry their identity
        assert r.schema_version == 1 or (r.schema_version == 2 and r.identity and r.status == "ok"), r.path


def test_the_reference_table_renders_from_old_and_new_records():
    """Table 1's reference mixes schema-1 records (STL ... MRN_full, written before the typed record) with
    schema-2 ones (the TAAN and DMTRL rows): one table, every row's seeds."""
    result = runner.invoke(app, ["compare", "benchmarks/taan_table1_youtube8m_cpu.yaml", "--results",
                                 str(REFERENCE), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "\nSTL,ours (n=5),7.74M,0.812 ± 0.007,0.851 ± 0.007,0.856 ± 0.002," in result.output
    assert "\nTAAN+L_dis,ours (n=5),1.34M,0.770 ± 0.016,0.830 ± 0.005,0.839 ± 0.003," in result.output


def test_a_record_round_trips(write_spec, tmp_path):
    spec = write_spec(TINY_SPEC.replace("{out}", str(tmp_path / "runs")).replace("iterations: 300", "iterations: 20"))
    record = run_spec(load_spec(spec), seeds=[0])[0]
    again = read_record(record.path)
    assert again == record and again.schema_version == 2 and len(again.identity) == 16
    copy = tmp_path / "copy" / "seed0.json"
    write_record(copy, again)
    assert copy.read_text() == record.path.read_text()
    assert "pooled" not in json.loads(copy.read_text())["metrics"]["test"]["map@10"]  # accuracy only


@pytest.mark.parametrize("change, message", [
    ({"seed": "x"}, "not a mtlbench result record (seed: Input should be a valid integer, unable to parse string "
                    "as an integer)"),
    ({"status": "exploded"}, "not a mtlbench result record (status: Input should be 'ok' or 'diverged')"),
    ({"extra": 1}, "not a mtlbench result record (extra: Extra inputs are not permitted)"),
    ({"schema_version": 3}, "record schema 3 is newer than this mtlbench reads (2); upgrade mtlbench"),
])
def test_what_is_not_a_record_is_one_line(change, message, tmp_path):
    good = json.loads(next(REFERENCE.rglob("seed0.json")).read_text())
    path = tmp_path / "seed0.json"
    path.write_text(json.dumps({**good, **change}))
    with pytest.raises(MTLBenchError) as e:
        read_record(path)
    assert str(e.value) == f"{path}: {message}"
