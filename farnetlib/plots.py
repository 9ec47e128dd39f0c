"""Figures for notebooks and results/figures: matplotlib + seaborn, readable at print size."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter

__all__ = ["plot_history", "show_landmarks", "show_predictions", "error_boxplot", "sdr_curve",
           "cumulative_error", "backbone_comparison", "landmark_cloud", "confidence_vs_error",
           "model_vs_observers", "cobb_scatter", "bland_altman", "show_spines", "save", "arm_comparison",
           "mre_vs_cost", "learning_curve", "prediction_panel", "target_and_ewc", "coarse_and_fine", "decoder_zoom"]

GT_COLOR, PRED_COLOR = "#2ca02c", "#d62728"
sns.set_theme(context="paper", style="whitegrid", font_scale=1.2)


def plain_log_axis(axis) -> None:
    """Label a log axis 2, 3, 5, 10 (not 2 x 10^0); minor labels at 2, 3 and 5 of each decade only."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(
        lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** np.floor(np.log10(v)), 6) in (2, 3, 5) else ""))


def save(fig, path: str | Path, dpi: int = 150) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_history(history: pd.DataFrame, unit: str = "mm"):
    """Training loss and validation MRE per epoch."""
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(history["epoch"], history["train_loss"], marker="o", label="total")
    ax[0].plot(history["epoch"], history["train_fine"], ls="--", label="fine")
    ax[0].plot(history["epoch"], history["train_coarse"], ls=":", label="coarse")
    ax[0].set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    ax[0].legend()
    if "val_mre" in history:
        ax[1].plot(history["epoch"], history["val_mre"], marker="o", color="C3")
        best = history["val_mre"].idxmin()
        e, v = history.loc[best, "epoch"], history.loc[best, "val_mre"]
        ax[1].scatter(e, v, s=120, facecolor="none", edgecolor="k", label=f"selected: epoch {e}, {v:.2f} {unit}")
        ax[1].legend()
    # log scale: the first epochs are tens of mm off, the ones that matter differ by tenths
    ax[1].set(xlabel="epoch", ylabel=f"validation MRE ({unit})", yscale="log", title="validation")
    fig.tight_layout()
    return fig


def learning_curve(history: pd.DataFrame, unit: str = "mm", references: dict[str, float] | None = None,
                   title: str = ""):
    """Validation MRE against epoch and against wall hours (cumulative epoch time), log y, the
    selected epoch circled; ``references`` (label -> value, e.g. the 60-minute protocol's final
    validation MRE and the paper's test MRE) are drawn as horizontal lines on both panels. Epochs
    trained below the final input size (progressive resizing, ``train_size`` in the history) are
    shaded: their validation runs at the full size, so it says little about the learning there."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    hours = history["epoch_seconds"].cumsum() / 3600
    best = history["val_mre"].idxmin()
    small = history["train_size"] != history["train_size"].iloc[-1] if "train_size" in history else None
    shaded = small is not None and bool(small.any())  # epochs trained below the final size
    for ax, x, label in ((axes[0], history["epoch"], "epoch"), (axes[1], hours, "wall time (hours, training + validation)")):
        if shaded:
            last = small[small].index[-1]
            ax.axvspan(x.iloc[0] if label == "epoch" else 0, x[last], color="0.9", zorder=0,
                       label=f"trained at {history['train_size'][last]} (validation at full size; above 3x the best: cut)")
        ax.plot(x, history["val_mre"], marker=".", color="C3", label="validation MRE")
        ax.scatter([x[best]], [history["val_mre"][best]], s=110, facecolor="none", edgecolor="k",
                   label=f"selected: epoch {int(history['epoch'][best])}, {history['val_mre'][best]:.2f} {unit}")
        for i, (name, value) in enumerate((references or {}).items()):
            ax.axhline(value, color=f"C{i}", ls="--", lw=1, label=f"{name}: {value:.2f} {unit}")
        ax.set(xlabel=label, yscale="log")
        if shaded:  # the shaded phase's full-size validation is tens of mm off
            ax.set_ylim(top=3 * history["val_mre"][best])
        plain_log_axis(ax.yaxis)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"validation MRE ({unit}, log scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, bbox_to_anchor=(0.5, -0.08))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_landmarks(ax, image: np.ndarray, landmarks: np.ndarray, numbers: bool = True, color: str = GT_COLOR,
                   title: str = "") -> None:
    ax.imshow(image, cmap="gray")
    ax.scatter(landmarks[:, 0], landmarks[:, 1], s=18, c=color, edgecolors="k", linewidths=0.4)
    if numbers:
        for k, (x, y) in enumerate(landmarks):
            ax.annotate(str(k + 1), (x, y), xytext=(3, 3), textcoords="offset points", color="yellow", fontsize=7)
    ax.set_title(title)
    ax.axis("off")


def prediction_panel(ax, image: np.ndarray, predictions: pd.DataFrame, title: str = "", size: float = 14) -> None:
    """One image's ground truth (green) and prediction (red), joined by a line per landmark."""
    p = predictions.sort_values("landmark")
    ax.imshow(image, cmap="gray")
    for _, r in p.iterrows():
        ax.plot([r.gt_x, r.pred_x], [r.gt_y, r.pred_y], color="yellow", lw=0.8)
    ax.scatter(p.gt_x, p.gt_y, s=size, c=GT_COLOR, label="ground truth")
    ax.scatter(p.pred_x, p.pred_y, s=size, c=PRED_COLOR, marker="x", label="prediction")
    ax.set_title(title, fontsize=10)
    ax.axis("off")


