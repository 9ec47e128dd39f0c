"""Your own X-rays: a landmark dataset from a folder of images and one CSV file (``dataset: "csv"``).

Layout::

    ROOT/landmarks.csv    # one row per image: image, x0, y0, x1, y1, ... (original pixels, x right, y down)
    ROOT/dataset.json     # optional: name, landmark names, spacing, test splits, ... (see DatasetInfo)
    ROOT/<images>         # any folders; the ``image`` column holds paths relative to ROOT

Optional columns: ``id`` (default: the image's file stem, or its path where stems repeat),
``spacing`` (mm per pixel) or ``spacing_x`` and ``spacing_y``, ``split`` (any names: ``train`` is
trained on, ``val`` is the validation split if present, otherwise validation is carved from
``train``), ``fold`` (an integer: cross-validation, fold k's test split is its rows, its training
split every other row). An empty landmark cell is a missing landmark: masked out of the loss and the
metrics, and counted (``missing_landmarks``), never silently dropped.

:func:`inspect_csv` lists every problem of a copy at once (``python -m farnetlib.data verify csv ROOT``);
:class:`CsvLandmarks` refuses a copy with problems, naming the first few.
"""
from __future__ import annotations

import csv
import math
import io
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .base import LandmarkSource, points_outside
from .io import IMAGE_SUFFIXES, DatasetError, SplitAbsent, exif_orientation, oriented_size, read_json
from .spacing import spacing_from_reference

__all__ = ["CsvLandmarks", "DatasetInfo", "read_dataset_info", "inspect_csv", "CsvReport", "CsvTable", "LANDMARKS_CSV"]

LANDMARKS_CSV = "landmarks.csv"
OPTIONAL_COLUMNS = ("id", "split", "fold", "spacing", "spacing_x", "spacing_y")
_COORD = re.compile(r"^([xy])(\d+)$")


@dataclass
class DatasetInfo:
    """``ROOT/dataset.json``; every field optional.

    ``spacing``: mm per pixel for rows without a spacing cell (a number or ``[sx, sy]``).
    ``normalise``: ``{"pair": [i, j], "mm": 50}`` sets each image's spacing so that landmarks i and j
    (0-based) are ``mm`` apart, as the hand set's wrist width (overrides any spacing).
    ``test_splits``: which splits are test splits (default: every split but train and val).
    ``radii``: SDR radii (default: 2, 2.5, 3, 4 mm where the spacing is known, else 5, 10, 20 px).
    ``ground_truth``: how the labels were made (reported with every number).
    ``known_duplicates``: ``[[split, id, split, id], ...]`` image copies across splits the release
    itself holds (kept and recorded; any other copy across splits is refused as test leakage).
    ``analysis``: the cephalometric analysis of the landmarks (:mod:`farnetlib.ceph`): a built-in
    name (``"isbi2015"``: the 19 ISBI landmarks in their order) or a JSON file relative to ROOT;
    evaluation and ``farnet predict`` then give its measurements (needs a fixed ``spacing``).
    ``images_outside_root``: ``true`` lets image cells point outside ROOT (``../x.png``, absolute
    paths); by default such a row is refused, so that a table cannot make training read any file."""

    name: str | None = None
    landmark_names: list[str] | None = None
    spacing: float | list[float] | None = None
    normalise: dict | None = None
    test_splits: list[str] | None = None
    radii: list[float] | None = None
    ground_truth: str = "annotations in landmarks.csv"
    known_duplicates: list[list[str]] = field(default_factory=list)
    analysis: str | None = None
    images_outside_root: bool = False


