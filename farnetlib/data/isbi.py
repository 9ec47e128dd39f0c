"""ISBI 2015 cephalometric challenge (Wang et al. 2015 TMI; Wang et al. 2016 MedIA).

Official layout::

    root/RawImage/{TrainingData,Test1Data,Test2Data}/NNN.{bmp,jpg,png}
    root/AnnotationsByMD/400_{senior,junior}/NNN.txt     # first 19 lines 'x,y'; more may follow

1935 x 2400 px at 0.1 mm/px, 19 landmarks. Ground truth: ``"mean"`` of the two doctors (the usual
choice in papers, our default), ``"senior"`` (equals the challenge ground truth except landmark 16
on Test2) or ``"junior"``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import LandmarkSource
from .io import IMAGE_SUFFIXES, DatasetError, SplitAbsent, read_points_txt

__all__ = ["ISBI2015", "ISBI_LANDMARKS", "ISBI_SPLITS", "ISBI_DUPLICATES"]

ISBI_SPLITS = {"train": "TrainingData", "test1": "Test1Data", "test2": "Test2Data"}
ISBI_COUNTS = {"train": 150, "test1": 150, "test2": 100}  # images of the official release
# Two Test1 images of the official release are pixel-identical copies of training images (found by
# the content-hash check at the start of training: sha256 equal in our copy), annotated again by both
# doctors (landmarks a few pixels apart). Every published Test1 result includes them; training keeps
# the official split, says so and records it (metrics.json "known_duplicates").
ISBI_DUPLICATES = (("train", "038", "test1", "283"), ("train", "144", "test1", "173"))
ISBI_LANDMARKS = ("sella", "nasion", "orbitale", "porion", "subspinale", "supramentale", "pogonion",
                  "menton", "gnathion", "gonion", "lower incisal incision", "upper incisal incision",
                  "upper lip", "lower lip", "subnasale", "soft tissue pogonion", "posterior nasal spine",
                  "anterior nasal spine", "articulare")
ANNOTATIONS = ("mean", "senior", "junior")


class ISBI2015(LandmarkSource):
    name = "isbi2015"
    num_landmarks = 19
    landmark_names = ISBI_LANDMARKS
    pixel_spacing_mm = 0.1

    def __init__(self, root: str | Path, split: str = "train", annotation: str = "mean",
                 pixel_spacing_mm: float = 0.1, outside: str = "raise") -> None:
        if split not in ISBI_SPLITS:
            raise ValueError(f"ISBI2015 split must be one of {list(ISBI_SPLITS)}, got {split!r}")
        if annotation not in ANNOTATIONS:
            raise ValueError(f"ISBI2015 annotation must be one of {list(ANNOTATIONS)}, got {annotation!r}")
        self.root, self.split, self.annotation = Path(root), split, annotation
        self.pixel_spacing_mm = float(pixel_spacing_mm)  # 0.1 for the real data
        folder = self.root / "RawImage" / ISBI_SPLITS[split]
        if not folder.is_dir():
            raise SplitAbsent(f"ISBI2015 {split}: image folder not found: {folder}")
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DatasetError(f"ISBI2015 {split}: no .bmp/.jpg/.png images in {folder}")
        self.ids = [p.stem for p in images]
        self.image_paths = images
        doctors = ("senior", "junior") if annotation == "mean" else (annotation,)
        per_doctor = {d: [self.root / "AnnotationsByMD" / f"400_{d}" / f"{i}.txt" for i in self.ids] for d in doctors}
        self.annotation_paths = per_doctor[doctors[0]]
        self.doctor_paths = per_doctor
        self.doctor_landmarks = {d: np.stack([read_points_txt(p, self.num_landmarks) for p in paths])
                                 for d, paths in per_doctor.items()}
        self.landmarks = np.mean(list(self.doctor_landmarks.values()), axis=0)
        self.spacings = np.full((len(self.ids), 2), self.pixel_spacing_mm)
        self.check_labels(outside)

    known_duplicates = ISBI_DUPLICATES

    @property
    def expected_count(self) -> int:
        return ISBI_COUNTS[self.split]

    def label_sets(self) -> list[tuple[np.ndarray, list[Path]]]:
        """Each doctor's labels with their files (the mean is checked through them)."""
        return [(self.doctor_landmarks[d], self.doctor_paths[d]) for d in self.doctor_landmarks]

    def raters(self) -> dict[str, np.ndarray]:
        """Both doctors' landmarks ``(N, 19, 2)`` by name (``senior``, ``junior``), read from their
        files where this source was opened with one doctor's only."""
        if set(self.doctor_landmarks) == {"senior", "junior"}:
            return dict(self.doctor_landmarks)
        both = ISBI2015(self.root, self.split, "mean", self.pixel_spacing_mm, outside="keep")
        return dict(both.doctor_landmarks)

    def describe(self) -> dict:
        return {**super().describe(), "split": self.split, "ground_truth": self.annotation}