def show_predictions(source, predictions: pd.DataFrame, ids: Sequence[str], cols: int = 4, unit: str = "mm",
                     title: str = ""):
    """Images with ground truth (green) and prediction (red), joined by a line per landmark; ``title``
    above the panels' own titles."""
    rows = int(np.ceil(len(ids) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.8 * rows), squeeze=False)
    index = {i: n for n, i in enumerate(source.ids)}
    col = "error_mm" if unit == "mm" else "error_px"
    for ax, img_id in zip(axes.flat, ids):
        p = predictions[predictions["id"] == img_id]
        prediction_panel(ax, source.read_image(index[img_id]), p, f"{img_id}: MRE {p[col].mean():.2f} {unit}")
    for ax in list(axes.flat)[len(ids):]:
        ax.axis("off")
    axes.flat[0].legend(loc="lower left", fontsize=8)
    return _titled(fig, title)


def _titled(fig, title: str):
    """``fig`` laid out with ``title`` above every panel title (tight_layout alone lets them overlap)."""
    if title:
        fig.suptitle(title)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    else:
        fig.tight_layout()
    return fig


def error_boxplot(predictions: pd.DataFrame, unit: str = "mm", title: str = "", log: bool = True):
    """Per-landmark error distribution, landmarks by name (where the predictions carry names), on a
    log error axis by default (errors span orders of magnitude: sub-millimetre to misdetections)."""
    col = "error_mm" if unit == "mm" else "error_px"
    rows = predictions[predictions[col].notna()].sort_values("landmark")
    names = rows.drop_duplicates("landmark").set_index("landmark").get("landmark_name")
    n = rows["landmark"].nunique()
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * n), 4.4))
    sns.boxplot(data=rows, x="landmark", y=col, ax=ax, color="C0", fliersize=2, log_scale=log)
    if names is not None:
        labels = [f"{k} {nm}" if str(nm) != str(k) else str(k) for k, nm in names.items()]
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set(xlabel="landmark", ylabel=f"radial error ({unit}{', log scale' if log else ''})", title=title)
    if log:
        plain_log_axis(ax.yaxis)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def sdr_curve(curves: dict[str, np.ndarray], unit: str = "mm", max_radius: float = 10.0, marks: Sequence[float] = ()):
    """Successful detection rate vs radius for one or more error sets (name -> errors)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    radii = np.linspace(0, max_radius, 201)
    for name, errors in curves.items():
        e = np.asarray(errors).ravel()
        ax.plot(radii, [(e <= r).mean() * 100 for r in radii], label=name)
    for r in marks:
        ax.axvline(r, color="gray", lw=0.6, ls=":")
    ax.set(xlabel=f"radius ({unit})", ylabel="SDR (%)", ylim=(0, 101), title="successful detection rate")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def cumulative_error(curves: dict[str, np.ndarray], unit: str = "mm"):
    """Cumulative distribution of per-image mean radial error."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, per_image in curves.items():
        e = np.sort(np.asarray(per_image).ravel())
        ax.step(e, np.arange(1, len(e) + 1) / len(e) * 100, where="post", label=name)
    ax.set(xlabel=f"per-image MRE ({unit})", ylabel="images (%)", title="cumulative error")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _mean_marks(ax, data: pd.DataFrame, x: str, order, errorbar=None) -> None:
    """A wide horizontal mark at each group's mean (with ``errorbar``, e.g. "sd"), on an axis whose
    range follows the data: no bars from zero, which hide differences of a few hundredths."""
    sns.pointplot(data=data, x=x, y="mre", order=order, errorbar=errorbar, ax=ax, color="C0", linestyle="none",
                  marker="_", markersize=22, markeredgewidth=2.5, capsize=0.15, err_kws={"linewidth": 1.2})


