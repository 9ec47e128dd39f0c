"""Tables from run folders only (``runs/*``, ``results/<protocol>/*``): summaries in the paper's layout, per-landmark
tables, and writers for CSV + Markdown + LaTeX. Every row carries what qualifies its numbers."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .ceph import ClinicalScore, get_analysis, landmark_array, rater_landmarks, score
from .data.registry import config_option, get_dataset
from .metrics import per_landmark_table, radial_errors
from .spine import ANGLE_NAMES
from .uncertainty import errors_matrix, format_interval, interval_columns, paired_comparison

__all__ = ["summary_table", "per_landmark", "worst_images", "median_image", "worst_and_median", "group_spread", "backbone_table", "write_table", "paper_layout",
           "inter_observer", "model_vs_observers", "with_units", "spine_table", "curve_references",
           "clinical_scores", "clinical_table", "clinical_caption", "clinical_summary", "compare_runs",
           "seed_spread"]

QUALIFIERS = ("dataset", "ground_truth", "spacing", "unit", "input_size_hw", "decoder")


def summary_table(runs: list[dict], intervals: bool = True) -> pd.DataFrame:
    """One row per run x split: MRE, SD, SDRs, their bootstrap 95 % intervals over images
    (``<metric>_lower``/``_upper``, :mod:`farnetlib.uncertainty`), and the qualifiers of the numbers."""
    rows = []
    for run in runs:
        cfg = run["config"]
        for split, m in run["metrics"]["splits"].items():
            row = {"run": run["name"], "split": split, "backbone": cfg["backbone"], "loss": cfg.get("loss"),
                   "seed": cfg["seed"],
                   "epochs": cfg["epochs"], "weights": cfg["weights"] or "random init",
                   **{q: (str(m[q]) if isinstance(m.get(q), list) else m.get(q)) for q in QUALIFIERS},
                   "n_images": m["n_images"], "mre": m["mre"], "sd": m["sd"]}
            row.update({k: v for k, v in m.items() if k.startswith("sdr_")})
            if intervals and "predictions" in run:  # (test doubles may carry metrics only)
                _, errors = errors_matrix(run["predictions"], split, "error_mm" if m["unit"] == "mm" else "error_px")
                row.update(interval_columns(errors, m.get("radii", [])))
            if "scale_pair" in get_dataset(cfg["dataset"]).options:  # the hand set: which pair is 50 mm
                row["scale_pair"] = str(list(config_option(cfg, "scale_pair")))
            rows.append(row)
    return pd.DataFrame(rows)


def paper_layout(summary: pd.DataFrame) -> pd.DataFrame:
    """The layout of the paper's tables: ``MRE ± SD`` and SDR columns, one row per run and split;
    where the summary has bootstrap intervals, ``MRE [95 % CI]`` and each SDR as ``88.03 [85.1, 90.6]``."""
    sdr_cols = [c for c in summary.columns if c.startswith("sdr_") and not c.endswith(("_lower", "_upper"))
                and summary[c].notna().any()]
    ci = "mre_lower" in summary
    out = pd.DataFrame({"run": summary["run"], "split": summary["split"], "backbone": summary["backbone"],
                        "MRE ± SD": [f"{m:.2f} ± {s:.2f}" for m, s in zip(summary["mre"], summary["sd"])]})
    if ci:
        out["MRE [95 % CI]"] = [format_interval(*v) for v in zip(summary["mre"], summary["mre_lower"], summary["mre_upper"])]
    for c in sdr_cols:
        out[f"SDR {c[4:]} (%)"] = ([format_interval(*v, digits=1) for v in zip(summary[c], summary[f"{c}_lower"],
                                                                                summary[f"{c}_upper"])]
                                   if ci else summary[c].map(lambda v: f"{v:.2f}"))
    out["unit"] = summary["unit"]
    out["ground truth"] = summary["ground_truth"]
    out["input"] = summary["input_size_hw"]
    out["decoder"] = summary["decoder"]
    return out


def per_landmark(run: dict, split: str, radii: Iterable[float] | None = None) -> pd.DataFrame:
    """Per-landmark MRE/SD/SDR of one run's split, from its predictions.csv."""
    preds = run["predictions"]
    preds = preds[preds["split"] == split]
    if preds.empty:
        raise ValueError(f"run {run['name']} has no predictions for split {split!r}")
    unit = run["metrics"]["splits"][split]["unit"]
    col = "error_mm" if unit == "mm" else "error_px"
    errors = preds.pivot(index="id", columns="landmark", values=col)
    names = preds.drop_duplicates("landmark").set_index("landmark").loc[errors.columns, "landmark_name"]
    radii = radii or run["metrics"]["splits"][split]["radii"]
    return per_landmark_table(errors.to_numpy(), radii, names=[f"{k} {n}" for k, n in names.items()])


