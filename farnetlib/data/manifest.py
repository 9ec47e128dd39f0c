"""Dataset manifests (``data_manifests/<dataset>.json``) and ``verify(root, dataset)``.

A manifest lists every file a complete copy of a dataset must contain: images (by id and split,
any of .bmp/.jpg/.png accepted), annotation files and split lists, with sha256 checksums where we
know them. Image checksums are those of *our* copy (``image_copy`` says which: the JPEG copy in
``../shared/data``); an official BMP copy has other bytes, so images are only compared by checksum
when the file name matches, and are otherwise decoded and size-checked. Annotation files carry a
``landmarks_sha256`` of their first K parsed landmarks, so official files with extra trailing lines
still verify.

    python -m farnetlib.data build isbi2015 ../shared/data/isbi2015   # write a manifest
    python -m farnetlib.data verify isbi2015 ../shared/data/isbi2015  # check a copy
"""
from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .io import IMAGE_SUFFIXES, DatasetError, find_image, read_points_txt, sha256_file

__all__ = ["verify", "build_manifest", "load_manifest", "VerifyReport", "MANIFEST_DIR", "DATASETS"]

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"  # package data (also data_manifests/ in the repo)
DATASETS = ("isbi2015", "hand_xray", "aasce")
_ISBI_SPLITS = {"train": ("TrainingData", range(1, 151)), "test1": ("Test1Data", range(151, 301)),
                "test2": ("Test2Data", range(301, 401))}


def _landmarks_sha(pts: np.ndarray) -> str:
    text = "".join(f"{x:.6f},{y:.6f}\n" for x, y in np.asarray(pts, dtype=np.float64))
    return hashlib.sha256(text.encode()).hexdigest()


def _annotation_landmarks(dataset: str, path: Path) -> np.ndarray | None:
    if dataset == "isbi2015" and path.suffix == ".txt":
        return read_points_txt(path, 19)
    if dataset == "aasce" and path.suffix == ".mat":
        from .aasce import read_spine_mat

        return read_spine_mat(path)
    if dataset == "hand_xray" and path.suffix == ".csv":
        from .hand import read_hand_csv

        read_hand_csv(path)  # parsed, so that a damaged file is "unreadable" with its line, not only "differs"
    return None


def _image_name(folder: Path, stem: str, default: str) -> str:
    """``images/<stem><suffix>`` as the copy at hand names it (any accepted suffix), else ``default``."""
    found = find_image(folder, stem)
    return f"{folder.name}/{found.name if found is not None else stem + default}"


def _layout(dataset: str, root: Path) -> tuple[list[dict], list[str], dict]:
    """Expected files (without checksums), folders to scan for extras, and facts."""
    files: list[dict] = []
    if dataset == "isbi2015":
        for split, (folder, ids) in _ISBI_SPLITS.items():
            for n in ids:
                files.append({"path": f"RawImage/{folder}/{n:03d}.jpg", "role": "image", "split": split, "id": f"{n:03d}"})
                for doc in ("senior", "junior"):
                    files.append({"path": f"AnnotationsByMD/400_{doc}/{n:03d}.txt", "role": "annotation", "split": split,
                                  "id": f"{n:03d}"})
        folders = [f"RawImage/{f}" for f, _ in _ISBI_SPLITS.values()] + ["AnnotationsByMD/400_senior", "AnnotationsByMD/400_junior"]
        facts = {"num_landmarks": 19, "spacing_mm": [0.1, 0.1], "image_size_hw": [2400, 1935],
                 "ground_truth": "mean of senior and junior (default); senior; junior"}
    elif dataset == "hand_xray":
        from .hand import read_hand_csv

        ids = list(read_hand_csv(root / "setup" / "all.csv"))
        files.append({"path": "setup/all.csv", "role": "annotation", "split": "all"})
        lists = sorted((root / "setup" / "cv").glob("set*/*.txt"))
        files += [{"path": str(p.relative_to(root)), "role": "list", "split": p.parent.name} for p in lists]
        files += [{"path": _image_name(root / "images", i, default=".jpg"), "role": "image", "split": "all", "id": i}
                  for i in ids]
        folders = ["images"]
        facts = {"num_landmarks": 37, "spacing_mm": None,
                 "scale": "distance between landmarks 1 and 5 (0-based) = 50 mm (Payer); (0, 4) in GU2Net",
                 "image_size_hw": None}
    elif dataset == "aasce":
        base = "boostnet_labeldata"
        for split in ("training", "test"):
            labels = sorted((root / base / "labels" / split).glob("*.mat"))
            for p in labels:
                name = p.name[:-len(".mat")]
                files.append({"path": f"{base}/labels/{split}/{p.name}", "role": "annotation", "split": split, "id": name})
                files.append({"path": f"{base}/data/{split}/{name}", "role": "image", "split": split, "id": name})
            for csv_name in ("landmarks.csv", "filenames.csv", "angles.csv"):
                files.append({"path": f"{base}/labels/{split}/{csv_name}", "role": "list", "split": split})
        folders = [f"{base}/data/training", f"{base}/data/test", f"{base}/labels/training", f"{base}/labels/test"]
        facts = {"num_landmarks": 68, "spacing_mm": None, "image_size_hw": None,
                 "landmark_order": "17 vertebrae x (top-left, top-right, bottom-left, bottom-right)"}
    else:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    return files, folders, facts


