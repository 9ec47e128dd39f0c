"""Landmark metrics: radial error (mm or px), MRE, SD and successful detection rate (SDR).

All arrays are ``(N, K, 2)`` (images x landmarks x (x, y)) in original image pixels. Spacing is in
mm per pixel: a scalar, a per-axis ``(sx, sy)`` pair, or one value / pair per image (``(N, 1)`` or
``(N, 2)``; a flat ``(N,)`` is refused because it reads like a pair when N is 2). ``spacing=None``
gives errors in pixels.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["radial_errors", "summarize", "sdr", "per_landmark_table",
           "CEPH_RADII_MM", "HAND_RADII_MM"]

CEPH_RADII_MM = (2.0, 2.5, 3.0, 4.0)
HAND_RADII_MM = (2.0, 4.0, 10.0)


def _check_points(name: str, arr, allow_missing: bool = False) -> np.ndarray:
    """``arr`` as (N, K, 2) float64; NaN/inf refused, except, with ``allow_missing``, a landmark
    whose x and y are both NaN (a missing ground-truth label)."""
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (N, K, 2), got {arr.shape}")
    bad = ~np.isfinite(arr)
    if allow_missing:
        bad &= ~np.isnan(arr).all(-1, keepdims=True)
    if bad.any():
        n, k, _ = np.argwhere(bad)[0]
        raise ValueError(f"{name} contains NaN/inf (first at image {n}, landmark {k})")
    return arr


def _spacing_array(spacing, n: int) -> np.ndarray:
    """Spacing as an (N, 1, 2) array for broadcasting."""
    s = np.asarray(spacing, dtype=np.float64)
    if s.ndim == 0:
        s = np.full((n, 2), float(s))
    elif s.shape == (2,):
        s = np.broadcast_to(s, (n, 2))
    elif s.shape == (n, 1):
        s = np.concatenate([s, s], axis=1)
    elif s.shape != (n, 2):
        raise ValueError(f"spacing must be a scalar, (sx, sy), ({n}, 1) or ({n}, 2); got shape {s.shape}")
    if not np.isfinite(s).all() or (s <= 0).any():
        raise ValueError(f"spacing must be finite and positive, got {s.ravel()[:6]}")
    return s[:, None, :]


def radial_errors(pred, gt, spacing=None) -> np.ndarray:
    """Euclidean error per image and landmark, ``(N, K)``: mm if ``spacing`` is given, else px.
    A missing ground-truth landmark (x and y NaN) gives a NaN error, which :func:`summarize` leaves out."""
    pred, gt = _check_points("pred", pred), _check_points("gt", gt, allow_missing=True)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {pred.shape} vs {gt.shape}")
    diff = pred - gt
    if spacing is not None:
        diff = diff * _spacing_array(spacing, len(pred))
    return np.sqrt((diff ** 2).sum(-1))


def sdr(errors, radii: Sequence[float] = CEPH_RADII_MM) -> dict[float, float]:
    """Successful detection rate in percent: share of errors ``<= r`` (the boundary counts)."""
    e = np.asarray(errors, dtype=np.float64)
    if not np.isfinite(e).all():
        raise ValueError("errors contain NaN/inf")
    return {float(r): float((e <= r).mean() * 100.0) for r in radii}


def summarize(errors, radii: Sequence[float] = CEPH_RADII_MM) -> dict[str, float]:
    """MRE, SD (population SD over all image x landmark errors, as the ISBI challenge) and SDRs.

    NaN errors are missing landmarks (no ground truth): they are left out of every number and
    counted as ``missing_landmarks`` (present only where there are some)."""
    e = np.asarray(errors, dtype=np.float64)
    present = e[~np.isnan(e)]
    if present.size == 0:
        raise ValueError("no errors to summarise: every landmark is missing")
    out = {"mre": float(present.mean()), "sd": float(present.std()), "n_images": int(e.shape[0]),
           "n_landmarks": int(e.shape[1]) if e.ndim == 2 else 1}
    out.update({f"sdr_{r:g}": v for r, v in sdr(present, radii).items()})
    if present.size < e.size:
        out["missing_landmarks"] = int(e.size - present.size)
    return out


def per_landmark_table(errors, radii: Sequence[float] = CEPH_RADII_MM,
                       names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per landmark (MRE, SD, SDR at each radius), plus an ``all`` row."""
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"errors must be (N, K), got {e.shape}")
    names = list(names) if names is not None else [str(i + 1) for i in range(e.shape[1])]
    if len(names) != e.shape[1]:
        raise ValueError(f"{len(names)} names for {e.shape[1]} landmarks")
    rows = [{"landmark": nm, **summarize(e[:, [k]], radii)} for k, nm in enumerate(names)]
    rows.append({"landmark": "all", **summarize(e, radii)})
    table = pd.DataFrame(rows).drop(columns=["n_images", "n_landmarks"]).set_index("landmark")
    if "missing_landmarks" in table:  # counted wherever some labels are missing, 0 for the complete rows
        table["missing_landmarks"] = table["missing_landmarks"].fillna(0).astype(int)
    return table
