"""How sure the numbers are: bootstrap intervals, paired comparisons, calibrated error radii.

Every function takes the ``(N, K)`` radial errors of one split (images x landmarks, mm or px, from a
run folder's ``predictions.csv``) and resamples **images**, never landmarks: the landmarks of one
image share its contrast, pose and the model's luck, so they are not independent.

- :func:`metric_intervals`: percentile bootstrap 95 % intervals of MRE, SD and every SDR radius
  (seeded; 2,000 resamples by default), and per landmark with :func:`per_landmark_intervals`.
- :func:`paired_comparison`: two runs on the same images: the paired bootstrap interval of the MRE
  difference and the Wilcoxon signed-rank test on the per-image MRE differences.
- :func:`conformal_radii` / :func:`coverage`: split-conformal error radii per landmark from the
  validation split (Vovk et al. 2005; Angelopoulos & Bates 2021, "A gentle introduction to
  conformal prediction"): the true landmark lies within ``r_k`` of the prediction with probability
  at least ``1 - alpha`` for an exchangeable new image; optionally scaled by the heatmap peak so
  that confident predictions get smaller radii.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .metrics import summarize

__all__ = ["run_radii", "bootstrap_interval", "metric_intervals", "interval_columns", "per_landmark_intervals", "format_interval",
           "paired_comparison", "PairedComparison", "conformal_radii", "coverage", "errors_matrix",
           "split_errors_and_peaks", "run_coverage"]

RESAMPLES, SEED, LEVEL = 2000, 0, 0.95


def errors_matrix(predictions: pd.DataFrame, split: str, column: str = "error_mm") -> tuple[list[str], np.ndarray]:
    """(image ids, ``(N, K)`` errors) of one split of a run's ``predictions.csv``, ids sorted."""
    rows = predictions[predictions["split"] == split]
    if rows.empty:
        raise ValueError(f"no predictions for split {split!r} (splits: {sorted(predictions['split'].unique())})")
    table = rows.pivot(index="id", columns="landmark", values=column).sort_index()
    return [str(i) for i in table.index], table.to_numpy(dtype=np.float64)


def _resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_interval(errors: np.ndarray, statistic: Callable[[np.ndarray], float], resamples: int = RESAMPLES,
                       seed: int = SEED, level: float = LEVEL) -> tuple[float, float, float]:
    """(statistic, lower, upper): the percentile bootstrap interval of ``statistic`` over images."""
    e = np.asarray(errors, dtype=np.float64)
    idx = _resample_indices(len(e), resamples, seed)
    values = np.array([statistic(e[i]) for i in idx])
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(statistic(e)), float(lo), float(hi)


def metric_intervals(errors: np.ndarray, radii: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED,
                     level: float = LEVEL) -> pd.DataFrame:
    """One row per metric (``mre``, ``sd``, ``sdr_<r>``): value and bootstrap interval over images."""
    e = np.asarray(errors, dtype=np.float64)
    idx = _resample_indices(len(e), resamples, seed)
    names = ["mre", "sd", *[f"sdr_{r:g}" for r in radii]]
    point = summarize(e, radii)
    draws = _summary_draws(e, idx, radii)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail], axis=0)
    table = pd.DataFrame({"value": [point[m] for m in names], "lower": lo, "upper": hi}, index=names)
    table.attrs.update(resamples=resamples, seed=seed, level=level, n_images=len(e))
    return table


