"""An embedded, X-ray-like synthetic landmark dataset: the default for the quickstart and tests.

Every image shows the same "anatomy" (a template drawn once from ``template_seed``): bright,
blurred bone-like bars joining the landmarks in a chain, a soft-tissue halo, a background gradient
and noise. Each sample deforms the template with a shape model — a random similarity transform plus
a few smooth, spatially correlated deformation modes (a Gaussian-process prior over the template
positions) and a little independent jitter — and varies brightness, contrast, gamma and noise. A
network must learn the structure (which corner of which bar is which landmark); memorising
positions fails because they move together but differ per image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from .base import LandmarkSource

__all__ = ["Synthetic", "write_isbi_layout"]


def _template(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean shape in unit coordinates (x, y in [0.15, 0.85]), bar widths, landmark marker radii."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radius = 0.25 + 0.1 * rng.uniform(size=k)
    pts = np.stack([0.5 + radius * np.cos(angles) * 0.9, 0.5 + radius * np.sin(angles)], 1)
    widths = rng.uniform(0.008, 0.02, size=k)
    markers = rng.uniform(0.006, 0.014, size=k)
    return pts, widths, markers


def _segment_dist2(xx: np.ndarray, yy: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    d = q - p
    t = np.clip(((xx - p[0]) * d[0] + (yy - p[1]) * d[1]) / max(d @ d, 1e-12), 0, 1)
    return (xx - p[0] - t * d[0]) ** 2 + (yy - p[1] - t * d[1]) ** 2


class Synthetic(LandmarkSource):
    """``n`` synthetic radiographs of ``image_size`` (H, W) with ``num_landmarks`` landmarks.

    Deterministic for ``seed``; all samples of every seed share the anatomy of ``template_seed``,
    so train and test sets drawn with different seeds come from one population. ``spacing_mm``
    is nominal (default: a 240 mm field of view over the image height, like a ceph).
    """

    name = "synthetic"

    def __init__(self, n: int = 60, num_landmarks: int = 19, image_size: tuple[int, int] = (320, 256),
                 seed: int = 0, template_seed: int = 2015, spacing_mm: float | None = None) -> None:
        if n < 1 or num_landmarks < 2:
            raise ValueError(f"need n >= 1 and num_landmarks >= 2, got n={n}, num_landmarks={num_landmarks}")
        h, w = image_size
        if h < 32 or w < 32:
            raise ValueError(f"image_size must be at least 32 x 32, got {image_size}")
        self.num_landmarks, self.image_size, self.seed = num_landmarks, (h, w), seed
        spacing = spacing_mm if spacing_mm is not None else 240.0 / h
        mean, self._widths, self._markers = _template(num_landmarks, np.random.default_rng(template_seed))
        # Smooth deformation modes: a Gaussian-process prior over the template positions.
        d2 = ((mean[:, None] - mean[None]) ** 2).sum(-1)
        cov = np.exp(-d2 / (2 * 0.2 ** 2)) + 1e-6 * np.eye(num_landmarks)
        chol = np.linalg.cholesky(cov)
        rng = np.random.default_rng(seed)
        self.ids = [f"{seed:04d}_{i:04d}" for i in range(n)]
        self.image_paths = [Path(f"<synthetic seed={seed}>/{i}.png") for i in self.ids]
        self.annotation_paths = list(self.image_paths)
        shapes, self._images = [], []
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        for _ in range(n):
            angle = rng.normal(0, np.deg2rad(6))
            scale = 1 + rng.normal(0, 0.05)
            rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            shift = rng.normal(0, 0.04, size=2)
            deform = chol @ rng.normal(0, 0.035, size=(num_landmarks, 2))
            unit = (mean - 0.5 + deform) @ rot.T + 0.5 + shift + rng.normal(0, 0.003, size=(num_landmarks, 2))
            unit = np.clip(unit, 0.04, 0.96)
            pts = unit * [w, h] - 0.5  # pixel-centre coordinates
            shapes.append(pts)
            self._images.append(self._render(pts, xx, yy, rng))
        self.landmarks = np.stack(shapes)
        self.spacings = np.full((n, 2), spacing)

    def _render(self, pts: np.ndarray, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = xx.shape
        size = float(min(h, w))
        img = 0.15 + 0.1 * (xx / w) + 0.05 * (yy / h)
        centre = pts.mean(0)
        halo = ((xx - centre[0]) / (0.42 * w)) ** 2 + ((yy - centre[1]) / (0.42 * h)) ** 2
        img += 0.15 * np.exp(-halo ** 2)
        k = len(pts)
        for j in range(k):
            p, q = pts[j], pts[(j + 1) % k]
            width = self._widths[j] * size
            img += 0.35 * np.exp(-_segment_dist2(xx, yy, p, q) / (2 * width ** 2))
            r = self._markers[j] * size
            ring = np.sqrt((xx - p[0]) ** 2 + (yy - p[1]) ** 2)
            img += (0.25 if j % 2 else -0.2) * np.exp(-((ring - r) ** 2) / (2 * (0.25 * r + 0.5) ** 2))
        img = gaussian_filter(img, sigma=0.6 + 0.4 * rng.uniform())
        img = np.clip(img, 0, None) / max(img.max(), 1e-6)
        img = img ** rng.uniform(0.8, 1.25) * rng.uniform(0.8, 1.0) + rng.uniform(0.0, 0.08)
        img += rng.normal(0, rng.uniform(0.01, 0.04), size=img.shape)
        return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)

    def read_image(self, i: int) -> np.ndarray:
        return self._images[i]

    def image_hw(self, i: int) -> tuple[int, int]:
        return self.image_size

    def cache_key(self, i: int) -> str:
        return f"synthetic:{self.seed}:{self.num_landmarks}:{self.image_size}:{i}"

    def describe(self) -> dict:
        return {**super().describe(), "seed": self.seed, "image_size": self.image_size}


def write_isbi_layout(root: str | Path, splits: dict[str, LandmarkSource], observer_sd_px: float = 1.0,
                      seed: int = 0) -> Path:
    """Write sources to disk in the ISBI 2015 layout (PNG images, senior/junior annotation files).

    ``splits`` maps ``train``/``test1``/``test2`` to sources. Ids are numbered 001, 002, ... across
    splits in that order. Senior and junior are the true landmarks plus and minus one observer
    offset (SD ``observer_sd_px``), so their mean — the ISBI default ground truth — is the truth.
    """
    from .isbi import ISBI_SPLITS

    root = Path(root)
    rng = np.random.default_rng(seed)
    next_id = 1
    for split in ("train", "test1", "test2"):
        if split not in splits:
            continue
        src = splits[split]
        img_dir = root / "RawImage" / ISBI_SPLITS[split]
        img_dir.mkdir(parents=True, exist_ok=True)
        for i in range(len(src)):
            stem = f"{next_id:03d}"
            next_id += 1
            Image.fromarray(src.read_image(i)).save(img_dir / f"{stem}.png")
            offset = rng.normal(0, observer_sd_px, size=src.landmarks[i].shape)
            for doctor, sign in (("senior", 1), ("junior", -1)):
                ann = root / "AnnotationsByMD" / f"400_{doctor}" / f"{stem}.txt"
                ann.parent.mkdir(parents=True, exist_ok=True)
                pts = src.landmarks[i] + sign * offset
                ann.write_text("".join(f"{x:.4f},{y:.4f}\n" for x, y in pts))
    return root
