"""Predict landmarks on a folder of images (no annotations needed): a CSV and, optionally, overlays.

    farnet predict results/isbi2015_cpu/isbi2015_cpu path/to/images --out predictions/

One CSV row per image x landmark: ``image``, ``landmark`` (1-based), ``landmark_name``, ``x``, ``y``
(original pixels, pixel-centre convention) and ``peak`` (the heatmap maximum: a confidence score;
low values deserve a look).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from ..data.io import IMAGE_SUFFIXES, DatasetError, read_gray
from .evaluate import load_model, predict
from .runs import write_atomic

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
                   progress: bool = True, force: bool = False) -> pd.DataFrame:
    """Predict every image under ``images``; write ``predictions.csv`` (and ``overlays/<file>.png``,
    named after the whole file name so that ``a.png`` and ``a.jpg`` keep two overlays).

    An unreadable file is skipped, not fatal: the others are predicted and the skipped ones are in
    ``table.attrs["skipped"]`` (file, reason). An existing ``predictions.csv`` is not overwritten
    unless ``force``."""
    path = Path(run_or_checkpoint)
    ckpt = path / "checkpoints" / "best.pt" if path.is_dir() else path
    if not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint at {ckpt}")
    files = list_images(images)
    out_dir = Path(out_dir)
    if (out_dir / "predictions.csv").is_file() and not force:
        raise FileExistsError(f"{out_dir / 'predictions.csv'} exists; pass --force to replace it, or another --out")
    model, cfg = load_model(ckpt, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = _landmark_names(cfg, model.num_landmarks)
    rows, skipped = [], []
    for file in tqdm(files, desc="predict", disable=not progress):
        try:
            image = read_gray(file)
        except DatasetError as err:
            skipped.append((str(file), str(err)))
            continue
        pts, peak = predict(model, image, cfg.input_size, decoder or cfg.decoder, cfg.reference_0_255,
                            cfg.eval_precision, return_peak=True)
        for k, (px, py) in enumerate(pts):
            rows.append({"image": file.name, "landmark": k + 1, "landmark_name": names[k], "x": px, "y": py,
                         "peak": float(peak[k])})
        if overlays:
            _overlay(image, pts, out_dir / "overlays" / f"{file.name}.png")
    table = pd.DataFrame(rows, columns=["image", "landmark", "landmark_name", "x", "y", "peak"])
    write_atomic(out_dir / "predictions.csv", table.to_csv(index=False))
    table.attrs["skipped"] = skipped
    return table


def _landmark_names(cfg, k: int) -> list[str]:
    from ..data import AASCESpine, ISBI_LANDMARKS

    if cfg.dataset == "isbi2015" and k == len(ISBI_LANDMARKS):
        return list(ISBI_LANDMARKS)
    if cfg.dataset == "aasce" and k == AASCESpine.num_landmarks:
        return list(AASCESpine.landmark_names)
    return [str(i + 1) for i in range(k)]


def _overlay(image: np.ndarray, pts: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6, 6 * image.shape[0] / image.shape[1]))  # no pyplot: safe in notebooks and scripts
    ax = fig.add_subplot()
    ax.imshow(image, cmap="gray")
    ax.scatter(pts[:, 0], pts[:, 1], s=14, c="#d62728", edgecolors="k", linewidths=0.4)
    for k, (x, y) in enumerate(pts):
        ax.annotate(str(k + 1), (x, y), xytext=(3, 3), textcoords="offset points", color="yellow", fontsize=6)
    ax.axis("off")
    fig.savefig(path, dpi=100, bbox_inches="tight")
