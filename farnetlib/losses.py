"""Heatmap losses: the Exponential Weighted Center (EWC) loss of FARNet and baselines.

EWC (Ao & Wu 2023): the squared error of every heatmap pixel is weighted by ``base ** y`` where
``y`` in [0, 1] is the target heatmap value. Far from a landmark ``y ≈ 0`` and the weight is 1; at
the centre ``y = 1`` and the weight is ``base``. This is what the paper describes in words ("focuses
on the losses from the pixels near landmarks and suppresses the ones from far away") and what the
authors' code computes, with ``base = 40``. We could not check the printed equation's notation here,
so the formula is the reference code's: ``mean(base ** y * (y_hat - y) ** 2)``. FARNet sums this
loss over the coarse (1/2 resolution) and the fine (full resolution) output; the per-output weights
are parameters (reference: 1 and 1).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

__all__ = ["EWCLoss", "MSELoss", "L1Loss", "AdaptiveWingLoss", "CoarseToFineLoss", "build_loss", "LOSSES"]


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class EWCLoss(nn.Module):
    """Exponential Weighted Center loss: ``reduce(base ** target * (pred - target) ** 2)``."""

    def __init__(self, base: float = 40.0, reduction: str = "mean") -> None:
        super().__init__()
        if base < 1:
            raise ValueError(f"EWC base must be >= 1 (1 gives plain MSE), got {base}")
        self.base, self.reduction = float(base), reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = torch.exp(target * math.log(self.base))
        return _reduce(weight * (pred - target) ** 2, self.reduction)


class MSELoss(nn.Module):
    """Plain per-pixel mean squared error (EWC with ``base = 1``)."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _reduce((pred - target) ** 2, self.reduction)


class L1Loss(nn.Module):
    """Per-pixel absolute error."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _reduce((pred - target).abs(), self.reduction)


class AdaptiveWingLoss(nn.Module):
    """Adaptive Wing loss (Wang, Bo & Fuxin, ICCV 2019), without the optional weighted loss map.

    Defaults are the paper's: omega 14, theta 0.5, epsilon 1, alpha 2.1.
    """

    def __init__(self, omega: float = 14.0, theta: float = 0.5, epsilon: float = 1.0,
                 alpha: float = 2.1, reduction: str = "mean") -> None:
        super().__init__()
        self.omega, self.theta, self.epsilon, self.alpha = omega, theta, epsilon, alpha
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        delta = (pred - target).abs()
        power = self.alpha - target
        ratio = self.theta / self.epsilon
        a = (self.omega * (1 / (1 + ratio ** power)) * power * ratio ** (power - 1) / self.epsilon)
        c = self.theta * a - self.omega * torch.log1p(ratio ** power)
        small = self.omega * torch.log1p((delta / self.epsilon) ** power)
        large = a * delta - c
        return _reduce(torch.where(delta < self.theta, small, large), self.reduction)


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "ewc": EWCLoss, "mse": MSELoss, "l1": L1Loss, "awing": AdaptiveWingLoss,
}

# The training config's fields that set a loss's parameters: loss -> {parameter: config field}.
CONFIG_FIELDS: dict[str, dict[str, str]] = {"ewc": {"base": "ewc_base"}}


def build_loss(name: str, **kwargs) -> nn.Module:
    """A per-output heatmap loss by name: ``ewc`` (FARNet), ``mse``, ``l1``, ``awing``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(LOSSES)}")
    return LOSSES[name](**kwargs)


class CoarseToFineLoss(nn.Module):
    """FARNet's coarse-to-fine supervision: ``w_coarse * L(coarse) + w_fine * L(fine)``."""

    def __init__(self, loss: nn.Module, coarse_weight: float = 1.0, fine_weight: float = 1.0) -> None:
        super().__init__()
        self.loss, self.coarse_weight, self.fine_weight = loss, coarse_weight, fine_weight

    def forward(self, output, coarse_target: torch.Tensor, fine_target: torch.Tensor,
                present: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``present`` (N, K) bool: the labelled landmarks; the heatmaps of missing ones are left out
        of the loss (each output's loss is then over the present heatmaps' pixels only)."""
        pred_c, pred_f = output.coarse, output.fine
        if present is not None:
            pred_c, coarse_target = pred_c[present], coarse_target[present]
            pred_f, fine_target = pred_f[present], fine_target[present]
        coarse = self.loss(pred_c, coarse_target)
        fine = self.loss(pred_f, fine_target)
        total = self.coarse_weight * coarse + self.fine_weight * fine
        return {"loss": total, "coarse": coarse.detach(), "fine": fine.detach()}