def read_dataset_info(root: str | Path) -> DatasetInfo:
    """``ROOT/dataset.json`` (defaults where absent); a bad file or an unknown key names the file."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return DatasetInfo()
    values = read_json(path)
    known = set(DatasetInfo.__dataclass_fields__)
    if not isinstance(values, dict) or set(values) - known:
        extra = sorted(set(values) - known) if isinstance(values, dict) else values
        raise DatasetError(f"{path}: unknown key(s) {extra}; known: {sorted(known)}")
    info = DatasetInfo(**values)
    problem = _info_problem(info)
    if problem:
        raise DatasetError(f"{path}: {problem}")
    return info


def _inside(root: Path, path: Path) -> bool:
    """True where ``path`` (symlinks resolved) lies under ``root``."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _info_problem(info: DatasetInfo) -> str | None:
    """What is wrong with a dataset.json's values (types, signs, finiteness), or None."""
    if info.name is not None and not isinstance(info.name, str):
        return f"'name' must be a string, got {info.name!r}"
    if info.landmark_names is not None and not _strings(info.landmark_names):
        return f"'landmark_names' must be a list of strings, one per landmark, got {info.landmark_names!r}"
    if info.spacing is not None and not (_positive(info.spacing) or (
            isinstance(info.spacing, list) and len(info.spacing) == 2 and all(map(_positive, info.spacing)))):
        return f"'spacing' must be a positive number of mm per pixel or [sx, sy], got {info.spacing!r}"
    if info.normalise is not None and not (isinstance(info.normalise, dict) and set(info.normalise) == {"pair", "mm"}
                                           and isinstance(info.normalise["pair"], list) and len(info.normalise["pair"]) == 2
                                           and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                                   for i in info.normalise["pair"])
                                           and _positive(info.normalise["mm"])):
        return f"'normalise' must be {{\"pair\": [i, j], \"mm\": distance}} (0-based landmarks, mm > 0), got {info.normalise!r}"
    if info.test_splits is not None and not _strings(info.test_splits):
        return f"'test_splits' must be a list of split names, got {info.test_splits!r}"
    if info.radii is not None and not (isinstance(info.radii, list) and info.radii and all(map(_positive, info.radii))):
        return f"'radii' must be a list of positive numbers (SDR radii), got {info.radii!r}"
    if not isinstance(info.ground_truth, str):
        return f"'ground_truth' must be a string, got {info.ground_truth!r}"
    if not (isinstance(info.known_duplicates, list) and all(
            isinstance(d, list) and len(d) == 4 and all(isinstance(v, str) for v in d) for d in info.known_duplicates)):
        return f"'known_duplicates' must be a list of [split, id, split, id], got {info.known_duplicates!r}"
    if info.analysis is not None and not isinstance(info.analysis, str):
        return f"'analysis' must be a built-in analysis name or a .json file, got {info.analysis!r}"
    if not isinstance(info.images_outside_root, bool):
        return f"'images_outside_root' must be true or false, got {info.images_outside_root!r}"
    return None


@dataclass
class CsvTable:
    """The parsed rows of a landmarks CSV: what every reader of the format shares."""

    path: Path
    rows: list[dict]  # per row: line, image, id, split, fold, spacing (2,) or None, points (K, 2) with NaN
    num_landmarks: int
    findings: list[str]  # every problem found, one line each, naming the file and line

    def splits(self) -> list[str]:
        return sorted({r["split"] for r in self.rows})

    def folds(self) -> list[int]:
        return sorted({r["fold"] for r in self.rows if r["fold"] is not None})


def _number(cell: str) -> float:
    """A coordinate cell: a number, or NaN where it is empty (a missing landmark)."""
    cell = cell.strip()
    return np.nan if cell == "" else float(cell)


def parse_csv(root: Path, file: str = LANDMARKS_CSV) -> CsvTable:
    """Read ``ROOT/file`` without opening images; problems are collected, not raised. The table is
    parsed once per content (the registry asks for it several times per run): treat it as read-only."""
    path = Path(root) / file
    if not path.is_file():
        raise DatasetError(f"landmark table not found: {path} (the generic format: one row per image, "
                           "columns image, x0, y0, x1, y1, ...)")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark: accepted
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}); save the table as "
                           "'CSV UTF-8'") from None
    return _parse_table(path, text)


