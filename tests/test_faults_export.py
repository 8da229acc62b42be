"""`mtlbench export` on records it cannot trust: a damaged record is one line and exit 2 with no CSV written; an
empty results folder gives a CSV of the header alone (nothing to export is not an error)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "benchmarks" / "ci_smoke.yaml"
RECORD = REPO / "results" / "reference" / "ci_smoke" / "STL" / "seed0.json"


def export(results: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtlbench", "export", str(SPEC), "--results", str(results),
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO)


def test_a_truncated_record_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    folder = tmp_path / "ci_smoke" / "STL"
    folder.mkdir(parents=True)
    shutil.copy(RECORD, folder / "seed0.json")
    (folder / "seed1.json").write_bytes(RECORD.read_bytes()[:200])
    r = export(tmp_path, tmp_path / "long.csv")
    assert r.returncode == 2, r.stderr
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith(f"error: {folder / 'seed1.json'}: not a readable result record")
    assert not (tmp_path / "long.csv").exists()


def test_an_empty_results_folder_exports_the_header_alone(tmp_path):
    r = export(tmp_path, tmp_path / "long.csv")
    assert r.returncode == 0, r.stderr
    frame = pd.read_csv(tmp_path / "long.csv")
    assert frame.empty and {"seed", "task", "metric", "value"} <= set(frame.columns)
