"""Spine metrics for the AASCE / BoostNet set: Cobb angles from 68 landmarks, SMAPE, normalised MSE.

Landmarks: 17 vertebrae (T1 … L5, top to bottom) x 4 corners in the order top-left, top-right,
bottom-left, bottom-right, as ``(x, y)`` pixels (``farnetlib.data.AASCESpine``).

**Cobb angles** follow the AASCE 2019 challenge's evaluation algorithm (its MATLAB ``angleCal``):

1. Each vertebra's mid-line is the vector from the midpoint of its left side (top-left, bottom-left)
   to the midpoint of its right side (top-right, bottom-right).
2. The angle between every pair of mid-lines is taken (cosines rounded to 8 decimals, as there);
   the largest one is the first angle, between vertebrae ``i`` and ``j`` (``i`` is the column of the
   maximum, ``j`` the row of the maximum within that column, as MATLAB's ``max`` picks them).
3. The spine's centre line (the 34 midpoints of the vertebrae's top and bottom edges) is tested for
   an S shape: ``d_k = (y_k - y_n)/(y_1 - y_n) - (x_k - x_n)/(x_1 - x_n)`` for k = 1 … n-2; the curve
   is an S when the ``d_k`` do not all have one sign.
4. Not an S: second angle = between vertebra 1 and ``i``; third = between vertebra 17 and ``j``.
   An S whose main curve lies in the upper half of the image (``y`` of the bottom-edge midpoints of
   ``i`` and ``j`` sum to less than the image height): second = the largest angle between ``i`` and
   vertebrae 1 … ``i``; third = the largest between ``j`` and ``j`` … 17. Otherwise: second = the
   largest angle between ``i`` and vertebrae 1 … ``i`` (at vertebra ``m``), third = the largest
   between ``m`` and vertebrae 1 … ``m``.

The three angles come in the challenge's order, the order of ``angles.csv``: labelled
proximal-thoracic (PT), main-thoracic (MT) and thoraco-lumbar (TL/L); note that the first is by
construction the largest angle of the spine.

**SMAPE** (the challenge metric), per image summed over the three angles, averaged over images::

    SMAPE = 100 / N * sum_i ( sum_a |pred_ia - gt_ia| / sum_a (pred_ia + gt_ia) )   [%]

**Normalised MSE** (BoostNet, Wu et al. MICCAI 2017, and the FARNet paper's spine table): x divided
by the image width and y by the image height, then the mean of the squared differences over all
68 x 2 coordinates and all images (unitless; BoostNet 0.0046, FARNet 0.0017).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["ANGLE_NAMES", "CORNERS", "cobb_angles", "cobb_angles_or_nan", "smape", "normalised_mse", "angle_errors",
           "vertebra_midlines", "is_s_shaped", "per_vertebra_corner", "angles_from_predictions", "spine_metrics",
           "cobb_angles_with_ends",
           "vertebra_mixups", "MIXUP_PX"]

MIXUP_PX = 50.0

ANGLE_NAMES = ("PT", "MT", "TL")
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def _as_spine(landmarks: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] % 4:
        raise ValueError(f"spine landmarks must be (4 x vertebrae, 2), got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("spine landmarks contain NaN or inf")
    return pts


def vertebra_midlines(landmarks: np.ndarray) -> np.ndarray:
    """(V, 2) vectors from each vertebra's left-side midpoint to its right-side midpoint."""
    v = _as_spine(landmarks).reshape(-1, 4, 2)
    left = (v[:, 0] + v[:, 2]) / 2
    right = (v[:, 1] + v[:, 3]) / 2
    return right - left


def _edge_midpoints(landmarks: np.ndarray) -> np.ndarray:
    """(2V, 2): the midpoints of each vertebra's top edge then bottom edge, top to bottom."""
    pts = _as_spine(landmarks)
    return (pts[0::2] + pts[1::2]) / 2


def is_s_shaped(landmarks: np.ndarray) -> bool:
    """The challenge's S-curve test on the centre line (see the module docstring, step 3)."""
    c = _edge_midpoints(landmarks)
    first, last = c[0], c[-1]
    with np.errstate(divide="ignore", invalid="ignore"):  # a vertical spine divides by 0: NaN, as in MATLAB
        d = (c[:-2, 1] - last[1]) / (first[1] - last[1]) - (c[:-2, 0] - last[0]) / (first[0] - last[0])
        outer = np.outer(d, d)
        return bool(np.sum(outer) != np.sum(np.abs(outer)))


