"""Batch entry points that execute the notebooks with papermill, writing executed copies next to
their results. Paths are relative to the repository root: each entry point runs there
(:func:`at_repo_root`) and gives the caller's working directory back.

    python -m farnetlib.reproduce quickstart                      # make quickstart
    python -m farnetlib.reproduce dataset --dataset isbi2015 --root ../shared/data/isbi2015
    python -m farnetlib.reproduce dataset --dataset isbi2015 --protocol gpu_paper

``dataset`` runs ``01_data_exploration``, ``02_train`` with ``configs/<dataset>_<protocol>.json``
(protocol ``cpu`` by default, ``gpu_paper`` / ``gpu_recommended`` on a GPU), then
``04_tables_and_figures`` on that run.

    python -m farnetlib.reproduce study --study configs/isbi2015_ablation.json   # make ablation

``study`` runs ``03_backbone_ablation``: it trains every arm not finished yet (resuming an
interrupted one), then writes the ablation tables and figures beside the arms' run folders.

    farnet study --config configs/pilots/isbi2015_recipe.json       # train the recipe pilots (validation only)
    python -m farnetlib.reproduce pilots --study configs/pilots/isbi2015_recipe.json

``pilots`` writes the pilot table and learning curves of a recipe-pilot study (no training).

    python -m farnetlib.reproduce tta --run results/isbi2015_cpu/isbi2015_cpu_recipe2

``tta`` compares test-time augmentation settings on the run's validation images, and evaluates the
test splits with the setting chosen there (beside the plain numbers, never instead of them).

    python -m farnetlib.reproduce clinical --split test1

    python -m farnetlib.reproduce spine-decoders --run runs/aasce_cpu_recipe2

``spine-decoders`` compares the spine decoders (:mod:`farnetlib.spine_codec`) on a run's validation
images and evaluates the chosen one once on the test split (needs the run's checkpoint).

    python -m farnetlib.reproduce spine-targets --runs results/aasce_overnight/aasce_2h results/aasce_ordered/aasce_corners

``spine-targets`` sets spine runs side by side (per-landmark heatmaps against the identity-free corner
types of ``targets: "spine_corners"``) on validation and test from their predictions, with the first
run's worst test images drawn both ways.

``clinical`` re-scores every committed run folder of a dataset with a cephalometric analysis (ISBI:
the protocols, the 2-hour run, the ablation arms) from its ``predictions.csv`` alone (no model):
the eight measurements of :mod:`farnetlib.ceph`, SCR against the senior doctor's classes beside the
junior doctor's; one table per run beside its other tables, and one summary row per run in
``results/clinical/``. It reads the split's annotations (``--root``, default ``../shared/data``),
then executes the teaching notebook ``07_cephalometric_analysis`` into ``results/clinical/``.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import pandas as pd
import papermill as pm

from .data.registry import get_dataset
from .nbutil import repo_root

__all__ = ["run_notebook", "quickstart", "reproduce_dataset", "reproduce_study", "pilot_report",
           "uncertainty_report", "tta_report", "clinical_report", "spine_decoder_report"]



def at_repo_root(func):
    """Run ``func`` with the repository root as working directory, and give the caller's back after
    (the configs, notebooks and committed runs it reads are named relative to the root)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with contextlib.chdir(repo_root()):
            return func(*args, **kwargs)

    return wrapper


@at_repo_root
def run_notebook(name: str, dest: str | Path, stream: bool = True, **parameters) -> Path:
    """Execute ``notebooks/<name>.ipynb`` into the folder ``dest`` with papermill; returns the
    executed copy. ``parameters`` are the notebook's (which may include its own ``out_dir``).
    ``stream``: print what the notebook prints (e.g. one line per training epoch with the loss and
    the validation MRE) to this terminal while it runs, not only into the executed copy."""
    root = Path.cwd()  # the repository root (at_repo_root)
    out = Path(dest) / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    print(f"{name}: executing -> {out}", flush=True)
    pm.execute_notebook(f"notebooks/{name}.ipynb", str(out), parameters=parameters,  # relative: no machine paths recorded
                        cwd=str(root), progress_bar=not stream, log_output=False,
                        stdout_file=sys.stdout if stream else None)
    print(f"{name}: executed in {time.time() - t0:.0f} s -> {out}")
    return out