def backbone_comparison(summary: pd.DataFrame, split: str, unit: str = "mm"):
    """MRE per backbone: one dot per seed, the mean ± SD over seeds as a mark with error bars."""
    sub = summary[summary["split"] == split]
    order = sub.groupby("backbone")["mre"].mean().sort_values().index
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(order)), 3.8))
    _mean_marks(ax, sub, "backbone", order, errorbar="sd")
    sns.stripplot(data=sub, x="backbone", y="mre", order=order, ax=ax, color="k", size=4, jitter=0.1)
    ax.set(ylabel=f"MRE ({unit}), mean ± SD over seeds", title=f"backbones, {split}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def arm_comparison(arms: pd.DataFrame, splits: Sequence[str], label: str, reference: str | None = None,
                   paper: dict[str, float] | None = None, unit: str = "mm", log_ratio: float = 20.0,
                   title: str = ""):
    """MRE per arm (one dot per seed, a wide mark at the mean; the y range follows the points, so
    differences of a few hundredths stay visible), one panel per split; ``title`` (e.g. the protocol:
    epochs, weights) above them; the reference arm's
    mean ± seed SD is a grey band across the panel, and ``paper`` (arm label -> MRE) hollow diamonds.
    A panel whose MREs span more than ``log_ratio`` (e.g. an arm that collapsed to 150 mm beside
    arms near 2 mm) gets a log y axis, so the arms that trained stay readable. The legend sits below
    the panels, once for the figure, so it covers no arm's dot.

    ``arms``: :func:`farnetlib.ablation.arm_table` rows; ``label``: the column naming an arm."""
    fig, axes = plt.subplots(1, len(splits), figsize=(max(5.0, 0.9 * arms[label].nunique()) * len(splits), 4.0),
                             squeeze=False)
    order = arms[arms["split"] == splits[0]].groupby(label, sort=False)["mre"].mean().sort_values().index
    for ax, split in zip(axes[0], splits):
        sub = arms[arms["split"] == split]
        _mean_marks(ax, sub, label, order)
        sns.stripplot(data=sub, x=label, y="mre", order=order, ax=ax, color="k", size=5, jitter=0.15)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        if reference is not None and (sub[label] == reference).sum() >= 2:
            ref = sub.loc[sub[label] == reference, "mre"]
            ax.axhspan(ref.mean() - ref.std(), ref.mean() + ref.std(), color="0.5", alpha=0.25,
                       label=f"{reference}: mean ± SD over {len(ref)} seeds")
        if paper and split != "val":
            xs = [i for i, a in enumerate(order) if a in paper]
            ax.scatter(xs, [paper[order[i]] for i in xs], marker="D", facecolors="none", edgecolors="C3", s=45,
                       zorder=5, label="paper (GPU, ImageNet weights)")
        log = sub["mre"].max() > log_ratio * sub["mre"].min()
        if log:
            ax.set_yscale("log")
            plain_log_axis(ax.yaxis)
        ax.set(xlabel="", ylabel=f"MRE ({unit}{', log scale' if log else ''})", title=split)
        ax.tick_params(axis="x", rotation=35)
    if title:
        fig.suptitle(title, fontsize=10)
    legend = {lab: h for ax in axes[0] for h, lab in zip(*ax.get_legend_handles_labels())}
    if legend:  # one legend for all panels, below them, so it hides no dot
        fig.legend(legend.values(), legend.keys(), fontsize=8, loc="lower center", ncol=len(legend), frameon=False)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
    else:
        fig.tight_layout()
    return fig


