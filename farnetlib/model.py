"""FARNet: Feature Aggregation and Refinement Network (Ao & Wu, J. Digit. Imaging 36, 2023).

Data flow (``K`` landmarks, input ``H x W`` with sides divisible by 32)::

    image ─ backbone ─ F1 (1/2)  F2 (1/4)  F3 (1/8)  F4 (1/16)  F5 (1/32)
      │                 MSFA: top-down (T5 → T4 → T3 → M2), bottom-up (M2 → B3 → B4 → B5),
      │                       second top-down (B5 → … → M2 → D1 at 1/2, with F1)
      │                 coarse head on D1 ─────────────────────────────→ coarse (K, H/2, W/2)
      └ F0 = 1x1 conv (full res) ─┐
                FR: up(D1) ⊕ up(coarse) ⊕ F0 → 3x3 → 1x1 ───────────→ fine   (K, H, W)

The wiring follows the authors' reference implementation (DenseNet121, 800 x 640). Every conv
block is conv + BatchNorm + ReLU except the two final 1x1 convs that output heatmaps (the 3x3
convs of the heads are blocks, so that the head is not two stacked linear maps). Upsampling is
bilinear. Decoder widths are the reference ones; backbone widths are read from the backbone.

The fine head: the reference code's 3x3 conv keeps the width of its input, ``64 + 32 + K``
channels, before the final 1x1 conv to ``K`` heatmaps (``fine_head_width=None``, the default). An
earlier farnet release narrowed it to 64 channels; ``fine_head_width=64`` builds that variant (for
DenseNet121 and K = 19: 61,156,614 parameters against 61,210,470 with the reference width).
"""
from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import build_backbone, load_backbone_weights

__all__ = ["FARNet", "FARNetOutput", "farnet", "parameter_counts"]


class FARNetOutput(NamedTuple):
    coarse: torch.Tensor  # (N, K, H/2, W/2)
    fine: torch.Tensor  # (N, K, H, W) — used for inference