@at_repo_root
def quickstart(out_dir: str = "runs/quickstart", **parameters) -> Path:
    path = run_notebook("00_quickstart", out_dir, out_dir=out_dir, **parameters)
    summary = json.loads((Path(out_dir) / "quickstart_summary.json").read_text())
    print(json.dumps(summary, indent=2))
    return path


@at_repo_root
def reproduce_dataset(dataset: str, root: str | None, protocol: str = "cpu", out_dir: str | None = None) -> None:
    config = Path(f"configs/{dataset}_{protocol}.json")
    if not config.is_file():
        raise FileNotFoundError(f"no configuration {config}; available: {sorted(p.name for p in Path('configs').glob('*.json'))}")
    values = json.loads(config.read_text())
    out_dir = out_dir or values.get("results_dir", f"results/{dataset}_{protocol}")
    run_name = values.get("run_name") or f"{dataset}_{protocol}"
    run_notebook("01_data_exploration", out_dir, dataset=dataset, root=root, out_dir=str(Path(out_dir) / "exploration"))
    run_notebook("02_train", out_dir, dataset=dataset, root=root, config_file=str(config), run_name=run_name,
                 results_dir=out_dir)
    run_notebook("04_tables_and_figures", out_dir, runs=[str(Path(out_dir) / run_name)], out_dir=out_dir)


@at_repo_root
def reproduce_study(study: str, out_dir: str | None = None, train: bool = True) -> Path:
    """Notebook 03 on a study file; the executed copy, tables and figures go to ``out_dir`` (default:
    the study's ``results_dir``, where it trains). Without training (``--tables-only``) it reads the
    committed arms (:func:`farnetlib.engine.runs.reference_folder`) and writes beside them."""
    from .engine.runs import reference_folder

    results_dir = json.loads(Path(study).read_text())["base"]["results_dir"]
    if train:
        out_dir = out_dir or results_dir
        return run_notebook("03_backbone_ablation", out_dir, study=study, train=True, out_dir=out_dir)
    reference = str(reference_folder(results_dir))
    out_dir = out_dir or reference
    return run_notebook("03_backbone_ablation", out_dir, study=study, train=False, out_dir=out_dir,
                        overrides={"results_dir": reference})


@at_repo_root
def pilot_report(study_file: str) -> list[Path]:
    """The pilot table (CSV/MD/TeX) and learning-curve figure of a recipe-pilot study, from its run
    folders, written beside them (``<results_dir>/pilot_table.*``, ``learning_curves.png``)."""
    from .engine.runs import reference_folder
    from .engine.study import load_study, with_overrides
    from .pilots import learning_curves, pilot_table
    from .plots import save
    from .reporting import write_table

    study, raw = load_study(study_file), json.loads(Path(study_file).read_text())
    out = reference_folder(study.base.results_dir)  # the committed pilot runs, and their tables beside them
    study = with_overrides(study, {"results_dir": str(out)})
    table = pilot_table(study, raw)
    if table.empty:
        raise FileNotFoundError(f"{study_file}: no arm of the study has started under {out}; train them first: "
                                f"farnet study --config {study_file}")
    caption = (f"{study.name}: validation MRE at equal time = best validation MRE among the epochs ended within "
               f"{table.attrs['equal_time_minutes']:.1f} min of training + validation (the shortest arm); "
               f"no test split was evaluated. {raw.get('description', '')}")
    paths = write_table(table.round(3), out, "pilot_table", caption)
    paths.append(save(learning_curves(study, title=f"{study.name} (validation only)"), out / "learning_curves.png"))
    return paths


def protocol_datasets(protocol: str = "cpu") -> list[str]:
    """The registered datasets that ship a protocol config ``configs/<dataset>_<protocol>.json``."""
    from .data.registry import DATASETS

    root = repo_root()
    return [name for name in DATASETS if (root / "configs" / f"{name}_{protocol}.json").is_file()]


