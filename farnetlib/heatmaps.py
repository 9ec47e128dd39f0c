"""Heatmap encoding and decoding, separate from the network (MMPose-style codecs).

Coordinate convention, used everywhere in farnetlib: a point ``(x, y)`` is in pixel units with the
*centre* of pixel ``(row i, column j)`` at ``(x, y) = (j, i)``. A pixel covers ``[j - 0.5, j + 0.5)``.
Resizing an image of width ``W`` to ``W'`` therefore maps ``x -> (x + 0.5) * W' / W - 0.5`` (the
same convention as ``align_corners=False`` interpolation). The reference code builds its Gaussian
grid one pixel off this convention; we do not copy that.
"""
from __future__ import annotations

import inspect
from typing import Sequence

import numpy as np
import torch

from .decoders import ArgmaxDecoder, DarkDecoder, QuadraticDecoder
from .spine_codec import CornerTypeDecoder, OrderedSpineDecoder, corner_type_present, corner_type_targets

__all__ = ["rescale_points", "GaussianHeatmapEncoder", "ArgmaxDecoder", "QuadraticDecoder", "DarkDecoder",
           "HeatmapCodec", "build_decoder", "decoder_name", "decoder_label", "decoder_parameters", "check_decoder", "heatmap_channels",
           "DECODERS", "TARGETS", "farnet_codecs"]

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


def _builds(cls, fixed: tuple[str, ...]):
    """Mark a factory as building ``cls`` with the ``fixed`` keywords set by its name or the data
    (the rest of ``cls``'s keywords are the parameters a config may give it)."""
    def mark(factory):
        factory.decoder_class, factory.fixed = cls, fixed
        return factory

    return mark


@_builds(OrderedSpineDecoder, ("mode",))
def _spine_ordered(num_landmarks: int | None = None, **params):
    return OrderedSpineDecoder(mode="assign", **params)


@_builds(OrderedSpineDecoder, ("mode",))
def _spine_peaks(num_landmarks: int | None = None, **params):
    return OrderedSpineDecoder(mode="peaks", **params)


@_builds(CornerTypeDecoder, ("vertebrae",))
def _spine_corners(num_landmarks: int | None = None, **params):
    if num_landmarks is None or num_landmarks % 4:
        raise ValueError(f"the spine_corners decoder needs the number of landmarks (vertebrae x 4 corners), got {num_landmarks}")
    return CornerTypeDecoder(vertebrae=num_landmarks // 4, **params)


# name -> a decoder class, or a factory that builds one (``_builds``); the parameters a config may set
# are the class's constructor keywords (decoder_parameters)
DECODERS = {"argmax": ArgmaxDecoder, "quadratic": QuadraticDecoder, "dark": DarkDecoder,
            "spine_ordered": _spine_ordered, "spine_peaks": _spine_peaks, "spine_corners": _spine_corners}

DecoderSpec = str | dict  # "dark", or {"name": "dark", "blur_kernel": 7}


def decoder_name(spec: DecoderSpec) -> str:
    """The decoder's name in a spec (``"dark"`` or ``{"name": "dark", ...}``)."""
    return spec["name"] if isinstance(spec, dict) else spec


def decoder_label(spec: DecoderSpec) -> str:
    """A short text for tables and result labels: the name, then its parameters (``dark-blur_kernel7``)."""
    if isinstance(spec, str):
        return spec
    params = "-".join(f"{k}{v}" for k, v in sorted(spec.items()) if k != "name")
    return f"{spec['name']}-{params}" if params else spec["name"]


def decoder_parameters(name: str) -> tuple[str, ...]:
    """The parameters a config may give decoder ``name`` (its constructor's keywords)."""
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; known decoders: {', '.join(DECODERS)}")
    factory = DECODERS[name]
    cls, fixed = getattr(factory, "decoder_class", factory), getattr(factory, "fixed", ())
    names = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "args", "kwargs")]
    return tuple(n for n in names if n not in fixed)


def build_decoder(spec: DecoderSpec, num_landmarks: int | None = None):
    """A decoder from its name, or from ``{"name": ..., parameters}`` (MMPose-style: each decoder
    exposes its constructor's keywords, e.g. ``{"name": "dark", "blur_kernel": 7}``): ``argmax`` (the
    reference code's), ``quadratic`` (sub-pixel, per axis), ``dark`` (distribution-aware, 2-D),
    ``spine_ordered`` (the AASCE spine's vertebrae decoded in order, :mod:`farnetlib.spine_codec`;
    it needs the spine's vertebra x 4 corner channels), ``spine_peaks`` (the same, identity from
    order alone) or ``spine_corners`` (the 4 corner-type heatmaps of ``targets: "spine_corners"``;
    ``num_landmarks`` says how many vertebrae). An unknown name or parameter is a ValueError naming it."""
    if not isinstance(spec, (str, dict)) or (isinstance(spec, dict) and not isinstance(spec.get("name"), str)):
        raise ValueError(f"a decoder is a name or {{'name': ..., parameters}}, got {spec!r}")
    name = decoder_name(spec)
    params = {k: v for k, v in spec.items() if k != "name"} if isinstance(spec, dict) else {}
    unknown = set(params) - set(decoder_parameters(name))
    if unknown:
        raise ValueError(f"decoder {name!r} has no parameter {', '.join(sorted(unknown))}; its parameters: "
                         f"{', '.join(decoder_parameters(name)) or 'none'}")
    factory = DECODERS[name]
    return factory(num_landmarks, **params) if name.startswith("spine_") else factory(**params)


def check_decoder(spec: DecoderSpec) -> None:
    """ValueError where ``spec`` names no decoder, a parameter its decoder does not have, or a value
    the decoder refuses (a landmark count a spine decoder needs is checked when the data is known)."""
    build_decoder(spec, num_landmarks=4 if decoder_name(spec) == "spine_corners" else None)


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
                 decoder: DecoderSpec = "quadratic", targets: str = "landmarks", num_landmarks: int | None = None) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.encoder = None if sigma is None else GaussianHeatmapEncoder(sigma)  # None: a decode-only codec
        if targets not in TARGETS:
            raise ValueError(f"unknown targets {targets!r}; known: {', '.join(TARGETS)}")
        if (targets == "spine_corners") != (decoder_name(decoder) == "spine_corners"):
            raise ValueError(f"targets {targets!r} and decoder {decoder!r} do not go together: the spine_corners "
                             f"decoder decodes exactly the spine_corners targets")
        self.targets = targets
        self.decoder = build_decoder(decoder, num_landmarks)

    def channel_present(self, present: torch.Tensor | None) -> torch.Tensor | None:
        """``(N, K)`` labelled landmarks -> ``(N, channels)`` heatmaps that enter the loss (None: all)."""
        if present is None or self.targets == "landmarks":
            return present
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


def farnet_codecs(input_size: Sequence[int], decoder: DecoderSpec = "quadratic", targets: str = "landmarks",
                  num_landmarks: int | None = None, sigma: float | None = None,
                  sigma_coarse: float | None = None) -> tuple[HeatmapCodec, HeatmapCodec]:
    """FARNet's two outputs, the one place their geometry is set: (coarse at half the input size,
    fine at the input size). ``sigma``/``sigma_coarse`` None: decode-only codecs (prediction)."""
    h, w = int(input_size[0]), int(input_size[1])
    return (HeatmapCodec((h, w), (h // 2, w // 2), sigma_coarse, decoder, targets, num_landmarks),
            HeatmapCodec((h, w), (h, w), sigma, decoder, targets, num_landmarks))
