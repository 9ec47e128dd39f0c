"""Build the data sources a config names, and carve the validation split from training images.

Both read the dataset's description in :mod:`farnetlib.data.registry`; nothing here knows a
dataset by name."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data import LandmarkSource
from ..data.registry import default_data_root, get_dataset
from ..config import TrainConfig, describe_ground_truth  # noqa: F401 (re-exported)

__all__ = ["build_source", "run_source", "carve_validation", "validation_split", "describe_ground_truth",
           "data_identity", "config_data_identity"]


def build_source(cfg: TrainConfig, split: str) -> LandmarkSource:
    """The source for ``split`` of ``cfg.dataset`` (``DatasetError`` when its files are absent)."""
    return get_dataset(cfg.dataset).open(cfg, split)


def run_source(config: TrainConfig | dict, split: str, **changes) -> LandmarkSource:
    """The source of ``split`` for a run's config (``config.json`` as read, or a ``TrainConfig``) with
    ``changes`` applied; where the run's ``root`` is not a folder on this machine, the dataset's
    folder under ``../shared/data`` (or ``$FARNET_DATA``) where that exists. ``DatasetError`` (or
    ``TypeError`` for a dataset without a root) when the files are absent."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    if get_dataset(cfg.dataset).needs_root and not (cfg.root and Path(cfg.root).is_dir()):
        cfg = replace(cfg, root=default_data_root(cfg.dataset) or cfg.root)
    return build_source(replace(cfg, **changes) if changes else cfg, split)


def carve_validation(n: int, val_count: int, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, validation indices): ``val_count`` of ``n`` images, fixed by ``seed``
    (the config's ``split_seed``, which a multi-seed study keeps fixed)."""
    if val_count >= n:
        raise ValueError(f"val_count={val_count} leaves no training images out of {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return sorted(perm[val_count:].tolist()), sorted(perm[:val_count].tolist())


def validation_split(source: LandmarkSource, cfg: TrainConfig) -> tuple[list[int], list[int]]:
    """(train, validation) indices of the training source: the dataset's own validation rows where
    it has them (a generic CSV's ``val`` split), else ``val_count`` images carved by ``split_seed``."""
    fixed = list(getattr(source, "validation_indices", []) or [])
    if fixed:
        chosen = set(fixed)
        return [i for i in range(len(source)) if i not in chosen], sorted(fixed)
    return carve_validation(len(source), cfg.val_count, cfg.split_seed)


def data_identity(source: LandmarkSource) -> dict:
    """What a run was trained on, independent of where the data lies: the training split's image
    count and a SHA-256 over its ids, image file names and landmarks (to 1e-4 px). The same data
    moved to another folder keeps its identity; other labels or other images do not."""
    h = hashlib.sha256()
    h.update(json.dumps([source.name, list(map(str, source.ids)), [Path(p).name for p in source.image_paths]]).encode())
    h.update(np.ascontiguousarray(np.round(np.asarray(source.landmarks, dtype=np.float64), 4)).tobytes())
    return {"dataset": source.name, "images": len(source), "sha256": h.hexdigest()}


def config_data_identity(cfg: TrainConfig) -> dict:
    """:func:`data_identity` of the training split ``cfg`` names (its label files are read; images are not)."""
    return data_identity(build_source(cfg, get_dataset(cfg.dataset).train_split))
