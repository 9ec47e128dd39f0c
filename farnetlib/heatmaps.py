"""Heatmap encoding and decoding, separate from the network (MMPose-style codecs).

Coordinate convention, used everywhere in farnetlib: a point ``(x, y)`` is in pixel units with the
*centre* of pixel ``(row i, column j)`` at ``(x, y) = (j, i)``. A pixel covers ``[j - 0.5, j + 0.5)``.
Resizing an image of width ``W`` to ``W'`` therefore maps ``x -> (x + 0.5) * W' / W - 0.5`` (the
same convention as ``align_corners=False`` interpolation). The reference code builds its Gaussian
grid one pixel off this convention; we do not copy that.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["rescale_points", "GaussianHeatmapEncoder", "ArgmaxDecoder", "QuadraticDecoder",
           "build_decoder", "DECODERS"]

ArrayLike = np.ndarray | torch.Tensor


def rescale_points(points: ArrayLike, from_hw: Sequence[int], to_hw: Sequence[int]) -> ArrayLike:
    """Map ``(..., 2)`` (x, y) points between two resolutions of one image, per axis.

    ``from_hw``/``to_hw`` are (height, width). X and Y scale differently when the aspect changes.
    """
    sx = to_hw[1] / from_hw[1]
    sy = to_hw[0] / from_hw[0]
    if isinstance(points, torch.Tensor):
        scale = torch.tensor([sx, sy], dtype=points.dtype, device=points.device)
    else:
        points = np.asarray(points, dtype=np.float64)
        scale = np.array([sx, sy])
    return (points + 0.5) * scale - 0.5


class GaussianHeatmapEncoder:
    """Unnormalised Gaussian targets, amplitude 1 at the landmark, ``sigma`` in output pixels.

    ``encode(points, size)`` takes ``(K, 2)`` or ``(N, K, 2)`` points already in the coordinates of
    the heatmap (see :func:`rescale_points`) and returns ``(K, H, W)`` or ``(N, K, H, W)``. It is
    separable (an outer product of two 1-D Gaussians), so it is cheap enough to run on the training
    device inside the step.
    """

    def __init__(self, sigma: float = 10.0) -> None:
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)

    def encode(self, points: ArrayLike, size: Sequence[int]) -> torch.Tensor:
        pts = torch.as_tensor(points, dtype=torch.float32)
        if pts.shape[-1] != 2:
            raise ValueError(f"points must end in (x, y), got shape {tuple(pts.shape)}")
        if not torch.isfinite(pts).all():
            raise ValueError("points contain NaN or inf")
        h, w = int(size[0]), int(size[1])
        xs = torch.arange(w, dtype=pts.dtype, device=pts.device)
        ys = torch.arange(h, dtype=pts.dtype, device=pts.device)
        gx = torch.exp(-((xs - pts[..., 0:1]) ** 2) / (2 * self.sigma ** 2))  # (..., K, W)
        gy = torch.exp(-((ys - pts[..., 1:2]) ** 2) / (2 * self.sigma ** 2))  # (..., K, H)
        return gy.unsqueeze(-1) * gx.unsqueeze(-2)

    __call__ = encode


def _argmax(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if heatmaps.ndim < 3:
        raise ValueError(f"heatmaps must be (..., H, W) with a landmark axis, got {tuple(heatmaps.shape)}")
    if not torch.isfinite(heatmaps).all():
        raise ValueError("heatmaps contain NaN or inf")
    w = heatmaps.shape[-1]
    flat = heatmaps.flatten(-2)
    maxval, idx = flat.max(dim=-1)
    return idx // w, idx % w, maxval, flat


class ArgmaxDecoder:
    """Integer location of the maximum: error up to 0.5 px per axis."""

    name = "argmax"

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(..., K, H, W)`` -> points ``(..., K, 2)`` (x, y) in heatmap pixels and peak values."""
        iy, ix, maxval, _ = _argmax(heatmaps)
        return torch.stack([ix, iy], dim=-1).to(heatmaps.dtype), maxval

    __call__ = decode


class QuadraticDecoder:
    """Sub-pixel refinement: a parabola through the log-heatmap at the peak and its neighbours.

    Per axis, with ``a, b, c`` the log values left of, at and right of the argmax, the vertex lies
    at ``0.5 (a - c) / (a - 2b + c)``. The log of a Gaussian is a parabola, so this is exact on
    Gaussian heatmaps (a 1-D form of the Taylor refinement of DARK, Zhang et al. CVPR 2020). Offsets
    are limited to +-0.5 px; at the border or where the peak is not a maximum of the fit, the
    argmax is kept.
    """

    name = "quadratic"

    def __init__(self, eps: float = 1e-10) -> None:
        self.eps = eps

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        iy, ix, maxval, flat = _argmax(heatmaps)
        h, w = heatmaps.shape[-2:]
        logs = torch.log(flat.clamp_min(self.eps))

        def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return logs.gather(-1, (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)).unsqueeze(-1)).squeeze(-1)

        centre = at(iy, ix)

        def offset(a: torch.Tensor, c: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
            denom = a - 2 * centre + c
            ok = inside & (denom < 0)
            off = 0.5 * (a - c) / torch.where(ok, denom, torch.ones_like(denom))
            return torch.where(ok, off.clamp(-0.5, 0.5), torch.zeros_like(off))

        dx = offset(at(iy, ix - 1), at(iy, ix + 1), (ix > 0) & (ix < w - 1))
        dy = offset(at(iy - 1, ix), at(iy + 1, ix), (iy > 0) & (iy < h - 1))
        pts = torch.stack([ix.to(heatmaps.dtype) + dx, iy.to(heatmaps.dtype) + dy], dim=-1)
        return pts, maxval

    __call__ = decode


DECODERS = {"argmax": ArgmaxDecoder, "quadratic": QuadraticDecoder}


def build_decoder(name: str):
    """A decoder by name: ``argmax`` (the reference code's) or ``quadratic`` (sub-pixel)."""
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; known decoders: {', '.join(DECODERS)}")
    return DECODERS[name]()