def mre_vs_cost(spread: pd.DataFrame, label: str, split: str, unit: str = "mm"):
    """Mean MRE per arm against its parameters and its seconds per epoch (error bars: seed SD)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, (col, name) in zip(axes, [("params_m", "parameters (millions)"), ("s_per_epoch", "seconds per epoch")]):
        ax.errorbar(spread[col], spread["mre"], yerr=spread["mre_sd"].fillna(0.0), fmt="o", capsize=3)
        for _, r in spread.iterrows():
            ax.annotate(str(r[label]), (r[col], r["mre"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set(xlabel=name, ylabel=f"{split} MRE ({unit})")
    fig.suptitle(f"{split}: accuracy against cost")
    fig.tight_layout()
    return fig


def landmark_cloud(mean_image: np.ndarray, landmarks: np.ndarray, title: str = ""):
    """All images' landmarks (scaled to the mean image) over the mean image, one colour per landmark."""
    fig, ax = plt.subplots(figsize=(5, 6))
    ax.imshow(mean_image, cmap="gray")
    k = landmarks.shape[1]
    colors = sns.color_palette("husl", k)
    for j in range(k):
        ax.scatter(landmarks[:, j, 0], landmarks[:, j, 1], s=4, color=colors[j], alpha=0.6)
        ax.annotate(str(j + 1), np.nanmean(landmarks[:, j], 0), color="white", fontsize=8, weight="bold")
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    return fig


def confidence_vs_error(predictions: pd.DataFrame, unit: str = "mm", title: str = ""):
    """Heatmap peak value (confidence) against radial error, one dot per image x landmark."""
    col = "error_mm" if unit == "mm" else "error_px"
    rho = predictions[["peak", col]].corr(method="spearman").iloc[0, 1]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter(predictions["peak"], predictions[col].clip(lower=1e-3), s=5, alpha=0.35)
    ax.set(xlabel="heatmap peak value", ylabel=f"radial error ({unit})", yscale="log",
           title=f"{title}{' — ' if title else ''}confidence vs error (Spearman {rho:.2f})")
    fig.tight_layout()
    return fig


def model_vs_observers(table: pd.DataFrame, title: str = ""):
    """Per-landmark model MRE beside the senior-vs-junior difference (``reporting.model_vs_observers``)."""
    long = table.melt(id_vars="landmark", value_vars=["model_mre_mm", "observers_mean_mm"],
                      var_name="what", value_name="mm")
    long["what"] = long["what"].map({"model_mre_mm": "model error", "observers_mean_mm": "senior vs junior"})
    fig, ax = plt.subplots(figsize=(max(7, 0.5 * len(table)), 3.8))
    sns.barplot(data=long, x="landmark", y="mm", hue="what", ax=ax, palette=["C0", "C1"])
    ax.set(xlabel="landmark", ylabel="mm", title=title or "model error vs inter-observer difference")
    ax.legend(title="")
    fig.tight_layout()
    return fig


def inter_observer(table: pd.DataFrame, title: str = ""):
    """Per-landmark distance between the two doctors, mean with its SD (``reporting.inter_observer``)."""
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(table["landmark"], table["observers_mean_mm"], yerr=table["observers_sd_mm"], color="C1")
    ax.set(xlabel="landmark", ylabel="senior vs junior (mm)", xticks=table["landmark"], title=title)
    fig.tight_layout()
    return fig


def _angle_panels(pred: pd.DataFrame, truth: pd.DataFrame, height: float):
    """A figure with one panel per angle column; yields (axis, name, truth values, predicted values)."""
    names = list(truth.columns)
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), height), squeeze=False)
    panels = [(ax, name, truth[name].to_numpy(), pred[name].to_numpy()) for ax, name in zip(axes[0], names)]
    return fig, panels


def _finish(fig, title: str):
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def cobb_scatter(pred: pd.DataFrame, truth: pd.DataFrame, title: str = ""):
    """Predicted vs ground-truth Cobb angles, one panel per angle, with the identity line."""
    fig, panels = _angle_panels(pred, truth, 4.0)
    for ax, name, x, y in panels:
        hi = max(5.0, float(np.nanmax([x.max(), y.max()])) * 1.05)
        ax.scatter(x, y, s=10, alpha=0.6)
        ax.plot([0, hi], [0, hi], color="k", lw=0.8, ls="--")
        r = np.corrcoef(x, y)[0, 1] if len(x) > 1 else float("nan")
        ax.set(xlim=(0, hi), ylim=(0, hi), xlabel=f"ground truth {name} (°)", ylabel=f"predicted {name} (°)",
               title=f"{name}: MAE {np.abs(y - x).mean():.1f}°, r = {r:.2f}")
        ax.set_aspect("equal")
    return _finish(fig, title)


