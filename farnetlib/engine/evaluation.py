"""Prediction in original image pixels, per-split evaluation, and evaluation of a saved run."""
from __future__ import annotations

import json
import warnings
from contextlib import nullcontext
from typing import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from ..progress import tqdm

from ..data import DatasetError, LandmarkDataset, LandmarkSource
from ..data.registry import get_dataset
from ..data.transforms import image_to_input
from ..heatmaps import decoder_label, farnet_codecs
from ..inference import fine_heatmaps, heatmap_backend, resolve_backend
from ..metrics import radial_errors, summarize
from ..model import FARNet
from ..ceph import source_clinical_metrics
from ..spine import spine_metrics
from ..config import ConfigError, TrainConfig
from .loaders import open_test_splits
from ..checkpoint import build_model, load_checkpoint, load_model, selected_checkpoint
from ..data.io import read_json_record, write_atomic
from .runs import run_lock
from .sources import build_source, describe_ground_truth

__all__ = ["predict", "predict_source", "split_metrics", "evaluate", "evaluate_splits", "load_model",
           "build_model", "result_label", "backend_heatmaps", "load_checkpoint"]


@torch.no_grad()
def predict(model: FARNet, image: np.ndarray, input_size: tuple[int, int], decoder: str | dict = "quadratic",
            intensity_range: str = "0-1", precision: str = "fp32", return_peak: bool = False,
            contrast: str = "none", targets: str = "landmarks", num_landmarks: int | None = None):
    """Landmarks ``(K, 2)`` in the original pixels of one (H, W) uint8 grayscale image (and, with
    ``return_peak``, the ``(K,)`` heatmap peak values). The input follows the model's memory layout.
    ``targets``/``num_landmarks``: a model trained with ``targets: "spine_corners"`` (K landmarks
    from 4 heatmaps). Deprecated: :class:`farnetlib.inference.Predictor` predicts images with any
    backend (``Predictor(TorchBackend(model), preprocess)``, or ``Predictor.from_run``)."""
    warnings.warn("farnetlib.engine.predict is deprecated: use farnetlib.inference.Predictor (from_run, predict)",
                  DeprecationWarning, stacklevel=2)
    if image.ndim != 2:
        raise ValueError(f"predict expects a (H, W) grayscale image, got shape {image.shape}")
    model.eval()
    fine = fine_heatmaps(model, image_to_input(image, input_size, intensity_range, contrast)[None], precision)
    codec = farnet_codecs(input_size, decoder, targets, num_landmarks)[1]
    pts, peak = codec.decode_original(fine, [image.shape])
    pts, peak = pts[0], peak[0]
    return (pts, peak) if return_peak else pts


@torch.no_grad()
def predict_source(model: FARNet, source: LandmarkSource, cfg: TrainConfig, split: str,
                   indices: list[int] | None = None, cache=None, progress: bool = True,
                   heatmaps: Callable[[torch.Tensor], torch.Tensor] | None = None) -> pd.DataFrame:
    """One row per image x landmark: predictions and ground truth in original pixels, errors in px/mm.

    ``heatmaps`` (a normalised CPU batch -> fine heatmaps, e.g. an ONNX Runtime or OpenVINO backend
    of :mod:`farnetlib.inference`) replaces the model's forward pass; decoding is the same fp32 code."""
    device = next(model.parameters()).device
    ds = LandmarkDataset(source, cfg.input_size, cache=cache, indices=indices, intensity_range=cfg.intensity_range,
                         contrast=cfg.contrast)
    loader = DataLoader(ds, batch_size=cfg.eval_batch_size, shuffle=False, num_workers=0,
                        pin_memory=device.type == "cuda")
    codec = cfg.codecs(source.num_landmarks)[1]  # the fine output's geometry
    model.eval()
    rows, names = [], source.landmark_names
    for batch in tqdm(loader, desc=f"predict {split}", leave=False, disable=not progress):
        fine = (heatmaps(batch["image"]) if heatmaps is not None
                else fine_heatmaps(model, batch["image"], cfg.eval_precision))
        orig_hws = [tuple(hw) for hw in batch["orig_hw"].tolist()]
        preds, peak = codec.decode_original(fine, orig_hws)  # decoded in fp32
        for b, (pred, orig_hw) in enumerate(zip(preds, orig_hws)):
            gt = batch["landmarks_orig"][b].numpy()
            spacing = batch["spacing"][b].numpy()
            err_px = radial_errors(pred[None], gt[None])[0]
            err_mm = (radial_errors(pred[None], gt[None], spacing[None]) if np.isfinite(spacing).all()
                      else np.full(len(gt), np.nan))
            if np.ndim(err_mm) == 2:
                err_mm = err_mm[0]
            for k in range(len(gt)):
                rows.append({"split": split, "id": batch["id"][b], "landmark": k + 1,
                             "landmark_name": names[k] if names else str(k + 1),
                             "pred_x": pred[k, 0], "pred_y": pred[k, 1], "gt_x": gt[k, 0], "gt_y": gt[k, 1],
                             "error_px": err_px[k], "error_mm": err_mm[k], "peak": float(peak[b, k]),
                             "image_h": orig_hw[0], "image_w": orig_hw[1]})
    return pd.DataFrame(rows)


