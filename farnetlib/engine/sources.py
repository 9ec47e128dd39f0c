"""Build the data sources a config names, and carve the validation split from training images."""
from __future__ import annotations

import numpy as np

from ..data import AASCESpine, DatasetError, HandXray, ISBI2015, LandmarkSource, Synthetic
from .config import DATASET_DEFAULTS, TrainConfig

__all__ = ["build_source", "carve_validation", "describe_ground_truth"]


def build_source(cfg: TrainConfig, split: str) -> LandmarkSource:
    """The source for ``split`` of ``cfg.dataset`` (``DatasetError`` when its files are absent)."""
    if cfg.dataset == "synthetic":
        n = cfg.synthetic_train if split == "train" else cfg.synthetic_test
        seed = cfg.split_seed * 1000 + (0 if split == "train" else 1)  # the data, like the split, not `seed`
        return Synthetic(n, cfg.synthetic_landmarks, cfg.synthetic_image_size, seed=seed)
    if cfg.dataset == "isbi2015":
        return ISBI2015(cfg.root, split, annotation=cfg.ground_truth, outside=cfg.outside)
    if cfg.dataset == "hand_xray":
        return HandXray(cfg.root, fold=cfg.hand_fold, split=split, missing=cfg.missing,
                        scale_pair=cfg.hand_scale_pair, outside=cfg.outside)
    if cfg.dataset == "aasce":
        return AASCESpine(cfg.root, split, missing=cfg.missing, outside=cfg.outside)
    raise DatasetError(f"unknown dataset {cfg.dataset!r}")


def carve_validation(n: int, val_count: int, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, validation indices): ``val_count`` of ``n`` images, fixed by ``seed``
    (the config's ``split_seed``, which a multi-seed study keeps fixed)."""
    if val_count >= n:
        raise ValueError(f"val_count={val_count} leaves no training images out of {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return sorted(perm[val_count:].tolist()), sorted(perm[:val_count].tolist())


def describe_ground_truth(cfg: TrainConfig) -> dict:
    """What every reported number must carry: dataset, ground truth, spacing and scale."""
    out = {"dataset": cfg.dataset, "input_size_hw": list(cfg.input_size), "decoder": cfg.decoder}
    if cfg.dataset == "isbi2015":
        out.update(ground_truth=cfg.ground_truth, spacing="0.1 mm/px", unit="mm")
    elif cfg.dataset == "hand_xray":
        out.update(ground_truth="Payer annotations", unit="mm", fold=cfg.hand_fold,
                   spacing=f"landmarks {list(cfg.hand_scale_pair)} (0-based) set to 50 mm")
    elif cfg.dataset == "aasce":
        out.update(ground_truth="BoostNet p2 corners", spacing="unknown", unit="px")
    else:
        out.update(ground_truth="synthetic truth",
                   spacing=f"nominal {240.0 / cfg.synthetic_image_size[0]:.4g} mm/px", unit="mm")
    out["radii"] = DATASET_DEFAULTS[cfg.dataset]["radii"]
    return out