def _per_image_mre(predictions: pd.DataFrame, split: str, unit: str) -> pd.Series:
    rows = predictions[predictions["split"] == split]
    if rows.empty:
        raise ValueError(f"no predictions for split {split!r}; splits: {sorted(predictions['split'].unique())}")
    return rows.groupby("id")["error_mm" if unit == "mm" else "error_px"].mean().sort_values(ascending=False)


def worst_images(predictions: pd.DataFrame, split: str, n: int = 4, unit: str = "mm") -> list[str]:
    """The ``n`` image ids of ``split`` with the largest MRE in ``unit`` (labelled landmarks only), worst first."""
    return _per_image_mre(predictions, split, unit).index[:n].tolist()


def worst_and_median(predictions: pd.DataFrame, split: str, n: int = 4, unit: str = "mm") -> tuple[list[str], str]:
    """The ``n`` worst image ids of ``split`` and then the median one, each once (a small split's
    median can be among its worst), and the phrase that says which they are, for a figure's title."""
    per_image = _per_image_mre(predictions, split, unit)
    ids, median = per_image.index[:n].tolist(), str(per_image.index[len(per_image) // 2])
    if median in ids:
        return ids, f"the {len(ids)} worst images (the median one among them)"
    return ids + [median], f"the {len(ids)} worst images, then the median one"


def median_image(predictions: pd.DataFrame, split: str, unit: str = "mm") -> str:
    """The image id of ``split`` whose MRE is the median one: what usual performance looks like."""
    per_image = _per_image_mre(predictions, split, unit)
    return str(per_image.index[len(per_image) // 2])


def group_spread(rows: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by``: mean and SD over seeds (``<metric>_sd``, ddof 1, NaN for one seed) of MRE
    and every SDR column, and the number of distinct seeds; ``by`` stays in the index."""
    metrics = ["mre"] + [c for c in rows.columns if c.startswith("sdr_") and not c.endswith(("_lower", "_upper"))
                         and rows[c].notna().any()]
    grouped = rows.groupby(list(by), sort=False)
    out = grouped[metrics].mean()
    for m in metrics:
        out[f"{m}_sd"] = grouped[m].std(ddof=1)
    out["seeds"] = grouped["seed"].nunique()
    return out


def backbone_table(summary: pd.DataFrame, split: str) -> pd.DataFrame:
    """Mean ± SD over seeds of MRE and SDRs per backbone (the backbone comparison), best mean MRE first."""
    spread = group_spread(summary[summary["split"] == split], by=("backbone",)).sort_values("mre")
    metrics = [c for c in spread.columns if c == "mre" or (c.startswith("sdr_") and not c.endswith("_sd"))]
    out = pd.DataFrame(index=spread.index)
    for m in metrics:
        out[m] = [f"{a:.2f} ± {s:.2f}" for a, s in zip(spread[m], spread[f"{m}_sd"].fillna(0.0))]
    out["seeds"] = spread["seeds"]
    return out


def write_table(df: pd.DataFrame, out_dir: str | Path, name: str, caption: str = "") -> list[Path]:
    """Write ``name``.csv, .md and .tex into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{ext}" for ext in ("csv", "md", "tex")]
    df.to_csv(paths[0])
    flat = df
    if isinstance(df.index, pd.MultiIndex):  # Markdown: "densenet121, ewc", not "('densenet121', 'ewc')"
        flat = df.copy()
        flat.index = pd.Index([", ".join(map(str, key)) for key in df.index],
                              name=", ".join(str(n) for n in df.index.names))
    text = flat.to_markdown()
    paths[1].write_text((f"{caption}\n\n" if caption else "") + text + "\n")
    tex = df.to_latex(escape=True, float_format=lambda v: f"{v:.2f}", caption=caption or None)
    paths[2].write_text(tex)
    return paths


def finite(df: pd.DataFrame) -> bool:
    """True when every numeric value of ``df`` is finite (tests and notebooks check tables with it)."""
    num = df.select_dtypes(include=[np.number])
    return bool(np.isfinite(num.to_numpy()).all())


def curve_references(run: dict, paper: tuple[str, float] | None = None,
                     reference_runs: dict[str, dict] | None = None) -> dict[str, float]:
    """Horizontal lines for ``run``'s learning curve (label -> value in the run's unit): the paper's
    published test MRE (``paper``: (split, mm), drawn for runs in mm only) and, per loaded reference
    run of the same dataset and fold (e.g. the 60-minute protocol beside an overnight run), the
    validation MRE that run reports (its selected epoch, as in its ``metrics.json``). References of
    another dataset or fold are skipped (one notebook call may draw several datasets); one of the
    same dataset in another unit is an error."""
    unit = run["metrics"]["splits"]["val"]["unit"]
    lines = {f"paper, {paper[0]} (GPU, ImageNet weights)": paper[1]} if paper and unit == "mm" else {}
    for label, other in (reference_runs or {}).items():
        if _dataset_and_fold(other) != _dataset_and_fold(run):
            continue
        val = other["metrics"]["splits"]["val"]
        if val["unit"] != unit:
            raise ValueError(f"reference run {label!r} ({other['path']}) reports {val['unit']}; {run['name']} {unit}")
        lines[f"{label} (validation, selected epoch)"] = float(val["mre"])
    return lines


def _dataset_and_fold(run: dict) -> tuple:
    """What a reference run must share with the run it is drawn beside: the dataset and, where the
    dataset has folds, the fold (read from old run folders' flat ``hand_fold`` as well)."""
    config = run["config"]
    has_folds = "fold" in get_dataset(config["dataset"]).options
    return config["dataset"], config_option(config, "fold") if has_folds else None


def inter_observer(source) -> pd.DataFrame:
    """Per-landmark distance (mm) between the two doctors of an ISBI 2015 split (senior vs junior):
    mean, SD and maximum over the split's images."""
    d = radial_errors(source.doctor_landmarks["senior"], source.doctor_landmarks["junior"], source.pixel_spacing_mm)
    return pd.DataFrame({"landmark": np.arange(1, d.shape[1] + 1), "name": list(source.landmark_names),
                         "observers_mean_mm": d.mean(0), "observers_sd_mm": d.std(0), "observers_max_mm": d.max(0)})


def model_vs_observers(run: dict, split: str, source) -> pd.DataFrame:
    """A run's per-landmark MRE (mm) on an ISBI split beside the senior-vs-junior difference there,
    and their ratio (1 = as far from the ground truth as one doctor is from the other)."""
    preds = run["predictions"].query("split == @split")
    model = preds.groupby("landmark")["error_mm"].mean().rename("model_mre_mm").reset_index()
    table = inter_observer(source).merge(model, on="landmark")
    table["model_over_observers"] = table["model_mre_mm"] / table["observers_mean_mm"]
    return table[["landmark", "name", "model_mre_mm", "observers_mean_mm", "observers_sd_mm", "model_over_observers"]]


def with_units(table: pd.DataFrame, unit: str, intervals: bool = False) -> pd.DataFrame:
    """``table`` for reading: ``MRE (mm)``, ``SD (mm)``, ``SDR 2 mm (%)``, ``images``, ... instead of
    ``mre``, ``sd``, ``sdr_2``, ``n_images``; the bootstrap bounds (``*_lower``/``*_upper``) left out
    unless ``intervals``. The files written by :func:`write_table` keep the machine-readable names."""
    def name(col: str) -> str:
        base, _, bound = col.rpartition("_") if col.endswith(("_lower", "_upper")) else (col, "", "")
        if base in ("mre", "sd"):
            text = f"{base.upper()} ({unit})"
        elif base.startswith("sdr_"):
            text = f"SDR {float(base[4:]):g} {unit} (%)"
        else:
            text = {"n_images": "images", "n_landmarks": "landmarks"}.get(base, base)
        return f"{text} {bound}" if bound else text

    keep = [c for c in table.columns if intervals or not str(c).endswith(("_lower", "_upper"))]
    return table[keep].rename(columns={c: name(str(c)) for c in keep})


def spine_table(run: dict) -> pd.DataFrame:
    """One row per split of a spine run: images, MRE and SD (px), normalised MSE, SMAPE (%), the mean
    absolute error of each Cobb angle (°) and what the angles are compared against."""
    rows = [{"split": split, "images": m["n_images"], "MRE (px)": m["mre"], "SD (px)": m["sd"],
             "normalised MSE": m["normalised_mse"], "SMAPE (%)": m["smape_%"],
             **{f"MAE {a} (°)": m[f"mae_{a}_deg"] for a in ANGLE_NAMES}, "angles vs": m["angle_ground_truth"]}
            for split, m in run["metrics"]["splits"].items() if "smape_%" in m]
    return pd.DataFrame(rows).set_index("split")


def clinical_scores(run: dict, split: str, source, class_ground_truth: str = "senior",
                    coordinates: str = "integer", intervals: bool = True) -> tuple[ClinicalScore, ClinicalScore | None]:
    """(the model, the junior doctor) of a run's split scored by its dataset's cephalometric analysis
    (:mod:`farnetlib.ceph`) against the classes of ``class_ground_truth``'s landmarks, from the run's
    ``predictions.csv`` and the split's annotations (``source``, opened with both doctors); the
    junior doctor is scored against the senior on the same images (None without both doctors)."""
    from .config import TrainConfig

    cfg = TrainConfig.from_dict(run["config"])
    spec = get_dataset(cfg.dataset)
    if spec.analysis_for(cfg) is None:
        raise ValueError(f"run {run['name']}: its dataset ({spec.name}) names no cephalometric analysis")
    analysis, spacing = get_analysis(spec.analysis_for(cfg)), spec.fixed_spacing(cfg)
    ids, pred = landmark_array(run["predictions"].query("split == @split"))
    truth, whose, raters = rater_landmarks(source, class_ground_truth)
    index = {str(i): n for n, i in enumerate(source.ids)}
    rows = [index[i] for i in ids]
    model = score(pred, truth[rows], analysis, spacing, coordinates, ids, intervals)
    model.table.attrs.update(ground_truth=whose, coordinates=coordinates, analysis=analysis.name)
    human = None
    if {"senior", "junior"} <= set(raters):
        human = score(raters["junior"][rows], raters["senior"][rows], analysis, spacing, coordinates, ids, intervals)
    return model, human


def clinical_table(model: ClinicalScore, human: ClinicalScore | None = None) -> pd.DataFrame:
    """One row per measurement and their mean: the model's SCR with its bootstrap interval, accuracy,
    MAE and Bland-Altman bias [95 % limits of agreement], the junior doctor's SCR and accuracy beside
    them, and the ground-truth images per class."""
    t = model.table
    out = pd.DataFrame(index=t.index)
    out["unit"] = t["unit"]
    ci = "scr_lower" in t
    out["SCR model (%)"] = t["scr_%"]
    if ci:
        out["SCR model [95 % CI]"] = [format_interval(*v, digits=1) for v in zip(t["scr_%"], t["scr_lower"], t["scr_upper"])]
    if human is not None:
        h = human.table
        out["SCR junior (%)"] = h["scr_%"]
        if ci:
            out["SCR junior [95 % CI]"] = [format_interval(*v, digits=1) for v in zip(h["scr_%"], h["scr_lower"], h["scr_upper"])]
    out["accuracy model (%)"] = t["accuracy_%"]
    if human is not None:
        out["accuracy junior (%)"] = human.table["accuracy_%"]
    out["MAE model"] = t["mae"]
    if human is not None:
        out["MAE junior"] = human.table["mae"]
    out["bias [limits of agreement]"] = [f"{b:+.2f} [{lo:+.2f}, {hi:+.2f}]" if np.isfinite(b) else ""
                                         for b, lo, hi in zip(t["bias"], t["loa_lower"], t["loa_upper"])]
    out["ground-truth images per class"] = t["truth_counts"].fillna("")
    return out


def clinical_caption(run_name: str, split: str, model: ClinicalScore) -> str:
    """The caption of a :func:`clinical_table` (one wording wherever the table is written)."""
    return (f"{run_name}, {split}: the {model.analysis.name} measurements, SCR (%) of the model and of the junior "
            f"doctor against classes of the {model.table.attrs.get('ground_truth', '')} doctor's landmarks (bootstrap "
            f"95 % intervals over images; {model.table.attrs.get('coordinates', 'integer')} coordinates), accuracy, "
            "MAE, bias [limits of agreement] (prediction - truth)")


def clinical_summary(rows: dict[str, tuple[dict, ClinicalScore, ClinicalScore | None]], split: str) -> pd.DataFrame:
    """One row per run (name -> (run, model score, junior score)): MRE and SDR 2 mm of the split
    beside the mean SCR of the model and of the junior doctor (bootstrap 95 % intervals)."""
    out = []
    for name, (run, model, human) in rows.items():
        m, t = run["metrics"]["splits"][split], model.table
        row = {"run": name, "images": len(model.truth), f"MRE ({m['unit']})": m["mre"], "SDR 2 mm (%)": m.get("sdr_2"),
               "landmark ground truth": m["ground_truth"], "class ground truth": t.attrs.get("ground_truth", ""),
               "mean SCR model (%)": t.loc["mean", "scr_%"]}
        if "scr_lower" in t:
            row["mean SCR model [95 % CI]"] = format_interval(t.loc["mean", "scr_%"], t.loc["mean", "scr_lower"],
                                                              t.loc["mean", "scr_upper"], digits=1)
        if human is not None:
            h = human.table
            row["mean SCR junior (%)"] = h.loc["mean", "scr_%"]
            if "scr_lower" in h:
                row["mean SCR junior [95 % CI]"] = format_interval(h.loc["mean", "scr_%"], h.loc["mean", "scr_lower"],
                                                                   h.loc["mean", "scr_upper"], digits=1)
        row.update({f"SCR {k} (%)": t.loc[k, "scr_%"] for k in t.index if k != "mean"})
        out.append(row)
    return pd.DataFrame(out).set_index("run")


def compare_runs(run: dict, reference: dict) -> pd.DataFrame:
    """A run beside a reference run (``farnet compare``), one row per split both evaluated: MRE and
    SDR of each, and the paired difference of MRE (run minus reference) with its bootstrap 95 %
    interval over images and the Wilcoxon p (:func:`farnetlib.uncertainty.paired_comparison`), where
    both covered the same images and landmarks. A paired difference says whether these two *models*
    differ on these images; two seeds of one recipe differ too (the ablation's seed spread)."""
    rows = []
    for split, m in run["metrics"]["splits"].items():
        ref = reference["metrics"]["splits"].get(split)
        if not isinstance(m, dict) or not isinstance(ref, dict) or "mre" not in m or "mre" not in ref:
            continue
        unit = m["unit"]
        radius = next((k for k in m if k.startswith("sdr_") and k in ref), None)
        row = {"split": split, "unit": unit, f"MRE {run['name']}": m["mre"], f"MRE {reference['name']}": ref["mre"]}
        if radius is not None:
            row[f"SDR {radius[4:]} {unit} {run['name']} (%)"] = m[radius]
            row[f"SDR {radius[4:]} {unit} {reference['name']} (%)"] = ref[radius]
        column = "error_mm" if unit == "mm" else "error_px"
        ids_a, a = errors_matrix(run["predictions"], split, column)
        ids_b, b = errors_matrix(reference["predictions"], split, column)
        if ids_a == ids_b and a.shape == b.shape:
            c = paired_comparison(b, a)  # the run minus the reference
            row.update({"difference": c.difference, "difference_lower": c.lower, "difference_upper": c.upper,
                        "wilcoxon_p": c.wilcoxon_p, "images": c.n_images})
        else:
            row["difference"] = m["mre"] - ref["mre"]  # not the same images: no paired test
        rows.append(row)
    if not rows:
        raise ValueError(f"{run['name']} and {reference['name']} share no evaluated split")
    return pd.DataFrame(rows).set_index("split")


_NOT_RECIPE = ("seed", "run_name", "results_dir", "root", "cache_dir", "threads", "device", "precision", "channels_last",
               "time_limit", "num_workers", "eval_batch_size", "backend", "backend_precision")


def seed_spread(reference: dict, results: str | Path = "results") -> pd.DataFrame | None:
    """The seed-to-seed spread of ``reference``'s recipe measured in the committed runs: the runs under
    ``results`` whose config differs from the reference's only in ``seed`` (and paths and execution
    options); per split, their count, mean and SD of MRE. None where fewer than two seeds were run."""
    def recipe(cfg: dict) -> dict:
        return {k: v for k, v in cfg.items() if k not in _NOT_RECIPE}

    want = recipe(reference["config"])
    runs = []  # config and metrics only: the predictions of every match are not needed here
    for path in sorted(Path(results).rglob("metrics.json")):
        config = path.parent / "config.json"
        if config.is_file() and recipe(values := json.loads(config.read_text())) == want:
            runs.append({"config": values, "metrics": json.loads(path.read_text())})
    if len({r["config"]["seed"] for r in runs}) < 2:
        return None
    rows = [{"split": split, "seeds": len(values), "mean MRE": float(np.mean(values)), "SD MRE": float(np.std(values, ddof=1))}
            for split in reference["metrics"]["splits"]
            if len(values := [r["metrics"]["splits"][split]["mre"] for r in runs if split in r["metrics"]["splits"]]) > 1]
    return pd.DataFrame(rows).set_index("split") if rows else None
