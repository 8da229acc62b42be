"""How a spec's cells are launched: the ``launcher:`` section of a spec, overridden by ``mtlbench train`` flags.

```yaml
launcher:
  kind: slurm            # inprocess (default: every cell one after another in this process) | local | slurm
  workers: 2             # local: cells running at once (default: CPU cores // cpus_per_job)
  cpus_per_job: 1        # cores per job, = the job's torch threads (default: local: cores // workers;
                         #   slurm: training.threads or 1)
  gpus_per_job: 0
  time_min: 1440         # wall-clock limit of one job (slurm --time; a local job is stopped after it)
  mem_gb: null           # slurm --mem
  partition: null        # slurm --partition
  max_parallel: 64       # slurm: jobs of one array running at once (--array=...%N)
  sbatch: {account: my_lab, qos: normal}   # any other sbatch option, by its long name without dashes
  setup: ["source .venv/bin/activate"]     # slurm: shell lines each job runs first
```

None of it is part of a run's identity: a cell trained by a job is the same run as one trained in process.
"""
from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mtlbench.errors import UsageError

# sbatch options mtlbench sets itself (one job per cell, its logs, the dependencies between waves)
RESERVED_SBATCH = ("array", "dependency", "output", "error", "job-name", "open-mode", "kill-on-invalid-dep")


class LauncherSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["inprocess", "local", "slurm"] = Field(
        default="inprocess", description="inprocess: every cell in this process; local: parallel processes "
                                         "on this machine; slurm: one cluster job per cell")
    workers: int | None = Field(default=None, ge=1, description="local: cells running at once")
    cpus_per_job: int | None = Field(default=None, ge=1, description="cores (and torch threads) per job")
    gpus_per_job: int = Field(default=0, ge=0, description="GPUs per job")
    time_min: int = Field(default=1440, ge=1, description="wall-clock limit of one job, in minutes")
    mem_gb: float | None = Field(default=None, gt=0, description="slurm: memory per job")
    partition: str | None = Field(default=None, description="slurm partition")
    max_parallel: int = Field(default=64, ge=1, description="slurm: array jobs running at once")
    sbatch: dict[str, str | int | float | bool] = Field(default_factory=dict, description="other sbatch options")
    setup: list[str] = Field(default_factory=list, description="slurm: shell lines run before each job")

    @field_validator("sbatch")
    @classmethod
    def sbatch_names(cls, options: dict[str, Any]) -> dict[str, Any]:
        for key, value in options.items():
            if not re.fullmatch(r"[a-z][a-z0-9-]*", key):
                raise ValueError(f"sbatch option {key!r}: expected a long option name such as 'account' or "
                                 "'mail-type' (no dashes in front)")
            if key in RESERVED_SBATCH:
                raise ValueError(f"sbatch option {key!r} is set by mtlbench itself")
            if "\n" in str(value):
                raise ValueError(f"sbatch option {key!r}: a value on one line")
        return options

    def jobs_cpus(self, spec_threads: int | None) -> int:
        if self.cpus_per_job:
            return self.cpus_per_job
        if self.kind == "local":
            return max(1, cores() // (self.workers or cores()))
        return spec_threads or 1

    def local_workers(self) -> int:
        return self.workers or max(1, cores() // (self.cpus_per_job or 1))


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


FLAG_NAMES = {"kind": "--launcher", "workers": "--workers", "cpus_per_job": "--cpus-per-job",
              "gpus_per_job": "--gpus-per-job", "time_min": "--time", "mem_gb": "--mem-gb",
              "partition": "--partition", "max_parallel": "--max-parallel", "sbatch": "--sbatch"}


def with_flags(spec_launcher: LauncherSpec, flags: dict[str, Any]) -> LauncherSpec:
    """The spec's section with every flag that was given (not None) put over it; a bad value is a UsageError
    naming the flag."""
    given = {k: v for k, v in flags.items() if v is not None}
    if "sbatch" in given:
        given["sbatch"] = {**spec_launcher.sbatch, **parse_sbatch(given["sbatch"])}
    try:
        return LauncherSpec.model_validate({**spec_launcher.model_dump(), **given})
    except ValidationError as e:
        first = e.errors()[0]
        flag = FLAG_NAMES.get(str(first["loc"][0]), str(first["loc"][0]))
        raise UsageError(f"{flag}: {first['msg'].removeprefix('Value error, ')} (got {first.get('input')!r})") from None


def parse_sbatch(items: list[str]) -> dict[str, str]:
    """``--sbatch account=my_lab --sbatch qos=high`` -> {"account": "my_lab", "qos": "high"}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--sbatch: expected KEY=VALUE such as account=my_lab (got {item!r})")
        out[key.strip().lstrip("-")] = value.strip()
    return out


# torchrun is a launcher too: validation (a spec's data-parallel checks) and training both read its world size.
def env_world() -> int:
    """The number of processes torchrun started (1 without torchrun); reads the environment only."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1