@lru_cache(maxsize=8)
def _parse_table(path: Path, text: str) -> CsvTable:
    lines = list(csv.reader(io.StringIO(text, newline="")))
    if not lines:
        raise DatasetError(f"{path}: empty file (expected a header row: image, x0, y0, ...)")
    header = [h.strip() for h in lines[0]]
    coords = {m.groups(): i for i, h in enumerate(header) if (m := _COORD.match(h))}
    k = len(coords) // 2
    expected = {(a, str(j)) for j in range(k) for a in "xy"}
    unknown = [h for h in header if not _COORD.match(h) and h not in ("image", *OPTIONAL_COLUMNS)]
    if "image" not in header or set(coords) != expected or k == 0 or unknown:
        raise DatasetError(f"{path}: header must hold 'image' and x0, y0, ..., x(K-1), y(K-1) "
                           f"(optional: {', '.join(OPTIONAL_COLUMNS)}); got {header}"
                           + (f" (unknown column(s) {unknown})" if unknown else ""))
    col = {h: i for i, h in enumerate(header)}
    findings, rows = [], []
    for lineno, cells in enumerate(lines[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            findings.append(f"{path}:{lineno}: {len(cells)} cells, the header has {len(header)}")
            continue
        get = lambda name: cells[col[name]].strip() if name in col else ""  # noqa: E731
        try:
            pts = np.array([[_number(cells[coords[(a, str(j))]]) for a in "xy"] for j in range(k)], dtype=np.float64)
            spacing = None
            if get("spacing"):
                spacing = (float(get("spacing")),) * 2
            elif get("spacing_x") or get("spacing_y"):
                spacing = (float(get("spacing_x")), float(get("spacing_y")))
            fold = int(get("fold")) if get("fold") else None
        except ValueError as err:
            findings.append(f"{path}:{lineno}: non-numeric cell ({err})")
            continue
        half = np.isnan(pts).any(1) & ~np.isnan(pts).all(1)
        if half.any():
            findings.append(f"{path}:{lineno}: landmark {int(np.flatnonzero(half)[0])} has only one of x, y")
            continue
        if np.isnan(pts).all():
            findings.append(f"{path}:{lineno}: no landmark is labelled (every coordinate cell is empty)")
            continue
        if not np.isfinite(pts[~np.isnan(pts).any(1)]).all():
            findings.append(f"{path}:{lineno}: infinite landmark coordinate")
            continue
        if spacing is not None and not (np.isfinite(spacing).all() and min(spacing) > 0):
            findings.append(f"{path}:{lineno}: spacing must be a positive number, got {spacing}")
            continue
        image = get("image")
        if not image:
            findings.append(f"{path}:{lineno}: empty 'image' cell")
            continue
        rows.append({"line": lineno, "image": image, "id": get("id"), "split": get("split") or "train",
                     "fold": fold, "spacing": spacing, "points": pts})
    stems = [Path(r["image"]).stem for r in rows]
    for r, stem in zip(rows, stems):
        r["id"] = r["id"] or (stem if stems.count(stem) == 1 else str(Path(r["image"]).with_suffix("")))
    first_image: dict[str, int] = {}
    first_id: dict[str, int] = {}
    for r in rows:
        key = str(Path(r["image"]))
        if key in first_image:
            findings.append(f"{path}:{r['line']}: image {r['image']} appears again (first on line {first_image[key]})")
        elif r["id"] in first_id:
            findings.append(f"{path}:{r['line']}: id {r['id']} appears again (first on line {first_id[r['id']]})")
        first_image.setdefault(key, r["line"])
        first_id.setdefault(r["id"], r["line"])
    return CsvTable(path, rows, k, findings)


def inspect_csv(root: str | Path, file: str = LANDMARKS_CSV, decode: bool = True) -> list[str]:
    """Every problem of a generic copy, one line each: the table's (column counts, non-numeric cells,
    duplicate rows), missing or unreadable images, labels outside their image, images under ROOT
    without a row. An empty list means the copy is usable."""
    from PIL import Image

    root = Path(root)
    info = read_dataset_info(root)
    table = parse_csv(root, file)
    findings = list(table.findings)
    if info.landmark_names is not None and len(info.landmark_names) != table.num_landmarks:
        findings.append(f"{root / 'dataset.json'}: {len(info.landmark_names)} landmark names for "
                        f"{table.num_landmarks} landmarks in {table.path.name}")
    for r in table.rows:
        image = root / r["image"]
        if not image.is_file():
            findings.append(f"{table.path}:{r['line']}: image not found: {image}")
            continue
        if not _inside(root, image) and not info.images_outside_root:
            findings.append(f"{table.path}:{r['line']}: image {r['image']} lies outside the dataset folder {root} "
                            "(allowed only with \"images_outside_root\": true in dataset.json)")
        try:
            with Image.open(image) as im:
                w, h = oriented_size(im)
                turned = exif_orientation(im)
                if decode:
                    im.load()
        except Exception as err:  # noqa: BLE001 - every decoder error is a finding about this file
            findings.append(f"{table.path}:{r['line']}: unreadable image {image}: {err}")
            continue
        if turned != 1:
            findings.append(f"{table.path}:{r['line']}: image {r['image']} carries EXIF orientation {turned}: it is read "
                            f"turned as viewers show it ({w} x {h}); its landmarks must be in that frame")
        pts = r["points"]
        for k in np.flatnonzero(points_outside(pts, (h, w))):
            findings.append(f"{table.path}:{r['line']}: landmark {k} at ({pts[k, 0]:.1f}, {pts[k, 1]:.1f}) lies "
                            f"outside the {w} x {h} image {r['image']}")
    listed = {(root / r["image"]).resolve() for r in table.rows}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and p.resolve() not in listed:
            findings.append(f"{p}: image without a row in {table.path.name}")
    return findings


@dataclass
class CsvReport:
    """:func:`inspect_csv`'s findings in the shape of a manifest check's report (``ok``, ``summary()``)."""

    root: Path
    findings: list[str]
    counts: str = ""  # what was checked: images per split, landmarks, missing labels

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        head = f"verify csv at {self.root}: " + (f"{len(self.findings)} problem(s)" if self.findings else "no problems found")
        head += f" ({self.counts})" if self.counts else ""
        return "\n".join([head, *(f"  {line}" for line in self.findings)])


def csv_counts(root: str | Path, file: str = LANDMARKS_CSV) -> str:
    """What a generic copy holds, in words: rows per split, landmarks per image, missing labels."""
    table = parse_csv(Path(root), file)
    splits = {}
    for r in table.rows:
        splits[r["split"]] = splits.get(r["split"], 0) + 1
    missing = sum(int((~np.isfinite(r["points"]).all(axis=1)).sum()) for r in table.rows)
    per_split = ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))
    return (f"{len(table.rows)} images ({per_split}), {table.num_landmarks} landmarks each, "
            f"{missing} missing label{'s' if missing != 1 else ''}")


