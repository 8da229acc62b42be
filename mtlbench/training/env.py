"""What a result record says about where it was produced: git commit, package versions, threads, device."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("mtlbench", "torch", "numpy", "pydantic", "h5py", "pandas")


def git_state() -> dict:
    root = Path(__file__).resolve().parents[2]
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": dirty if commit else None}


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_name(device: torch.device) -> str:
    """The accelerator's name (e.g. "NVIDIA H100 80GB HBM3"), or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def fingerprint(device: torch.device) -> dict:
    gpu = device_name(device) if device.type == "cuda" else None
    return {"git": git_state(), "versions": versions(), "python": platform.python_version(),
            "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
            "device": str(device), "gpu": gpu, "cpu": platform.processor() or platform.machine()}