def bland_altman(pred: pd.DataFrame, truth: pd.DataFrame, title: str = ""):
    """Bland–Altman plot per angle: difference (pred − truth) against the mean, bias and ±1.96 SD."""
    fig, panels = _angle_panels(pred, truth, 3.6)
    for ax, name, x, y in panels:
        mean, diff = (x + y) / 2, y - x
        bias, sd = diff.mean(), diff.std(ddof=1) if len(diff) > 1 else 0.0
        ax.scatter(mean, diff, s=10, alpha=0.6)
        for v, style in ((bias, "-"), (bias + 1.96 * sd, "--"), (bias - 1.96 * sd, "--")):
            ax.axhline(v, color="k", lw=0.8, ls=style)
        ax.set(xlabel=f"mean of the two {name} (°)", ylabel="predicted − truth (°)",
               title=f"{name}: bias {bias:+.1f}°, limits ±{1.96 * sd:.1f}°")
    return _finish(fig, title)


def show_spines(source, predictions: pd.DataFrame, ids: Sequence[str], cols: int = 4, title: str = ""):
    """Spine images with each vertebra drawn as a quadrilateral: ground truth green, prediction red."""
    rows = int(np.ceil(len(ids) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 6.0 * rows), squeeze=False)
    order = [0, 1, 3, 2, 0]  # TL, TR, BR, BL, back to TL
    for ax, image_id in zip(axes.ravel(), ids):
        i = source.ids.index(image_id)
        ax.imshow(source.read_image(i), cmap="gray")
        sub = predictions[predictions["id"] == image_id].sort_values("landmark")
        for cols_xy, color in ((("gt_x", "gt_y"), GT_COLOR), (("pred_x", "pred_y"), PRED_COLOR)):
            pts = sub[list(cols_xy)].to_numpy().reshape(-1, 4, 2)
            for quad in pts:
                ax.plot(quad[order, 0], quad[order, 1], color=color, lw=0.8)
        ax.set_title(f"{image_id}\nMRE {sub['error_px'].mean():.1f} px", fontsize=8)
        ax.axis("off")
    for ax in axes.ravel()[len(ids):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=GT_COLOR, lw=1.5, label="ground truth"),
               plt.Line2D([], [], color=PRED_COLOR, lw=1.5, label="prediction")]
    axes.ravel()[0].legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.8)
    return _titled(fig, title)


def clinical_scatter(model, human=None, title: str = ""):
    """Per measurement of a :class:`farnetlib.ceph.ClinicalScore`: predicted against ground-truth values, the
    normal range drawn as bands on both axes (a point outside the cross of the bands lands in
    another class than its truth), the identity line; ``human`` (the junior doctor) in grey."""
    ms = model.analysis.measurements
    cols = min(4, len(ms))
    rows = int(np.ceil(len(ms) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.5 * rows), squeeze=False)
    for ax, m in zip(axes.ravel(), ms):
        x, y = model.truth[m.name].to_numpy(), model.pred[m.name].to_numpy()
        ok = model.truth[f"{m.name}_class"].to_numpy() == model.pred[f"{m.name}_class"].to_numpy()
        values = [x, y] + ([human.pred[m.name].to_numpy()] if human is not None else [])
        finite = np.concatenate([v[np.isfinite(v)] for v in values] + [np.array([m.low, m.high])])
        pad = 0.08 * (finite.max() - finite.min())
        lim = (finite.min() - pad, finite.max() + pad)
        ax.axvspan(m.low, m.high, color="#2ca02c", alpha=0.12, lw=0)
        ax.axhspan(m.low, m.high, color="#2ca02c", alpha=0.12, lw=0)
        ax.plot(lim, lim, color="k", lw=0.7, ls="--")
        if human is not None:
            ax.scatter(human.truth[m.name], human.pred[m.name], s=7, color="0.6", alpha=0.6, label="junior doctor")
        ax.scatter(x[ok], y[ok], s=9, color="#1f77b4", alpha=0.7, label="model, class right")
        ax.scatter(x[~ok], y[~ok], s=11, color=PRED_COLOR, alpha=0.8, marker="x", label="model, class wrong")
        scr = model.table.loc[m.name, "scr_%"]
        ref = f" (junior {human.table.loc[m.name, 'scr_%']:.0f} %)" if human is not None else ""
        ax.set(xlim=lim, ylim=lim, xlabel=f"truth ({m.unit})", ylabel=f"predicted ({m.unit})",
               title=f"{m.name}: SCR {scr:.0f} %{ref}")
        ax.title.set_fontsize(9)
    for ax in axes.ravel()[len(ms):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=6, loc="upper left", framealpha=0.8)
    return _finish(fig, title)