class CsvLandmarks(LandmarkSource):
    """One split of a generic dataset (see the module docstring).

    ``split``: a value of the ``split`` column (``train`` also holds the ``val`` rows when there
    are any, listed in ``validation_indices``), or, with ``fold=k``, ``"train"`` (rows of every other
    fold, and rows without a fold) or ``"test"`` (fold k's rows). ``missing="skip"`` drops rows whose
    image file is absent (counted in ``missing_ids``); ``"raise"`` refuses them."""

    def __init__(self, root: str | Path, split: str = "train", fold: int | None = None, file: str = LANDMARKS_CSV,
                 missing: str = "raise", outside: str = "raise") -> None:
        self.root, self.split, self.fold = Path(root), split, fold
        self.info = read_dataset_info(self.root)
        table = parse_csv(self.root, file)
        if table.findings:
            more = f" (and {len(table.findings) - 3} more; list them all with: python -m farnetlib.data verify csv " \
                   f"{self.root})" if len(table.findings) > 3 else ""
            raise DatasetError("; ".join(table.findings[:3]) + more)
        self.name = self.info.name or self.root.resolve().name
        self.num_landmarks = table.num_landmarks
        self.landmark_names = self.info.landmark_names
        rows = self._select(table)
        escaped = [r for r in rows if not _inside(self.root, self.root / r["image"])]
        if escaped and not self.info.images_outside_root:
            raise DatasetError(f"{table.path}:{escaped[0]['line']}: image {escaped[0]['image']} lies outside the dataset "
                               f"folder {self.root} ({len(escaped)} such row(s)); allow it with "
                               "\"images_outside_root\": true in dataset.json")
        present = [(self.root / r["image"]).is_file() for r in rows]
        self.missing_ids = [r["id"] for r, ok in zip(rows, present) if not ok]
        if self.missing_ids and missing == "raise":
            raise DatasetError(f"{table.path}: {len(self.missing_ids)} of {len(rows)} images of split {split!r} are "
                               f"missing (first: {self.root / rows[present.index(False)]['image']}); pass "
                               "missing='skip' to use the present ones")
        rows = [r for r, ok in zip(rows, present) if ok]
        if not rows:
            raise DatasetError(f"{table.path}: no images in split {split!r}" + (f" of fold {fold}" if fold else ""))
        self.ids = [r["id"] for r in rows]
        self.image_paths = [self.root / r["image"] for r in rows]
        self.annotation_paths = [table.path] * len(rows)
        self.landmarks = np.stack([r["points"] for r in rows])
        self.validation_indices = [i for i, r in enumerate(rows) if r["split"] == "val" and fold is None]
        self.spacings = self._spacings(rows, table.path)
        self.known_duplicates = [tuple(d) for d in self.info.known_duplicates]
        self.check_labels(outside)

    def _select(self, table: CsvTable) -> list[dict]:
        if self.fold is not None:
            if not table.folds():
                raise DatasetError(f"{table.path}: fold={self.fold} asked, but the table has no 'fold' column values")
            if self.fold not in table.folds():
                raise DatasetError(f"{table.path}: no rows of fold {self.fold}; folds: {table.folds()}")
            if self.split not in ("train", "test"):
                raise DatasetError(f"with folds, the splits are 'train' and 'test', not {self.split!r}")
            return [r for r in table.rows if (r["fold"] == self.fold) == (self.split == "test")]
        splits = table.splits()
        if self.split not in splits:
            raise SplitAbsent(f"{table.path}: no rows of split {self.split!r}; splits: {splits}")
        wanted = {"train", "val"} if self.split == "train" else {self.split}
        return [r for r in table.rows if r["split"] in wanted]

    def _spacings(self, rows: list[dict], path: Path) -> np.ndarray | None:
        if self.info.normalise is not None:
            pair = tuple(int(i) for i in self.info.normalise["pair"])
            pts = self.landmarks[:, list(pair)]
            if np.isnan(pts).any():
                bad = self.ids[int(np.flatnonzero(np.isnan(pts).any((1, 2)))[0])]
                raise DatasetError(f"{path}: image {bad} lacks landmark {pair[0]} or {pair[1]}, which set its scale "
                                   "(dataset.json 'normalise')")
            return spacing_from_reference(self.landmarks, pair, float(self.info.normalise["mm"]))
        default = self.info.spacing
        if default is not None:
            default = tuple(default) if isinstance(default, (list, tuple)) else (float(default),) * 2
        per_row = [r["spacing"] or default for r in rows]
        if all(s is None for s in per_row):
            return None
        return np.array([s if s is not None else (np.nan, np.nan) for s in per_row], dtype=np.float64)

    @property
    def missing_landmarks(self) -> int:
        """How many (image, landmark) labels are empty cells."""
        return int(np.isnan(self.landmarks).any(-1).sum())

    def describe(self) -> dict:
        return {**super().describe(), "split": self.split, "fold": self.fold, "missing_images": len(self.missing_ids),
                "missing_landmarks": self.missing_landmarks}
