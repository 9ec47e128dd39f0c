"""Ablation tables from run folders alone: arms grouped over seeds, their cost, and whether a
difference between arms is larger than the seed-to-seed noise.

The noise model is deliberately simple and stated with every table: the seed-to-seed SD is
measured on the reference arm (several seeds of one configuration; model initialisation and data
order change, the validation split does not) and assumed to hold for every arm. A difference
between two arm means is then ``z = diff / (sd_seed * sqrt(1/n_a + 1/n_b))`` standard errors, and
is called larger than the noise when ``|z|`` exceeds Student's t two-sided 95 % point with
``n_ref - 1`` degrees of freedom (the SD is estimated from the reference's ``n_ref`` seeds, not
known): 4.30 with three seeds, 3.18 with four, 2.0 only with many. A plain ``|z| > 2`` would treat
an SD from three seeds as exact; with three seeds its own 95 % interval spans about 0.5x to 6x.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .model import architecture_parameter_counts
from .reporting import group_spread, summary_table
from .uncertainty import errors_matrix, paired_comparison

__all__ = ["GROUP", "CONFIDENCE", "noise_threshold", "cost_table", "arm_table", "seed_spread", "noise_test", "paper_table",
           "paired_tests"]

GROUP = ("backbone", "loss")  # what an arm of a study is (seeds are repeats of an arm)
CONFIDENCE = 0.95  # two-sided level of the "larger than the noise" call


def noise_threshold(reference_seeds: int, confidence: float = CONFIDENCE) -> float:
    """The ``|z|`` above which a difference is larger than the noise: Student's t two-sided point
    with ``reference_seeds - 1`` degrees of freedom (the seed SD is estimated, not known)."""
    if reference_seeds < 2:
        raise ValueError(f"a seed SD needs >= 2 seeds, got {reference_seeds}")
    return float(stats.t.ppf(0.5 + confidence / 2, df=reference_seeds - 1))


def paired_tests(runs: list[dict], reference: str, split: str) -> pd.DataFrame:
    """Each run against the run named ``reference`` on the same images of ``split``: the MRE
    difference with its paired bootstrap 95 % interval over images and the Wilcoxon signed-rank
    p-value of the per-image MRE differences (:func:`farnetlib.uncertainty.paired_comparison`).

    This test asks whether two *trained models* differ on these images; the seed-noise test
    (:func:`noise_test`) asks whether the *recipes* differ beyond what another seed would change.
    A difference can pass the first and not the second."""
    by_name = {r["name"]: r for r in runs}
    if reference not in by_name:
        raise ValueError(f"no run named {reference!r} among {sorted(by_name)}")

    def errors(run: dict) -> tuple[list[str], np.ndarray]:
        unit = run["metrics"]["splits"][split]["unit"]
        return errors_matrix(run["predictions"], split, "error_mm" if unit == "mm" else "error_px")

    ref_ids, ref = errors(by_name[reference])
    rows = []
    for run in runs:
        if run["name"] == reference:
            continue
        ids, e = errors(run)
        if ids != ref_ids:
            raise ValueError(f"{run['name']} and {reference} are not evaluated on the same {split} images")
        c = paired_comparison(ref, e)
        rows.append({"run": run["name"], "reference": reference, "split": split, "n_images": c.n_images,
                     "mre": c.mre_b, "reference_mre": c.mre_a, "difference": c.difference,
                     "difference_lower": c.lower, "difference_upper": c.upper, "wilcoxon_p": c.wilcoxon_p})
    return pd.DataFrame(rows).set_index("run")


def _parameters(run: dict) -> dict[str, int]:
    """Parameter counts recorded by training, or counted from the run's config (older runs: the
    architecture on the meta device, no model in memory)."""
    if "parameters" in run["metrics"]:
        return run["metrics"]["parameters"]
    cfg = run["config"]
    k = int(run["predictions"]["landmark"].nunique())
    return architecture_parameter_counts(k, backbone=cfg["backbone"], fine_head_width=cfg.get("fine_head_width"),
                                         head_scale=cfg.get("head_scale", cfg.get("decoder_width", 1.0)))


def cost_table(runs: list[dict]) -> pd.DataFrame:
    """Per run: parameters (millions), seconds per epoch (median over epochs, training + validation),
    epochs, training time (minutes, all epochs) and final evaluation time (seconds, when recorded)."""
    rows = []
    for run in runs:
        params = _parameters(run)
        seconds = run["history"]["epoch_seconds"]
        rows.append({"run": run["name"], "params_m": params["total"] / 1e6,
                     "backbone_params_m": params["backbone"] / 1e6, "epochs": len(seconds),
                     "s_per_epoch": float(seconds.median()), "train_min": float(seconds.sum()) / 60,
                     "eval_s": run["metrics"].get("final_evaluation_seconds", np.nan),
                     "selected_epoch": run["metrics"]["selected_epoch"]})
    return pd.DataFrame(rows)


def arm_table(runs: list[dict]) -> pd.DataFrame:
    """One row per run and split: the summary (numbers and their qualifiers) and the run's cost."""
    return summary_table(runs).merge(cost_table(runs).drop(columns="epochs"), on="run")


