"""Heatmap decoders: ``(..., K, H, W)`` heatmaps -> ``(..., K, 2)`` points (x, y) in heatmap pixels
and ``(..., K)`` peak values (pixel-centre convention of :mod:`farnetlib.heatmaps`). Each decoder is
a class whose constructor takes its parameters by name; :func:`farnetlib.heatmaps.build_decoder`
builds one from a config's ``decoder`` (a name, or ``{"name": ..., parameters}``)."""
from __future__ import annotations

import torch

__all__ = ["ArgmaxDecoder", "QuadraticDecoder", "DarkDecoder"]


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


class DarkDecoder:
    """Distribution-aware decoding (DARK; Zhang et al., "Distribution-Aware Coordinate
    Representation for Human Pose Estimation", CVPR 2020): the heatmap is smoothed with a Gaussian
    kernel (``blur_kernel`` pixels, odd; 0 = no smoothing), rescaled to its original maximum, and
    the maximum of its logarithm is refined by one Newton step with the full 2-D gradient and
    Hessian (cross term included) at the argmax. Unlike :class:`QuadraticDecoder` it uses the
    diagonal neighbours and tolerates the non-Gaussian, noisy peaks of a real network; on an ideal
    Gaussian both are exact. Offsets are limited to +-1 px; where the Hessian is not negative
    definite, or at the border, the argmax is kept.
    """

    name = "dark"

    def __init__(self, blur_kernel: int = 11, eps: float = 1e-10) -> None:
        if blur_kernel < 0 or (blur_kernel and blur_kernel % 2 == 0):
            raise ValueError(f"blur_kernel must be 0 or odd, got {blur_kernel}")
        self.blur_kernel, self.eps = blur_kernel, eps

    def _smooth(self, heatmaps: torch.Tensor) -> torch.Tensor:
        if not self.blur_kernel:
            return heatmaps
        from torchvision.transforms.functional import gaussian_blur

        k = self.blur_kernel
        shape = heatmaps.shape
        flat = heatmaps.reshape(-1, 1, *shape[-2:])
        sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a kernel of k pixels, as DARK uses
        blurred = gaussian_blur(flat, [k, k], [sigma, sigma]).reshape(shape)
        scale = heatmaps.amax(dim=(-2, -1), keepdim=True) / blurred.amax(dim=(-2, -1), keepdim=True).clamp_min(self.eps)
        return blurred * scale

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        iy, ix, maxval, _ = _argmax(heatmaps)
        h, w = heatmaps.shape[-2:]
        logs = torch.log(self._smooth(heatmaps.float()).clamp_min(self.eps)).flatten(-2)

        def at(dy: int, dx: int) -> torch.Tensor:
            idx = (iy + dy).clamp(0, h - 1) * w + (ix + dx).clamp(0, w - 1)
            return logs.gather(-1, idx.unsqueeze(-1)).squeeze(-1)

        c = at(0, 0)
        gx, gy = 0.5 * (at(0, 1) - at(0, -1)), 0.5 * (at(1, 0) - at(-1, 0))
        hxx, hyy = at(0, 1) - 2 * c + at(0, -1), at(1, 0) - 2 * c + at(-1, 0)
        hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = hxx * hyy - hxy ** 2
        ok = (ix > 0) & (ix < w - 1) & (iy > 0) & (iy < h - 1) & (hxx < 0) & (det > 0)
        safe = torch.where(ok, det, torch.ones_like(det))
        dx = -(hyy * gx - hxy * gy) / safe  # -H^-1 g
        dy = -(hxx * gy - hxy * gx) / safe
        dx = torch.where(ok, dx.clamp(-1, 1), torch.zeros_like(dx))
        dy = torch.where(ok, dy.clamp(-1, 1), torch.zeros_like(dy))
        pts = torch.stack([ix.to(torch.float32) + dx, iy.to(torch.float32) + dy], dim=-1)
        return pts.to(heatmaps.dtype) if heatmaps.dtype == torch.float64 else pts, maxval

    __call__ = decode
