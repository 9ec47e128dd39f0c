"""Digital Hand Atlas hand radiographs with Payer et al.'s 37 landmarks (Payer et al. 2016, 2019).

Layout (Payer's setup files plus the images)::

    root/setup/all.csv                         # id,x0,y0,...,x36,y36 (original pixels, no header)
    root/setup/cv/set{1,2,3}/{train,test}.txt  # the 3-fold cross-validation lists
    root/images/<id>.{jpg,png}

No pixel spacing is stored: the physical scale is set by declaring the distance between two
landmarks to be 50 mm (Payer: landmarks 1 and 5, 0-based; GU2Net lineage: 0 and 4).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .spacing import spacing_from_reference
from .base import LandmarkSource
from .io import DatasetError, find_image

__all__ = ["HandXray", "read_hand_csv"]


def read_hand_csv(path: Path, k: int = 37) -> dict[str, np.ndarray]:
    """``all.csv`` -> {id: (k, 2) landmarks}; errors name the file and line."""
    if not path.is_file():
        raise DatasetError(f"hand annotation file not found: {path}")
    out: dict[str, np.ndarray] = {}
    first_line: dict[str, int] = {}
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or (lineno == 1 and not row[0].strip().isdigit()):
                continue  # blank line or a header
            if len(row) < 1 + 2 * k:
                raise DatasetError(f"{path}:{lineno}: {len(row) - 1} values for id {row[0]}, expected {2 * k}")
            try:
                pts = np.asarray(row[1:1 + 2 * k], dtype=np.float64).reshape(k, 2)
            except ValueError:
                raise DatasetError(f"{path}:{lineno}: non-numeric landmark value for id {row[0]}") from None
            if not np.isfinite(pts).all():
                raise DatasetError(f"{path}:{lineno}: NaN/inf landmark for id {row[0]}")
            image_id = row[0].strip()
            if image_id in out:
                raise DatasetError(f"{path}:{lineno}: id {image_id} appears again (first on line "
                                   f"{first_line[image_id]}); remove the duplicate row")
            out[image_id], first_line[image_id] = pts, lineno
    return out


class HandXray(LandmarkSource):
    name = "hand_xray"
    num_landmarks = 37

    def __init__(self, root: str | Path, fold: int = 1, split: str = "train", missing: str = "raise",
                 scale_pair: tuple[int, int] = (1, 5), scale_mm: float = 50.0, outside: str = "raise") -> None:
        if fold not in (1, 2, 3):
            raise ValueError(f"HandXray fold must be 1, 2 or 3, got {fold!r}")
        if split not in ("train", "test"):
            raise ValueError(f"HandXray split must be 'train' or 'test', got {split!r}")
        if missing not in ("raise", "skip"):
            raise ValueError(f"missing must be 'raise' or 'skip', got {missing!r}")
        self.root, self.fold, self.split = Path(root), fold, split
        self.scale_pair, self.scale_mm = tuple(scale_pair), float(scale_mm)
        csv_path = self.root / "setup" / "all.csv"
        table = read_hand_csv(csv_path, self.num_landmarks)
        list_path = self.root / "setup" / "cv" / f"set{fold}" / f"{split}.txt"
        if not list_path.is_file():
            raise DatasetError(f"hand cross-validation list not found: {list_path}")
        listed = [line.strip() for line in list_path.read_text().splitlines() if line.strip()]
        no_label = [i for i in listed if i not in table]
        if no_label:
            raise DatasetError(f"{list_path}: {len(no_label)} ids have no row in {csv_path}: {no_label[:10]}")
        found = {i: find_image(self.root / "images", i) for i in listed}
        self.missing_ids = [i for i, p in found.items() if p is None]
        if self.missing_ids and missing == "raise":
            raise DatasetError(
                f"hand fold {fold} {split}: {len(self.missing_ids)} of {len(listed)} listed images are missing "
                f"from {self.root / 'images'} (first: {self.missing_ids[:10]}); pass missing='skip' to use the "
                f"{len(listed) - len(self.missing_ids)} present")
        self.listed_count = len(listed)
        self.ids = [i for i in listed if found[i] is not None]
        if not self.ids:
            raise DatasetError(f"hand fold {fold} {split}: none of the {len(listed)} listed images is in {self.root / 'images'}")
        self.image_paths = [found[i] for i in self.ids]
        self.annotation_paths = [csv_path] * len(self.ids)
        self.landmarks = np.stack([table[i] for i in self.ids])
        self.spacings = spacing_from_reference(self.landmarks, self.scale_pair, self.scale_mm)
        self.check_labels(outside)

    def describe(self) -> dict:
        return {**super().describe(), "fold": self.fold, "split": self.split, "listed": self.listed_count,
                "missing_images": len(self.missing_ids),
                "scale": f"landmarks {self.scale_pair} = {self.scale_mm:g} mm"}
