"""Run folders: everything needed to regenerate a table or figure, nothing else.

``results/runs/<run-id>/``: ``config.json``, ``environment.json``, ``history.csv``,
``predictions.csv`` (one row per image x landmark), ``metrics.json``; checkpoints go to the
git-ignored ``checkpoints/`` inside it.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch

from .precision import cpu_flags

__all__ = ["environment", "make_run_dir", "load_run", "list_runs", "RUN_FILES", "write_atomic"]

RUN_FILES = ("config.json", "environment.json", "history.csv", "predictions.csv", "metrics.json")
_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "scipy", "scikit-image", "pillow", "farnetlib")


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to a uniquely named temporary file beside ``path``, then rename it over ``path``
    (``os.replace``, atomic on one filesystem): a kill or a full disk leaves the old file or the new
    one, never a truncated one, and concurrent writers never share a temporary name."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def environment(device: torch.device, seed: int) -> dict:
    """Seed, commit, versions (the main packages, and every installed distribution) and hardware."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"seed": seed, "git_commit": git_commit(), "python": platform.python_version(),
            "platform": platform.platform(), "packages": versions, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(), "cpu_flags": cpu_flags(), **accelerator_versions(),
            "all_packages": all_packages(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def accelerator_versions() -> dict:
    """CUDA runtime, cuDNN and NVIDIA driver versions (None where there is no GPU)."""
    cuda = torch.cuda.is_available()
    return {"cuda_runtime": torch.version.cuda if cuda else None,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "nvidia_driver": _nvidia_driver() if cuda else None,
            "gpu_count": torch.cuda.device_count() if cuda else 0}


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def all_packages() -> dict[str, str]:
    """Every installed distribution and its version, sorted by name."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name] = dist.version
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def make_run_dir(results_dir: str | Path, name: str | None, dataset: str, backbone: str, seed: int) -> Path:
    name = name or f"{dataset}-{backbone}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(results_dir) / name
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    return path


def load_run(path: str | Path) -> dict:
    """A run folder as plain objects: config, environment, metrics, history and predictions."""
    path = Path(path)
    missing = [f for f in RUN_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"run folder {path} lacks {missing}")
    return {"path": path, "name": path.name,
            "config": json.loads((path / "config.json").read_text()),
            "environment": json.loads((path / "environment.json").read_text()),
            "metrics": json.loads((path / "metrics.json").read_text()),
            "history": pd.read_csv(path / "history.csv"),
            "predictions": pd.read_csv(path / "predictions.csv", dtype={"id": str})}


def list_runs(results_dir: str | Path = "results/runs", pattern: str = "*") -> list[Path]:
    """Complete run folders under ``results_dir`` matching ``pattern`` (incomplete ones are skipped)."""
    return sorted(p for p in Path(results_dir).glob(pattern) if p.is_dir() and (p / "metrics.json").is_file())
