"""Learning-rate schedules: the reference's step decay, or cosine decay; either with a linear warm-up.

``step`` (the reference code: x ``lr_gamma`` at each epoch of ``milestones``) is stepped once per
epoch, as it always was, so that older checkpoints resume unchanged; with ``warmup_epochs`` it
becomes a per-step schedule. ``cosine`` is stepped per optimisation step: after the warm-up, the
lr follows half a cosine from ``lr`` to 0 at the end of epoch ``epochs``, so its horizon is the
config's ``epochs`` (which therefore may not change on resume for this schedule).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import torch

from ..config import TrainConfig

__all__ = ["LrSchedule", "build_schedule", "lr_factor"]


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The multiplier of ``cfg.lr`` at optimisation step ``step`` (0-based, counted over the run)."""
    epoch = step / steps_per_epoch
    warm = min(1.0, (step + 1) / (cfg.warmup_epochs * steps_per_epoch)) if cfg.warmup_epochs > 0 else 1.0
    if cfg.schedule == "step":
        return warm * cfg.lr_gamma ** bisect.bisect_right(cfg.milestones, int(epoch))
    start = cfg.warmup_epochs * steps_per_epoch
    total = cfg.epochs * steps_per_epoch
    progress = min(1.0, max(0.0, (step - start) / max(1.0, total - start)))
    return warm * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class LrSchedule:
    """The scheduler and when to step it (after every optimisation step, or after every epoch)."""

    scheduler: torch.optim.lr_scheduler.LRScheduler
    per_step: bool


def build_schedule(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> LrSchedule:
    if cfg.schedule == "step" and cfg.warmup_epochs == 0:
        return LrSchedule(torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.milestones,
                                                               gamma=cfg.lr_gamma), per_step=False)
    return LrSchedule(torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch)), per_step=True)
