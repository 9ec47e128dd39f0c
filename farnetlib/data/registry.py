"""One description per dataset, read by everything else: config checks, sources, evaluation,
folder prediction, reports. Adding a dataset is one :class:`DatasetSpec` in :data:`DATASETS`.

``open_dataset("isbi2015", root, "test1")`` opens a split by name; :func:`get_dataset` gives the
description (splits, default input size, SDR radii, what the ground truth and the spacing are).
The spec's functions take the run's config (a :class:`farnetlib.engine.TrainConfig`, or anything
with the same data fields), so that they stay plain functions of plain values.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .aasce import AASCESpine
from .base import LandmarkSource
from .convert import aasce_to_generic, hand_xray_to_generic, isbi2015_to_generic
from .generic import CsvLandmarks, read_dataset_info
from .hand import HandXray
from .io import DatasetError
from .isbi import ISBI2015, ISBI_LANDMARKS
from .synthetic import Synthetic

__all__ = ["DatasetSpec", "DATASETS", "get_dataset", "open_dataset", "register_dataset", "config_option",
           "default_data_root", "LEGACY_OPTION_FIELDS", "to_generic"]

# config fields of farnet <= 0.2 that are dataset options now: flat name -> (dataset, option)
LEGACY_OPTION_FIELDS: dict[str, tuple[str, str]] = {
    "hand_fold": ("hand_xray", "fold"), "hand_scale_pair": ("hand_xray", "scale_pair"),
    "synthetic_train": ("synthetic", "train"), "synthetic_test": ("synthetic", "test"),
    "synthetic_landmarks": ("synthetic", "landmarks"), "synthetic_image_size": ("synthetic", "image_size"),
}


@dataclass(frozen=True)
class DatasetSpec:
    """What the engine knows about one dataset.

    ``open(cfg, split)`` returns the split's source; ``splits`` is None where the data names them
    (the generic CSV); ``describe(cfg)`` is what qualifies every number (ground truth, spacing,
    unit); ``folds(cfg)`` the cross-validation folds and ``with_fold(k)`` the config changes that
    select fold k; ``extra_metrics`` names further metrics its evaluation adds (``"spine"``);
    ``analysis`` the cephalometric analysis (:mod:`farnetlib.ceph`) whose measurements and classes
    evaluation adds as the ``clinical`` block and ``farnet predict`` writes per image."""

    name: str
    open: Callable[[Any, str], LandmarkSource]
    train_split: str
    test_splits: Callable[[Any], list[str]]
    splits: tuple[str, ...] | None
    input_size: tuple[int, int]
    radii: Callable[[Any], list[float]]
    describe: Callable[[Any], dict]
    landmark_names: Sequence[str] | None = None
    spacing_mm: float | None = None  # one known spacing for every image, where there is one
    folds: Callable[[Any], list[int]] = lambda cfg: []
    with_fold: Callable[[Any, int], dict] = lambda cfg, k: {}
    extra_metrics: str | None = None
    options: dict = field(default_factory=dict)  # dataset_options keys -> (types, default)
    names_of: Callable[[Any], Sequence[str] | None] | None = None  # landmark names read from the data
    flip_permutation: tuple[int, ...] | None = None  # where a mirrored image is anatomically valid (TTA)
    needs_root: bool = True  # False: generated in memory (synthetic)
    pooled_by_pairs: bool = False  # cross-validation tables recompute mm for each 50 mm pair (the hand set)
    paper_mre: tuple[str, float] | None = None  # FARNet's published test MRE (split, mm): a reference line
    analysis: str | None = None  # the clinical analysis of its landmarks (farnetlib.ceph), scored at evaluation
    analysis_of: Callable[[Any], str | None] | None = None  # the analysis read from the data (a CSV's dataset.json)
    check_options: Callable[[dict], str | None] | None = None  # what is wrong with its options' values, or None
    spacing_of: Callable[[Any], float | None] | None = None  # a fixed spacing read from the data
    convert: Callable[..., Path] | None = None  # (root, out_root, **options) -> the generic copy's landmarks.csv
    raters: tuple[str, ...] = ()  # the annotators whose landmarks the data holds apart (ISBI: senior, junior)

    def analysis_for(self, cfg) -> str | None:
        """The cephalometric analysis (a built-in name or a JSON path) of ``cfg``'s data, or None."""
        return self.analysis_of(cfg) if self.analysis_of is not None else self.analysis

    def fixed_spacing(self, cfg) -> float | None:
        """One spacing (mm/px) for every image where the dataset has one (ISBI 0.1; a CSV's
        ``dataset.json`` number), else None."""
        return self.spacing_of(cfg) if self.spacing_of is not None else self.spacing_mm

    def names(self, cfg) -> Sequence[str] | None:
        """The landmark names of ``cfg``'s dataset (None where it has none)."""
        return self.names_of(cfg) if self.names_of is not None else self.landmark_names