def _block(cin: int, cout: int, k: int = 1, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _up_cat(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([x, skip], dim=1)


class FARNet(nn.Module):
    """FARNet for ``num_landmarks`` heatmaps.

    Args:
        num_landmarks: number of landmarks ``K`` (19 ceph, 37 hand, 68 spine).
        backbone: a name from :data:`farnetlib.backbones.BACKBONES` (default ``densenet121`` as in
            the paper).
        weights: deprecated here (the model is built with random initialisation); load weights with
            the builder :func:`farnet` (``weights="imagenet"`` or a path) or :meth:`load_backbone_weights`.
        allow_download: with the deprecated ``weights="imagenet"``, whether a missing cache file may be fetched.
        fine_head_width: channels of the fine head's 3x3 conv; ``None`` is the reference code's width,
            ``64 + 32 + num_landmarks`` (its input width).
        head_scale: a multiplier of every aggregation/refinement width (512, 1024, 2048, ... ;
            at least 8 channels each). 1 is the paper's decoder (51.5 M of FARNet-resnet18's 62.7 M
            parameters); tests of engine behaviour use a small one (0.125: a 1.1 M head, 12.3 M in all).
    """

    def __init__(self, num_landmarks: int, backbone: str = "densenet121",
                 weights: str | os.PathLike | None = None, allow_download: bool = True,
                 fine_head_width: int | None = None, head_scale: float = 1.0, decoder_width: float | None = None) -> None:
        super().__init__()
        if num_landmarks < 1:
            raise ValueError(f"num_landmarks must be >= 1, got {num_landmarks}")
        if decoder_width is not None:  # the name before head_scale, kept for one release
            warnings.warn("FARNet(decoder_width=...) is now head_scale=...", DeprecationWarning, stacklevel=2)
            head_scale = decoder_width
        if not head_scale > 0:
            raise ValueError(f"head_scale must be > 0, got {head_scale}")
        self.head_scale = float(head_scale)

        def c(n: int) -> int:  # a decoder width, scaled
            return n if head_scale == 1 else max(8, int(round(n * head_scale)))

        self.num_landmarks = num_landmarks
        self.backbone_name = backbone
        bb = build_backbone(backbone)  # random initialisation; weights load after construction
        self.backbone = bb.body
        c1, c2, c3, c4, c5 = bb.channels
        k = num_landmarks
        self.f0 = _block(3, c(32), 1)
        # MSFA, top-down
        self.t5 = nn.Sequential(_block(c5, c(512), 3), _block(c(512), c(256), 1))
        self.t4 = _block(c(256) + c4, c(256))
        self.t3 = _block(c(256) + c3, c(256))
        self.m2 = _block(c(256) + c2, c(256))
        # MSFA, bottom-up
        self.down3, self.b3 = _block(c(256), c(512), 3, 2), _block(c(512) + c(256), c(512))
        self.down4, self.b4 = _block(c(512), c(1024), 3, 2), _block(c(1024) + c(256), c(1024))
        self.down5, self.b5 = _block(c(1024), c(2048), 3, 2), _block(c(2048) + c(256), c(1024), 3)
        # MSFA, second top-down
        self.u5 = _block(c(1024), c(256))
        self.u4 = _block(c(256) + c(1024), c(256))
        self.u3 = _block(c(256) + c(512), c(256))
        self.u2 = _block(c(256) + c(256), c(128))
        self.d1 = _block(c(128) + c1, c(64))
        # heads
        self.coarse_head = nn.Sequential(_block(c(64), c(64), 3), nn.Conv2d(c(64), k, 1))
        fine_in = c(64) + k + c(32)
        self.fine_head_width = fine_in if fine_head_width is None else int(fine_head_width)
        if self.fine_head_width < 1:
            raise ValueError(f"fine_head_width must be >= 1 or None, got {fine_head_width}")
        self.fine_head = nn.Sequential(_block(fine_in, self.fine_head_width, 3), nn.Conv2d(self.fine_head_width, k, 1))
        if weights is not None:  # the builder's job (farnet(..., weights=...)); kept here for one release
            warnings.warn("FARNet(weights=...) is deprecated: build with farnet(..., weights=...) or call "
                          "model.load_backbone_weights(weights)", DeprecationWarning, stacklevel=2)
            self.load_backbone_weights(weights, allow_download)

    def load_backbone_weights(self, weights: str | os.PathLike, allow_download: bool = True) -> "FARNet":
        """Load the backbone's weights: ``"imagenet"`` (torchvision's, from the torch cache, or
        downloaded where ``allow_download`` and there is internet) or a path to a state dict of the
        torchvision classification model. Returns the model."""
        load_backbone_weights(self.backbone, self.backbone_name, weights, allow_download)
        return self

    def forward(self, x: torch.Tensor) -> FARNetOutput:
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"FARNet input sides must be multiples of 32, got {h} x {w}")
        f0 = self.f0(x)
        f1, f2, f3, f4, f5 = self.backbone(x).values()
        t5 = self.t5(f5)
        t4 = self.t4(_up_cat(t5, f4))
        t3 = self.t3(_up_cat(t4, f3))
        m2 = self.m2(_up_cat(t3, f2))
        b3 = self.b3(torch.cat([self.down3(m2), t3], 1))
        b4 = self.b4(torch.cat([self.down4(b3), t4], 1))
        b5 = self.b5(torch.cat([self.down5(b4), t5], 1))
        u = self.u4(_up_cat(self.u5(b5), b4))
        u = self.u3(_up_cat(u, b3))
        u = self.u2(_up_cat(u, m2))
        d1 = self.d1(_up_cat(u, f1))
        coarse = self.coarse_head(d1)
        up = lambda t: F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)  # noqa: E731
        fine = self.fine_head(torch.cat([up(d1), up(coarse), f0], 1))
        return FARNetOutput(coarse=coarse, fine=fine)


def farnet(num_landmarks: int, backbone: str = "densenet121", weights: str | os.PathLike | None = None,
           allow_download: bool = True, **kwargs) -> FARNet:
    """Builder in torchvision style: ``farnet(19)`` is the paper's ceph model; ``weights`` (``"imagenet"``
    or a state-dict path) initialise the backbone after the model is built (:meth:`FARNet.load_backbone_weights`)."""
    model = FARNet(num_landmarks, backbone=backbone, **kwargs)
    return model if weights is None else model.load_backbone_weights(weights, allow_download)


def architecture_parameter_counts(num_landmarks: int, backbone: str = "densenet121", **kwargs) -> dict[str, int]:
    """:func:`parameter_counts` of the FARNet these arguments describe, built on PyTorch's ``meta``
    device: shapes only, no memory and no initialisation (for reports on runs that predate the
    recorded count)."""
    with torch.device("meta"):
        return parameter_counts(FARNet(num_landmarks, backbone=backbone, **kwargs))


def parameter_counts(model: FARNet) -> dict[str, int]:
    """Parameters of the whole model, of its backbone and of the FARNet head (aggregation + heads)."""
    total = sum(p.numel() for p in model.parameters())
    backbone = sum(p.numel() for p in model.backbone.parameters())
    return {"total": total, "backbone": backbone, "head": total - backbone}
