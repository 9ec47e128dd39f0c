from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FARNET_DATA", REPO.parent / "shared" / "data"))


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