def _synthetic(cfg, split: str) -> LandmarkSource:
    opts = cfg.dataset_options
    seed = cfg.split_seed * 1000 + (0 if split == "train" else 1)  # the data, like the split, not `seed`
    return Synthetic(opts["train" if split == "train" else "test"], opts["landmarks"], tuple(opts["image_size"]),
                     seed=seed)


def _csv(cfg, split: str) -> LandmarkSource:
    opts = cfg.dataset_options
    return CsvLandmarks(cfg.root, split, fold=opts.get("fold"), file=opts.get("file", "landmarks.csv"),
                        missing=cfg.missing, outside=cfg.outside)


def _csv_info(cfg):
    return read_dataset_info(cfg.root)


def _csv_test_splits(cfg) -> list[str]:
    if cfg.dataset_options.get("fold") is not None:
        return ["test"]
    info = _csv_info(cfg)
    if info.test_splits is not None:
        return list(info.test_splits)
    from .generic import parse_csv

    return [s for s in parse_csv(Path(cfg.root), cfg.dataset_options.get("file", "landmarks.csv")).splits()
            if s not in ("train", "val")]


def _csv_has_spacing(cfg) -> bool:
    info = _csv_info(cfg)
    if info.spacing is not None or info.normalise is not None:
        return True
    from .generic import parse_csv

    rows = parse_csv(Path(cfg.root), cfg.dataset_options.get("file", "landmarks.csv")).rows
    return bool(rows) and all(r["spacing"] is not None for r in rows)


def _csv_radii(cfg) -> list[float]:
    info = _csv_info(cfg)
    if info.radii is not None:
        return list(info.radii)
    return [2.0, 2.5, 3.0, 4.0] if _csv_has_spacing(cfg) else [5.0, 10.0, 20.0]


def _csv_describe(cfg) -> dict:
    info = _csv_info(cfg)
    if info.normalise is not None:
        spacing = f"landmarks {list(info.normalise['pair'])} (0-based) set to {info.normalise['mm']:g} mm"
    elif info.spacing is not None:
        spacing = f"{info.spacing} mm/px (dataset.json), or the row's spacing cell"
    else:
        spacing = "per row (spacing cells)" if _csv_has_spacing(cfg) else "unknown"
    out = {"dataset_name": info.name or Path(cfg.root).resolve().name, "ground_truth": info.ground_truth,
           "spacing": spacing, "unit": "mm" if spacing != "unknown" else "px"}
    if cfg.dataset_options.get("fold") is not None:
        out["fold"] = cfg.dataset_options["fold"]
    return out


def _csv_analysis(cfg) -> str | None:
    name = _csv_info(cfg).analysis
    if name is None or not name.endswith(".json"):
        return name
    return str(Path(cfg.root) / name)