def confusion_matrices(model, title: str = ""):
    """Per measurement: the row-normalised confusion matrix (truth rows, predicted columns; the
    diagonal's mean is the SCR), with the image counts written in each cell."""
    ms = model.analysis.measurements
    cols = min(4, len(ms))
    rows = int(np.ceil(len(ms) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.9 * rows), squeeze=False)
    for ax, m in zip(axes.ravel(), ms):
        counts = model.confusions[m.name]
        shares = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0)
        labels = counts.astype(int).astype(str)
        sns.heatmap(shares, annot=labels, fmt="", vmin=0, vmax=1, cmap="Blues", cbar=False, ax=ax,
                    annot_kws={"fontsize": 8}, linewidths=0.5, linecolor="white")
        ax.grid(False)
        ax.set(xlabel="predicted class", ylabel="truth class", title=f"{m.name}: SCR {model.table.loc[m.name, 'scr_%']:.0f} %")
        ax.title.set_fontsize(9)
    for ax in axes.ravel()[len(ms):]:
        ax.axis("off")
    return _finish(fig, title)


PLANE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#17becf", "#e377c2")


def draw_analysis(ax, pts: np.ndarray, analysis, measured: pd.Series | None) -> None:
    """A cephalometric analysis (:class:`farnetlib.ceph.Analysis`) on an image axis: its planes as
    lines through their two landmarks of ``pts`` (``(K, 2)`` px, extended by a fifth beyond each),
    named at one end, and, where ``measured`` (one row of :func:`farnetlib.ceph.measure`) is given,
    each measurement's value and class in a box in the upper left corner."""
    for (name, a, b), color in zip(analysis.planes, PLANE_COLORS * 4):
        p, q = pts[a - 1], pts[b - 1]
        ends = np.array([p - 0.2 * (q - p), q + 0.2 * (q - p)])
        ax.plot(ends[:, 0], ends[:, 1], color=color, lw=0.9, alpha=0.9)
        ax.annotate(name, ends[1], color=color, fontsize=6, xytext=(2, -2), textcoords="offset points")
    if measured is None:
        return
    lines = []
    for m in analysis.measurements:
        value, cls = measured[m.name], int(measured[f"{m.name}_class"])
        unit = {"deg": "°", "mm": " mm"}.get(m.unit, "")
        digits = 2 if m.unit == "ratio" else 1
        lines.append(f"{m.name} {value:.{digits}f}{unit}  {m.class_names.get(cls, f'class {cls}')}" if np.isfinite(value)
                     else f"{m.name} not computable")
    ax.text(0.01, 0.99, "\n".join(lines), transform=ax.transAxes, va="top", ha="left", fontsize=5.5, color="white",
            family="monospace", bbox={"facecolor": "black", "alpha": 0.55, "pad": 2, "lw": 0})


def landmark_sensitivity(table: pd.DataFrame, names: Sequence[str] | None = None, title: str = ""):
    """Heatmap of :func:`farnetlib.ceph.landmark_sensitivity`: landmarks (rows) x measurements
    (columns), each column scaled to its own maximum (units differ), the values written in."""
    shown = table.loc[(table > 0).any(axis=1)]
    scaled = shown / shown.max(axis=0)
    fig, ax = plt.subplots(figsize=(1.0 * shown.shape[1] + 2.5, 0.38 * len(shown) + 1.2))
    labels = [f"{k} {names[k - 1]}" if names else str(k) for k in shown.index]
    sns.heatmap(scaled, annot=shown.map(lambda v: f"{v:.2g}" if v >= 0.01 else ("0" if v else "")), fmt="", cmap="Reds", cbar=False, ax=ax,
                yticklabels=labels, annot_kws={"fontsize": 7}, linewidths=0.4, linecolor="white")
    ax.set(xlabel="measurement", ylabel="landmark moved")
    ax.grid(False)
    return _finish(fig, title)


def class_flips(flips: pd.DataFrame, analysis, title: str = ""):
    """:func:`farnetlib.ceph.class_flips` per measurement: the share of noisy copies whose class
    changes against the true value's distance to the nearest class boundary."""
    ms = analysis.measurements
    cols = min(4, len(ms))
    rows = int(np.ceil(len(ms) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows), squeeze=False)
    for ax, m in zip(axes.ravel(), ms):
        sub = flips[flips["measurement"] == m.name]
        ax.scatter(sub["distance_to_boundary"], 100 * sub["flip_rate"], s=8, alpha=0.6)
        ax.set(xlabel=f"distance to the nearest boundary ({m.unit})", ylabel="class changed (%)", ylim=(-3, 103),
               title=f"{m.name}: {100 * (sub['flip_rate'] > 0.5).mean():.0f} % of images flip in most draws")
        ax.title.set_fontsize(8)
    for ax in axes.ravel()[len(ms):]:
        ax.axis("off")
    return _finish(fig, title)


