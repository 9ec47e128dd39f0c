"""The run report (notebook ``04_tables_and_figures``): tables and figures from run folders alone.

:class:`RunReport` holds the loaded runs and where the report writes (``<out_dir>/tables``,
``<out_dir>/figures``); each method is one section of the notebook: it writes the section's tables
(CSV + Markdown + LaTeX) and figures and returns a :class:`Section`, the text, tables and figures
to show in that order (:func:`farnetlib.nbutil.show`). Sections that do not apply to the runs
(the spine's on ISBI runs, ...) return an empty section. Worst-case overlays also read the images;
where the dataset is not on this machine they are skipped with a note.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd

from . import plots
from .crossval import FOLD_PAIRS, pooled_per_landmark, pooled_predictions, pooled_table
from .data.io import DatasetError
from .data.registry import config_option, get_dataset
from .engine.runs import list_runs, load_run
from .engine.sources import run_source
from .reporting import (backbone_table, clinical_caption, clinical_scores, clinical_summary, clinical_table,
                        curve_references, finite, model_vs_observers, paper_layout, per_landmark, spine_table,
                        summary_table, with_units, worst_and_median, write_table)
from .spine import ANGLE_NAMES, angles_from_predictions, per_vertebra_corner

__all__ = ["Section", "RunReport", "load_runs"]


@dataclass
class Section:
    """What one section shows, in order: Markdown text (``str``), notes (``("note", text)``), tables
    (DataFrames) and figures (shown once, then closed)."""

    items: list = field(default_factory=list)

    def text(self, markdown: str) -> None:
        self.items.append(markdown)

    def note(self, text: str) -> None:
        self.items.append(("note", text))

    def table(self, table: pd.DataFrame) -> None:
        self.items.append(table)

    def figure(self, fig, path: Path, show: bool = True) -> None:
        """Save ``fig`` to ``path``; show it with the section, or only keep the file (many runs)."""
        plots.save(fig, path)
        if show:
            self.items.append(fig)
        else:
            plt.close(fig)


def load_runs(patterns: Sequence[str | Path]) -> list[dict]:
    """The complete run folders that ``patterns`` name (folders or glob patterns), loaded, sorted."""
    paths = []
    for pattern in patterns:
        p = Path(pattern)
        paths += [p] if (p / "metrics.json").is_file() else list_runs(p.parent, p.name)
    paths = sorted(set(paths))
    if not paths:
        raise FileNotFoundError(f"no complete run folders match {list(patterns)}")
    return [load_run(p) for p in paths]


def _test_splits(run: dict) -> list[str]:
    return [s for s in run["metrics"]["splits"] if s != "val"]


class RunReport:
    """The report of ``runs`` (loaded run folders) into ``out_dir``: ``worst_cases`` images in each
    worst-case overlay; ``reference_runs`` (label -> loaded run) are lines on the learning curves."""

    def __init__(self, runs: list[dict], out_dir: str | Path, worst_cases: int = 4,
                 reference_runs: dict[str, dict] | None = None) -> None:
        self.runs, self.worst_cases = runs, worst_cases
        self.tables_dir, self.figures_dir = Path(out_dir) / "tables", Path(out_dir) / "figures"
        self.reference_runs = reference_runs or {}
        self.summary = summary_table(runs)
        self._rater_sources: dict[tuple[str, str], object] = {}

    @classmethod
    def from_folders(cls, patterns: Sequence[str | Path], out_dir: str | Path, worst_cases: int = 4,
                     reference_runs: dict[str, str | Path] | None = None) -> "RunReport":
        return cls(load_runs(patterns), out_dir, worst_cases,
                   {label: load_run(path) for label, path in (reference_runs or {}).items()})

    def _runs_where(self, test) -> list[dict]:
        return [r for r in self.runs if test(get_dataset(r["config"]["dataset"]))]

    def summary_section(self) -> Section:
        """MRE (± SD) and SDR per run and split, in the paper's layout (and every column in ``summary_full``)."""
        if not finite(self.summary[["mre", "sd"]]):
            raise ValueError("non-finite metric in a run")
        write_table(self.summary, self.tables_dir, "summary_full")
        layout = paper_layout(self.summary)
        write_table(layout.set_index(["run", "split"]), self.tables_dir, "summary",
                    caption="MRE (± SD) and SDR per run and split")
        section = Section()
        section.table(layout.set_index(["run", "split"]))
        return section

    def learning_curves(self) -> Section:
        """Validation MRE per epoch and per hour, with the paper's number and the reference runs as lines."""
        section = Section()
        for run in self.runs:
            unit = run["metrics"]["splits"]["val"]["unit"]
            paper = get_dataset(run["config"]["dataset"]).paper_mre  # FARNet's published test MRE, where there is one
            references = curve_references(run, paper, self.reference_runs)  # those of this run's dataset and fold
            fig = plots.learning_curve(run["history"], unit=unit, references=references,
                                       title=f"{run['name']}: validation MRE")
            section.figure(fig, self.figures_dir / f"learning_curve-{run['name']}.png", show=len(self.runs) <= 4)
        return section

    def per_landmark_tables(self) -> Section:
        section = Section()
        for run in self.runs:
            for split, m in run["metrics"]["splits"].items():
                table = per_landmark(run, split)
                write_table(table.round(3), self.tables_dir, f"per_landmark-{run['name']}-{split}",
                            caption=f"{run['name']}, {split}: per-landmark MRE/SD/SDR ({m['unit']})")
                section.text(f"**{run['name']}**, {split}")
                section.table(with_units(table, m["unit"]).round(2))
        return section

    def error_figures(self) -> Section:
        """Box plots per landmark (files), SDR against radius and the cumulative per-image error."""
        section = Section()
        curves, per_image = {}, {}
        for run in self.runs:
            for split, m in run["metrics"]["splits"].items():
                preds = run["predictions"].query("split == @split")
                col = "error_mm" if m["unit"] == "mm" else "error_px"
                fig = plots.error_boxplot(preds, unit=m["unit"], title=f"{run['name']} — {split}")
                section.figure(fig, self.figures_dir / f"boxplot-{run['name']}-{split}.png", show=False)
                curves[f"{run['name']} {split}"] = preds[col].to_numpy()
                per_image[f"{run['name']} {split}"] = preds.groupby("id")[col].mean().to_numpy()
        val = self.runs[0]["metrics"]["splits"]["val"]
        unit, radii = val["unit"], val["radii"]
        fig = plots.sdr_curve(curves, unit=unit, max_radius=max(10.0, 2.5 * max(radii)), marks=radii)
        section.figure(fig, self.figures_dir / "sdr_vs_radius.png")
        section.figure(plots.cumulative_error(per_image, unit=unit), self.figures_dir / "cumulative_error.png")
        return section

    def worst_cases_section(self) -> Section:
        """One run per dataset: its worst test images, then the median one (the spine and hand sections
        draw their own)."""
        section, shown = Section(), set()
        for run in self.runs:
            spec = get_dataset(run["config"]["dataset"])
            if spec.extra_metrics == "spine" or spec.pooled_by_pairs or spec.name in shown:
                continue
            shown.add(spec.name)
            split = next(iter(_test_splits(run)), "val")
            preds = run["predictions"].query("split == @split")
            unit = run["metrics"]["splits"][split]["unit"]
            try:
                source = run_source(run["config"], spec.train_split if split == "val" else split)
            except (DatasetError, TypeError) as err:
                section.note(f"worst-case overlays of {run['name']} skipped: {err}")
                continue
            ids, which = worst_and_median(preds, split, self.worst_cases, unit)
            fig = plots.show_predictions(source, preds, ids, cols=len(ids), unit=unit,
                                         title=f"{run['name']}, {split}: {which} (green: ground truth, red: prediction)")
            section.figure(fig, self.figures_dir / f"worst_cases-{run['name']}-{split}.png")
        return section

    def confidence(self) -> Section:
        """Heatmap peak against error on every test split."""
        section = Section()
        for run in self.runs:
            for split in _test_splits(run):
                preds = run["predictions"].query("split == @split")
                fig = plots.confidence_vs_error(preds, unit=run["metrics"]["splits"][split]["unit"],
                                                title=f"{run['name']} {split}")
                section.figure(fig, self.figures_dir / f"confidence-{run['name']}-{split}.png", show=len(self.runs) <= 2)
        return section

    def _both_raters(self, run: dict, split: str):
        """The split with both raters' landmarks, opened once for the observer and clinical sections."""
        key = (run["name"], split)
        if key not in self._rater_sources:
            self._rater_sources[key] = run_source(run["config"], split, ground_truth="mean")
        return self._rater_sources[key]

    def _two_rater_runs(self) -> list[dict]:
        return self._runs_where(lambda spec: len(spec.raters) == 2)

    def observers(self) -> Section:
        """Datasets with two raters (ISBI's senior and junior doctors): per landmark, the model's MRE
        beside the raters' disagreement on the same images."""
        section, runs = Section(), self._two_rater_runs()
        if runs:
            section.text("## Model error beside the two doctors' disagreement\n"
                         "Per landmark, the model's MRE next to the mean distance between the senior and the junior "
                         "doctor on the same images (the inter-observer variability). A ratio near 1 means the model "
                         "is as far from the ground truth as one expert is from the other.")
        for run in runs:
            for split in [s for s in _test_splits(run) if s in get_dataset(run["config"]["dataset"]).splits]:
                try:
                    source = self._both_raters(run, split)
                except (DatasetError, TypeError) as err:
                    section.note(f"{run['name']} {split}: inter-observer comparison skipped ({err})")
                    continue
                table = model_vs_observers(run, split, source)
                write_table(table.set_index("landmark").round(3), self.tables_dir,
                            f"model_vs_observers-{run['name']}-{split}",
                            caption=f"{run['name']}, {split}: model MRE vs senior-junior distance (mm)")
                section.table(table.round(2))
                section.text(f"Mean over landmarks: model **{table.model_mre_mm.mean():.2f} mm**, doctors "
                             f"{table.observers_mean_mm.mean():.2f} mm apart on these images (ground truth: "
                             f"{run['metrics']['splits'][split]['ground_truth']}).")
                fig = plots.model_vs_observers(table, title=f"{run['name']} {split}: model error vs inter-observer "
                                                            "difference")
                section.figure(fig, self.figures_dir / f"model_vs_observers-{run['name']}-{split}.png")
        return section

    def clinical(self) -> Section:
        """Datasets with a cephalometric analysis and two raters: the measurements' SCR, MAE and
        confusion, the junior doctor scored beside the model (classes of the senior doctor's landmarks)."""
        section = Section()
        runs = [r for r in self._two_rater_runs() if get_dataset(r["config"]["dataset"]).analysis is not None]
        if runs:
            section.text(CLINICAL_TEXT)
        by_split: dict[str, dict] = {}
        for run in runs:
            for split in _test_splits(run):
                try:
                    source = self._both_raters(run, split)
                except (DatasetError, TypeError) as err:
                    section.note(f"{run['name']} {split}: clinical measurements skipped ({err})")
                    continue
                model, human = clinical_scores(run, split, source)  # classes of the senior doctor's landmarks
                by_split.setdefault(split, {})[run["name"]] = (run, model, human)
                table = clinical_table(model, human)
                write_table(table.round(3), self.tables_dir, f"clinical-{run['name']}-{split}",
                            caption=clinical_caption(run["name"], split, model))
                section.text(f"**{run['name']}**, {split}")
                section.table(table.round(2))
                for name, fig in [("clinical_scatter", plots.clinical_scatter(model, human, title=f"{run['name']}, {split}")),
                                  ("confusion", plots.confusion_matrices(model, title=f"{run['name']}, {split}: model"))]:
                    section.figure(fig, self.figures_dir / f"{name}-{run['name']}-{split}.png", show=len(self.runs) <= 2)
        for split, rows in by_split.items():
            table = clinical_summary(rows, split)
            write_table(table.round(3), self.tables_dir, f"clinical_summary-{split}",
                        caption=f"{split}: landmark error beside the mean SCR of the eight measurements, model and "
                                "junior doctor")
            section.table(table.round(2))
        return section

    def spine(self) -> Section:
        """Spine runs: Cobb angles, SMAPE, normalised MSE, per-vertebra errors, angle scatter and
        Bland-Altman, and the worst test images drawn as vertebrae."""
        section, runs = Section(), self._runs_where(lambda spec: spec.extra_metrics == "spine")
        if runs:
            section.text(SPINE_TEXT)
        for run in runs:
            table = spine_table(run)
            write_table(table.round(4), self.tables_dir, f"spine-{run['name']}", caption=f"{run['name']}: spine metrics")
            section.table(table.round(4))
            for split in _test_splits(run):
                self._spine_split(section, run, split)
        return section

    def _spine_split(self, section: Section, run: dict, split: str) -> None:
        preds = run["predictions"].query("split == @split")
        errors = preds.pivot(index="id", columns="landmark", values="error_px").to_numpy()
        vc = per_vertebra_corner(errors)
        write_table(vc.round(2), self.tables_dir, f"spine_vertebrae-{run['name']}-{split}",
                    caption=f"{run['name']}, {split}: mean radial error (px) per vertebra and corner")
        section.table(vc.round(1))
        angles = angles_from_predictions(preds)
        pred_a = angles[[f"pred_{a}" for a in ANGLE_NAMES]].set_axis(list(ANGLE_NAMES), axis=1)
        try:
            source = run_source(run["config"], split, missing="skip", outside="keep")
            truth = source.cobb_angles().loc[pred_a.index]
        except (DatasetError, TypeError) as err:
            section.note(f"angles.csv unavailable ({err}); angles from the ground-truth landmarks instead")
            source, truth = None, angles[[f"gt_{a}" for a in ANGLE_NAMES]].set_axis(list(ANGLE_NAMES), axis=1)
        section.figure(plots.cobb_scatter(pred_a, truth, title=f"{run['name']} {split}"),
                       self.figures_dir / f"cobb_scatter-{run['name']}-{split}.png")
        section.figure(plots.bland_altman(pred_a, truth, title=f"{run['name']} {split}"),
                       self.figures_dir / f"bland_altman-{run['name']}-{split}.png")
        if source is not None:
            ids, which = worst_and_median(preds, split, self.worst_cases, "px")
            fig = plots.show_spines(source, preds, ids, cols=len(ids), title=f"{run['name']}, {split}: {which}")
            section.figure(fig, self.figures_dir / f"worst_spines-{run['name']}-{split}.png")

    def cross_validation(self) -> Section:
        """Fold runs pooled over folds (the hand set, each 50 mm pair): tables, box plots, SDR curves
        and each fold's worst test images."""
        section, runs = Section(), self._runs_where(lambda spec: spec.pooled_by_pairs)
        if not runs:
            return section
        section.text(CROSSVAL_TEXT)
        cv = pooled_table(runs)
        write_table(cv.round(3), self.tables_dir, "hand_crossval",
                    caption="hand, test images of every fold: MRE/SD (mm) and SDR (%), by the landmark pair set 50 mm apart")
        section.table(with_units(cv, "mm").round(2))
        cv_curves, main_pair = {}, None
        for pair in FOLD_PAIRS:
            name = f"{pair[0]}-{pair[1]}"
            table = pooled_per_landmark(runs, pair=pair)
            write_table(table.round(3), self.tables_dir, f"hand_crossval_per_landmark-pair{name}",
                        caption=f"hand, pooled test images: per-landmark MRE/SD (mm) and SDR (%), landmarks {pair} 50 mm apart")
            pooled = pooled_predictions(runs, pair=pair)
            cv_curves[f"pooled, pair {name} = 50 mm"] = pooled["error_mm"].to_numpy()
            if pair == FOLD_PAIRS[0]:
                main_pair = pooled
                section.table(with_units(table, "mm").round(2))
                fig = plots.error_boxplot(pooled, unit="mm", title=f"hand, all folds' test images (pair {name} = 50 mm)")
                section.figure(fig, self.figures_dir / f"hand_crossval_boxplot-pair{name}.png")
        fig = plots.sdr_curve(cv_curves, unit="mm", max_radius=10.0, marks=(2.0, 4.0, 10.0))
        section.figure(fig, self.figures_dir / "hand_crossval_sdr_vs_radius.png")
        for run in sorted(runs, key=lambda r: config_option(r["config"], "fold")):
            try:
                source = run_source(run["config"], "test", missing="skip")
            except (DatasetError, TypeError) as err:
                section.note(f"worst hands of {run['name']} skipped: {err}")
                continue
            preds = main_pair[main_pair["fold"] == config_option(run["config"], "fold")]
            ids, which = worst_and_median(preds, "test", self.worst_cases, "mm")
            fig = plots.show_predictions(source, preds, ids, cols=len(ids), unit="mm",
                                         title=f"{run['name']}, test: {which} (pair {FOLD_PAIRS[0]} = 50 mm; green: "
                                               "truth, red: prediction)")
            section.figure(fig, self.figures_dir / f"hand_worst-{run['name']}.png")
        return section

    def backbones(self) -> Section:
        """Several backbones among the runs (an ablation): mean ± SD over seeds per backbone and split."""
        section = Section()
        if self.summary["backbone"].nunique() <= 1:
            return section
        for split in self.summary["split"].unique():
            write_table(backbone_table(self.summary, split), self.tables_dir, f"backbones-{split}",
                        caption=f"backbones, {split}: mean ± SD over seeds")
            unit = self.summary.loc[self.summary["split"] == split, "unit"].iloc[0]
            section.figure(plots.backbone_comparison(self.summary, split, unit=unit),
                           self.figures_dir / f"backbones-{split}.png")
        return section

    def written(self) -> Section:
        """The names of the tables and figures in the report's folders."""
        section = Section()
        section.note(f"tables: {sorted(p.name for p in self.tables_dir.glob('*.md'))}")
        section.note(f"figures: {sorted(p.name for p in self.figures_dir.glob('*.png'))}")
        return section


