"""Run folders: everything needed to regenerate a table or figure, nothing else.

``runs/<run-id>/`` (git-ignored; committed reference runs under ``results/``): ``config.json``, ``environment.json``, ``history.csv``,
``predictions.csv`` (one row per image x landmark), ``metrics.json``; checkpoints go to the
git-ignored ``checkpoints/`` inside it.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch

from ..checkpoint import read_checkpoint, selected_checkpoint
from ..data.io import RunRecordError, atomic_path, read_json_record, write_atomic
from ..precision import allocator, cpu_flags

__all__ = ["environment", "load_run", "list_runs", "RUN_FILES", "write_atomic", "atomic_path", "run_lock",
           "RunLocked", "git_commit", "read_json_record", "RunRecordError", "selected_checkpoint", "read_checkpoint",
           "reference_folder"]

# The shipped configs train into the git-ignored runs/<x>; the runs made with them are committed as
# results/<x>, the reference a new run is compared with (``farnet compare``) and the reports read.
RUNS_DIR, REFERENCE_DIR = "runs", "results"


def reference_folder(results_dir: str | Path) -> Path:
    """The committed reference copy of a config's results folder (``runs/<x>`` -> ``results/<x>``);
    any other folder is its own reference."""
    path = Path(results_dir)
    return Path(REFERENCE_DIR, *path.parts[1:]) if path.parts[:1] == (RUNS_DIR,) else path


RUN_FILES = ("config.json", "environment.json", "history.csv", "predictions.csv", "metrics.json")
_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "scipy", "scikit-image", "pillow", "farnetlib")


class RunLocked(RuntimeError):
    """Another process holds the run folder (training it, or writing an evaluation into it)."""


@contextlib.contextmanager
def run_lock(run_dir: str | Path, what: str):
    """Hold ``.<run name>.lock`` beside the run folder (an advisory ``flock``, released when the
    process ends, even by kill -9) while ``what`` writes the folder; a second holder is refused
    with the first one's pid. Beside, not inside: a start that fails validation creates no folder.
    The lock belongs to the resolved folder: a symlinked alias of a run folder shares its lock."""
    shown = Path(run_dir)
    run_dir = shown.resolve()
    path = run_dir.parent / f".{run_dir.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunLocked(f"run folder {shown} is in use by {holder}; wait until it ends") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} ({what})".encode(), 0)
        try:
            yield
        finally:
            if not run_dir.exists():  # a start that failed before creating the folder leaves no lock file
                path.unlink(missing_ok=True)
    finally:
        os.close(fd)  # closing releases the lock


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
            "torch_threads": torch.get_num_threads(), "cpu_flags": cpu_flags(), "allocator": allocator(),
            **accelerator_versions(),
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
    """Every installed distribution and its version, sorted by name (read once per process: parsing
    ~350 metadata files costs ~1.4 s, paid by every run a notebook or test session trains)."""
    return dict(_installed_distributions())


@functools.cache
def _installed_distributions() -> tuple[tuple[str, str], ...]:
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name] = dist.version
    return tuple(sorted(found.items(), key=lambda kv: kv[0].lower()))


def load_run(path: str | Path) -> dict:
    """A run folder as plain objects: config, environment, metrics, history and predictions."""
    path = Path(path)
    missing = [f for f in RUN_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"run folder {path} lacks {missing}")
    return {"path": path, "name": path.name,
            "config": read_json_record(path / "config.json"),
            "environment": read_json_record(path / "environment.json"),
            "metrics": read_json_record(path / "metrics.json"),
            "history": pd.read_csv(path / "history.csv"),
            "predictions": pd.read_csv(path / "predictions.csv", dtype={"id": str})}


def list_runs(results_dir: str | Path = "runs", pattern: str = "*") -> list[Path]:
    """Complete run folders under ``results_dir`` matching ``pattern`` (incomplete ones are skipped)."""
    return sorted(p for p in Path(results_dir).glob(pattern) if p.is_dir() and (p / "metrics.json").is_file())
