"""Cross-validation training: one run folder per fold of the hand set (Payer's 3-fold lists).

Each fold is an ordinary run (``<run_name>-fold<k>`` in ``results_dir``), trained, resumed and
evaluated like any other; :mod:`farnetlib.crossval` pools their test predictions afterwards.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from .config import ConfigError, TrainConfig
from .train import train

__all__ = ["train_folds", "fold_run_name"]


def fold_run_name(cfg: TrainConfig, fold: int) -> str:
    return f"{cfg.run_name or cfg.dataset}-fold{fold}"


def train_folds(cfg: TrainConfig, folds: Sequence[int] = (1, 2, 3), progress: bool = True) -> list[Path]:
    """Train (or resume, or skip when finished) one run per fold; returns the run folders in fold order."""
    if cfg.dataset != "hand_xray":
        raise ConfigError(f"'dataset': cross-validation folds exist for hand_xray only, got {cfg.dataset!r}")
    if len(set(folds)) != len(folds):
        raise ConfigError(f"folds {list(folds)} repeat a fold")
    runs = []
    for fold in folds:
        fold_cfg = replace(cfg, hand_fold=fold, run_name=fold_run_name(cfg, fold))  # __post_init__ re-validates
        runs.append(train(fold_cfg, progress=progress))
    return runs