def _pair_angles(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1)
    if (norms == 0).any():
        raise ValueError(f"vertebra {int(np.flatnonzero(norms == 0)[0]) + 1} has coincident left and right sides")
    cos = np.round(vectors @ vectors.T / np.outer(norms, norms), 8)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def cobb_angles(landmarks: np.ndarray, image_height: float) -> np.ndarray:
    """The three Cobb angles (degrees; PT, MT, TL in the challenge's order) of one spine."""
    return cobb_angles_with_ends(landmarks, image_height)[0]


def cobb_angles_with_ends(landmarks: np.ndarray, image_height: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cobb_angles` and, per angle, the two (0-based) vertebrae whose mid-lines make it, the
    end vertebrae of that curve as the algorithm picks them (``(3, 2)``, top one first)."""
    mid = vertebra_midlines(landmarks)
    angles = _pair_angles(mid)
    last = len(mid) - 1
    col_max, row_of_max = angles.max(axis=0), angles.argmax(axis=0)
    i = int(col_max.argmax())
    j = int(row_of_max[i])
    first = angles[j, i]
    if not is_s_shaped(landmarks):
        values, ends = [first, angles[0, i], angles[last, j]], [(i, j), (0, i), (j, last)]
    else:
        centre = _edge_midpoints(landmarks)
        upper = centre[2 * i + 1, 1] + centre[2 * j + 1, 1] < image_height
        up = angles[i, : i + 1]
        m = int(up.argmax())
        if upper:
            k = j + int(angles[j, j:].argmax())
            values, ends = [first, up.max(), angles[j, k]], [(i, j), (m, i), (j, k)]
        else:
            n = int(angles[m, : m + 1].argmax())
            values, ends = [first, up.max(), angles[m, n]], [(i, j), (m, i), (n, m)]
    return np.array(values), np.sort(np.array(ends), axis=1)


def smape(pred: np.ndarray, gt: np.ndarray) -> float:
    """The AASCE challenge SMAPE (%) of ``(N, 3)`` predicted vs ground-truth angles."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"angles must be two (N, 3) arrays, got {pred.shape} and {gt.shape}")
    den = (pred + gt).sum(axis=1)
    num = np.abs(pred - gt).sum(axis=1)
    per_image = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return float(100.0 * per_image.mean())


def normalised_mse(pred: np.ndarray, gt: np.ndarray, image_hw: np.ndarray) -> float:
    """Mean squared error of ``(N, K, 2)`` coordinates after dividing x by width and y by height."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    hw = np.asarray(image_hw, dtype=np.float64).reshape(-1, 2)
    if pred.shape != gt.shape or pred.ndim != 3 or len(hw) != len(pred):
        raise ValueError(f"need (N, K, 2) predictions and ground truth and (N, 2) sizes, got {pred.shape}, "
                         f"{gt.shape}, {hw.shape}")
    scale = np.stack([hw[:, 1], hw[:, 0]], axis=1)[:, None, :]  # (N, 1, 2): width for x, height for y
    return float((((pred - gt) / scale) ** 2).mean())


def angle_errors(pred: np.ndarray, gt: np.ndarray) -> pd.DataFrame:
    """Per angle: mean absolute error (degrees), its SD, Pearson correlation, and SMAPE of all three."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    rows = []
    for a, name in enumerate(ANGLE_NAMES):
        err = np.abs(pred[:, a] - gt[:, a])
        r = np.corrcoef(pred[:, a], gt[:, a])[0, 1] if len(pred) > 1 else float("nan")
        rows.append({"angle": name, "mae_deg": err.mean(), "sd_deg": err.std(), "pearson_r": r})
    table = pd.DataFrame(rows)
    table.attrs["smape_%"] = smape(pred, gt)
    return table


def per_vertebra_corner(errors_px: np.ndarray) -> pd.DataFrame:
    """Mean radial error (px) of ``(N, 68)`` errors as a 17 vertebrae x 4 corners table."""
    e = np.asarray(errors_px, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] % 4:
        raise ValueError(f"errors must be (N, 4 x vertebrae), got {e.shape}")
    table = pd.DataFrame(e.reshape(len(e), -1, 4).mean(axis=0), columns=list(CORNERS))
    table.index = [f"v{v + 1}" for v in range(len(table))]
    table["mean"] = table.mean(axis=1)
    return table


def vertebra_mixups(pred: np.ndarray, gt: np.ndarray, min_error_px: float = MIXUP_PX) -> np.ndarray:
    """``(N, K)`` bool: a predicted corner more than ``min_error_px`` off **and** nearer to the same
    corner of the vertebra above or below than to its own (a vertebra-level mix-up: the network
    counted wrong), for ``(N, 4 x vertebrae, 2)`` predicted and ground-truth corners."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    n, k = pred.shape[:2]
    p, g = pred.reshape(n, -1, 4, 2), gt.reshape(n, -1, 4, 2)
    own = np.linalg.norm(p - g, axis=-1)
    near = np.full_like(own, np.inf)
    near[:, 1:] = np.minimum(near[:, 1:], np.linalg.norm(p[:, 1:] - g[:, :-1], axis=-1))  # the vertebra above
    near[:, :-1] = np.minimum(near[:, :-1], np.linalg.norm(p[:, :-1] - g[:, 1:], axis=-1))  # the one below
    return ((own > min_error_px) & (near < own)).reshape(n, k)


def _arrays(predictions: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """ids, predicted and ground-truth ``(N, K, 2)`` points and ``(N, 2)`` image sizes of a split."""
    need = {"id", "landmark", "pred_x", "pred_y", "gt_x", "gt_y", "image_h", "image_w"}
    missing = need - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack columns {sorted(missing)} (written by farnet >= 0.2)")
    df = predictions.sort_values(["id", "landmark"])
    ids = list(dict.fromkeys(df["id"]))
    k = df["landmark"].nunique()
    pred = df[["pred_x", "pred_y"]].to_numpy().reshape(len(ids), k, 2)
    gt = df[["gt_x", "gt_y"]].to_numpy().reshape(len(ids), k, 2)
    hw = df.groupby("id", sort=False)[["image_h", "image_w"]].first().loc[ids].to_numpy()
    return ids, pred, gt, hw


def cobb_angles_or_nan(landmarks: np.ndarray, image_height: float) -> np.ndarray:
    """:func:`cobb_angles`, or three NaN for a degenerate spine (a vertebra whose left and right
    sides coincide, as an untrained model's argmax predictions can give): a metric never stops a run."""
    try:
        return cobb_angles(landmarks, image_height)
    except ValueError:
        return np.full(len(ANGLE_NAMES), np.nan)


def angles_from_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per image: Cobb angles (PT, MT, TL) from the predicted and from the ground-truth landmarks
    (NaN where the predicted spine is degenerate, see :func:`cobb_angles_or_nan`)."""
    ids, pred, gt, hw = _arrays(predictions)
    rows = []
    for i, image_id in enumerate(ids):
        p, g = cobb_angles_or_nan(pred[i], hw[i, 0]), cobb_angles(gt[i], hw[i, 0])
        rows.append({"id": image_id, **{f"pred_{n}": v for n, v in zip(ANGLE_NAMES, p)},
                     **{f"gt_{n}": v for n, v in zip(ANGLE_NAMES, g)}})
    return pd.DataFrame(rows).set_index("id")


def spine_metrics(predictions: pd.DataFrame, reference_angles: pd.DataFrame | None = None) -> dict:
    """The spine numbers of one split: normalised MSE, SMAPE and per-angle MAE/correlation.

    ``reference_angles`` (indexed by id, columns PT/MT/TL: ``AASCESpine.cobb_angles()``, i.e.
    ``angles.csv``) is the ground truth of the angles; without it the angles computed from the
    ground-truth landmarks stand in (they match ``angles.csv`` to SMAPE 0.0005 % on our copy).
    """
    ids, pred, gt, hw = _arrays(predictions)
    angles = angles_from_predictions(predictions)
    pred_a = angles[[f"pred_{n}" for n in ANGLE_NAMES]].to_numpy()
    if reference_angles is not None:
        gt_a, source = reference_angles.loc[ids, list(ANGLE_NAMES)].to_numpy(), "angles.csv"
    else:
        gt_a, source = angles[[f"gt_{n}" for n in ANGLE_NAMES]].to_numpy(), "computed from the ground-truth landmarks"
    ok = np.isfinite(pred_a).all(axis=1)
    mixed = vertebra_mixups(pred, gt)
    out = {"normalised_mse": normalised_mse(pred, gt, hw), "angle_ground_truth": source,
           "angle_images": int(ok.sum()), "degenerate_angle_images": int((~ok).sum()),
           "mixup_%": float(100 * mixed.mean()), "mixup_images": int(mixed.any(axis=1).sum())}
    if not ok.any():
        return {**out, "smape_%": float("nan"), **{f"mae_{n}_deg": float("nan") for n in ANGLE_NAMES},
                **{f"pearson_{n}": float("nan") for n in ANGLE_NAMES}}
    table = angle_errors(pred_a[ok], gt_a[ok])  # angles over the non-degenerate images, counted above
    out["smape_%"] = smape(pred_a[ok], gt_a[ok])
    for row in table.itertuples():
        out[f"mae_{row.angle}_deg"] = float(row.mae_deg)
        out[f"pearson_{row.angle}"] = float(row.pearson_r)
    return out
