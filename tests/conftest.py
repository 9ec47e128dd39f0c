from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from helpers import THREADS, tiny

from farnetlib.data.cache import CACHE_DIR_ENV

torch.set_num_threads(THREADS)
# subprocesses (papermill kernels, `farnet` commands, torchrun) start with as many OpenMP threads
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FARNET_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config) -> None:
    """One on-disk image cache for the whole session (every xdist worker, notebook kernel and `farnet`
    subprocess inherits the variable from the controller): each real image is decoded once per
    size, not once per test (a 1935 x 2400 ISBI JPEG takes ~50 ms to decode, its 64 x 64 copy 0.4 ms
    to load). A fresh folder per session: a suite never starts warm, so its time means the same
    from run to run."""
    if hasattr(config, "workerinput"):
        return  # a worker: the controller's folder came with the environment
    folder = tempfile.mkdtemp(prefix="farnet-test-cache-")
    config._farnet_cache = folder
    os.environ[CACHE_DIR_ENV] = folder


def pytest_unconfigure(config) -> None:
    folder = getattr(config, "_farnet_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(CACHE_DIR_ENV, None)


def pytest_report_header(config) -> str:
    """Free disk where test folders go: a full disk made a CI run fail and then hang."""
    where = Path(config.option.basetemp or tempfile.gettempdir())
    where = where if where.exists() else where.parent
    free = shutil.disk_usage(where).free / 2**30
    return (f"farnet: {free:.1f} GiB free in {where}; training tests write ~1 GiB of checkpoints each, "
            f"removed when the test passes (tmp_path_retention_policy=failed)")


def shared_dataset(name: str) -> Path:
    """Path to a real dataset in ../shared/data, or skip with the reason."""
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set FARNET_DATA to the folder holding {name}/)")
    return path


@pytest.fixture
def isbi_root() -> Path:
    return shared_dataset("isbi2015")


@pytest.fixture
def hand_root() -> Path:
    return shared_dataset("hand_xray")


@pytest.fixture
def aasce_root() -> Path:
    return shared_dataset("aasce")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One finished tiny run (``helpers.tiny``, 1 epoch, run_name ``tiny``) per test process, for the
    tests that only read a run folder or its checkpoints (evaluate without --write, the records, and
    predict, whose only write is the run's ``export/`` cache); a test that writes results into a
    run, or trains it again, takes ``tiny_run_copy``."""
    from farnetlib.engine import train

    return train(tiny(tmp_path_factory.mktemp("shared_run"), run_name="tiny", epochs=1), progress=False)


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of ``tiny_run`` (checkpoints included) at ``tmp_path / "tiny"``: the same config
    as ``tiny(tmp_path, run_name="tiny", epochs=1)`` but for ``results_dir``, a path field."""
    return Path(shutil.copytree(tiny_run, tmp_path / tiny_run.name))