def _summary_draws(errors: np.ndarray, idx: np.ndarray, radii: Sequence[float],
                   block_elements: int = 2**18) -> np.ndarray:
    """``(resamples, 2 + len(radii))``: :func:`~farnetlib.metrics.summarize`'s MRE, SD and SDRs of
    every resample of images at once (NaN errors left out as there), in blocks of resamples of at
    most ``block_elements`` errors each (2 MB: cache-sized blocks ran 2.5x faster than 32 MB ones;
    all 2,000 resamples of 150 x 19 errors take ~0.04 s, the per-resample loop took ~1.1 s)."""
    block = max(1, block_elements // max(1, idx.shape[1] * errors[0].size))  # resamples per block
    out = []
    for start in range(0, len(idx), block):
        rows = idx[start:start + block]
        x = errors[rows].reshape(len(rows), -1)  # (b, N * K)
        present = ~np.isnan(x)
        count = present.sum(axis=1)
        if (count == 0).any():
            raise ValueError("a resample has no errors to summarise: every landmark of its images is missing")
        if present.all():
            mean, sd = x.mean(axis=1), x.std(axis=1)
        else:
            mean, sd = np.nanmean(x, axis=1), np.nanstd(x, axis=1)
        sdrs = [(x <= r).sum(axis=1) / count * 100.0 for r in radii]  # NaN <= r is False: missing left out
        out.append(np.column_stack([mean, sd, *sdrs]))
    return np.concatenate(out) if out else np.empty((0, 2 + len(radii)))


def interval_columns(errors: np.ndarray, radii: Sequence[float], **kwargs) -> dict[str, float]:
    """``<metric>_lower`` / ``<metric>_upper`` of :func:`metric_intervals`, as columns for a table row."""
    table = metric_intervals(errors, radii, **kwargs)
    return {f"{m}_{side}": float(table.loc[m, side]) for m in table.index for side in ("lower", "upper")}


def per_landmark_intervals(errors: np.ndarray, names: Sequence[str] | None = None, resamples: int = RESAMPLES,
                           seed: int = SEED, level: float = LEVEL) -> pd.DataFrame:
    """Per landmark: MRE and its bootstrap interval (the same image resamples for every landmark)."""
    e = np.asarray(errors, dtype=np.float64)
    idx = _resample_indices(len(e), resamples, seed)
    draws = np.nanmean(e[idx], axis=1)  # (resamples, K); NaN: a missing landmark, left out
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail], axis=0)
    index = list(names) if names is not None else [str(k + 1) for k in range(e.shape[1])]
    return pd.DataFrame({"mre": np.nanmean(e, axis=0), "lower": lo, "upper": hi}, index=pd.Index(index, name="landmark"))


def format_interval(value: float, lower: float, upper: float, digits: int = 2) -> str:
    """``1.57 [1.44, 1.71]``."""
    return f"{value:.{digits}f} [{lower:.{digits}f}, {upper:.{digits}f}]"


@dataclass(frozen=True)
class PairedComparison:
    """Run B minus run A on the same images (negative: B is better)."""

    n_images: int
    mre_a: float
    mre_b: float
    difference: float  # MRE of B - MRE of A
    lower: float  # paired bootstrap interval of the difference
    upper: float
    wilcoxon_statistic: float
    wilcoxon_p: float  # two-sided, on the per-image MRE differences

    def text(self, digits: int = 3) -> str:
        return (f"{self.difference:+.{digits}f} [{self.lower:+.{digits}f}, {self.upper:+.{digits}f}] "
                f"(Wilcoxon p = {self.wilcoxon_p:.3g}, {self.n_images} images)")


def paired_comparison(errors_a: np.ndarray, errors_b: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED,
                      level: float = LEVEL) -> PairedComparison:
    """Compare two runs evaluated on the same images (rows in the same order, e.g. from
    :func:`errors_matrix`): the paired bootstrap resamples images and keeps each image's pair."""
    a, b = np.asarray(errors_a, dtype=np.float64), np.asarray(errors_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"the two runs must cover the same images and landmarks, got {a.shape} and {b.shape}")
    per_image = b.mean(axis=1) - a.mean(axis=1)
    diff, lo, hi = bootstrap_interval(per_image[:, None], lambda d: float(d.mean()), resamples, seed, level)
    if np.allclose(per_image, 0):
        stat, p = 0.0, 1.0
    else:
        test = stats.wilcoxon(per_image, alternative="two-sided")
        stat, p = float(test.statistic), float(test.pvalue)
    return PairedComparison(len(a), float(a.mean()), float(b.mean()), diff, lo, hi, stat, p)


