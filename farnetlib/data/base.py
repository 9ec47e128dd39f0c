"""The common shape of every dataset reader: lazy samples of (image, landmarks, spacing, id)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from PIL import Image, UnidentifiedImageError

from .io import DatasetError, oriented_size, read_gray

__all__ = ["Sample", "LandmarkSource", "check_inside", "points_outside", "OUTSIDE_POLICIES"]

OUTSIDE_POLICIES = ("raise", "keep")


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
    outside_policy: str = "raise"  # what check_labels found to be allowed: "raise" or "keep"
    outside_points: list[dict] = []  # labels outside their image (filled by check_labels)

    def __len__(self) -> int:
        return len(self.ids)

    def raters(self) -> dict[str, np.ndarray]:
        """Each rater's own ``(N, K, 2)`` landmarks where the data has several (ISBI: the senior and
        the junior doctor); empty where ``landmarks`` is the only annotation."""
        return {}

    def spacing(self, i: int) -> tuple[float, float] | None:
        return None if self.spacings is None else (float(self.spacings[i, 0]), float(self.spacings[i, 1]))

    def read_image(self, i: int) -> np.ndarray:
        """The decoded (H, W) uint8 image ``i`` (no landmark checks)."""
        return read_gray(self.image_paths[i])

    def image_hw(self, i: int) -> tuple[int, int]:
        """(height, width) of image ``i`` from its header, without decoding the pixels (read once:
        :meth:`check_labels` records every size)."""
        known = getattr(self, "_image_hw", None)
        if known is not None and i in known:
            return known[i]
        path = self.image_paths[i]
        try:
            with Image.open(path) as im:
                w, h = oriented_size(im)
                return h, w
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
        if self.outside_policy == "raise":
            check_inside(pts, image.shape, f"{self.annotation_paths[i]} (image {path.name})")
        return Sample(self.ids[i], image, pts.copy(), self.spacing(i), path)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def check_labels(self, outside: str = "raise", progress: bool = False) -> list[dict]:
        """Check every label against its image's size (read from the file headers) once, up front.

        ``outside="raise"``: a landmark outside its image raises ``DatasetError`` naming the
        annotation file, the image, the landmark and how many more there are. ``"keep"``: such
        points are kept as annotated (evaluation never alters the ground truth; training targets
        are then partial Gaussians at the border) and listed in ``outside_points``.
        """
        if outside not in OUTSIDE_POLICIES:
            raise ValueError(f"outside must be one of {OUTSIDE_POLICIES}, got {outside!r}")
        found = []
        self._image_hw = {}
        for i in range(len(self)):
            h, w = self._image_hw[i] = self.image_hw(i)
            for landmarks, paths in self.label_sets():  # each annotation source on its own
                for k in np.flatnonzero(points_outside(landmarks[i], (h, w))):
                    x, y = landmarks[i, k]
                    found.append({"id": self.ids[i], "landmark": int(k) + 1, "x": float(x), "y": float(y),
                                  "width": w, "height": h, "annotation": str(paths[i])})
        found = _merge_sources(found)
        if found and outside == "raise":
            f = found[0]
            listing = "; ".join(f"{o['id']} landmark {o['landmark']}" for o in found[:8])
            raise DatasetError(f"{self.name}: {len(found)} landmark(s) lie outside their image ({listing}"
                               f"{' …' if len(found) > 8 else ''}); first: {f['annotation']} (image {f['id']}): "
                               f"landmark {f['landmark']} at ({f['x']:.1f}, {f['y']:.1f}) outside the "
                               f"{f['width']} x {f['height']} image; pass outside='keep' to keep them as annotated")
        self.outside_policy, self.outside_points = outside, found
        return found

    @property
    def expected_count(self) -> int:
        """How many images this split should hold: found + listed-but-missing (readers that know
        their official count override it)."""
        return len(self) + len(getattr(self, "missing_ids", []))

    def label_sets(self) -> list[tuple[np.ndarray, list[Path]]]:
        """Every annotation source behind ``landmarks`` with its files: ((N, K, 2), N paths) each.
        A reader whose ground truth combines several (ISBI's mean of two doctors) lists each, so
        that a label outside the image in one doctor's file is not hidden by the mean."""
        return [(self.landmarks, self.annotation_paths)]

    def describe(self) -> dict:
        """What a notebook prints about this source (no image decoding)."""
        return {"dataset": self.name, "n": len(self), "num_landmarks": self.num_landmarks,
                "spacing_mm": None if self.spacings is None else sorted({tuple(s) for s in self.spacings.round(6).tolist()})[:3],
                "outside_points": len(self.outside_points), "outside_policy": self.outside_policy}


def _merge_sources(found: list[dict]) -> list[dict]:
    """One entry per (image, landmark): the first source's coordinate, every source file named."""
    merged: dict[tuple[str, int], dict] = {}
    for f in found:
        key = (f["id"], f["landmark"])
        if key in merged:
            merged[key]["annotation"] += f"; {f['annotation']}"
        else:
            merged[key] = dict(f)
    return list(merged.values())


def points_outside(pts: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(K,) bool: which points lie outside an image of ``shape`` (pixel-centre convention)."""
    h, w = shape[:2]
    return (pts[:, 0] < -0.5) | (pts[:, 0] > w - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > h - 0.5)


def check_inside(pts: np.ndarray, shape: tuple[int, ...], where: str) -> None:
    out = points_outside(pts, shape)
    h, w = shape[:2]
    if out.any():
        k = int(np.flatnonzero(out)[0])
        raise DatasetError(f"{where}: landmark {k + 1} at {tuple(pts[k])} lies outside the {w} x {h} image")