def split_metrics(predictions: pd.DataFrame, cfg: TrainConfig, source: LandmarkSource | None = None) -> dict:
    """MRE, SD and SDR of one split's predictions, with everything that qualifies the numbers; for
    the spine also normalised MSE, SMAPE and per-angle errors (angles.csv of ``source`` as truth); for a
    dataset with a cephalometric analysis (ISBI) the ``clinical`` block of :mod:`farnetlib.ceph`: SCR,
    accuracy and MAE of the eight measurements, classes of the senior doctor's landmarks, the junior
    doctor's scores beside them."""
    labelled = predictions["gt_x"].notna()  # a missing landmark (no label) has no error
    unit = "mm" if predictions.loc[labelled, "error_mm"].notna().all() else "px"
    col = "error_mm" if unit == "mm" else "error_px"
    errors = predictions.pivot(index="id", columns="landmark", values=col).to_numpy()
    out = {**describe_ground_truth(cfg), "unit": unit, **summarize(errors, cfg.radii)}
    out["mre_px"] = float(predictions.loc[labelled, "error_px"].mean())
    spec = get_dataset(cfg.dataset)
    analysis = spec.analysis_for(cfg)
    if analysis is not None and source is not None:
        out["clinical"] = source_clinical_metrics(predictions, source, analysis, spacing_mm=spec.fixed_spacing(cfg))
    if spec.extra_metrics == "spine":
        try:
            angles = getattr(source, "cobb_angles", None)  # a source that carries its clinical truth (angles.csv)
            reference = angles() if angles is not None else None
        except DatasetError:
            reference = None
        out.update(spine_metrics(predictions, reference))
    return out


