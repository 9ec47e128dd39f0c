"""Cross-validation over run folders: one run per fold, tables pooled over every fold's test images.

The hand protocol (Payer et al. 2019) trains one model per fold of a 3-fold split and reports the
errors of all test images together, each image tested exactly once. These functions read the
``predictions.csv`` of the fold runs only (pixels of the original images), so a pooled table can be
regenerated from ``results/`` alone, and recompute millimetres for any reference pair: the hand
images carry no spacing, and two lineages set different landmark pairs 50 mm apart (Payer: (1, 5),
0-based; GU2Net: (0, 4)).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .data.registry import config_option, get_dataset
from .data.spacing import spacing_from_reference
from .metrics import HAND_RADII_MM, per_landmark_table, radial_errors, summarize
from .uncertainty import interval_columns

__all__ = ["fold_points", "fold_errors", "pooled_table", "pooled_per_landmark", "pooled_predictions", "pooled_summary",
           "FOLD_PAIRS"]

FOLD_PAIRS: tuple[tuple[int, int], ...] = ((1, 5), (0, 4))


def _fold_of(run: dict) -> int:
    cfg = run["config"]
    options = get_dataset(cfg.get("dataset", "")).options
    fold = config_option(cfg, "fold") if "fold" in options else None
    if fold is None:
        raise ValueError(f"run {run['name']}: cross-validation tables are for fold runs (a dataset with a fold option, "
                         f"as hand_xray or a CSV with a fold column), got dataset {cfg.get('dataset')!r} without a fold")
    return int(fold)


def fold_points(runs: Sequence[dict], split: str = "test") -> dict[int, dict]:
    """Per fold: image ids, predicted and ground-truth points ``(N, K, 2)`` in original pixels, and
    the prediction rows they come from (``rows``, sorted by image and landmark as the arrays are).

    Refuses two runs of one fold, a run without ``split``, and an image tested in two folds.
    """
    out: dict[int, dict] = {}
    seen: dict[str, int] = {}
    for run in runs:
        fold = _fold_of(run)
        if fold in out:
            raise ValueError(f"two runs for fold {fold}: {out[fold]['run']} and {run['name']}")
        preds = run["predictions"].query("split == @split")
        if preds.empty:
            raise ValueError(f"run {run['name']} (fold {fold}) has no predictions for split {split!r}")
        preds = preds.sort_values(["id", "landmark"])
        ids = list(dict.fromkeys(preds["id"].astype(str)))
        twice = [i for i in ids if i in seen]
        if twice:
            raise ValueError(f"images tested in folds {seen[twice[0]]} and {fold}: {twice[:5]} "
                             f"(each image must be tested once)")
        seen.update({i: fold for i in ids})
        k = preds["landmark"].nunique()
        if len(preds) != len(ids) * k:
            raise ValueError(f"run {run['name']}: {len(preds)} prediction rows for {len(ids)} images x {k} landmarks")
        shape = (len(ids), k, 2)
        out[fold] = {"run": run["name"], "ids": ids, "rows": preds,
                     "pred": preds[["pred_x", "pred_y"]].to_numpy(float).reshape(shape),
                     "gt": preds[["gt_x", "gt_y"]].to_numpy(float).reshape(shape)}
    return dict(sorted(out.items()))


def fold_errors(points: dict[int, dict], pair: tuple[int, int], distance_mm: float = 50.0) -> dict[int, np.ndarray]:
    """Per fold, errors ``(N, K)`` in mm with the ground-truth landmarks ``pair`` set ``distance_mm`` apart."""
    return {fold: radial_errors(p["pred"], p["gt"], spacing_from_reference(p["gt"], pair, distance_mm))
            for fold, p in points.items()}


def pooled_table(runs: Sequence[dict], split: str = "test", pairs: Iterable[tuple[int, int]] = FOLD_PAIRS,
                 radii: Sequence[float] = HAND_RADII_MM) -> pd.DataFrame:
    """MRE, SD and SDRs (mm) per fold and pooled over all folds' test images, for each reference pair,
    with bootstrap 95 % intervals over images (the pooled row resamples the pooled test images)."""
    points = fold_points(runs, split)
    rows = []
    for pair in pairs:
        errors = fold_errors(points, pair)
        parts = [(f"fold {f}", errors[f], points[f]["run"]) for f in errors]
        parts.append(("pooled", np.concatenate(list(errors.values())), "+".join(p["run"] for p in points.values())))
        for name, e, run_name in parts:
            rows.append({"pair_50mm": f"{pair[0]}-{pair[1]}", "folds": name, "run": run_name, **summarize(e, radii),
                         **interval_columns(e, radii)})
    return pd.DataFrame(rows).set_index(["pair_50mm", "folds"])


def pooled_summary(runs: Sequence[dict], split: str = "test") -> pd.DataFrame:
    """Any dataset's fold runs (a generic CSV with a ``fold`` column): MRE, SD and SDRs per fold and
    pooled over all folds' test images, in the unit and at the radii each run's metrics used (mm
    with the dataset's spacing; missing landmarks left out and counted, as in every table)."""
    rows, pooled = [], []
    for run in runs:
        m = run["metrics"]["splits"].get(split)
        if m is None:
            raise ValueError(f"run {run['name']} has no metrics for split {split!r}")
        preds = run["predictions"][run["predictions"]["split"] == split]
        col = "error_mm" if m["unit"] == "mm" else "error_px"
        errors = preds.pivot(index="id", columns="landmark", values=col).to_numpy()
        fold = config_option(run["config"], "fold")
        rows.append({"folds": f"fold {fold}", "run": run["name"], "unit": m["unit"], **summarize(errors, m["radii"])})
        pooled.append((errors, m["unit"], tuple(m["radii"])))
    if len({(u, r) for _, u, r in pooled}) > 1:
        raise ValueError("the fold runs report different units or radii; they cannot be pooled")
    errors = np.concatenate([e for e, _, _ in pooled])
    rows.append({"folds": "pooled", "run": "+".join(r["name"] for r in runs), "unit": pooled[0][1],
                 **summarize(errors, pooled[0][2])})
    return pd.DataFrame(rows).set_index("folds")


def pooled_per_landmark(runs: Sequence[dict], split: str = "test", pair: tuple[int, int] = (1, 5),
                        radii: Sequence[float] = HAND_RADII_MM) -> pd.DataFrame:
    """Per-landmark MRE/SD/SDR (mm) over all folds' test images, with ``pair`` 50 mm apart."""
    errors = np.concatenate(list(fold_errors(fold_points(runs, split), pair).values()))
    return per_landmark_table(errors, radii)


def pooled_predictions(runs: Sequence[dict], split: str = "test", pair: tuple[int, int] = (1, 5)) -> pd.DataFrame:
    """All folds' prediction rows of ``split`` with a ``fold`` column and ``error_mm`` recomputed with
    ``pair`` 50 mm apart (what box plots and SDR curves of the pooled result are drawn from)."""
    points = fold_points(runs, split)
    errors = fold_errors(points, pair)
    return pd.concat([p["rows"].assign(fold=fold, error_mm=errors[fold].ravel()) for fold, p in points.items()],
                     ignore_index=True)