def show_analysis(image: np.ndarray, landmarks: np.ndarray, analysis, measured=None, title: str = ""):
    """One cephalogram with its landmarks (numbered from 1), the analysis's planes and, where
    ``measured`` (a row of :func:`farnetlib.ceph.measure`) is given, the values and classes."""
    fig, ax = plt.subplots(figsize=(7, 7 * image.shape[0] / image.shape[1]))
    show_landmarks(ax, image, landmarks)
    draw_analysis(ax, landmarks, analysis, measured)
    ax.axis("off")
    return _finish(fig, title)


VERTEBRAE = tuple(f"T{k}" for k in range(1, 13)) + tuple(f"L{k}" for k in range(1, 6))  # the AASCE set's 17
CURVE_COLORS = ("#ff7f0e", "#1f77b4", "#2ca02c")


def draw_spine(ax, pts: np.ndarray, angles: np.ndarray | None = None, ends: np.ndarray | None = None) -> None:
    """A spine's ``(4 x V, 2)`` corners on an image axis: every vertebra as a quadrilateral and,
    where the Cobb ``angles`` (PT, MT, TL) and their end vertebrae (``(3, 2)``, 0-based, from
    :func:`farnetlib.spine.cobb_angles_with_ends`) are given, each curve's two end vertebrae drawn
    thick in its colour with the angle in a box in the upper left corner."""
    quads = np.asarray(pts).reshape(-1, 4, 2)[:, [0, 1, 3, 2, 0]]  # TL, TR, BR, BL, back to TL
    for quad in quads:
        ax.plot(quad[:, 0], quad[:, 1], color="#d62728", lw=0.6, alpha=0.8)
    if angles is None or ends is None:
        return
    names = VERTEBRAE if len(quads) == len(VERTEBRAE) else tuple(str(v + 1) for v in range(len(quads)))
    lines = []
    for k, (name, value, (a, b), color) in enumerate(zip(("PT", "MT", "TL"), angles, ends, CURVE_COLORS)):
        for v in (a, b):
            ax.plot(quads[v, :, 0], quads[v, :, 1], color=color, lw=1.6 - 0.3 * k)
        lines.append(f"{name} {value:5.1f}°  {names[a]}-{names[b]}" if np.isfinite(value) else f"{name} not computable")
    ax.text(0.02, 0.99, "\n".join(lines), transform=ax.transAxes, va="top", ha="left", fontsize=6, color="white",
            family="monospace", bbox={"facecolor": "black", "alpha": 0.55, "pad": 2, "lw": 0})


def spines_before_after(source, before: pd.DataFrame, after: pd.DataFrame, ids: Sequence[str],
                        labels: tuple[str, str] = ("before", "after")):
    """The same spine images decoded two ways (rows): ground-truth vertebrae green, predicted ones red
    with their index (1 = T1) at their centre, so that a vertebra counted twice or skipped shows as a
    repeated or missing number; each panel's title gives its MRE and its vertebra-level mix-ups."""
    from .spine import vertebra_mixups

    fig, axes = plt.subplots(2, len(ids), figsize=(2.6 * len(ids), 11.5), squeeze=False)
    order = [0, 1, 3, 2, 0]
    for row, (preds, label) in enumerate(zip((before, after), labels)):
        for ax, image_id in zip(axes[row], ids):
            i = source.ids.index(image_id)
            ax.imshow(source.read_image(i), cmap="gray")
            sub = preds[preds["id"] == image_id].sort_values("landmark")
            gt, pr = (sub[list(c)].to_numpy().reshape(-1, 4, 2) for c in (("gt_x", "gt_y"), ("pred_x", "pred_y")))
            for quads, color in ((gt, GT_COLOR), (pr, PRED_COLOR)):
                for quad in quads:
                    ax.plot(quad[order, 0], quad[order, 1], color=color, lw=0.7)
            for v, quad in enumerate(pr):
                ax.annotate(str(v + 1), quad.mean(axis=0), color="yellow", fontsize=5, ha="center", va="center")
            mixed = int(vertebra_mixups(pr.reshape(1, -1, 2), gt.reshape(1, -1, 2)).sum())
            ax.set_title(f"{label}\n{image_id[:18]}\nMRE {sub['error_px'].mean():.0f} px, {mixed} mixed", fontsize=7)
            ax.axis("off")
    handles = [plt.Line2D([], [], color=GT_COLOR, lw=1.5, label="ground truth"),
               plt.Line2D([], [], color=PRED_COLOR, lw=1.5, label="prediction")]
    axes[0, 0].legend(handles=handles, loc="lower left", fontsize=6, framealpha=0.8)
    fig.tight_layout()
    return fig