def seed_spread(arms: pd.DataFrame, split: str, by: Sequence[str] = GROUP) -> pd.DataFrame:
    """Mean, SD over seeds and seed count per arm on ``split``: MRE, SDRs, cost. SD is NaN for one seed."""
    sub = arms[arms["split"] == split]
    if sub.empty:
        raise ValueError(f"no run has split {split!r}; splits: {sorted(set(arms['split']))}")
    out = group_spread(sub, by)
    grouped = sub.groupby(list(by), sort=False)
    out[["params_m", "s_per_epoch", "train_min"]] = grouped[["params_m", "s_per_epoch", "train_min"]].mean()
    return out.reset_index()


def noise_test(spread: pd.DataFrame, reference: dict, metric: str = "mre", by: Sequence[str] = GROUP) -> pd.DataFrame:
    """Each arm's ``metric`` minus the reference arm's, in seed standard errors (see the module text),
    the ``|z|`` threshold (:func:`noise_threshold`) and whether the difference is beyond it; the
    first columns are ``by``.

    ``reference`` names the arm, e.g. ``{"backbone": "densenet121", "loss": "ewc"}``; it must have
    at least two seeds (the SD is measured there)."""
    mask = np.logical_and.reduce([(spread[k] == v).to_numpy() for k, v in reference.items()])
    if mask.sum() != 1:
        raise ValueError(f"reference {reference} matches {int(mask.sum())} arms, expected 1")
    ref = spread[mask].iloc[0]
    if ref["seeds"] < 2:
        raise ValueError(f"reference {reference} has {int(ref['seeds'])} seed(s); the seed SD needs >= 2")
    sd = float(ref[f"{metric}_sd"])
    out = spread[list(by) + ["seeds", metric]].copy()
    out["diff"] = out[metric] - ref[metric]
    se = sd * np.sqrt(1 / out["seeds"] + 1 / ref["seeds"])
    out["z"] = out["diff"] / se
    out.loc[mask, "z"] = np.nan
    out["threshold"] = noise_threshold(int(ref["seeds"]))
    out["beyond_noise"] = out["z"].abs() > out["threshold"]
    out["seed_sd"] = sd
    return out


def _mean_sd(mean: float, sd: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f}" if not math.isfinite(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _z_text(noise: pd.DataFrame | None, key: tuple) -> str:
    """``noise`` is :func:`noise_test`'s frame indexed by the arm key (None: no seed spread yet)."""
    if noise is None:
        return "n/a (reference has < 2 seeds)"
    if key not in noise.index:
        return "n/a"
    z = noise.loc[key, "z"]
    if not math.isfinite(z):
        return "reference"
    return f"{noise.loc[key, 'diff']:+.2f} ({z:+.1f}){'*' if noise.loc[key, 'beyond_noise'] else ''}"


def paper_table(spread_test: pd.DataFrame, spread_val: pd.DataFrame, noise_test: pd.DataFrame | None = None,
                noise_val: pd.DataFrame | None = None, unit: str = "mm", by: Sequence[str] = GROUP) -> pd.DataFrame:
    """The paper's ablation layout: test MRE and SDRs (mean ± SD over seeds where there are several),
    validation MRE, each MRE's difference to the reference arm with its z in seed standard errors and
    a ``*`` where it is beyond the noise (:func:`noise_test`; None when the reference has fewer than
    two seeds yet), and the cost."""
    key = list(by)
    val = spread_val.set_index(key)
    noise_test, noise_val = (None if n is None else n.set_index(key) for n in (noise_test, noise_val))
    sdrs = [c for c in spread_test.columns if c.startswith("sdr_") and not c.endswith("_sd")]
    rows = []
    for _, r in spread_test.iterrows():
        k = tuple(r[c] for c in key)
        row = {c: r[c] for c in key}
        row["seeds"] = int(r["seeds"])
        row[f"test MRE ({unit})"] = _mean_sd(r["mre"], r["mre_sd"])
        row.update({f"test SDR {c[4:]} {unit} (%)": _mean_sd(r[c], r[f"{c}_sd"]) for c in sdrs})
        row["test Δ MRE (z)"] = _z_text(noise_test, k)
        row[f"val MRE ({unit})"] = _mean_sd(val.loc[k, "mre"], val.loc[k, "mre_sd"])
        row["val Δ MRE (z)"] = _z_text(noise_val, k)
        row["params (M)"] = f"{r['params_m']:.1f}"
        row["s / epoch"] = f"{r['s_per_epoch']:.0f}"
        rows.append(row)
    return pd.DataFrame(rows)
