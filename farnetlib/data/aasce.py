"""AASCE 2019 / SpineWeb dataset 16 "boostnet_labeldata" (Wu et al., BoostNet, MICCAI 2017).

Layout as distributed::

    root/boostnet_labeldata/data/{training,test}/<name>.jpg
    root/boostnet_labeldata/labels/{training,test}/<name>.jpg.mat     # key 'p2': 68 x 2 (x, y) pixels

(``root`` may also be the ``boostnet_labeldata`` folder itself.) 17 vertebrae x corners top-left,
top-right, bottom-left, bottom-right. Spacing is not given: errors are in pixels. Each label folder
may also hold ``angles.csv`` (the three Cobb angles, degrees, in the row order of
``filenames.csv``): :meth:`AASCESpine.cobb_angles` reads them for the images of the source.

Some labels lie outside their image (training ``sunhl-1th-25-Jul-2016-49 A AP``: landmark 64 at
y = 2382 in a 2325-px-high image). Every label is checked against its image's size when the source
is built; ``outside="raise"`` (default) names the first such point, ``outside="keep"`` keeps them
as annotated and lists them in ``outside_points``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from ..spine import CORNERS
from .base import LandmarkSource
from .io import DatasetError, SplitAbsent

__all__ = ["AASCESpine", "read_spine_mat"]



def read_spine_mat(path: Path, k: int = 68) -> np.ndarray:
    try:
        mat = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise DatasetError(f"spine label file not found: {path}") from None
    except Exception as err:  # scipy raises several types for corrupt files
        raise DatasetError(f"unreadable spine label file {path}: {err}") from err
    if "p2" not in mat:
        raise DatasetError(f"{path}: no key 'p2' (keys: {[k for k in mat if not k.startswith('__')]})")
    pts = np.asarray(mat["p2"], dtype=np.float64)
    if pts.shape != (k, 2):
        raise DatasetError(f"{path}: 'p2' has shape {pts.shape}, expected ({k}, 2)")
    if not np.isfinite(pts).all():
        raise DatasetError(f"{path}: 'p2' contains NaN/inf")
    return pts


class AASCESpine(LandmarkSource):
    name = "aasce"
    num_landmarks = 68
    landmark_names = tuple(f"v{v + 1}-{c}" for v in range(17) for c in CORNERS)
    # mirrored left-right, each vertebra's left and right corners swap (test-time flip: farnetlib.tta)
    flip_permutation = tuple(4 * v + c for v in range(17) for c in (1, 0, 3, 2))

    def __init__(self, root: str | Path, split: str = "training", missing: str = "raise",
                 outside: str = "raise") -> None:
        if split not in ("training", "test"):
            raise ValueError(f"AASCESpine split must be 'training' or 'test', got {split!r}")
        if missing not in ("raise", "skip"):
            raise ValueError(f"missing must be 'raise' or 'skip', got {missing!r}")
        root = Path(root)
        self.root = root / "boostnet_labeldata" if (root / "boostnet_labeldata").is_dir() else root
        self.split = split
        label_dir = self.root / "labels" / split
        if not label_dir.is_dir():
            raise SplitAbsent(f"AASCE {split}: label folder not found: {label_dir}")
        labels = sorted(label_dir.glob("*.mat"))
        if not labels:
            raise DatasetError(f"AASCE {split}: no .mat label files in {label_dir}")
        images = [self.root / "data" / split / p.name[:-len(".mat")] for p in labels]
        self.missing_ids = [p.name for p in images if not p.is_file()]
        if self.missing_ids and missing == "raise":
            raise DatasetError(f"AASCE {split}: {len(self.missing_ids)} of {len(labels)} labelled images are missing "
                               f"from {self.root / 'data' / split} (first: {self.missing_ids[:5]}); pass missing='skip'")
        keep = [i for i, p in enumerate(images) if p.is_file()]
        if not keep:
            raise DatasetError(f"AASCE {split}: none of the {len(labels)} labelled images is present")
        self.labelled_count = len(labels)
        self.image_paths = [images[i] for i in keep]
        self.annotation_paths = [labels[i] for i in keep]
        self.ids = [p.name[:-len(".jpg")] if p.name.lower().endswith(".jpg") else p.stem for p in self.image_paths]
        self.landmarks = np.stack([read_spine_mat(p, self.num_landmarks) for p in self.annotation_paths])
        self.spacings = None
        self.check_labels(outside)

    def cobb_angles(self) -> pd.DataFrame:
        """The ground-truth Cobb angles (degrees) of this source's images from ``angles.csv``, indexed
        by id, columns PT, MT, TL (the challenge's order; see :mod:`farnetlib.spine`)."""
        folder = self.root / "labels" / self.split
        angles_csv, names_csv = folder / "angles.csv", folder / "filenames.csv"
        for path in (angles_csv, names_csv):
            if not path.is_file():
                raise DatasetError(f"AASCE {self.split}: {path} not found (needed for the Cobb angles)")
        names = [line.strip() for line in names_csv.read_text().splitlines() if line.strip()]
        angles = pd.read_csv(angles_csv, header=None, names=["PT", "MT", "TL"])
        if len(angles) != len(names):
            raise DatasetError(f"{angles_csv}: {len(angles)} rows but {names_csv} lists {len(names)} files")
        angles.index = [n[:-len(".jpg")] if n.lower().endswith(".jpg") else n for n in names]
        absent = [i for i in self.ids if i not in angles.index]
        if absent:
            raise DatasetError(f"{names_csv}: no angles for {len(absent)} images of the source (first: {absent[:3]})")
        return angles.loc[self.ids]

    def describe(self) -> dict:
        return {**super().describe(), "split": self.split, "labelled": self.labelled_count,
                "missing_images": len(self.missing_ids)}
