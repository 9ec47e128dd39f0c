"""Open any supported dataset by name: ``open_dataset("isbi2015", root, "test1")``."""
from __future__ import annotations

from pathlib import Path

from .aasce import AASCESpine
from .base import LandmarkSource
from .hand import HandXray
from .isbi import ISBI2015
from .synthetic import Synthetic

__all__ = ["open_dataset", "DEFAULT_SPLITS"]

DEFAULT_SPLITS = {"synthetic": "train", "isbi2015": "train", "hand_xray": "train", "aasce": "training"}


def open_dataset(name: str, root: str | Path | None = None, split: str | None = None, **kwargs) -> LandmarkSource:
    """A reader for ``name`` (synthetic, isbi2015, hand_xray, aasce); ``kwargs`` go to its class."""
    split = split or DEFAULT_SPLITS.get(name)
    if name == "synthetic":
        kwargs.setdefault("seed", 0 if split == "train" else 1)
        return Synthetic(**kwargs)
    if name not in DEFAULT_SPLITS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DEFAULT_SPLITS)}")
    if root is None:
        raise ValueError(f"dataset {name!r} needs root= (the folder of its files)")
    cls = {"isbi2015": ISBI2015, "hand_xray": HandXray, "aasce": AASCESpine}[name]
    return cls(root, split=split, **kwargs)