def evaluate_splits(model: FARNet, cfg: TrainConfig, source: LandmarkSource, val_idx: list[int], cache,
                    progress: bool = True, test_sources: dict | None = None,
                    heatmaps: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[list[pd.DataFrame], dict]:
    """Predictions and metrics of the validation images and of each test split the config names
    (``test_sources``: split -> source, or the reason it is absent, as opened at the start of
    training; opened here when None); absent splits are listed under ``skipped`` with the reason."""
    if test_sources is None:
        test_sources = open_test_splits(cfg)
    frames = [predict_source(model, source, cfg, "val", indices=val_idx, cache=cache, progress=progress,
                             heatmaps=heatmaps)]
    metrics = {"splits": {"val": split_metrics(frames[0], cfg, source)}, "skipped": {}}
    for split, test_source in test_sources.items():
        if isinstance(test_source, str):
            metrics["skipped"][split] = test_source
            continue
        frames.append(predict_source(model, test_source, cfg, split, cache=cache, progress=progress,
                                     heatmaps=heatmaps))
        metrics["splits"][split] = split_metrics(frames[-1], cfg, test_source)
    return frames, metrics


def backend_heatmaps(run_or_checkpoint: Path, backend: str, precision: str = "fp32", device: str = "auto"):
    """(heatmap function or None for the model's own forward pass, what computed them) for a backend
    (``"auto"``: :func:`farnetlib.inference.resolve_backend`, falling back to torch on failure)."""
    requested = {"requested": backend} if backend == "auto" else {}
    if resolve_backend(backend, device) == "torch":
        return None, {"backend": "torch", "precision": "fp32", **requested}  # evaluate() runs the model in fp32
    impl, _ = heatmap_backend(run_or_checkpoint, backend, precision, device=device)
    if impl.name == "torch":  # "auto" fell back
        return None, {"backend": "torch", "precision": "fp32", **requested}
    return (lambda x: torch.from_numpy(impl(x.numpy()))), {"backend": impl.name, "precision": impl.precision,
                                                           **requested}


def result_label(split: str, run_cfg: TrainConfig, eval_cfg: TrainConfig) -> str:
    """The name of an evaluation in a run folder: the split, plus the ground truth and the decoder
    where they differ from the run's own (``test1``, ``test1_senior``, ``test1_senior_argmax``)."""
    parts = [split]
    if eval_cfg.ground_truth != run_cfg.ground_truth:
        parts.append(eval_cfg.ground_truth)
    if eval_cfg.decoder != run_cfg.decoder:
        parts.append(decoder_label(eval_cfg.decoder))
    return "_".join(parts)


def evaluate(run_or_checkpoint: str | Path, split: str, root: str | Path | None = None,
             device: str = "auto", write: bool = False, label: str | None = None, force: bool = False,
             backend: str = "auto", backend_precision: str = "fp32", **overrides) -> tuple[pd.DataFrame, dict]:
    """Evaluate a run's selected checkpoint (``checkpoints/best.pt``) on ``split``.

    ``root`` points at another copy of the dataset, e.g. the official ISBI layout holding Test2,
    which is evaluated independently. ``overrides`` change evaluation-only fields (``decoder``,
    ``ground_truth``, ``eval_batch_size``). With ``write=True`` the predictions and metrics are
    added to the run folder under ``label``, by default :func:`result_label` (``test1_senior`` for
    senior-only ground truth beside the run's ``test1``). An existing entry is never replaced
    unless ``force=True``: the error names it.
    """
    path = Path(run_or_checkpoint)
    if write and not path.is_dir():
        raise ConfigError(f"--write adds the result to a run folder, but {path} is a checkpoint file: pass the "
                          "run folder that holds checkpoints/best.pt")
    ckpt = selected_checkpoint(path)
    bad = set(overrides) - {"decoder", "ground_truth", "eval_batch_size"}
    if bad:
        raise ValueError(f"only decoder, ground_truth and eval_batch_size can change at evaluation, not {sorted(bad)}")
    model, run_cfg = load_model(ckpt, device)
    cfg = replace(run_cfg, **overrides, **({"root": str(root)} if root is not None else {}))
    known = get_dataset(cfg.dataset).splits
    if known is not None and split not in known:
        raise ConfigError(f"{cfg.dataset} has no split {split!r}; its splits: {', '.join(known)}")
    label = label or result_label(split, run_cfg, cfg)
    with run_lock(path, "farnet evaluate --write") if write else nullcontext():
        if write and not force:
            existing = read_json_record(path / "metrics.json").get("splits", {})
            if label in existing:
                raise FileExistsError(f"{path / 'metrics.json'} already holds an entry {label!r}; pass --force "
                                      "(force=True in Python) to replace it, or another --label")
        source = build_source(cfg, split)
        fn, execution = backend_heatmaps(path, backend, backend_precision, device)
        preds = predict_source(model, source, cfg, label, heatmaps=fn)
        metrics = {**split_metrics(preds, cfg, source), "split": split, "label": label, "execution": execution}
        if write:
            old = pd.read_csv(path / "predictions.csv", dtype={"id": str})
            allm = read_json_record(path / "metrics.json")
            allm.setdefault("splits", {})[label] = metrics
            # predictions first: metrics.json never lists a label whose rows are not in predictions.csv
            write_atomic(path / "predictions.csv", pd.concat([old[old["split"] != label], preds]).to_csv(index=False))
            write_atomic(path / "metrics.json", json.dumps(allm, indent=2))
    return preds, metrics
