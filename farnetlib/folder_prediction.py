"""Predict landmarks on a folder of images (no annotations needed): a CSV and, optionally, overlays.

    farnet predict results/isbi2015_cpu/isbi2015_cpu path/to/images --out predictions/

One CSV row per image x landmark: ``image``, ``landmark`` (1-based), ``landmark_name``, ``x``, ``y``
(original pixels, pixel-centre convention), ``peak`` (the heatmap maximum: a confidence score;
low values deserve a look) and, where the run folder holds validation predictions, ``radius_px``:
the landmark's split-conformal error radius (:func:`farnetlib.uncertainty.run_radii`, 90 % by
default): on images like the validation images, the true landmark lies within it with that
probability. Overlays draw it as a circle. It is calibrated in the original pixels of the run's
data: for images of another resolution or kind it does not transfer.

Where the run's landmarks have a cephalometric analysis (ISBI's 19 landmarks, or a CSV dataset whose
``dataset.json`` names one), ``measurements.csv`` holds one row per image: each measurement's value
and class (:mod:`farnetlib.ceph`; for ISBI the challenge's eight: ANB, SNB, SNA, ODI, APDI, FHI, FMA,
MW), from the sub-pixel predictions; the overlays draw the analysis's planes (SN, FH, palatal,
mandibular, N-Pog, A-B) with the values beside the image. On spine radiographs (an AASCE run),
``cobb_angles.csv`` holds each image's three Cobb angles (PT, MT, TL, :mod:`farnetlib.spine`) and
the end vertebrae of each curve, which the overlays draw.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from .data.io import IMAGE_SUFFIXES, DatasetError, read_gray
from .inference import Predictor
from .data.registry import DATASETS
from .plots import VERTEBRAE, draw_analysis, draw_spine
from .spine import cobb_angles_with_ends
from .progress import tqdm
from .uncertainty import run_radii
from .config import ConfigError
from .heatmaps import check_decoder
from .checkpoint import selected_checkpoint
from .data.io import write_atomic

__all__ = ["predict_folder", "list_images"]


def list_images(path: str | Path) -> list[Path]:
    """The image files of a folder (sorted), or ``[path]`` for one image file."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no image file or folder at {path}")
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
    return images


