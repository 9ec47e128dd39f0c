"""Cross-validation training: one run folder per fold of a dataset that has folds (the hand set's
Payer 3-fold lists; a generic CSV's ``fold`` column).

Each fold is an ordinary run (``<run_name>-fold<k>`` in ``results_dir``), trained, resumed and
evaluated like any other; :mod:`farnetlib.crossval` pools their test predictions afterwards.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..data.registry import get_dataset
from ..config import ConfigError, TrainConfig

__all__ = ["train_folds", "fold_run_name", "fold_configs"]


def fold_run_name(cfg: TrainConfig, fold: int) -> str:
    return f"{cfg.run_name or cfg.dataset}-fold{fold}"


def fold_configs(cfg: TrainConfig, folds: Sequence[int] | None = None) -> dict[int, TrainConfig]:
    """Each selected fold's config (run ``<run_name>-fold<k>``), in order; unknown or repeated folds,
    or a dataset without folds, are a ConfigError."""
    spec = get_dataset(cfg.dataset)
    known = spec.folds(cfg)
    if not known:
        raise ConfigError(f"'dataset': {cfg.dataset!r} has no cross-validation folds (hand_xray has three; a csv "
                          "dataset has them with a 'fold' column)")
    folds = list(known if folds is None else folds)
    if set(folds) - set(known):
        raise ConfigError(f"folds {sorted(set(folds) - set(known))} are not folds of {cfg.dataset!r}: {known}")
    if len(set(folds)) != len(folds):
        raise ConfigError(f"folds {list(folds)} repeat a fold")
    return {fold: replace(cfg, **spec.with_fold(cfg, fold), run_name=fold_run_name(cfg, fold)) for fold in folds}


def fold_units(cfg: TrainConfig, folds: Sequence[int] | None = None) -> list:
    """The folds as :class:`farnetlib.engine.dispatch.Unit` (what the executors run)."""
    from .dispatch import Unit

    return [Unit(c.run_name, c, Path(c.results_dir) / c.run_name) for c in fold_configs(cfg, folds).values()]


def train_folds(cfg: TrainConfig, folds: Sequence[int] | None = None, progress: bool = True) -> list[Path]:
    """Train (or resume, or skip when finished) one run per fold; returns the run folders in fold order.

    ``cfg.time_limit`` covers the whole call (each fold gets what the earlier ones left); a fold that
    stops before it is finished (time limit, SIGTERM/SIGINT) ends the call, and the same command
    resumes it and then trains the folds after it. With "auto" precision or layout, the first fold
    measures and the later ones take its choice (``execution.json`` says ``reused from <fold>``)."""
    from .dispatch import train_in_turn

    return train_in_turn(fold_units(cfg, folds), cfg.time_limit, progress, kind="fold", reuse_execution=True)