# --- teaching figures with knobs (notebook 05's controls, farnetlib.nbutil.interactive_figure) --------

def target_and_ewc(image: np.ndarray, point: np.ndarray, prediction: np.ndarray, sigma: float = 3.0,
                   ewc_base: float = 40.0):
    """One landmark's Gaussian target at ``sigma`` (input pixels), the EWC weight map ``base ** y``,
    and where the loss of ``prediction`` (a fine heatmap) sits under EWC and under MSE (base 1): the
    share of each loss within 2 sigma of the landmark is in the titles."""
    import torch

    from .heatmaps import GaussianHeatmapEncoder
    from .losses import EWCLoss

    h, w = prediction.shape
    y = GaussianHeatmapEncoder(sigma).encode(torch.as_tensor(point, dtype=torch.float32)[None], (h, w))[0]
    p = torch.as_tensor(prediction, dtype=torch.float32)
    near = y > np.exp(-2)
    ewc = EWCLoss(ewc_base, reduction="none")(p, y)
    mse = EWCLoss(1.0, reduction="none")(p, y)  # base 1: every pixel weighs 1, the plain squared error
    share = {name: 100 * float(loss[near].sum() / loss.sum().clamp_min(1e-12)) for name, loss in (("EWC", ewc), ("MSE", mse))}
    fig, ax = plt.subplots(1, 4, figsize=(14, 3.8))
    ax[0].imshow(image, cmap="gray")
    ax[0].scatter(*point, c=PRED_COLOR, s=20)
    ax[0].set_title("input and landmark")
    return _heatmap_panels(fig, ax, [(y, f"target, sigma {sigma:g} px"),
                                     (ewc, f"EWC loss (base {ewc_base:g}): {share['EWC']:.0f} % within 2 sigma"),
                                     (mse, f"MSE loss: {share['MSE']:.0f} % within 2 sigma")])


def _heatmap_panels(fig, ax, panels):
    """Heatmaps with colour bars in ``ax[1:]`` (``ax[0]`` holds the image); every axis off."""
    for a, (img, title) in zip(ax[1:], panels):
        im = a.imshow(img, cmap="magma")
        a.set_title(title, fontsize=9)
        fig.colorbar(im, ax=a, shrink=0.7)
    for a in ax:
        a.axis("off")
    fig.tight_layout()
    return fig


def coarse_and_fine(image: np.ndarray, coarse: np.ndarray, fine: np.ndarray, truth: np.ndarray, landmark: int):
    """An image with one landmark's truth, and its coarse (half-size) and fine heatmaps side by side
    (``landmark`` 1-based, as in every table)."""
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.8))
    ax[0].imshow(image, cmap="gray")
    ax[0].scatter(*truth, c=GT_COLOR, s=25)
    ax[0].set_title(f"landmark {landmark}: ground truth")
    return _heatmap_panels(fig, ax, [(coarse, "coarse heatmap (1/2 size)"), (fine, "fine heatmap (full size)")])


def decoder_zoom(heatmap: np.ndarray, truth: np.ndarray, decoded: dict[str, np.ndarray], radius: int = 4):
    """The ``(2 radius + 1)``-pixel neighbourhood of a heatmap's peak with the truth and each decoder's
    answer (input pixels, pixel centres on the integers): argmax sits on a pixel centre, a sub-pixel
    decoder between them."""
    iy, ix = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    y0, x0 = max(0, iy - radius), max(0, ix - radius)
    patch = heatmap[y0:iy + radius + 1, x0:ix + radius + 1]
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.imshow(patch, cmap="magma", extent=(x0 - 0.5, x0 + patch.shape[1] - 0.5, y0 + patch.shape[0] - 0.5, y0 - 0.5))
    ax.scatter(*truth, marker="o", s=70, facecolors="none", edgecolors=GT_COLOR, linewidths=2, label="ground truth")
    for (name, pt), marker in zip(decoded.items(), ("s", "x", "+", "^")):
        err = float(np.hypot(*(np.asarray(pt) - truth)))
        ax.scatter(*pt, marker=marker, s=60, label=f"{name}: {err:.2f} px off")
    ax.set_title("around the peak (input pixels)", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig
