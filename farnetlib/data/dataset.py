"""A torch ``Dataset`` over any landmark source: resize (cached), augment, normalise.

Items are dicts with ``image`` (3, H, W) float tensor, ``landmarks`` (K, 2) in model-input pixels,
``landmarks_orig`` (K, 2) in original pixels, ``orig_hw``, ``spacing`` (2,) (NaN where unknown)
and ``id``. Heatmap targets are not built here: the engine encodes them on the training device
from ``landmarks`` (see :class:`farnetlib.heatmaps.GaussianHeatmapEncoder`), which is far cheaper
than building full-resolution Gaussians per sample in numpy as the reference code does.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from ..progress import tqdm

from ..heatmaps import rescale_points
from .base import LandmarkSource, check_inside
from .cache import ImageCache
from .transforms import CONTRASTS, Augment, adjust_contrast, to_tensor

__all__ = ["LandmarkDataset"]


class LandmarkDataset(Dataset):
    def __init__(self, source: LandmarkSource, input_size: tuple[int, int] = (800, 640),
                 augment: Augment | None = None, cache: ImageCache | None = None,
                 indices: Sequence[int] | None = None, intensity_range: str = "0-1", seed: int = 0,
                 contrast: str = "none") -> None:
        h, w = input_size
        if h % 32 or w % 32:
            raise ValueError(f"input_size sides must be multiples of 32 (FARNet strides), got {input_size}")
        self.source, self.input_size, self.augment = source, (int(h), int(w)), augment
        self.cache = cache if cache is not None else ImageCache()
        self.indices = list(range(len(source))) if indices is None else list(indices)
        if contrast not in CONTRASTS:
            raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
        self.intensity_range, self.seed, self.contrast = intensity_range, seed, contrast
        self._adjusted: dict[int, np.ndarray] = {}  # contrast-adjusted cached images, once per image
        # in shared memory, so that set_epoch reaches DataLoader workers that persist across epochs
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._orig_hw: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        """Different augmentation each epoch, reproducible for a seed (also in persistent workers)."""
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def prefill_cache(self, progress: bool = False) -> None:
        """Decode and resize every image once, before DataLoader workers start (they inherit it)."""
        for j in tqdm(range(len(self)), desc="caching images", leave=False, disable=not progress):
            self.orig_hw(j)
            self.cache.get(self.source, self.indices[j], self.input_size)

    def orig_hw(self, j: int) -> tuple[int, int]:
        i = self.indices[j]
        if i not in self._orig_hw:
            hw = self.source.image_hw(i)
            if self.source.outside_policy == "raise":
                check_inside(self.source.landmarks[i], hw,
                             f"{self.source.annotation_paths[i]} (image {self.source.image_paths[i].name})")
            self._orig_hw[i] = hw
        return self._orig_hw[i]

    def _image(self, i: int) -> np.ndarray:
        """Image ``i`` at the input size (uint8), with the dataset's contrast adjustment."""
        image = self.cache.get(self.source, i, self.input_size)
        if self.contrast == "none":
            return image
        if i not in self._adjusted:
            self._adjusted[i] = adjust_contrast(image, self.contrast)
        return self._adjusted[i]

    def __getitem__(self, j: int) -> dict:
        i = self.indices[j]
        orig = self.orig_hw(j)
        image = self._image(i)
        pts = rescale_points(self.source.landmarks[i], orig, self.input_size)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            image01, pts = self.augment(image, pts, rng)
        else:
            image01 = image.astype(np.float32) / 255.0
        spacing = self.source.spacing(i)
        return {
            "image": to_tensor(image01, self.intensity_range),
            "landmarks": torch.as_tensor(pts, dtype=torch.float32),
            "landmarks_orig": torch.as_tensor(self.source.landmarks[i], dtype=torch.float64),
            "orig_hw": torch.tensor(orig),
            "spacing": torch.tensor(spacing if spacing is not None else (float("nan"),) * 2, dtype=torch.float64),
            "id": self.source.ids[i],
        }