def build_manifest(root: str | Path, dataset: str, image_copy: str = "") -> dict:
    """Describe a copy of ``dataset`` at ``root``: checksums for every file present."""
    root = Path(root)
    files, folders, facts = _layout(dataset, root)
    for f in files:
        path = root / f["path"]
        if not path.is_file():
            continue
        f["sha256"] = sha256_file(path)
        if f["role"] == "annotation":
            pts = _annotation_landmarks(dataset, path)
            if pts is not None:
                f["landmarks_sha256"] = _landmarks_sha(pts)
    splits: dict[str, dict] = {}
    for f in files:
        if f["role"] == "image":
            splits.setdefault(f["split"], {"ids": []})["ids"].append(f["id"])
    for s in splits.values():
        s["n"] = len(s["ids"])
    return {"dataset": dataset, **facts, "splits": splits, "image_copy": image_copy,
            "folders": folders, "files": files}


def load_manifest(dataset: str, manifest_dir: Path = MANIFEST_DIR) -> dict:
    path = Path(manifest_dir) / f"{dataset}.json"
    if not path.is_file():
        raise DatasetError(f"no manifest for {dataset!r} at {path}")
    return json.loads(path.read_text())


@dataclass
class VerifyReport:
    dataset: str
    root: Path
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    mismatching: list[str] = field(default_factory=list)
    not_comparable: int = 0  # present, readable, but a different copy (e.g. BMP vs our JPEG)
    splits: dict[str, str] = field(default_factory=dict)
    images: tuple[int, int] = (0, 0)  # (present, listed)
    absent: list[str] = field(default_factory=list)  # never in our copy (no checksum): expected, not an error
    outside: list[str] = field(default_factory=list)  # labels outside their image (a fact of the data)
    outside_skipped: list[str] = field(default_factory=list)  # parts whose labels could not be checked, and why

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.unreadable or self.mismatching)

    def summary(self, limit: int = 5) -> str:
        lines = [f"verify {self.dataset} at {self.root}: {self.checked} files checked"]
        lines.append(f"  images: {self.images[0]} of {self.images[1]} present")
        lines += [f"  split {s}: {v}" for s, v in self.splits.items()]
        for name in ("missing", "extra", "unreadable", "mismatching"):
            items = getattr(self, name)
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            lines.append(f"  {name}: {len(items)}" + (f" — {', '.join(items[:limit])}{more}" if items else ""))
        if self.absent:
            more = f" (+{len(self.absent) - limit} more)" if len(self.absent) > limit else ""
            lines.append(f"  absent from this copy (not an error: the manifest has no checksum for them, our copy "
                         f"never held them): {len(self.absent)} — {', '.join(self.absent[:limit])}{more}")
        more = f" (+{len(self.outside) - limit} more)" if len(self.outside) > limit else ""
        lines.append(f"  landmarks outside their image: {len(self.outside)}"
                     + (f" — {', '.join(self.outside[:limit])}{more}" if self.outside else ""))
        for skipped in self.outside_skipped:
            lines.append(f"  outside-image check skipped for {skipped}")
        if self.not_comparable:
            lines.append(f"  {self.not_comparable} images are another copy (not our JPEG bytes): decoded and size-checked only")
        lines.append("  OK" if self.ok else "  NOT OK")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _find(root: Path, rel: str, role: str) -> Path | None:
    path = root / rel
    if path.is_file():
        return path
    if role == "image":
        p = Path(rel)
        stem = p.name[: -len(p.suffix)] if p.suffix.lower() in IMAGE_SUFFIXES else p.name
        return find_image(root / p.parent, stem)
    return None