def _csv_spacing(cfg) -> float | None:
    spacing = _csv_info(cfg).spacing
    if isinstance(spacing, (int, float)) and not isinstance(spacing, bool):
        return float(spacing)
    if isinstance(spacing, (list, tuple)) and len(spacing) == 2 and spacing[0] == spacing[1]:
        return float(spacing[0])
    return None


def _csv_folds(cfg) -> list[int]:
    from .generic import parse_csv

    return parse_csv(Path(cfg.root), cfg.dataset_options.get("file", "landmarks.csv")).folds()


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add (or replace) a dataset description; the config accepts its name from then on."""
    DATASETS[spec.name] = spec
    return spec


def _synthetic_options(opts: dict) -> str | None:
    for key in ("train", "test", "landmarks"):
        if opts[key] < 1:
            return f"option {key!r} = {opts[key]!r} must be >= 1"
    if len(opts["image_size"]) != 2 or not all(isinstance(i, int) and i >= 32 for i in opts["image_size"]):
        return f"option 'image_size' = {opts['image_size']!r} must be (H, W), both integers >= 32"
    return None


def _hand_options(opts: dict) -> str | None:
    if opts["fold"] not in (1, 2, 3):
        return f"option 'fold' = {opts['fold']!r} must be 1, 2 or 3"
    if len(opts["scale_pair"]) != 2 or not all(isinstance(i, int) and i >= 0 for i in opts["scale_pair"]):
        return f"option 'scale_pair' = {opts['scale_pair']!r} must be two landmark indices (0-based)"
    return None


register_dataset(DatasetSpec(
    "synthetic", _synthetic, "train", lambda cfg: ["test"], ("train", "test"), (800, 640),
    radii=lambda cfg: [2.0, 2.5, 3.0, 4.0],
    describe=lambda cfg: {"ground_truth": "synthetic truth", "unit": "mm",
                          "spacing": f"nominal {240.0 / cfg.dataset_options['image_size'][0]:.4g} mm/px"},
    options={"train": ((int,), 60), "test": ((int,), 30), "landmarks": ((int,), 19),
             "image_size": ((list, tuple), [320, 256])},  # images of the train and test splits; (H, W)
    check_options=_synthetic_options, needs_root=False))
register_dataset(DatasetSpec(
    "isbi2015", lambda cfg, split: ISBI2015(cfg.root, split, annotation=cfg.ground_truth, outside=cfg.outside),
    "train", lambda cfg: ["test1", "test2"], ("train", "test1", "test2"), (800, 640),
    radii=lambda cfg: [2.0, 2.5, 3.0, 4.0],
    describe=lambda cfg: {"ground_truth": cfg.ground_truth, "spacing": "0.1 mm/px", "unit": "mm"},
    landmark_names=ISBI_LANDMARKS, spacing_mm=ISBI2015.pixel_spacing_mm, paper_mre=("test1", 1.12),
    analysis="isbi2015", convert=isbi2015_to_generic, raters=("senior", "junior")))
register_dataset(DatasetSpec(
    "hand_xray", lambda cfg, split: HandXray(cfg.root, fold=cfg.dataset_options["fold"], split=split,
                                             missing=cfg.missing, outside=cfg.outside,
                                             scale_pair=tuple(cfg.dataset_options["scale_pair"])),
    "train", lambda cfg: ["test"], ("train", "test"), (512, 512),
    radii=lambda cfg: [2.0, 4.0, 10.0],
    describe=lambda cfg: {"ground_truth": "Payer annotations", "unit": "mm", "fold": cfg.dataset_options["fold"],
                          "spacing": f"landmarks {list(cfg.dataset_options['scale_pair'])} (0-based) set to 50 mm"},
    folds=lambda cfg: [1, 2, 3], with_fold=lambda cfg, k: {"dataset_options": {**cfg.dataset_options, "fold": k}},
    options={"fold": ((int,), 1), "scale_pair": ((list, tuple), [1, 5])},  # Payer: landmarks 1 and 5 are 50 mm apart
    check_options=_hand_options, pooled_by_pairs=True, paper_mre=("test, 895 images", 0.62), convert=hand_xray_to_generic))
register_dataset(DatasetSpec(
    # spine radiographs are about 1:2.5 (W:H): a tall input keeps the per-axis scale of the vertebrae
    "aasce", lambda cfg, split: AASCESpine(cfg.root, split, missing=cfg.missing, outside=cfg.outside),
    "training", lambda cfg: ["test"], ("training", "test"), (1024, 416),
    radii=lambda cfg: [5.0, 10.0, 20.0],
    describe=lambda cfg: {"ground_truth": "BoostNet p2 corners", "spacing": "unknown", "unit": "px"},
    landmark_names=AASCESpine.landmark_names, extra_metrics="spine", flip_permutation=AASCESpine.flip_permutation,
    convert=aasce_to_generic))
register_dataset(DatasetSpec(
    "csv", _csv, "train", _csv_test_splits, None, (512, 512), radii=_csv_radii, describe=_csv_describe,
    folds=_csv_folds, with_fold=lambda cfg, k: {"dataset_options": {**cfg.dataset_options, "fold": k}},
    options={"fold": ((int, type(None)), None), "file": ((str,), "landmarks.csv")},
    names_of=lambda cfg: _csv_info(cfg).landmark_names, analysis_of=_csv_analysis, spacing_of=_csv_spacing))


def config_option(config: dict, name: str):
    """Dataset option ``name`` of a run's ``config.json`` as read (a dict): from ``dataset_options``,
    else the flat field of a run folder of farnet <= 0.2 (``hand_fold``, ...), else the default."""
    opts = config.get("dataset_options") or {}
    if name in opts:
        return opts[name]
    for flat, (dataset, option) in LEGACY_OPTION_FIELDS.items():
        if (dataset, option) == (config.get("dataset"), name) and flat in config:
            return config[flat]
    return get_dataset(config["dataset"]).options[name][1]


def default_data_root(dataset: str) -> str | None:
    """``../shared/data/<dataset>`` (or ``$FARNET_DATA/<dataset>``) where it exists, else None."""
    base = Path(os.environ.get("FARNET_DATA", Path.cwd().parent / "shared" / "data"))
    path = base / dataset
    return str(path) if path.is_dir() else None


def to_generic(name: str, root: str | Path, out_root: str | Path, **options) -> Path:
    """Dataset ``name`` (its copy at ``root``) in the generic format (``landmarks.csv`` +
    ``dataset.json`` under ``out_root``), by its spec's converter; ``options`` are the converter's
    (ISBI: ``ground_truth``). A dataset without one is a DatasetError naming those that have one."""
    spec = DATASETS.get(name)
    if spec is None or spec.convert is None:
        known = ", ".join(n for n, s in DATASETS.items() if s.convert is not None)
        raise DatasetError(f"no converter for dataset {name!r}; known: {known} (and coco)")
    return spec.convert(root, out_root, **options)


def get_dataset(name: str) -> DatasetSpec:
    """The description of dataset ``name``; an unknown name lists the known ones."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


_READERS = {"isbi2015": ISBI2015, "hand_xray": HandXray, "aasce": AASCESpine, "csv": CsvLandmarks}


def open_dataset(name: str, root: str | Path | None = None, split: str | None = None, **kwargs) -> LandmarkSource:
    """A reader for ``name`` (synthetic, isbi2015, hand_xray, aasce, csv); ``kwargs`` go to its class."""
    spec = get_dataset(name)
    split = split or spec.train_split
    if name == "synthetic":
        kwargs.setdefault("seed", 0 if split == "train" else 1)
        return Synthetic(**kwargs)
    if root is None:
        raise ValueError(f"dataset {name!r} needs root= (the folder of its files)")
    return _READERS[name](root, split=split, **kwargs)
