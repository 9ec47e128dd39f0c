"""Every notebook executed by papermill with tiny parameters; outputs checked."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import papermill as pm
import pytest
from helpers import THREADS

REPO = Path(__file__).resolve().parents[1]
TINY = {"dataset_options": {"train": 10, "test": 4, "landmarks": 5, "image_size": [96, 80]}, "val_count": 3,
        "input_size": [64, 64], "sigma": 2.0, "batch_size": 4, "threads": THREADS,
        "head_scale": 0.125, "backend": "torch"}  # the export path (backend auto): test_engine, the hand cv test

pytestmark = pytest.mark.slow


def _rendered(executed: Path) -> tuple[str, list[int]]:
    """All text an executed notebook shows (markdown cells and text/markdown/html outputs) and the pixel
    widths of its embedded figures."""
    import base64
    import io

    from PIL import Image

    texts, widths = [], []
    for cell in json.loads(executed.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            texts.append("".join(cell["source"]))
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            texts += ["".join(data[m]) for m in ("text/markdown", "text/html", "text/plain") if m in data]
            for mime in ("image/png", "image/jpeg"):
                if mime in data:
                    widths.append(Image.open(io.BytesIO(base64.b64decode(data[mime]))).size[0])
    return "\n".join(texts), widths


def run_nb(name, tmp_path, **params):
    """Execute a notebook with ``params``; a notebook that trains gets ``threads=THREADS`` from its
    test (its default of 2 beside another worker's thread oversubscribes 2 cores: steps ran 20x slower)."""
    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                        cwd=str(REPO), progress_bar=False, kernel_name="python3")
    return out


def test_quickstart_notebook(tmp_path):
    """Through the entry point `make quickstart` calls, with tiny parameters."""
    from farnetlib.reproduce import quickstart

    path = quickstart(str(tmp_path / "qs"), epochs=1, n_train=10, n_test=4, val_count=3, input_size=[64, 64],
                      image_size=[96, 80], backbone="resnet18", head_scale=0.125, threads=THREADS)
    assert path == tmp_path / "qs" / "00_quickstart.ipynb" and path.is_file()
    summary = json.loads((tmp_path / "qs" / "quickstart_summary.json").read_text())
    assert np.isfinite(summary["test_mre_mm"]) and summary["epochs"] == 1
    assert (tmp_path / "qs" / "training_curve.png").stat().st_size > 1000
    assert (tmp_path / "qs" / "test_predictions.png").stat().st_size > 1000


def test_data_exploration_notebook_synthetic(tmp_path):
    run_nb("01_data_exploration", tmp_path, dataset="synthetic", n_images=5, mean_size=[96, 80], out_dir=str(tmp_path / "ex"))
    stats = pd.read_csv(tmp_path / "ex" / "synthetic" / "image_stats.csv")
    assert len(stats) == 5 and np.isfinite(stats["mean"]).all()
    assert (tmp_path / "ex" / "synthetic" / "landmark_cloud.png").is_file()


def test_data_exploration_notebook_isbi(isbi_root, tmp_path):
    run_nb("01_data_exploration", tmp_path, dataset="isbi2015", root=str(isbi_root), n_images=3, out_dir=str(tmp_path / "ex"))
    inter = pd.read_csv(tmp_path / "ex" / "isbi2015" / "inter_observer.csv")
    assert len(inter) == 19 and (inter["observers_mean_mm"] > 0).all()
    # the README of the data says senior and junior differ by 2.15 mm on average (whole set);
    # the training split alone must be of that order
    assert 1.0 < inter["observers_mean_mm"].mean() < 4.0


def test_ablation_study_then_tables_notebooks(tmp_path):
    """Notebook 03 trains a study's arms, then builds the paper-layout tables and figures from the run
    folders; notebook 04 reads the same folders."""
    runs = tmp_path / "runs"
    arms = {"resnet18-ewc-s0": {"backbone": "resnet18"}, "resnet18-ewc-s1": {"backbone": "resnet18", "seed": 1},
            "resnet18-mse-s0": {"backbone": "resnet18", "loss": "mse"},
            "efficientnet_b0-ewc-s0": {"backbone": "efficientnet_b0"}}
    study = tmp_path / "study.json"
    study.write_text(json.dumps({"study": "tiny", "description": "notebook test",
                                 "base": {**TINY, "dataset": "synthetic", "epochs": 1, "milestones": [1],
                                          "results_dir": str(runs)},
                                 "arms": arms,
                                 "anchors": [{"backbone": "resnet18", "loss": "ewc", "split": "test", "mre": 1.0,
                                              "source": "made up for the test"}]}))
    run_nb("03_backbone_ablation", tmp_path, study=str(study), out_dir=str(tmp_path / "abl"),
           reference={"backbone": "resnet18", "loss": "ewc"})
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == sorted(arms)  # (beside them: their .lock files)
    tables = tmp_path / "abl" / "tables"
    backbones = pd.read_csv(tables / "ablation_backbones.csv").set_index("backbone")
    assert set(backbones.index) == {"resnet18", "efficientnet_b0"} and backbones.loc["resnet18", "seeds"] == 2
    assert "loss" not in backbones.columns  # one row per backbone; the caption names the loss
    assert backbones.loc["resnet18", "val Δ MRE (z)"] == "reference"
    losses = pd.read_csv(tables / "ablation_losses.csv").set_index("loss")
    assert set(losses.index) == {"ewc", "mse"} and "(" in losses.loc["mse", "test Δ MRE (z)"]
    noise = pd.read_csv(tables / "ablation_noise-val.csv")
    assert len(noise) == 3 and noise["seed_sd"].nunique() == 1 and np.isfinite(noise["seed_sd"]).all()
    every = pd.read_csv(tables / "ablation_runs.csv")
    assert len(every) == 8 and set(every["split"]) == {"val", "test"} and (every["params_m"] > 1).all()
    figures = {p.name for p in (tmp_path / "abl" / "figures").glob("*.png")}
    assert figures == {"ablation_backbones.png", "ablation_losses.png", "ablation_mre_vs_cost.png"}
    run_nb("03_backbone_ablation", tmp_path, study=str(study), train=False, out_dir=str(tmp_path / "again"),
           reference={"backbone": "resnet18", "loss": "ewc"})
    assert (tmp_path / "again" / "tables" / "ablation_backbones.md").read_text() == (tables / "ablation_backbones.md").read_text()
    run_nb("04_tables_and_figures", tmp_path, runs=[str(runs / "*")], out_dir=str(tmp_path / "out"))
    table = pd.read_csv(tmp_path / "out" / "tables" / "summary_full.csv")
    assert set(table["backbone"]) == {"resnet18", "efficientnet_b0"}
    assert set(table["split"]) == {"val", "test"}
    assert np.isfinite(table[["mre", "sd", "sdr_2"]].to_numpy()).all()
    for ext in ("csv", "md", "tex"):
        assert (tmp_path / "out" / "tables" / f"summary.{ext}").stat().st_size > 100
    assert "MRE" in (tmp_path / "out" / "tables" / "summary.md").read_text()
    figures = {p.name for p in (tmp_path / "out" / "figures").glob("*.png")}
    assert {"sdr_vs_radius.png", "cumulative_error.png", "backbones-test.png"} <= figures
    assert any(n.startswith("worst_cases-") for n in figures)


def test_train_notebook_on_real_isbi_then_tables(isbi_root, tmp_path):
    over = {"input_size": [64, 64], "sigma": 1.0, "epochs": 1, "batch_size": 8, "backbone": "resnet18",
            "test_splits": ["test1"], "threads": THREADS, "head_scale": 0.125, "backend": "torch"}
    run_nb("02_train", tmp_path, dataset="isbi2015", root=str(isbi_root), overrides=over, run_name="isbi-nb",
           results_dir=str(tmp_path / "runs"))
    run_nb("04_tables_and_figures", tmp_path, runs=[str(tmp_path / "runs" / "isbi-nb")], out_dir=str(tmp_path / "out"))
    per_lm = pd.read_csv(tmp_path / "out" / "tables" / "per_landmark-isbi-nb-test1.csv")
    assert len(per_lm) == 20 and np.isfinite(per_lm["mre"]).all()  # 19 landmarks + all
    # the clinical section: eight measurements and their mean, the junior doctor beside the model
    clinical = pd.read_csv(tmp_path / "out" / "tables" / "clinical-isbi-nb-test1.csv", index_col=0)
    assert list(clinical.index) == ["ANB", "SNB", "SNA", "ODI", "APDI", "FHI", "FMA", "MW", "mean"]
    assert clinical.loc["mean", "SCR junior (%)"] == pytest.approx(75.34, abs=0.01)  # Test1, classes of the senior
    metrics = json.loads((tmp_path / "runs" / "isbi-nb" / "metrics.json").read_text())["splits"]["test1"]["clinical"]
    assert metrics["mean_scr_%"] == pytest.approx(clinical.loc["mean", "SCR model (%)"], abs=1e-3)
    for name in ("clinical_scatter", "confusion"):
        assert (tmp_path / "out" / "figures" / f"{name}-isbi-nb-test1.png").is_file()


def test_cephalometric_teaching_notebook(isbi_root, tmp_path):
    out = run_nb("07_cephalometric_analysis", tmp_path, root=str(isbi_root), draws=5, out_dir=str(tmp_path / "out"))
    sensitivity = pd.read_csv(tmp_path / "out" / "tables" / "teaching-sensitivity-test1.csv", index_col=0)
    assert sensitivity.shape == (19, 8)
    assert sensitivity.loc[1, "ANB"] < 1e-6 < sensitivity.loc[5, "ANB"]  # S cancels in SNA - SNB; A does not
    assert sensitivity.loc[[3, 4, 7], "APDI"].max() < 0.01 < sensitivity.loc[17, "APDI"]  # as the notebook says
    flips = pd.read_csv(tmp_path / "out" / "tables" / "teaching-class_flips-test1.csv", index_col=0)
    assert ((flips >= 0) & (flips <= 100)).all().all() and len(flips) == 8
    assert len(list((tmp_path / "out" / "figures").glob("teaching-*.png"))) == 3
    assert "data not found" not in _rendered(out)[0]


def test_cephalometric_teaching_notebook_without_data_says_so(tmp_path):
    out = run_nb("07_cephalometric_analysis", tmp_path, root=str(tmp_path / "absent"), out_dir=str(tmp_path / "out"))
    printed = "".join("".join(o.get("text", "")) for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", []))
    assert "ISBI 2015 data not found" in printed


def test_inside_farnet_notebook_writes_every_figure(tmp_path):
    out = tmp_path / "inside"
    executed = run_nb("05_inside_farnet", tmp_path, run_dir=None, quickstart_run=str(tmp_path / "no-quickstart-here"),
                      train_epochs=1, train_images=10, input_size=[64, 64], landmarks_to_show=[0, 2], out_dir=str(out),
                      head_scale=0.125, threads=THREADS)
    assert "barely trained" in _rendered(executed)[0]  # one epoch: the notebook says its lessons may not hold
    figures = {p.name: p.stat().st_size for p in (out / "figures").glob("*.png")}
    expected = {"targets.png", "ewc_loss.png", "parameters_per_stage.png", "coarse_vs_fine.png", "decoders.png",
                "confidence_vs_error.png", "augmentation.png"}
    assert expected <= set(figures), figures
    assert all(figures[name] > 5000 for name in expected)
    stages = pd.read_csv(out / "model_stages.csv")
    assert {"F1", "F5", "t5", "b5", "d1", "coarse_head", "fine_head"} <= set(stages["stage"])
    fine = stages.set_index("stage").loc["fine_head"]
    assert fine["stride"] == 1.0 and fine["channels"] == 19  # the synthetic default has 19 landmarks
    # the controls of "Try it yourself": executed headless, each draws its figure once, no widget
    cells = json.loads(executed.read_text())["cells"]
    controlled = [c for c in cells if c["cell_type"] == "code" and "interactive_figure(" in "".join(c["source"])]
    assert len(controlled) == 3
    for cell in controlled:
        kinds = {k for o in cell["outputs"] for k in o.get("data", {})}
        assert kinds & {"image/png", "image/jpeg"} and "application/vnd.jupyter.widget-view+json" not in kinds, kinds


def test_spine_gpu_config_at_a_tiny_size_then_spine_tables_and_figures(aasce_root, tmp_path):
    """configs/aasce_gpu.json's code path on CPU at a tiny size, on the real spine set: it trains on
    the full official training split (one label lies outside its image: kept) and reports the
    spine numbers against angles.csv; notebook 04 then makes the spine tables and figures."""
    from farnetlib.engine import TrainConfig, load_run, train

    values = json.loads((REPO / "configs" / "aasce_gpu.json").read_text())
    values.update(root=str(aasce_root), weights=None, input_size=[64, 32], sigma=1.0, epochs=1, batch_size=16,
                  backbone="resnet18", lr=1e-3, precision="fp32", channels_last=False, num_workers=0, cache_dir=None,
                  results_dir=str(tmp_path), threads=THREADS, head_scale=0.125, backend="torch")
    run = load_run(train(TrainConfig.from_dict(values), progress=False))
    assert run["metrics"]["train_count"] == 481 - 48 and run["metrics"]["val_count"] == 48
    test = run["metrics"]["splits"]["test"]
    assert test["n_images"] == 128 and test["unit"] == "px" and test["angle_ground_truth"] == "angles.csv"
    for key in ("normalised_mse", "smape_%", "mae_PT_deg", "mae_MT_deg", "mae_TL_deg"):
        assert np.isfinite(test[key]) and test[key] >= 0, key
    assert 0 < test["smape_%"] <= 100
    preds = run["predictions"].query("split == 'test'")
    assert {"image_h", "image_w"} <= set(preds.columns) and (preds["image_h"] > preds["image_w"]).mean() > 0.9
    run_nb("04_tables_and_figures", tmp_path, runs=[str(run["path"])], out_dir=str(tmp_path / "out"), worst_cases=2)
    spine = pd.read_csv(tmp_path / "out" / "tables" / "spine-aasce_gpu.csv")
    assert set(spine["split"]) == {"val", "test"} and np.isfinite(spine["SMAPE (%)"]).all()
    assert len(pd.read_csv(tmp_path / "out" / "tables" / "spine_vertebrae-aasce_gpu-test.csv")) == 17
    for name in ("cobb_scatter", "bland_altman", "worst_spines"):
        assert (tmp_path / "out" / "figures" / f"{name}-aasce_gpu-test.png").stat().st_size > 5000, name
    assert 0 <= test["mixup_%"] <= 100 and 0 <= test["mixup_images"] <= 128
    # issue 38: the spine decoders on validation, the chosen one once on test, the before/after figure
    from farnetlib.reproduce import spine_decoder_report

    spine_decoder_report(run["path"], out_dir=tmp_path / "dec")
    val = pd.read_csv(tmp_path / "dec" / "tables" / "spine_decoders-aasce_gpu-val.csv", index_col=0)
    assert list(val.index) == ["quadratic", "spine_peaks", "spine_ordered"] and np.isfinite(val["MRE (px)"]).all()
    assert (val["images"] == 48).all()
    chosen = val["SMAPE (%)"].idxmin()
    rows = pd.read_csv(tmp_path / "dec" / "tables" / "spine_decoders-aasce_gpu-test.csv", index_col=0)
    assert len(rows) == (1 if chosen == "quadratic" else 2) and (rows["images"] == 128).all()
    if chosen != "quadratic":
        assert f"test_{chosen}" in json.loads((run["path"] / "metrics.json").read_text())["splits"]
        assert (tmp_path / "dec" / "figures" / "spine_decoders-aasce_gpu-test.png").is_file()


def test_hand_cpu_protocol_through_farnet_cv_then_crossval_tables_and_figures(hand_root, tmp_path):
    """configs/hand_xray_cpu.json through the installed `farnet cv` at 64 x 64 (one epoch per fold) on
    the real 138-image copy, then notebook 04's hand section from the three run folders alone."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("farnet", path=str(Path(sys.executable).parent))
    assert exe, "the farnet console script is not installed next to this Python"
    sets = [f"root={json.dumps(str(hand_root))}", "input_size=[64,64]", "sigma=2.0", "epochs=1", "warmup_epochs=0", "milestones=[]",
            "batch_size=8", "backbone=resnet18", f"results_dir={json.dumps(str(tmp_path / 'runs'))}",
            "head_scale=0.125", f"threads={THREADS}", "run_name=\"hand_xray_cpu\""]
    proc = subprocess.run([exe, "cv", "--config", str(REPO / "configs" / "hand_xray_cpu.json"), "--set", *sets],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pooled" in proc.stdout and proc.stdout.count("run folder:") == 3
    hows = [json.loads((tmp_path / "runs" / f"hand_xray_cpu-fold{k}" / "execution.json").read_text())["how"] for k in (1, 2, 3)]
    assert hows == ["measured", "reused from hand_xray_cpu-fold1", "reused from hand_xray_cpu-fold2"]  # measured once
    run_nb("04_tables_and_figures", tmp_path, runs=[str(tmp_path / "runs" / "hand_xray_cpu-fold*")],
           out_dir=str(tmp_path / "out"), worst_cases=2)
    cv = pd.read_csv(tmp_path / "out" / "tables" / "hand_crossval.csv")
    pooled = cv[cv["folds"] == "pooled"].set_index("pair_50mm")
    assert set(pooled.index) == {"1-5", "0-4"} and (pooled["n_images"] == 135).all()
    assert cv[cv["pair_50mm"] == "1-5"].set_index("folds").loc[["fold 1", "fold 2", "fold 3"], "n_images"].tolist() == [36, 47, 52]
    assert np.isfinite(cv["mre"]).all() and (pooled.loc["0-4", "mre"] != pooled.loc["1-5", "mre"])
    assert len(pd.read_csv(tmp_path / "out" / "tables" / "hand_crossval_per_landmark-pair1-5.csv")) == 38
    figures = tmp_path / "out" / "figures"
    for name in ("hand_crossval_boxplot-pair1-5", "hand_crossval_sdr_vs_radius",
                 *(f"hand_worst-hand_xray_cpu-fold{k}" for k in (1, 2, 3))):
        assert (figures / f"{name}.png").stat().st_size > 5000, name


def test_your_own_data_notebook(tmp_path):
    """Notebook 06 on its demo copy (a tenth of the landmark cells empty): verify, train, tables, figures, predict."""
    out = tmp_path / "own"
    executed = run_nb("06_your_own_data", tmp_path, out_dir=str(out), epochs=1, input_size=[64, 64],
                      head_scale=0.125, val_count=3, demo_images=12, demo_landmarks=5, demo_image_size=[96, 80],
                      threads=THREADS, run_name="own_data")
    outputs = [o for c in json.loads(executed.read_text())["cells"] for o in c.get("outputs", [])]
    # headless (papermill): no per-batch bars, the one line per epoch instead
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    streams = "".join("".join(o["text"]) for o in outputs if o["output_type"] == "stream")
    assert "it/s" not in streams and "epoch 1/1: loss" in streams
    metrics = json.loads((out / "runs" / "own_data" / "metrics.json").read_text())["splits"]
    table = pd.read_csv(out / "demo_data" / "landmarks.csv")
    test_cells = table[table["split"] == "test"][[f"x{k}" for k in range(5)]]
    assert metrics["test"]["missing_landmarks"] == int(test_cells.isna().sum().sum()) > 0
    assert metrics["test"]["dataset"] == "csv" and metrics["test"]["dataset_name"] == "demo_data"
    for name in ("training_images", "learning_curve", "worst_test_images"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000


def test_your_own_data_notebook_reruns_with_new_settings(tmp_path):
    """Issue 41: notebook 06 re-run with other settings trains a new run (it had a fixed run_name: a traceback)."""
    out = tmp_path / "own"
    small = dict(out_dir=str(out), input_size=[64, 64], head_scale=0.125, val_count=3, demo_images=12,
                 demo_landmarks=5, demo_image_size=[96, 80], threads=THREADS)
    run_nb("06_your_own_data", tmp_path, epochs=1, **small)
    run_nb("06_your_own_data", tmp_path, epochs=2, **small)
    assert len(list((out / "runs").glob("*/metrics.json"))) == 2


def test_data_exploration_notebook_on_your_own_data(tmp_path):
    """Notebook 01 on a generic (csv) copy with missing landmarks: verify, statistics, landmark cloud."""
    from farnetlib.data.convert import write_demo_dataset

    root = write_demo_dataset(tmp_path / "mine", 6, 4, (96, 80), missing_every=5).parent
    run_nb("01_data_exploration", tmp_path, dataset="csv", root=str(root), n_images=6, mean_size=[96, 80],
           out_dir=str(tmp_path / "ex"))
    stats = pd.read_csv(tmp_path / "ex" / "csv" / "image_stats.csv")
    assert len(stats) == 6 and (tmp_path / "ex" / "csv" / "landmark_cloud.png").is_file()


def test_train_tables_and_inside_notebooks_on_a_generic_csv_copy(tmp_path):
    """Notebooks 02, 04 and 05 on `dataset: "csv"` (a generated copy, a tenth of its cells empty)."""
    from farnetlib.data.convert import write_demo_dataset

    root = tmp_path / "own"
    write_demo_dataset(root, n=14, num_landmarks=5, missing_every=10, splits=["train"] * 11 + ["test"] * 3)
    over = {"input_size": [64, 64], "sigma": 2.0, "epochs": 1, "batch_size": 4, "backbone": "resnet18",
            "val_count": 3, "threads": THREADS, "head_scale": 0.125, "backend": "torch"}
    run_nb("02_train", tmp_path, dataset="csv", root=str(root), overrides=over, run_name="csv-nb",
           results_dir=str(tmp_path / "runs"))
    run_dir = tmp_path / "runs" / "csv-nb"
    metrics = json.loads((run_dir / "metrics.json").read_text())["splits"]["test"]
    assert metrics["dataset"] == "csv" and metrics["n_images"] == 3 and metrics["missing_landmarks"] > 0
    executed = run_nb("04_tables_and_figures", tmp_path, runs=[str(run_dir)], out_dir=str(tmp_path / "out"),
                      worst_cases=2, reference_runs={"the same run": str(run_dir)})  # a reference line drawn
    per_lm = pd.read_csv(tmp_path / "out" / "tables" / "per_landmark-csv-nb-test.csv")
    assert len(per_lm) == 6 and np.isfinite(per_lm["mre"]).all()  # 5 landmarks + all
    text, widths = _rendered(executed)
    assert "ISBI 2015" not in text and "AASCE" not in text and "Hand X-rays" not in text  # only what applies
    assert "MRE (mm)" in text and "SDR 2 mm (%)" in text  # tables with units
    assert widths and min(widths) >= 450, widths  # embedded figures readable (100 dpi), not thumbnails
    assert (tmp_path / "out" / "figures" / "learning_curve-csv-nb.png").stat().st_size > 5000
    out = tmp_path / "inside"
    run_nb("05_inside_farnet", tmp_path, dataset="csv", root=str(root), run_dir=str(run_dir),
           landmarks_to_show=[0, 2], input_size=[64, 64], out_dir=str(out), threads=THREADS)
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {"targets.png", "coarse_vs_fine.png", "decoders.png"} <= figures, figures


def test_interactive_figures_are_widgets_in_a_kernel_someone_looks_at():
    """The same call as notebook 05's controls, in a kernel started as Jupyter starts one (not
    nbclient's headless one): it answers with an ipywidgets view, not a static figure."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        code = ("import matplotlib; matplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
                "from ipywidgets import IntSlider\nfrom farnetlib.nbutil import interactive_figure\n"
                "def line(n):\n    fig, ax = plt.subplots()\n    ax.plot(range(n))\n    return fig\n"
                "interactive_figure(line, n=IntSlider(value=3, min=1, max=5))")
        msg_id = kc.execute(code)
        kinds, status = set(), None
        while status != "idle":
            msg = kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kinds |= set(msg["content"].get("data", {}))
            status = msg["content"].get("execution_state", status)
        reply = kc.get_shell_msg(timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "application/vnd.jupyter.widget-view+json" in kinds, kinds
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