def verify(root: str | Path, dataset: str, manifest: dict | None = None) -> VerifyReport:
    """Check a copy of ``dataset`` at ``root`` against its manifest.

    Reports, by file name: missing files, extra files in the dataset's folders, unreadable images or
    annotations, and mismatching ones (checksum, landmarks or image size). A split with no file
    present at all is reported as absent (e.g. ISBI Test2, kept apart for independent evaluation).
    A file the manifest lists without a checksum was never in our copy (the hand set holds 138 of
    its 910 images): when it is not there it is listed as ``absent``, not ``missing``, and the copy
    can still be OK; a file with a checksum that is not there is ``missing``.
    """
    root = Path(root)
    if dataset == "csv":  # your own data: no manifest, the table and its images checked instead
        from .generic import CsvReport, csv_counts, inspect_csv

        findings = inspect_csv(root)
        return CsvReport(root, findings, "" if findings else csv_counts(root))
    manifest = manifest if manifest is not None else load_manifest(dataset)
    report = VerifyReport(dataset, root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    size = manifest.get("image_size_hw")
    expected_names: set[str] = set()
    per_split: dict[str, list[int]] = {}
    missing_by_split: dict[str, list[str]] = {}
    for f in manifest["files"]:
        rel, role, split = f["path"], f["role"], f.get("split", "all")
        counts = per_split.setdefault(split, [0, 0])
        counts[1] += 1
        path = _find(root, rel, role)
        if role == "image":
            report.images = (report.images[0] + (path is not None), report.images[1] + 1)
        if path is None:
            (missing_by_split.setdefault(split, []) if "sha256" in f else report.absent).append(rel)
            continue
        counts[0] += 1
        report.checked += 1
        expected_names.add(str(path.relative_to(root)))
        same_copy = path.name == Path(rel).name and "sha256" in f
        if same_copy and sha256_file(path) == f["sha256"]:
            continue
        if role == "image":
            try:
                with Image.open(path) as im:
                    im.load()
                    hw = [im.size[1], im.size[0]]
            except Exception as err:  # noqa: BLE001 - any decode failure is "unreadable"
                report.unreadable.append(f"{rel} ({type(err).__name__}: {err})")
                continue
            if size and hw != list(size):
                report.mismatching.append(f"{rel} (size {hw[1]}x{hw[0]}, expected {size[1]}x{size[0]})")
            elif same_copy:
                report.mismatching.append(f"{rel} (sha256 differs from our copy)")
            else:
                report.not_comparable += 1
        else:
            try:
                pts = _annotation_landmarks(dataset, path)
            except DatasetError as err:
                report.unreadable.append(str(err))
                continue
            if pts is not None and "landmarks_sha256" in f:
                if _landmarks_sha(pts) != f["landmarks_sha256"]:
                    report.mismatching.append(f"{rel} (landmarks differ from the manifest)")
            elif "sha256" in f and sha256_file(path) != f["sha256"]:
                report.mismatching.append(f"{rel} (sha256 differs)")
    for split, (present, total) in per_split.items():
        missing = missing_by_split.get(split, [])
        if present == 0:
            report.splits[split] = f"absent (0 of {total} files)"
        else:
            report.splits[split] = f"{present} of {total} files present"
            report.missing += missing
    for folder in manifest["folders"]:
        d = root / folder
        if d.is_dir():
            for p in sorted(d.iterdir()):
                rel = str(p.relative_to(root))
                if p.is_file() and rel not in expected_names:
                    report.extra.append(rel)
    report.outside, report.outside_skipped = labels_outside(root, dataset)
    return report


def labels_outside(root: Path, dataset: str) -> tuple[list[str], list[str]]:
    """Every present label that lies outside its image, as ``"<id>: landmark k at (x, y) in W x H"``,
    and the parts (splits, folds) that could not be opened to check, with the reason."""
    from .registry import open_dataset

    if dataset == "hand_xray":
        parts = [dict(split=s, fold=f, missing="skip") for f in (1, 2, 3) for s in ("train", "test")]
    elif dataset == "aasce":
        parts = [dict(split=s, missing="skip") for s in ("training", "test")]
    else:
        parts = [dict(split=s) for s in ("train", "test1", "test2")]
    found: dict[tuple[str, int], str] = {}
    skipped: list[str] = []
    for kwargs in parts:
        try:
            source = open_dataset(dataset, root, outside="keep", **kwargs)
        except DatasetError as err:  # an absent split (e.g. ISBI Test2), or a file that does not parse
            skipped.append(f"{', '.join(f'{k} {v}' for k, v in kwargs.items() if k != 'missing')}: {err}")
            continue
        for o in source.outside_points:
            found[(o["id"], o["landmark"])] = (f"{o['id']}: landmark {o['landmark']} at ({o['x']:.1f}, {o['y']:.1f}) "
                                               f"in {o['width']} x {o['height']}")
    return [found[k] for k in sorted(found)], skipped


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m farnetlib.data", description="Build or check dataset manifests; 'verify csv ROOT' checks a "
                                             "generic copy (landmarks.csv) and lists every problem at once.")
    ap.add_argument("action", choices=("build", "verify"))
    ap.add_argument("dataset", choices=(*DATASETS, "csv"))
    ap.add_argument("root")
    ap.add_argument("--image-copy", default="", help="what copy the image checksums describe")
    args = ap.parse_args()
    if args.dataset == "csv" and args.action != "verify":
        raise SystemExit("farnet: a generic (csv) copy has no manifest to build; use: verify csv ROOT")
    if args.action == "build":
        manifest = build_manifest(args.root, args.dataset, args.image_copy)
        MANIFEST_DIR.mkdir(exist_ok=True)
        out = MANIFEST_DIR / f"{args.dataset}.json"
        out.write_text(json.dumps(manifest, indent=1))
        print(f"wrote {out} ({len(manifest['files'])} files)")
    else:
        try:
            report = verify(args.root, args.dataset)
        except DatasetError as err:  # e.g. no landmarks.csv at all: one line, no traceback
            raise SystemExit(f"farnet: {err}") from None
        print(report.summary())
        raise SystemExit(0 if report.ok else 1)
