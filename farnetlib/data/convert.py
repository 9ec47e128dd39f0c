"""Into the generic format (:mod:`farnetlib.data.generic`): COCO keypoints, and our built-in datasets.

    farnet convert coco ANNOTATIONS.json IMAGES_DIR OUT_ROOT
    farnet convert isbi2015|hand_xray|aasce ROOT OUT_ROOT

The images are not copied: ``landmarks.csv`` names them by paths relative to OUT_ROOT. Coordinates
are written with Python's ``repr`` of each float, which reads back to the same number, so that a
converted copy trains and evaluates exactly like the built-in reader.
"""
from __future__ import annotations

import csv
import io
import json
import os
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Sequence

import numpy as np

from .aasce import AASCESpine
from .base import LandmarkSource
from .generic import LANDMARKS_CSV
from .hand import HandXray
from .io import DatasetError, read_json
from .isbi import ISBI2015, ISBI_DUPLICATES, ISBI_SPLITS

__all__ = ["write_generic", "from_coco", "isbi2015_to_generic", "hand_xray_to_generic", "aasce_to_generic",
           "write_demo_dataset"]


def write_generic(out_root: str | Path, rows: Sequence[dict], num_landmarks: int, info: dict) -> Path:
    """Write ``landmarks.csv`` and ``dataset.json`` under ``out_root``. Each row: ``image`` (a path),
    ``points`` (K, 2) with NaN for missing, and optionally ``id``, ``split``, ``fold``, ``spacing``.
    Refuses to replace an existing landmarks.csv or dataset.json."""
    out = Path(out_root)
    out.mkdir(parents=True, exist_ok=True)
    target = out / LANDMARKS_CSV
    for existing in (target, out / "dataset.json"):
        if existing.exists():
            raise FileExistsError(f"{existing} exists; converting would replace it: choose another OUT_ROOT")
    if any(not Path(r["image"]).resolve().is_relative_to(out.resolve()) for r in rows):
        info = {**info, "images_outside_root": True}  # a conversion points at the images where they are
    optional = [c for c in ("id", "split", "fold", "spacing") if any(r.get(c) is not None for r in rows)]
    header = ["image", *optional] + [f"{a}{k}" for k in range(num_landmarks) for a in "xy"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        rel = os.path.relpath(Path(r["image"]).resolve(), out.resolve())
        cells = [rel] + ["" if r.get(c) is None else repr(r[c]) if isinstance(r[c], float) else str(r[c])
                         for c in optional]
        cells += ["" if np.isnan(v) else repr(float(v)) for v in np.asarray(r["points"], dtype=np.float64).ravel()]
        writer.writerow(cells)
    (out / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
    target.write_text(buf.getvalue())
    return target


def from_coco(annotations: str | Path, images_dir: str | Path, out_root: str | Path,
              occluded: str = "keep") -> Path:
    """A COCO keypoints file (as CVAT and Label Studio export it: one category, one annotation per
    image) into the generic format. Keypoints with visibility 0 (not labelled) become missing; those
    with visibility 1 (labelled, not visible) are kept, or made missing with ``occluded="missing"``.
    COCO keypoint coordinates are pixel indices, our convention too: they are written unchanged."""
    path = Path(annotations)
    try:
        return _from_coco(path, read_json(path, what="COCO annotation file"), images_dir, out_root, occluded)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        if isinstance(err, DatasetError):
            raise
        raise DatasetError(f"{path}: not a COCO keypoints file as expected ({type(err).__name__}: {err})") from None


def _from_coco(path: Path, coco, images_dir: str | Path, out_root: str | Path, occluded: str) -> Path:
    if not isinstance(coco, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'images', 'annotations' and 'categories'")
    cats = [c for c in coco.get("categories", []) if c.get("keypoints")]
    if len(cats) != 1:
        raise DatasetError(f"{path}: expected one category with keypoints, found {len(cats)}")
    names = list(cats[0]["keypoints"])
    k = len(names)
    images = {im["id"]: im for im in coco.get("images", [])}
    by_image: dict = {}
    for ann in coco.get("annotations", []):
        if ann.get("category_id") != cats[0]["id"]:
            continue
        if ann["image_id"] in by_image:
            raise DatasetError(f"{path}: image {images.get(ann['image_id'], {}).get('file_name', ann['image_id'])} "
                               "has two keypoint annotations; the generic format holds one set of landmarks per image")
        if ann["image_id"] not in images:
            raise DatasetError(f"{path}: annotation {ann.get('id')} names image id {ann['image_id']}, not in 'images'")
        kp = np.asarray(ann.get("keypoints", []), dtype=np.float64)
        if kp.size != 3 * k:
            raise DatasetError(f"{path}: annotation {ann.get('id')} has {kp.size} keypoint values, expected {3 * k}")
        kp = kp.reshape(k, 3)
        bad = [(j, v) for j, v in enumerate(kp[:, 2]) if v not in (0, 1, 2)]
        if bad:
            raise DatasetError(f"{path}: annotation {ann.get('id')}, keypoint {bad[0][0]} ({names[bad[0][0]]}): "
                               f"visibility {bad[0][1]:g}; COCO allows 0 (not labelled), 1 (labelled, hidden), 2 (visible)")
        if not np.isfinite(kp[kp[:, 2] > 0, :2]).all():
            raise DatasetError(f"{path}: annotation {ann.get('id')}: a labelled keypoint has a non-finite coordinate")
        by_image[ann["image_id"]] = kp
    rows = []
    for image_id, kp in by_image.items():
        pts = kp[:, :2].copy()
        hidden = (kp[:, 2] == 0) | ((kp[:, 2] == 1) & (occluded == "missing"))
        pts[hidden] = np.nan
        rows.append({"image": Path(images_dir) / images[image_id]["file_name"], "points": pts})
    if not rows:
        raise DatasetError(f"{path}: no keypoint annotations")
    info = {"name": Path(out_root).resolve().name, "landmark_names": names,
            "ground_truth": f"COCO keypoints from {path.name}"}
    return write_generic(out_root, rows, k, info)


def _rows(source: LandmarkSource, split: str, spacing: bool = True) -> list[dict]:
    return [{"image": source.image_paths[i], "id": source.ids[i], "split": split, "points": source.landmarks[i],
             "spacing": float(source.spacings[i, 0]) if spacing and source.spacings is not None else None}
            for i in range(len(source))]


def _consistent_order(lists: Sequence[Sequence[str]]) -> list[str]:
    """One order of every id that keeps the order of each list (Payer's fold lists have one)."""
    graph = TopologicalSorter()
    for ids in lists:
        for a, b in zip(ids, ids[1:]):
            graph.add(b, a)
        for a in ids:
            graph.add(a)
    return list(graph.static_order())


def isbi2015_to_generic(root: str | Path, out_root: str | Path, ground_truth: str = "mean") -> Path:
    """ISBI 2015 in the generic format: every split present (Test2 is not in every copy), spacing
    0.1 mm, ``ground_truth`` mean/senior/junior, the challenge's analysis named in ``dataset.json``."""
    rows, splits = [], []
    for split in ISBI_SPLITS:
        try:
            rows += _rows(ISBI2015(root, split, annotation=ground_truth, outside="keep"), split)
            splits.append(split)
        except DatasetError:
            continue  # Test2 is not in every copy
    info = {"name": "isbi2015", "landmark_names": list(ISBI2015.landmark_names), "spacing": 0.1,
            "test_splits": [s for s in splits if s != "train"], "ground_truth": f"ISBI 2015, {ground_truth}",
            "radii": [2.0, 2.5, 3.0, 4.0], "known_duplicates": [list(d) for d in ISBI_DUPLICATES],
            "analysis": "isbi2015"}
    return write_generic(out_root, rows, ISBI2015.num_landmarks, info)


def hand_xray_to_generic(root: str | Path, out_root: str | Path) -> Path:
    """The hand set in the generic format: a ``fold`` column from Payer's lists, the wrist pair (1, 5) at 50 mm."""
    tests = {fold: HandXray(root, fold, "test", missing="skip", outside="keep") for fold in (1, 2, 3)}
    trains = {fold: HandXray(root, fold, "train", missing="skip", outside="keep") for fold in (1, 2, 3)}
    fold_of = {i: fold for fold, s in tests.items() for i in s.ids}
    order = _consistent_order([s.ids for s in trains.values()] + [s.ids for s in tests.values()])
    where = {i: (s, j) for s in [*tests.values(), *trains.values()] for j, i in enumerate(s.ids)}
    rows = [{"image": where[i][0].image_paths[where[i][1]], "id": i, "fold": fold_of.get(i),
             "points": where[i][0].landmarks[where[i][1]]} for i in order]
    info = {"name": "hand_xray", "normalise": {"pair": [1, 5], "mm": 50.0}, "radii": [2.0, 4.0, 10.0],
            "ground_truth": "Payer annotations"}
    return write_generic(out_root, rows, HandXray.num_landmarks, info)


def aasce_to_generic(root: str | Path, out_root: str | Path) -> Path:
    """AASCE in the generic format: training/test, spacing unknown."""
    rows = []
    for split in ("training", "test"):
        rows += _rows(AASCESpine(root, split, missing="skip", outside="keep"), "train" if split == "training"
                      else split, spacing=False)
    info = {"name": "aasce", "landmark_names": list(AASCESpine.landmark_names), "test_splits": ["test"],
            "radii": [5.0, 10.0, 20.0], "ground_truth": "BoostNet p2 corners"}
    return write_generic(out_root, rows, AASCESpine.num_landmarks, info)


def write_demo_dataset(root: str | Path, n: int = 24, num_landmarks: int = 5, image_size: tuple[int, int] = (96, 80),
                       splits: Sequence[str] | None = None, missing_every: int = 0, spacing: float = 0.5,
                       seed: int = 0) -> Path:
    """A small generic copy made from synthetic radiographs (PNGs under ``images/``), for trying the
    format and for tests: ``splits`` per image (default: all ``train``), every ``missing_every``-th
    landmark cell (counted over images x landmarks in order) left empty, one ``spacing``."""
    from PIL import Image

    from .synthetic import Synthetic

    root = Path(root)
    source = Synthetic(n, num_landmarks, tuple(image_size), seed=seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        sample = source[i]
        image = root / "images" / f"im{i:02d}.png"
        Image.fromarray(sample.image).save(image)
        pts = sample.landmarks.copy()
        if missing_every:
            cells = i * num_landmarks + np.arange(1, num_landmarks + 1)
            pts[cells % missing_every == 0] = np.nan
        rows.append({"image": image, "points": pts, "spacing": float(spacing),
                     "split": splits[i] if splits is not None else None})
    info = {"name": root.resolve().name, "landmark_names": [f"p{j}" for j in range(num_landmarks)],
            "ground_truth": "synthetic shape model (farnetlib.data.Synthetic)"}
    return write_generic(root, rows, num_landmarks, info)