def protocol_runs(protocol: str = "cpu") -> dict[str, list[str]]:
    """Per dataset, the committed run folders of its ``configs/<dataset>_<protocol>.json`` (under
    ``results/``, :func:`farnetlib.engine.runs.reference_folder`; the fold runs ``<run_name>-fold<k>``
    of a dataset with folds, as ``farnet cv`` names them)."""
    from .data.registry import get_dataset
    from .config import TrainConfig
    from .engine.runs import reference_folder

    out = {}
    for dataset in protocol_datasets(protocol):
        path = Path(f"configs/{dataset}_{protocol}.json")
        if path.is_file():
            cfg = TrainConfig.load(path)
            base = reference_folder(cfg.results_dir) / (cfg.run_name or cfg.default_run_name())
            folds = get_dataset(dataset).folds(cfg)
            out[dataset] = [f"{base}-fold{k}" for k in folds] if folds else [str(base)]
    return out


PROTOCOL_LABELS = {"cpu": "60-minute protocol"}


@at_repo_root
def tables_report(dataset: str, protocol: str = "cpu", out_dir: str | None = None,
                  reference_protocol: str | None = None) -> Path:
    """Notebook 04 on the run folders of ``configs/<dataset>_<protocol>.json`` (every fold of a
    dataset with folds): tables and figures into the config's results folder, from the committed
    run folders alone (the worst-case overlays also read the images where the data is present).
    ``reference_protocol`` (e.g. ``cpu`` beside ``overnight``): that protocol's reported validation
    MRE is drawn on each learning curve (fold by fold)."""
    runs = protocol_runs(protocol)[dataset]
    out_dir = out_dir or str(Path(runs[0]).parent)
    references = {}
    if reference_protocol:
        label = PROTOCOL_LABELS.get(reference_protocol, f"{reference_protocol} protocol")
        others = protocol_runs(reference_protocol)[dataset]
        references = {label if len(others) == 1 else f"{label}, fold {k}": path
                      for k, path in enumerate(others, start=1)}
    return run_notebook("04_tables_and_figures", out_dir, runs=runs, out_dir=out_dir, reference_runs=references)


@at_repo_root
def uncertainty_report(out_dir: str = "results/uncertainty", alpha: float = 0.1) -> list[Path]:
    """From the committed run folders alone: bootstrap intervals of every split's metrics, split-
    conformal radii (plain and peak-scaled) with their test coverage, and the ablation arms' paired
    tests against densenet121-ewc-s0 (Test1 and validation)."""
    from .ablation import paired_tests
    from .crossval import pooled_table
    from .engine.runs import list_runs, load_run
    from .reporting import paper_layout, summary_table, write_table
    from .uncertainty import run_coverage

    out, paths = Path(out_dir), []
    for dataset, folders in protocol_runs().items():
        runs = [load_run(f) for f in folders if Path(f, "metrics.json").is_file()]
        if not runs:
            continue
        paths += write_table(paper_layout(summary_table(runs)).set_index(["run", "split"]), out, f"intervals-{dataset}",
                             caption=f"{dataset}: metrics with bootstrap 95 % intervals over images (2,000 resamples, seed 0)")
        if get_dataset(dataset).pooled_by_pairs:
            paths += write_table(pooled_table(runs).round(3), out, "intervals-hand_xray-pooled",
                                 caption="hand, pooled test images of the 3 folds: intervals resample the pooled images")
        for scaled in (False, True):
            tables = []
            for run in runs:
                unit = run["metrics"]["splits"]["val"]["unit"]
                cov = run_coverage(run["predictions"], "error_mm" if unit == "mm" else "error_px", alpha, scaled)
                tables.append(cov.assign(run=run["name"], unit=unit))
            name = f"conformal-{dataset}-{'peak_scaled' if scaled else 'plain'}"
            caption = (f"{dataset}: split-conformal radii per landmark from the validation images (alpha {alpha}: "
                       f"target coverage {100 * (1 - alpha):.0f} %){', scaled by the heatmap peak' if scaled else ''}; "
                       "coverage and mean radius on each test split")
            paths += write_table(pd.concat(tables).round(3), out, name, caption=caption)
    arms = [load_run(p) for p in list_runs("results/isbi2015_ablation")]
    if arms:
        for split in ("test1", "val"):
            table = paired_tests(arms, "densenet121-ewc-s0", split)
            paths += write_table(table.round(4), out, f"ablation_paired-{split}",
                                 caption=f"ISBI ablation, {split}: each arm minus densenet121-ewc-s0 on the same images; "
                                         "paired bootstrap 95 % interval of the MRE difference (mm) and Wilcoxon "
                                         "signed-rank p on per-image MRE (this compares trained models, not recipes: "
                                         "see the seed-noise test in the ablation tables)")
    return paths


def tta_report(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """TTA settings on validation (``tta_validation-<run>``), then each test split with the one of
    lowest validation MRE beside the run's plain test numbers (``tta_test-<run>``)."""
    from .engine.runs import load_run
    from .reporting import write_table
    from .tta import candidates, tta_evaluate, tta_validation

    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir).parent / "tables"
    settings = candidates(get_dataset(run["config"]["dataset"]).flip_permutation)
    val = tta_validation(run_dir, settings)
    chosen = val["val_mre"].idxmin()
    paths = write_table(val.round(4), out, f"tta_validation-{run['name']}",
                        caption=f"{run['name']}: test-time augmentation on the validation images (heatmaps averaged "
                                f"over the views); chosen: {chosen}")
    def row(split: str, label: str, m: dict) -> dict:
        unit = m["unit"]
        return {"split": split, "evaluation": label, f"MRE ({unit})": m["mre"], f"SD ({unit})": m["sd"],
                **{f"SDR {k[4:]} {unit} (%)": v for k, v in m.items() if k.startswith("sdr_")}}

    rows = []
    for split, plain in run["metrics"]["splits"].items():
        if split == "val":
            continue
        rows.append(row(split, "plain (the run's own)", plain))
        if chosen != "none":
            rows.append(row(split, f"TTA {chosen}", tta_evaluate(run_dir, split, settings[chosen])[1]))
    if rows:
        table = pd.DataFrame(rows)
        table.index = table.pop("split") + ", " + table.pop("evaluation")
        paths += write_table(table.rename_axis("split, evaluation").round(4), out, f"tta_test-{run['name']}",
                             caption=f"{run['name']}: test splits, plain and with the TTA chosen on validation "
                                     f"({chosen}); reported beside the plain numbers, never instead")
    return paths


@at_repo_root
def clinical_report(split: str = "test1", results: str = "results", out_dir: str = "results/clinical",
                    root: str | None = None, class_ground_truth: str = "senior") -> list[Path]:
    """The clinical tables of every committed run folder under ``results`` whose dataset has a
    cephalometric analysis and whose ``predictions.csv`` holds ``split``: ``clinical-<run>-<split>``
    in the ``tables/`` folder beside the run (``<results folder>/tables``) and the summary
    ``<out_dir>/<dataset>-<split>`` (one row per run). Nothing is trained or re-predicted."""
    from .engine.runs import load_run
    from .engine.sources import run_source
    from .reporting import clinical_caption, clinical_scores, clinical_summary, clinical_table, write_table

    folders = sorted(p.parent for p in Path(results).rglob("metrics.json"))
    rows, paths, sources = {}, [], {}
    for folder in folders:
        run = load_run(folder)
        dataset = run["config"]["dataset"]
        if get_dataset(dataset).analysis is None or split not in set(run["predictions"]["split"]):
            continue
        if dataset not in sources:
            config = dict(run["config"], root=root) if root else run["config"]
            sources[dataset] = run_source(config, split, ground_truth="mean")  # both doctors' landmarks
        model, human = clinical_scores(run, split, sources[dataset], class_ground_truth)
        name = str(folder.relative_to(results))
        rows.setdefault(dataset, {})[name] = (run, model, human)
        tables = folder.parent / "tables"
        if folder.parent.name == "pilots" or folder.parent.parent.name == "pilots":
            continue  # pilots are validation-only studies; listed in the summary where they hold the split
        paths += write_table(clinical_table(model, human).round(3), tables, f"clinical-{run['name']}-{split}",
                             caption=clinical_caption(run["name"], split, model))
    for dataset, by_run in rows.items():
        paths += write_table(clinical_summary(by_run, split).round(3), out_dir, f"{dataset}-{split}",
                             caption=f"{dataset}, {split}: every committed run, landmark error beside the mean SCR "
                                     "of the model and of the junior doctor (classes of the senior doctor's landmarks)")
    for dataset, source in sources.items():  # the teaching notebook on the built-in analysis (ISBI's eight measurements)
        if get_dataset(dataset).analysis == "isbi2015":
            paths.append(run_notebook("07_cephalometric_analysis", out_dir, root=str(source.root), split=split,
                                      out_dir=out_dir))
    return paths


SPINE_DECODERS = ("quadratic", "spine_peaks", "spine_ordered")
FIGURE_DPI_IMAGES = 90  # figures of whole radiographs: readable, and under 1 MB in git


def _spine_row(decoder: str, m: dict) -> dict:
    return {"decoder": decoder, "images": m["n_images"], "MRE (px)": m["mre"], "SD (px)": m["sd"],
            "mix-ups (% of landmarks)": m["mixup_%"], "images with a mix-up": m["mixup_images"], "SMAPE (%)": m["smape_%"],
            **{f"MAE {a} (°)": m[f"mae_{a}_deg"] for a in ("PT", "MT", "TL")}, "normalised MSE": m["normalised_mse"]}


def spine_decoder_report(run_dir: str | Path, decoders: tuple[str, ...] = SPINE_DECODERS,
                         out_dir: str | Path | None = None) -> list[Path]:
    """Issue 38: the spine decoders compared on a run's **validation** images (per-channel maxima
    against the ordered decoders of :mod:`farnetlib.spine_codec`), the one with the lowest validation
    SMAPE then evaluated **once** on the test split and written into the run folder
    (``test_<decoder>``, beside the run's own test numbers), a table of both, and the worst test
    images (by the plain decoder's MRE) decoded both ways. Needs the run's ``checkpoints/best.pt``."""
    from dataclasses import replace

    from .engine.evaluation import evaluate, load_model, predict_source, split_metrics
    from .checkpoint import selected_checkpoint
    from .engine.runs import load_run
    from .engine.sources import build_source, validation_split
    from .plots import save, spines_before_after
    from .reporting import worst_images, write_table

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir.parent
    model, cfg = load_model(selected_checkpoint(run_dir), device="cpu")
    spec = get_dataset(cfg.dataset)
    source = build_source(cfg, spec.train_split)
    _, val_idx = validation_split(source, cfg)
    rows, decoded = [], {}
    for name in decoders:
        variant = replace(cfg, decoder=name)
        decoded[name] = predict_source(model, source, variant, "val", indices=val_idx, progress=False)
        rows.append(_spine_row(name, split_metrics(decoded[name], variant, source)))
    val = pd.DataFrame(rows).set_index("decoder")
    chosen = str(val["SMAPE (%)"].idxmin())
    paths = write_table(val.round(4), out / "tables", f"spine_decoders-{run['name']}-val",
                        caption=f"{run['name']}, validation ({len(val_idx)} images): the spine decoders; chosen by the "
                                f"lowest validation SMAPE: {chosen}")
    first, last = decoders[0], decoders[-1]  # validation: the worst images decoded the first and the last way
    fig = spines_before_after(source, decoded[first], decoded[last], worst_images(decoded[first], "val", 4, "px"),
                              labels=(first, last))
    paths.append(save(fig, out / "figures" / f"spine_decoders-{run['name']}-val.png", dpi=FIGURE_DPI_IMAGES))
    test_rows, test = [], [s for s in spec.test_splits(cfg) if s in run["metrics"]["splits"]]
    for split in test:
        plain = run["predictions"].query("split == @split")
        own = split_metrics(plain, cfg, build_source(cfg, split))  # re-scored: runs of older code lack mixup_%
        test_rows.append(_spine_row(f"{split}: {cfg.decoder} (the run's)", own))
        if chosen != cfg.decoder:
            label = f"{split}_{chosen}"
            done = run["metrics"]["splits"].get(label)
            metrics = done if done is not None else evaluate(run_dir, split, decoder=chosen, write=True,
                                                             backend="torch", device="cpu")[1]
            test_rows.append(_spine_row(f"{split}: {chosen} (chosen on validation)", metrics))
            after = load_run(run_dir)["predictions"].query("split == @label")
            ids = worst_images(plain, split, 4, "px")
            fig = spines_before_after(build_source(cfg, split), plain, after, ids,
                                      labels=(f"{cfg.decoder}", chosen))
            paths.append(save(fig, out / "figures" / f"spine_decoders-{run['name']}-{split}.png", dpi=FIGURE_DPI_IMAGES))
    if test_rows:
        paths += write_table(pd.DataFrame(test_rows).set_index("decoder").round(4), out / "tables",
                             f"spine_decoders-{run['name']}-test",
                             caption=f"{run['name']}, test: the run's own decoder and the one chosen on validation, "
                                     "each evaluated once")
    return paths


def spine_targets_report(runs: Sequence[str | Path], out_dir: str | Path | None = None, n_worst: int = 4) -> list[Path]:
    """Issue 38, option 2: spine runs side by side on validation and test (MRE, mix-ups, SMAPE,
    per-angle MAE), each re-scored from its committed ``predictions.csv`` with today's metrics (no
    checkpoint needed, nothing evaluated again), and the ``n_worst`` test images of the first run (by its
    MRE) drawn with the first and the last run's vertebrae. The first run is the baseline."""
    from .config import TrainConfig
    from .engine.evaluation import split_metrics
    from .engine.runs import load_run
    from .engine.sources import build_source
    from .plots import save, spines_before_after
    from .reporting import worst_images, write_table

    loaded = [load_run(Path(r)) for r in runs]
    out = Path(out_dir) if out_dir is not None else Path(runs[-1]).parent
    rows, sources = [], {}
    for run in loaded:
        cfg = TrainConfig.from_dict(run["config"])
        for split in ("val", *(s for s in get_dataset(cfg.dataset).test_splits(cfg) if s in run["metrics"]["splits"])):
            if split not in sources:
                sources[split] = build_source(cfg, get_dataset(cfg.dataset).train_split if split == "val" else split)
            m = split_metrics(run["predictions"].query("split == @split"), cfg, sources[split])
            rows.append({"run": run["name"], "split": split, "targets": cfg.targets, "epochs": cfg.epochs,
                         **_spine_row(cfg.decoder, m)})
    table = pd.DataFrame(rows).set_index(["run", "split"])
    name = "spine_targets-" + "-vs-".join(r["name"] for r in loaded[1:])
    paths = write_table(table.round(4), out / "tables", name,
                        caption="AASCE spine: per-landmark heatmaps (FARNet) against identity-free corner-type "
                                "heatmaps (targets spine_corners), each run re-scored from its predictions; "
                                "validation chose, test was evaluated once per run")
    first, last = loaded[0], loaded[-1]
    test = next(s for s in sources if s != "val")
    ids = worst_images(first["predictions"], test, n_worst, "px")
    fig = spines_before_after(sources[test], first["predictions"].query("split == @test"),
                              last["predictions"].query("split == @test"), ids,
                              labels=(first["name"], last["name"]))
    paths.append(save(fig, out / "figures" / f"{name}-{test}.png", dpi=FIGURE_DPI_IMAGES))
    return paths


README_RUNS = (  # (run folder, split, what the panel says): the README's picture, one median test image each
    ("results/isbi2015_overnight/isbi2015_2h", "test1", "ISBI 2015 Test1"),
    ("results/hand_xray_overnight/hand_xray_overnight-fold1", "test", "Digital Hand Atlas"),
    ("results/aasce_overnight/aasce_2h", "test", "AASCE spine"),
)


def readme_figure(out: str | Path = "docs/images/predictions.png") -> Path:
    """The README's picture: the test image with the median MRE of each dataset's committed run, ground
    truth and prediction (from ``predictions.csv``; the images from the run's data folder)."""
    import matplotlib.pyplot as plt

    from .engine.runs import load_run
    from .engine.sources import run_source
    from .plots import prediction_panel, save
    from .reporting import median_image

    fig, axes = plt.subplots(1, len(README_RUNS), figsize=(10, 4.6), gridspec_kw={"width_ratios": [1.2, 1.0, 0.55]})
    for ax, (folder, split, label) in zip(axes, README_RUNS):
        run = load_run(Path(folder))
        source = run_source(run["config"], split)
        unit = run["metrics"]["splits"][split]["unit"]
        image_id = median_image(run["predictions"], split, unit)
        preds = run["predictions"].query("split == @split and id == @image_id")
        col = "error_mm" if unit == "mm" else "error_px"
        prediction_panel(ax, source.read_image(source.ids.index(image_id)), preds,
                         f"{label}\nmedian test image: MRE {preds[col].mean():.2f} {unit}", size=8)
    axes[0].legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    return save(fig, out, dpi=80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quickstart")
    q.add_argument("--out-dir", default="runs/quickstart",
                   help="default: the git-ignored runs/quickstart (the committed reference: results/quickstart)")
    d = sub.add_parser("dataset")
    d.add_argument("--dataset", required=True, choices=protocol_datasets())
    d.add_argument("--root")
    d.add_argument("--protocol", default="cpu")
    d.add_argument("--out-dir")
    s = sub.add_parser("study")
    s.add_argument("--study", default="configs/isbi2015_ablation.json")
    s.add_argument("--out-dir")
    s.add_argument("--tables-only", action="store_true", help="train nothing; tables from finished arms")
    u = sub.add_parser("uncertainty", help="intervals, conformal coverage and paired tests of the committed runs")
    u.add_argument("--out-dir", default="results/uncertainty")
    t = sub.add_parser("tta", help="test-time augmentation chosen on a run's validation images, then its test splits")
    t.add_argument("--run", required=True, help="run folder with checkpoints/best.pt")
    t.add_argument("--out-dir", help="default: the tables/ folder beside the run")
    tb = sub.add_parser("tables", help="notebook 04 on a protocol's committed run folders (no training)")
    tb.add_argument("--dataset", required=True, choices=protocol_datasets())
    tb.add_argument("--protocol", default="cpu")
    tb.add_argument("--out-dir")
    tb.add_argument("--reference-protocol", help="draw this protocol's validation MRE on the learning curves (e.g. cpu)")
    p = sub.add_parser("pilots", help="the table and learning curves of a recipe-pilot study (no training)")
    p.add_argument("--study", default="configs/pilots/isbi2015_recipe.json")
    sd = sub.add_parser("spine-decoders", help="spine decoders on a run's validation images, the chosen one on test once")
    sd.add_argument("--run", required=True, help="an AASCE run folder with checkpoints/best.pt")
    st = sub.add_parser("spine-targets", help="spine runs side by side (the first the baseline): validation, "
                                              "test, and the baseline's worst test images both ways (no training)")
    st.add_argument("--runs", nargs="+", required=True, help="AASCE run folders (predictions.csv is enough)")
    st.add_argument("--out-dir", help="default: the folder of the last run")
    sub.add_parser("readme-figure", help="the README's picture from the committed runs (docs/images/predictions.png)")
    c = sub.add_parser("clinical", help="clinical measurements and SCR of every committed ISBI run (no training)")
    c.add_argument("--split", default="test1")
    c.add_argument("--root", help="the dataset's folder (default: the run's root, else ../shared/data/<dataset>)")
    c.add_argument("--out-dir", default="results/clinical")
    c.add_argument("--class-ground-truth", default="senior", choices=("senior", "junior", "mean"))
    args = ap.parse_args()
    from .engine.cli import user_errors

    try:
        _run(args)
    except user_errors() as err:  # a missing run, config or data: one line, as farnet says it
        print(f"reproduce: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _run(args: argparse.Namespace) -> None:
    if args.cmd == "quickstart":
        quickstart(args.out_dir)
    elif args.cmd == "study":
        reproduce_study(args.study, args.out_dir, train=not args.tables_only)
    elif args.cmd == "uncertainty":
        print("\n".join(str(p) for p in uncertainty_report(args.out_dir)))
    elif args.cmd == "tta":
        print("\n".join(str(p) for p in tta_report(args.run, args.out_dir)))
    elif args.cmd == "tables":
        print(tables_report(args.dataset, args.protocol, args.out_dir, args.reference_protocol))
    elif args.cmd == "spine-decoders":
        print("\n".join(str(p) for p in spine_decoder_report(args.run)))
    elif args.cmd == "readme-figure":
        print(readme_figure())
    elif args.cmd == "spine-targets":
        print("\n".join(str(p) for p in spine_targets_report(args.runs, args.out_dir)))
    elif args.cmd == "clinical":
        print("\n".join(str(p) for p in clinical_report(args.split, out_dir=args.out_dir, root=args.root,
                                                         class_ground_truth=args.class_ground_truth)))
    elif args.cmd == "pilots":
        print("\n".join(str(p) for p in pilot_report(args.study)))
    else:
        reproduce_dataset(args.dataset, args.root, args.protocol, args.out_dir)


if __name__ == "__main__":
    main()
