"""`mtlbench claims` on records it must not trust or count: a JSON file that is not a record is one line, exit
2; a record of another experiment (another spec's run, an edited spec's) placed among the evidence changes no
verdict and no number (claims count only the runs of the evidence spec)."""
from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from mtlbench.cli import app
from tests.test_claims import at_repo, planted  # noqa: F401  (fixtures)

runner = CliRunner()


def claims_csv(results, catalogue) -> str:
    result = runner.invoke(app, ["claims", "--results", str(results), "--catalogue", str(catalogue), "--format", "csv"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_json_file_that_is_not_a_record_is_one_line_exit_2(planted, tmp_path):  # noqa: F811
    results, catalogue = planted
    (results / "ci_smoke" / "TAAN" / "seed7.json").write_text(json.dumps({"loss": [1, 2]}))
    result = runner.invoke(app, ["claims", "--results", str(results), "--catalogue", str(catalogue)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip() == (f"error: {results}/ci_smoke/TAAN/seed7.json: not a mtlbench result record "
                                     "(missing spec_name, row, method and 15 more)")


def test_records_of_another_experiment_among_the_evidence_are_not_counted(planted, tmp_path):  # noqa: F811
    """TAAN's seed-1 record replaced by the run of an edited spec (same name, same seed, another lr): the
    claims read as with that seed missing, not with its score."""
    results, catalogue = planted
    record = results / "ci_smoke" / "TAAN" / "seed1.json"
    with_it = claims_csv(results, catalogue)
    foreign = json.loads(record.read_text())
    record.unlink()
    without_it = claims_csv(results, catalogue)
    assert without_it != with_it  # the seed counts when it is the experiment's
    foreign["spec"]["optimizer"]["lr"] = 0.5
    foreign["metrics"]["test"]["map@10"]["mean"] = 0.0
    record.write_text(json.dumps(foreign))
    assert claims_csv(results, catalogue) == without_it
    shutil.copy(results / "ci_smoke" / "STL" / "seed0.json", record)  # another row's record in this row's folder
    assert claims_csv(results, catalogue) == without_it
