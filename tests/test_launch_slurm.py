"""`mtlbench train --launcher slurm` without a cluster: `--dry-run` prints the job parameters and needs no
sbatch; with stand-in `srun` / `sbatch` / `squeue` programs on PATH the real submission path runs (submitit
writes the sbatch scripts): one array per wave, the DMTRL wave depending on its STL job, the spec's
`launcher:` section under the flags; `mtlbench status` then reads the queue, and a rerun leaves queued jobs
alone. The `launcher:` section is validated like any spec section."""
from __future__ import annotations

import json
import stat

import pytest
from typer.testing import CliRunner

from mtlbench.cli import app
from tests.test_launch_local import GRID

runner = CliRunner()

LAUNCHER = """launcher:
  partition: gpu
  time_min: 600
  gpus_per_job: 1
  cpus_per_job: 4
  max_parallel: 2
  sbatch: {account: lab}
  setup: ["source .venv/bin/activate"]
"""


def grid_spec(write_spec, out, launcher=LAUNCHER):
    return write_spec(GRID.replace("{out}", str(out)).replace("{{", "{").replace("}}", "}") + launcher)


def test_dry_run_prints_each_wave_and_its_sbatch_parameters(write_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    spec = grid_spec(write_spec, tmp_path / "runs")
    result = runner.invoke(app, ["train", str(spec), "--launcher", "slurm", "--dry-run", "--time", "90",
                                 "--seeds", "0,1", "--sbatch", "qos=high"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "dry run (slurm): 6 job(s) in 2 wave(s); nothing started"
    wave0 = lines[lines.index("wave 0: 4 job(s) as one array") + 1:lines.index("wave 1: 2 job(s) as one array")]
    assert [x.strip() for x in wave0 if "#" in x] == [
        "#SBATCH --account=lab", "#SBATCH --array=0-3%2", "#SBATCH --cpus-per-task=4", "#SBATCH --gpus-per-node=1",
        "#SBATCH --job-name=mtlbench-tiny", "#SBATCH --partition=gpu", "#SBATCH --qos=high", "#SBATCH --time=90",
        "# setup: source .venv/bin/activate"]
    wave1 = "\n".join(lines[lines.index("wave 1: 2 job(s) as one array"):])
    assert "#SBATCH --dependency='afterok:<job of STL seed 0>:<job of STL seed 1>'" in wave1
    assert "#SBATCH --kill-on-invalid-dep=yes" in wave1
    record = tmp_path / "runs" / "tiny" / "DMTRL-LAF" / "seed1.json"
    assert f"job 1: DMTRL-LAF seed 1 -> {record} (after STL seed 1)" in wave1
    assert not (tmp_path / "runs").exists()  # nothing written


def fake_slurm(bin_dir, queue_state="PENDING"):
    """sbatch that keeps each script and answers like Slurm; srun (submitit checks it is there); squeue."""
    bin_dir.mkdir()
    scripts = {
        "sbatch": f'#!/bin/sh\nn=$(cat {bin_dir}/next 2>/dev/null || echo 1000)\necho $((n + 1)) > {bin_dir}/next\n'
                  f'cp "$1" {bin_dir}/submitted-$n.sh\necho "Submitted batch job $n"\n',
        "srun": "#!/bin/sh\nexit 0\n",
        "squeue": f"#!/bin/sh\necho {queue_state}\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)


def test_submission_writes_one_array_per_wave_and_status_reads_the_queue(write_spec, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{__import__('os').environ['PATH']}")
    spec = grid_spec(write_spec, tmp_path / "runs")
    result = runner.invoke(app, ["train", str(spec), "--launcher", "slurm", "--partition", "a100"])
    assert result.exit_code == 0, result.output
    for line in ["STL seed 0: submitted as slurm job 1000_0", "Hard-Share seed 0: submitted as slurm job 1000_1",
                 "DMTRL-LAF seed 0: submitted as slurm job 1001", "3 job(s) submitted"]:
        assert line in result.output
    wave0 = (tmp_path / "bin" / "submitted-1000.sh").read_text()
    for flag in ["--partition=a100", "--array=0-1%2", "--cpus-per-task=4", "--gpus-per-node=1", "--time=600",
                 "--account=lab"]:
        assert f"#SBATCH {flag}\n" in wave0
    assert "source .venv/bin/activate" in wave0 and "--dependency" not in wave0
    wave1 = (tmp_path / "bin" / "submitted-1001.sh").read_text()
    assert "#SBATCH --dependency=afterok:1000_0\n" in wave1 and "#SBATCH --kill-on-invalid-dep=yes\n" in wave1
    jobs = json.loads((tmp_path / "runs" / "tiny" / "jobs.json").read_text())["cells"]
    assert {k: v["job_id"] for k, v in jobs.items()} == {"STL/seed0": "1000_0", "Hard-Share/seed0": "1000_1",
                                                         "DMTRL-LAF/seed0": "1001"}
    status = runner.invoke(app, ["status", str(spec)])
    assert status.exit_code == 0 and status.output.count(" running ") == 3 and "pending" in status.output
    again = runner.invoke(app, ["train", str(spec), "--launcher", "slurm"])
    assert again.exit_code == 0 and again.output.count("left alone") == 3 and "submitted as" not in again.output
    fake_queue_empty = tmp_path / "bin" / "squeue"
    fake_queue_empty.write_text("#!/bin/sh\nexit 0\n")  # the jobs left the queue without a result: failed
    status = runner.invoke(app, ["status", str(spec)])
    assert status.output.count(" failed ") == 3 and "the job ended without a result" in status.output


def test_launcher_section_and_flags_are_validated(write_spec, tmp_path):
    bad = grid_spec(write_spec, tmp_path, LAUNCHER.replace("{account: lab}", "{dependency: 'afterok:1'}"))
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    line = bad.read_text().splitlines().index("  sbatch: {dependency: 'afterok:1'}") + 1
    assert f"{bad}:{line}: launcher.sbatch: expected: value error, sbatch option 'dependency' is set by mtlbench " \
        "itself" in result.output
    unknown = grid_spec(write_spec, tmp_path, LAUNCHER.replace("partition: gpu", "partion: gpu"))
    result = runner.invoke(app, ["validate", str(unknown)])
    assert result.exit_code == 2 and "launcher.partion: unknown key; did you mean 'partition'?" in result.output
    spec = grid_spec(write_spec, tmp_path)
    for args, message in [(["--workers", "0"], "--workers: Input should be greater than or equal to 1 (got 0)"),
                          (["--sbatch", "account"], "--sbatch: expected KEY=VALUE such as account=my_lab"),
                          (["--launcher", "slrum"], "--launcher: Input should be 'inprocess', 'local' or 'slurm'"),
                          (["--dry-run"], "--dry-run goes with --launcher local or slurm")]:
        result = runner.invoke(app, ["train", str(spec), *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
