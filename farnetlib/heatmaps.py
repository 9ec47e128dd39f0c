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

__all__ = ["rescale_points", "GaussianHeatmapEncoder", "ArgmaxDecoder", "QuadraticDecoder", "DarkDecoder",
           "HeatmapCodec", "build_decoder", "heatmap_channels", "DECODERS", "TARGETS"]

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


def _spine_ordered(num_landmarks: int | None = None):
    from .spine_codec import OrderedSpineDecoder

    return OrderedSpineDecoder(mode="assign")


def _spine_peaks(num_landmarks: int | None = None):
    from .spine_codec import OrderedSpineDecoder

    return OrderedSpineDecoder(mode="peaks")


def _spine_corners(num_landmarks: int | None = None):
    from .spine_codec import CornerTypeDecoder

    if num_landmarks is None or num_landmarks % 4:
        raise ValueError(f"the spine_corners decoder needs the number of landmarks (vertebrae x 4 corners), got {num_landmarks}")
    return CornerTypeDecoder(vertebrae=num_landmarks // 4)


DECODERS = {"argmax": ArgmaxDecoder, "quadratic": QuadraticDecoder, "dark": DarkDecoder,
            "spine_ordered": _spine_ordered, "spine_peaks": _spine_peaks, "spine_corners": _spine_corners}

# What the network's heatmaps are: one per landmark (FARNet), or one per corner type of a spine
# (identity-free targets, :mod:`farnetlib.spine_codec`; decoded by ``spine_corners``).
TARGETS = ("landmarks", "spine_corners")


def heatmap_channels(targets: str, num_landmarks: int) -> int:
    """How many heatmaps the network outputs for ``num_landmarks`` landmarks with ``targets``."""
    if targets == "landmarks":
        return num_landmarks
    if targets == "spine_corners":
        if num_landmarks % 4:
            raise ValueError(f"targets 'spine_corners' need vertebrae x 4 corner landmarks (the AASCE order); "
                             f"this data has {num_landmarks}")
        return 4
    raise ValueError(f"unknown targets {targets!r}; known: {', '.join(TARGETS)}")


def build_decoder(name: str, num_landmarks: int | None = None):
    """A decoder by name: ``argmax`` (the reference code's), ``quadratic`` (sub-pixel, per axis),
    ``dark`` (distribution-aware, 2-D), ``spine_ordered`` (the AASCE spine's vertebrae decoded in
    order, :mod:`farnetlib.spine_codec`; it needs the spine's vertebra x 4 corner channels),
    ``spine_peaks`` (the same, identity from order alone) or ``spine_corners`` (the 4 corner-type
    heatmaps of ``targets: "spine_corners"``; ``num_landmarks`` says how many vertebrae)."""
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; known decoders: {', '.join(DECODERS)}")
    factory = DECODERS[name]
    return factory(num_landmarks) if name.startswith("spine_") else factory()


class HeatmapCodec:
    """The geometry between model-input pixels and one heatmap output, in the MMPose sense.

    ``HeatmapCodec(input_size, heatmap_size, sigma, decoder)``: :meth:`encode` takes ``(K, 2)`` (or
    ``(N, K, 2)``) points (x, y) in **input** pixels and returns the ``(K, h, w)`` (``(N, K, h, w)``)
    Gaussian targets of that heatmap, ``sigma`` in heatmap pixels; :meth:`decode` takes
    ``(B, K, h, w)`` heatmaps (any precision) and returns ``(B, K, 2)`` points in input pixels and
    ``(B, K)`` peak values, decoded in float32. FARNet has two: the coarse output (half the input
    size) and the fine one (the input size).

    ``targets="spine_corners"`` (with ``decoder="spine_corners"`` and ``num_landmarks``): the
    heatmaps are the 4 corner types of a spine (:mod:`farnetlib.spine_codec`), not one per landmark;
    :meth:`encode` still takes the K landmarks, :meth:`decode` still returns them.
    """

    def __init__(self, input_size: Sequence[int], heatmap_size: Sequence[int], sigma: float | None,
                 decoder: str = "quadratic", targets: str = "landmarks", num_landmarks: int | None = None) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.encoder = None if sigma is None else GaussianHeatmapEncoder(sigma)  # None: a decode-only codec
        if targets not in TARGETS:
            raise ValueError(f"unknown targets {targets!r}; known: {', '.join(TARGETS)}")
        if (targets == "spine_corners") != (decoder == "spine_corners"):
            raise ValueError(f"targets {targets!r} and decoder {decoder!r} do not go together: the spine_corners "
                             f"decoder decodes exactly the spine_corners targets")
        self.targets = targets
        self.decoder = build_decoder(decoder, num_landmarks)

    def channel_present(self, present: torch.Tensor | None) -> torch.Tensor | None:
        """``(N, K)`` labelled landmarks -> ``(N, channels)`` heatmaps that enter the loss (None: all)."""
        if present is None or self.targets == "landmarks":
            return present
        from .spine_codec import corner_type_present

        return corner_type_present(present)

    @property
    def same_size(self) -> bool:
        return self.input_size == self.heatmap_size

    def encode(self, points: ArrayLike, present: torch.Tensor | None = None) -> torch.Tensor:
        """Targets of ``points``; where ``present`` (``(K,)`` or ``(N, K)`` bool) is False, a missing
        label (NaN in ``points``), the target is all zero. Without ``present`` every point must be finite."""
        if self.encoder is None:
            raise ValueError("this codec was built without sigma (decode only); it cannot encode")
        pts = torch.as_tensor(points, dtype=torch.float32)
        if present is not None:
            present = torch.as_tensor(present, device=pts.device)
            pts = torch.where(present[..., None], pts, torch.zeros_like(pts))
        if not self.same_size:  # the fine output skips the identity map, so its numbers stay bit-identical
            pts = rescale_points(pts, self.input_size, self.heatmap_size)
        targets = self.encoder.encode(pts, self.heatmap_size)
        targets = targets if present is None else targets * present[..., None, None].to(targets.dtype)
        if self.targets == "spine_corners":
            from .spine_codec import corner_type_targets

            targets = corner_type_targets(targets)
        return targets

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tuple(heatmaps.shape[-2:]) != self.heatmap_size:
            raise ValueError(f"heatmaps are {tuple(heatmaps.shape[-2:])}, this codec's are {self.heatmap_size}")
        pts, peak = self.decoder.decode(heatmaps.float())
        return (pts if self.same_size else rescale_points(pts, self.heatmap_size, self.input_size)), peak

    def decode_original(self, heatmaps: torch.Tensor, image_hws: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """``(B, K, 2)`` float64 points in each image's **original** pixels (``image_hws``: B (H, W)
        sizes of the images before resizing to the input) and ``(B, K)`` peaks, as NumPy arrays."""
        pts, peak = self.decode(heatmaps)
        pts, peak = pts.cpu().double().numpy(), peak.cpu().numpy()
        if len(image_hws) != len(pts):
            raise ValueError(f"{len(image_hws)} image sizes for {len(pts)} heatmaps")
        return np.stack([rescale_points(p, self.input_size, tuple(hw)) for p, hw in zip(pts, image_hws)]), peak