CLINICAL_TEXT = (
    "## The clinical measurements (the ISBI 2015 challenge's second task)\n"
    "Landmark accuracy is not what an orthodontist reads. The eight measurements of the ISBI 2015 challenge (ANB, "
    "SNB, SNA, ODI, APDI, FHI, FMA, MW; as the challenge's code computes them, `farnetlib.ceph`) put each patient in a "
    "class; the **success classification rate (SCR)** is the mean per-class recall. Classes of the truth come from the "
    "senior doctor's landmarks; the junior doctor's landmarks are scored the same way beside the model: the human "
    "reference. Then predicted against true values with the normal range as bands (a point outside the cross of the "
    "bands is in another class than its truth), and each measurement's confusion matrix (counts; shading is the "
    "share of the truth row).")

SPINE_TEXT = (
    "## AASCE spine: Cobb angles, SMAPE, normalised MSE\n"
    "The clinical numbers of each split (definitions in `farnetlib.spine`), the error per vertebra and corner, "
    "predicted against ground-truth Cobb angles with the identity line, a Bland–Altman plot, and the worst test "
    "images, then the median one, with every vertebra drawn as a quadrilateral (green: ground truth, red: prediction).")

CROSSVAL_TEXT = (
    "## Hand X-rays: cross-validation pooled over folds\n"
    "One run per fold of Payer's 3-fold lists: MRE ± SD and SDR at 2 / 4 / 10 mm per fold and pooled over every "
    "fold's test images (each image tested once), in mm with landmarks 1 and 5 (0-based, Payer) set 50 mm apart and, "
    "for the GU2Net lineage, landmarks 0 and 4; the pooled per-landmark table, box plots per landmark, SDR against "
    "radius, and each fold's worst test images, then its median one, with all 37 landmarks.")
