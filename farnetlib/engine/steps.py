"""One optimisation step of FARNet: targets, forward under autocast, coarse-to-fine loss, update.

The engine and the benchmarks call the same :func:`train_step`, so a benchmark measures what
training runs. Loss values come back as detached tensors on the training device: the caller sums
them there and reads them once per epoch (no host synchronisation per step).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..heatmaps import HeatmapCodec
from ..precision import autocast, to_layout

__all__ = ["StepContext", "make_targets", "present_mask", "train_step", "LOSS_KEYS"]

LOSS_KEYS = ("loss", "coarse", "fine")


@dataclass
class StepContext:
    """What every step needs besides the model, optimizer and batch."""

    device: torch.device
    precision: str  # resolved: fp32 | bf16 | fp16
    channels_last: bool
    input_size: tuple[int, int]  # (H, W) of the model input = fine heatmap
    codec_fine: HeatmapCodec  # input pixels <-> the fine heatmap (the input size)
    codec_coarse: HeatmapCodec  # input pixels <-> the coarse heatmap (half the input size)
    criterion: nn.Module  # CoarseToFineLoss


def make_targets(points: torch.Tensor, ctx: StepContext,
                 present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(coarse, fine) Gaussian targets for ``(N, K, 2)`` points in model-input pixels; where
    ``present`` (N, K) is False (a missing label, NaN) the target is all zero (and masked out of the loss)."""
    return ctx.codec_coarse.encode(points, present), ctx.codec_fine.encode(points, present)


def present_mask(points: torch.Tensor) -> torch.Tensor | None:
    """(N, K) bool of the labelled landmarks of a CPU batch, or None where all are (the usual case:
    the loss then runs unmasked, bit-identical to a dataset without missing labels)."""
    present = torch.isfinite(points).all(-1)
    return None if bool(present.all()) else present


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
               batch: dict, ctx: StepContext) -> torch.Tensor:
    """One update on ``batch``; returns the detached ``(loss, coarse, fine)`` values as a tensor."""
    images = to_layout(batch["image"].to(ctx.device, non_blocking=True), ctx.channels_last)
    present = present_mask(batch["landmarks"])  # on the host batch: no device synchronisation
    if present is not None:
        present = present.to(ctx.device)
    coarse_t, fine_t = make_targets(batch["landmarks"].to(ctx.device, non_blocking=True), ctx, present)
    with autocast(ctx.device, ctx.precision):
        out = net(images)
    losses = ctx.criterion(type(out)(out.coarse.float(), out.fine.float()), coarse_t, fine_t,
                           ctx.codec_fine.channel_present(present))
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(losses["loss"]).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        losses["loss"].backward()
        optimizer.step()
    return torch.stack([losses[k].detach() for k in LOSS_KEYS])