def conformal_radii(val_errors: np.ndarray, alpha: float = 0.1, val_peaks: np.ndarray | None = None) -> np.ndarray:
    """Per landmark, the split-conformal radius from ``(N, K)`` validation errors.

    Without peaks: ``r_k`` is the ``ceil((n + 1)(1 - alpha)) / n`` empirical quantile of landmark
    ``k``'s errors (``inf`` when n is too small for the level). With ``val_peaks`` (the heatmap
    maxima, ``(N, K)``), the score is ``error x peak`` and the returned values are the quantiles of
    that score: the radius of a new prediction with peak ``p`` is ``q_k / p`` (see :func:`coverage`).
    NaN errors (missing labels) are left out: ``n`` is landmark ``k``'s count of labelled images.
    """
    e = np.asarray(val_errors, dtype=np.float64)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    scores = e * np.asarray(val_peaks, dtype=np.float64) if val_peaks is not None else e
    n = np.isfinite(scores).sum(axis=0)  # (K,)
    rank = np.ceil((n + 1) * (1 - alpha)).astype(int)
    ordered = np.sort(np.where(np.isfinite(scores), scores, np.inf), axis=0)  # missing ones sort last
    radii = ordered[np.clip(rank - 1, 0, len(scores) - 1), np.arange(scores.shape[1])]
    return np.where(rank <= n, radii, np.inf)


def coverage(errors: np.ndarray, radii: np.ndarray, peaks: np.ndarray | None = None,
             names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per landmark (and ``all``): the share of test errors within the radius (%) and the mean radius.

    ``radii`` from :func:`conformal_radii`; with ``peaks`` they are peak-scaled quantiles and each
    prediction's radius is ``q_k / peak``."""
    e = np.asarray(errors, dtype=np.float64)
    q = np.asarray(radii, dtype=np.float64)[None, :]
    r = q / np.maximum(np.asarray(peaks, dtype=np.float64), 1e-6) if peaks is not None else np.broadcast_to(q, e.shape)
    labelled = np.isfinite(e)  # a missing label counts neither as covered nor as missed
    inside = np.where(labelled, e <= r, np.nan)
    r = np.where(labelled, r, np.nan)
    index = list(names) if names is not None else [str(k + 1) for k in range(e.shape[1])]
    table = pd.DataFrame({"coverage_%": np.nanmean(inside, axis=0) * 100, "mean_radius": np.nanmean(r, axis=0)},
                         index=pd.Index(index, name="landmark"))
    table.loc["all"] = [np.nanmean(inside) * 100, np.nanmean(r)]
    return table


def split_errors_and_peaks(predictions: pd.DataFrame, split: str, column: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, K)`` errors and heatmap peaks of one split (rows sorted by image id)."""
    return errors_matrix(predictions, split, column)[1], errors_matrix(predictions, split, "peak")[1]


def run_radii(run_dir: str | Path, alpha: float = 0.1, column: str = "error_px") -> tuple[list[str], np.ndarray, int] | None:
    """(landmark names, per-landmark split-conformal radii, validation images) from a run folder's
    validation rows (``predictions.csv``), in original pixels by default; None where the run folder
    holds no validation predictions (e.g. a bare checkpoint file)."""
    path = Path(run_dir) / "predictions.csv"
    if not path.is_file():
        return None
    predictions = pd.read_csv(path, dtype={"id": str})
    if not (predictions["split"] == "val").any():
        return None
    errors, _ = split_errors_and_peaks(predictions, "val", column)
    names = predictions.drop_duplicates("landmark").sort_values("landmark")["landmark_name"].astype(str).tolist()
    return names, conformal_radii(errors, alpha), len(errors)


def run_coverage(predictions: pd.DataFrame, column: str = "error_mm", alpha: float = 0.1,
                 scaled: bool = False) -> pd.DataFrame:
    """Conformal radii from a run's validation rows, and their coverage and mean radius on each of
    its test splits: one row per (split, landmark), landmark ``all`` for the whole split."""
    val_e, val_p = split_errors_and_peaks(predictions, "val", column)
    q = conformal_radii(val_e, alpha, val_peaks=val_p if scaled else None)
    names = (predictions.drop_duplicates("landmark").sort_values("landmark")["landmark_name"].astype(str).tolist()
             if "landmark_name" in predictions else None)
    tables = []
    for split in [s for s in predictions["split"].unique() if s != "val"]:
        e, p = split_errors_and_peaks(predictions, split, column)
        table = coverage(e, q, peaks=p if scaled else None, names=names)
        tables.append(table.assign(split=split, target_coverage_pct=100 * (1 - alpha), n_val=len(val_e)))
    out = pd.concat(tables).reset_index().set_index(["split", "landmark"]) if tables else pd.DataFrame()
    out.attrs.update(alpha=alpha, scaled=scaled, radii=q.tolist())
    return out