def predict_folder(run_or_checkpoint: str | Path, images: str | Path, out_dir: str | Path,
                   decoder: str | None = None, overlays: bool = True, device: str = "auto",
                   progress: bool = True, force: bool = False, backend: str = "auto",
                   backend_precision: str = "fp32", coverage: float | None = 0.9) -> pd.DataFrame:
    """Predict every image under ``images``; write ``predictions.csv`` (and ``overlays/<file>.png``,
    named after the whole file name so that ``a.png`` and ``a.jpg`` keep two overlays).

    An unreadable file is skipped, not fatal: the others are predicted and the skipped ones are in
    ``table.attrs["skipped"]`` (file, reason). An existing ``predictions.csv`` is not overwritten
    unless ``force``. ``coverage``: the level of the error radii (None: no radii)."""
    path = Path(run_or_checkpoint)
    if decoder:
        try:
            check_decoder(decoder)
        except ValueError as err:
            raise ConfigError(f"--decoder: {err}") from None
    if coverage is not None and not 0 < coverage < 1:
        raise ConfigError(f"coverage = {coverage}: the level of the error radii must lie in (0, 1), e.g. 0.9")
    selected_checkpoint(path)  # the run first: it is the first argument
    files = list_images(images)
    out_dir = Path(out_dir)
    if (out_dir / "predictions.csv").is_file() and not force:
        raise FileExistsError(f"{out_dir / 'predictions.csv'} exists; pass --force to replace it, or another --out")
    predictor = Predictor.from_run(path, backend=backend, precision=backend_precision, device=device)
    if decoder:
        predictor = Predictor(predictor.backend, replace(predictor.pre, decoder=decoder), predictor.batch_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    radii = run_radii(path, 1 - coverage) if coverage is not None and path.is_dir() else None
    tables, skipped, measured_rows, cobb = [], [], [], []
    analysis = predictor.analysis
    spine = getattr(DATASETS.get(predictor.pre.dataset), "extra_metrics", None) == "spine"
    for file in tqdm(files, desc="predict", disable=not progress):
        try:
            image = read_gray(file)
        except DatasetError as err:
            skipped.append((str(file), str(err)))
            continue
        table = predictor.predict(image).assign(image=file.name)
        if radii is not None:
            table["radius_px"] = radii[1][table["landmark"].to_numpy() - 1]
        tables.append(table)
        pts = table[["x", "y"]].to_numpy()
        measured = predictor.measure(pts[None], [file.name]) if analysis is not None else None
        if measured is not None:
            measured_rows.append(measured)
        curves = _cobb_row(file.name, pts, image.shape[0]) if spine else None
        if curves is not None:
            cobb.append(curves[0])
        if overlays:
            _overlay(image, pts, out_dir / "overlays" / f"{file.name}.png",
                     None if radii is None else table["radius_px"].to_numpy(), analysis,
                     None if measured is None else measured.iloc[0], curves)
    columns = ["image", "landmark", "landmark_name", "x", "y", "peak"] + (["radius_px"] if radii is not None else [])
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)
    write_atomic(out_dir / "predictions.csv", table.to_csv(index=False))
    if analysis is not None:
        measurements = (pd.concat(measured_rows) if measured_rows else
                        pd.DataFrame(columns=[c for n in analysis.names for c in (n, f"{n}_class")]).rename_axis("image"))
        write_atomic(out_dir / "measurements.csv", measurements.to_csv())
        table.attrs["measurements_csv"] = str(out_dir / "measurements.csv")
    if spine:
        write_atomic(out_dir / "cobb_angles.csv", pd.DataFrame(cobb, columns=COBB_COLUMNS).to_csv(index=False))
        table.attrs["cobb_angles_csv"] = str(out_dir / "cobb_angles.csv")
    table.attrs["skipped"] = skipped
    table.attrs["execution"] = predictor.description
    if radii is not None:
        table.attrs["radii"] = {"coverage": coverage, "validation_images": radii[2], "method": "split conformal"}
    return table


COBB_COLUMNS = ["image", "PT", "MT", "TL", "PT_ends", "MT_ends", "TL_ends"]


def _cobb_row(image: str, pts: np.ndarray, height: int) -> tuple[dict, np.ndarray, np.ndarray] | None:
    """(csv row, angles, end vertebrae) of one predicted spine; NaN angles where it is degenerate."""
    try:
        angles, ends = cobb_angles_with_ends(pts, height)
    except ValueError:  # a vertebra whose sides coincide: no angle, said in the row
        angles, ends = np.full(3, np.nan), None
    names = VERTEBRAE if len(pts) == 4 * len(VERTEBRAE) else tuple(str(v + 1) for v in range(len(pts) // 4))
    row = {"image": image, **dict(zip(("PT", "MT", "TL"), angles))}
    for name, pair in zip(("PT", "MT", "TL"), ends if ends is not None else [None] * 3):
        row[f"{name}_ends"] = f"{names[pair[0]]}-{names[pair[1]]}" if pair is not None else ""
    return row, angles, ends


def _overlay(image: np.ndarray, pts: np.ndarray, path: Path, radii: np.ndarray | None = None,
             analysis=None, measured: pd.Series | None = None, curves: tuple | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6, 6 * image.shape[0] / image.shape[1]))  # no pyplot: safe in notebooks and scripts
    ax = fig.add_subplot()
    ax.imshow(image, cmap="gray")
    if analysis is not None:
        draw_analysis(ax, pts, analysis, measured)
    if curves is not None:
        draw_spine(ax, pts, curves[1], curves[2])
    ax.scatter(pts[:, 0], pts[:, 1], s=14, c="#d62728", edgecolors="k", linewidths=0.4)
    for (x, y), r in zip(pts, radii if radii is not None else []):
        if np.isfinite(r):
            ax.add_patch(Circle((x, y), r, fill=False, color="#ffbf00", lw=0.6, alpha=0.8))
    for k, (x, y) in enumerate(pts):
        ax.annotate(str(k + 1), (x, y), xytext=(3, 3), textcoords="offset points", color="yellow", fontsize=6)
    ax.axis("off")
    fig.savefig(path, dpi=100, bbox_inches="tight")
