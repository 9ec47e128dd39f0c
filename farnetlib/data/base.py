"""The common shape of every dataset reader: lazy samples of (image, landmarks, spacing, id)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from PIL import Image, UnidentifiedImageError

from .io import DatasetError, read_gray

__all__ = ["Sample", "LandmarkSource"]


@dataclass
class Sample:
    """One annotated image in original pixels (pixel-centre convention, see farnetlib.heatmaps)."""

    id: str
    image: np.ndarray  # (H, W) uint8
    landmarks: np.ndarray  # (K, 2) float64, (x, y)
    spacing: tuple[float, float] | None  # mm per pixel (x, y); None where unknown
    path: Path


class LandmarkSource:
    """Base class: ``ids``, ``image_paths``, ``landmarks`` (N, K, 2) and ``spacings`` known up front;
    images are decoded on access (``source[i]``). Subclasses fill the four lists in ``__init__``."""

    name: str = "dataset"
    num_landmarks: int
    landmark_names: Sequence[str] | None = None
    ids: list[str]
    image_paths: list[Path]
    landmarks: np.ndarray
    spacings: np.ndarray | None  # (N, 2) mm/px or None
    annotation_paths: list[Path]

    def __len__(self) -> int:
        return len(self.ids)

    def spacing(self, i: int) -> tuple[float, float] | None:
        return None if self.spacings is None else (float(self.spacings[i, 0]), float(self.spacings[i, 1]))

    def read_image(self, i: int) -> np.ndarray:
        """The decoded (H, W) uint8 image ``i`` (no landmark checks)."""
        return read_gray(self.image_paths[i])

    def image_hw(self, i: int) -> tuple[int, int]:
        """(height, width) of image ``i`` from its header, without decoding the pixels."""
        path = self.image_paths[i]
        try:
            with Image.open(path) as im:
                return im.size[1], im.size[0]
        except FileNotFoundError:
            raise DatasetError(f"image file not found: {path}") from None
        except (UnidentifiedImageError, OSError) as err:
            raise DatasetError(f"unreadable image {path}: {err}") from err

    def cache_key(self, i: int) -> str:
        """Identifies image ``i``'s pixels for caches: path, size and modification time."""
        st = self.image_paths[i].stat()
        return f"{self.image_paths[i].resolve()}:{st.st_size}:{st.st_mtime_ns}"

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        path = self.image_paths[i]
        image = self.read_image(i)
        pts = self.landmarks[i]
        check_inside(pts, image.shape, f"{self.annotation_paths[i]} (image {path.name})")
        return Sample(self.ids[i], image, pts.copy(), self.spacing(i), path)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def describe(self) -> dict:
        """What a notebook prints about this source (no image decoding)."""
        return {"dataset": self.name, "n": len(self), "num_landmarks": self.num_landmarks,
                "spacing_mm": None if self.spacings is None else sorted({tuple(s) for s in self.spacings.round(6).tolist()})[:3]}


def check_inside(pts: np.ndarray, shape: tuple[int, ...], where: str) -> None:
    h, w = shape[:2]
    out = (pts[:, 0] < -0.5) | (pts[:, 0] > w - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > h - 0.5)
    if out.any():
        k = int(np.flatnonzero(out)[0])
        raise DatasetError(f"{where}: landmark {k + 1} at {tuple(pts[k])} lies outside the {w} x {h} image")
