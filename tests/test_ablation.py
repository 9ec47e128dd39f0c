"""Ablation studies: study files, training arms in turn (resumable), and the tables built from them."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from farnetlib import ablation
from farnetlib.engine import load_run
from farnetlib.engine.cli import main as farnet_cli
from farnetlib.config import ConfigError
from farnetlib.engine.study import load_study, train_study, with_overrides
from helpers import THREADS

REPO = Path(__file__).resolve().parents[1]
TINY = {"dataset": "synthetic", "dataset_options": {"train": 8, "test": 3, "landmarks": 4, "image_size": [96, 80]},
        "val_count": 2, "input_size": [64, 64], "sigma": 2.0, "batch_size": 4, "epochs": 1,
        "milestones": [1], "threads": THREADS, "decoder": "quadratic",
        "head_scale": 0.125, "precision": "fp32", "backend": "torch"}


def fake_run(backbone: str, loss: str, seed: int, val_mre: float, test_mre: float, seconds=(10.0, 12.0, 11.0)) -> dict:
    """A run folder's content with chosen numbers (the tables only read these fields)."""
    def split(mre):
        return {"dataset": "isbi2015", "ground_truth": "mean", "spacing": "0.1 mm/px", "unit": "mm",
                "input_size_hw": [256, 224], "decoder": "quadratic", "n_images": 10, "mre": mre, "sd": 1.0,
                "sdr_2": 100 - 10 * mre}
    return {"name": f"{backbone}-{loss}-s{seed}",
            "config": {"backbone": backbone, "loss": loss, "seed": seed, "epochs": len(seconds), "weights": None,
                       "dataset": "isbi2015"},
            "metrics": {"splits": {"val": split(val_mre), "test1": split(test_mre)}, "selected_epoch": len(seconds),
                        "parameters": {"total": 60_000_000, "backbone": 7_000_000, "head": 53_000_000},
                        "final_evaluation_seconds": 30.0},
            "history": pd.DataFrame({"epoch_seconds": list(seconds)})}


def fake_study_runs() -> list[dict]:
    return [fake_run("densenet121", "ewc", 0, 1.5, 1.6), fake_run("densenet121", "ewc", 1, 1.7, 1.8),
            fake_run("densenet121", "ewc", 2, 1.6, 1.7), fake_run("densenet121", "mse", 0, 2.4, 2.5),
            fake_run("resnet50", "ewc", 0, 1.7, 1.6)]


def test_seed_spread_and_noise_test_give_exact_values_and_flag_only_large_differences():
    table = ablation.arm_table(fake_study_runs())
    spread = ablation.seed_spread(table, "val")
    ref = spread.set_index(["backbone", "loss"]).loc[("densenet121", "ewc")]
    assert ref["seeds"] == 3 and ref["mre"] == pytest.approx(1.6) and ref["mre_sd"] == pytest.approx(0.1)
    assert math.isnan(spread.set_index(["backbone", "loss"]).loc[("resnet50", "ewc"), "mre_sd"])
    assert ref["s_per_epoch"] == pytest.approx(11.0) and ref["train_min"] == pytest.approx(33.0 / 60)
    noise = ablation.noise_test(spread, {"backbone": "densenet121", "loss": "ewc"}).set_index(["backbone", "loss"])
    se = 0.1 * math.sqrt(1 + 1 / 3)
    assert noise.loc[("densenet121", "mse"), "z"] == pytest.approx(0.8 / se)  # 6.9 SE: beyond the noise
    assert noise.loc[("resnet50", "ewc"), "z"] == pytest.approx(0.1 / se)  # 0.87 SE: within it
    assert list(noise["beyond_noise"]) == [False, True, False]
    assert math.isnan(noise.loc[("densenet121", "ewc"), "z"])


def test_the_noise_threshold_is_students_t_for_the_reference_seeds_so_z_3_from_3_seeds_is_noise():
    assert ablation.noise_threshold(3) == pytest.approx(4.303, abs=1e-3)  # 2 degrees of freedom
    assert ablation.noise_threshold(4) == pytest.approx(3.182, abs=1e-3)
    assert ablation.noise_threshold(1000) == pytest.approx(1.962, abs=1e-3)  # the normal 1.96 for many seeds
    with pytest.raises(ValueError, match="2 seeds"):
        ablation.noise_threshold(1)
    runs = fake_study_runs() + [fake_run("vgg16_bn", "ewc", 0, 1.95, 1.6)]  # val +0.35 against mean 1.6, SD 0.1
    two_more = [fake_run("densenet121", "ewc", 3, 1.5, 1.7), fake_run("densenet121", "ewc", 4, 1.7, 1.7)]
    # 3 seeds: z = 0.35 / (0.1 sqrt(4/3)) = 3.03 < 4.30; 5 seeds (SD still 0.1): z = 3.20 > 2.78
    for n_ref, extra, beyond in [(3, [], False), (5, two_more, True)]:
        spread = ablation.seed_spread(ablation.arm_table(runs + extra), "val")
        noise = ablation.noise_test(spread, {"backbone": "densenet121", "loss": "ewc"}).set_index(["backbone", "loss"])
        row = noise.loc[("vgg16_bn", "ewc")]
        assert row["threshold"] == pytest.approx(ablation.noise_threshold(n_ref))
        assert row["beyond_noise"] == beyond, (n_ref, row["z"], row["threshold"])


def test_noise_test_refuses_a_reference_without_a_seed_spread():
    runs = [fake_run("densenet121", "ewc", 0, 1.5, 1.6), fake_run("resnet50", "ewc", 0, 1.7, 1.6)]
    spread = ablation.seed_spread(ablation.arm_table(runs), "val")
    with pytest.raises(ValueError, match="1 seed"):
        ablation.noise_test(spread, {"backbone": "densenet121", "loss": "ewc"})
    with pytest.raises(ValueError, match="matches 0 arms"):
        ablation.noise_test(spread, {"backbone": "vgg16_bn", "loss": "ewc"})
    with pytest.raises(ValueError, match="no run has split 'test2'"):
        ablation.seed_spread(ablation.arm_table(runs), "test2")


def test_paper_table_shows_mean_sd_over_seeds_and_the_difference_in_standard_errors():
    table = ablation.arm_table(fake_study_runs())
    spread = {s: ablation.seed_spread(table, s) for s in ("val", "test1")}
    noise = {s: ablation.noise_test(spread[s], {"backbone": "densenet121", "loss": "ewc"}) for s in spread}
    paper = ablation.paper_table(spread["test1"], spread["val"], noise["test1"], noise["val"]).set_index(["backbone", "loss"])
    assert paper.loc[("densenet121", "ewc"), "test MRE (mm)"] == "1.70 ± 0.10"
    assert paper.loc[("densenet121", "mse"), "test MRE (mm)"] == "2.50"  # one seed: no SD shown
    assert paper.loc[("densenet121", "ewc"), "val Δ MRE (z)"] == "reference"
    assert paper.loc[("densenet121", "mse"), "val Δ MRE (z)"] == f"+0.80 (+{0.8 / (0.1 * math.sqrt(4 / 3)):.1f})*"
    assert paper.loc[("resnet50", "ewc"), "test Δ MRE (z)"] == "-0.10 (-0.9)"  # no * : within the noise
    assert paper.loc[("densenet121", "ewc"), "test SDR 2 mm (%)"] == "83.00 ± 1.00"
    assert paper.loc[("resnet50", "ewc"), "params (M)"] == "60.0" and paper.loc[("resnet50", "ewc"), "s / epoch"] == "11"
    unranked = ablation.paper_table(spread["test1"], spread["val"])
    assert set(unranked["val Δ MRE (z)"]) == {"n/a (reference has < 2 seeds)"}


def test_backbone_table_orders_by_the_mean_mre_not_its_text_and_agrees_with_the_seed_spread():
    from farnetlib.reporting import backbone_table, summary_table
    runs = fake_study_runs() + [fake_run("vgg16_bn", "ewc", 0, 9.0, 10.5)]  # "10.50" sorts before "1.70" as text
    table = backbone_table(summary_table(runs), "test1")
    assert list(table.index) == ["resnet50", "densenet121", "vgg16_bn"]
    # densenet121 pools its EWC seeds (1.6, 1.8, 1.7) with the MSE arm (2.5): mean 1.90, SD over 4 runs
    assert table.loc["densenet121", "mre"] == f"{np.mean([1.6, 1.8, 1.7, 2.5]):.2f} ± {np.std([1.6, 1.8, 1.7, 2.5], ddof=1):.2f}"
    assert table.loc["vgg16_bn", "mre"] == "10.50 ± 0.00" and table.loc["densenet121", "seeds"] == 3


def test_arm_comparison_switches_to_a_log_axis_only_when_an_arm_collapsed():
    import matplotlib.pyplot as plt
    from farnetlib.plots import arm_comparison
    for runs, scale in [(fake_study_runs(), "linear"),
                        (fake_study_runs() + [fake_run("densenet121", "l1", 0, 150.0, 158.0)], "log")]:
        table = ablation.arm_table(runs)
        table["arm"] = table["backbone"] + " / " + table["loss"]
        fig = arm_comparison(table, ["val", "test1"], label="arm", reference="densenet121 / ewc",
                             paper={"resnet50 / ewc": 1.19})
        assert [ax.get_yscale() for ax in fig.axes] == [scale, scale]
        assert all(("log scale" in ax.get_ylabel()) == (scale == "log") for ax in fig.axes)
        assert all(ax.get_legend() is None for ax in fig.axes)  # no legend inside a panel, over the dots
        assert [t.get_text() for t in fig.legends[0].get_texts()] == [  # once each, though on two panels
            "densenet121 / ewc: mean ± SD over 3 seeds", "paper (GPU, ImageNet weights)"]
        plt.close(fig)


def write_study(path: Path, arms: dict, base_extra: dict | None = None) -> Path:
    path.write_text(json.dumps({"study": "tiny", "description": "test study",
                                "base": {**TINY, "results_dir": str(path.parent / "runs"), **(base_extra or {})},
                                "arms": arms}))
    return path


def test_study_file_errors_name_the_arm_and_the_field(tmp_path):
    with pytest.raises(ConfigError, match="arm 'b'.*results_dir"):
        load_study(write_study(tmp_path / "s1.json", {"a": {}, "b": {"results_dir": "elsewhere"}}))
    with pytest.raises(ConfigError, match="arm 'a'.*val_count"):
        load_study(write_study(tmp_path / "s2.json", {"a": {"val_count": 5}}))
    with pytest.raises(ConfigError, match="arm 'a'.*unknown config field.*bakcbone"):
        load_study(write_study(tmp_path / "s3.json", {"a": {"bakcbone": "resnet18"}}))
    with pytest.raises(ConfigError, match="arm 'a'.*'backbone' = 'resnet7'"):
        load_study(write_study(tmp_path / "s4.json", {"a": {"backbone": "resnet7"}}))
    with pytest.raises(ConfigError, match="lists no arms"):
        load_study(write_study(tmp_path / "s5.json", {}))
    with pytest.raises(FileNotFoundError, match="no_such.json"):
        load_study(tmp_path / "no_such.json")
    study = load_study(write_study(tmp_path / "s6.json", {"a": {}, "b": {"seed": 1}}))
    with pytest.raises(ConfigError, match="no arm.*'c'"):
        study.select(["c"])
    assert study.select(["b", "a"]) == ["a", "b"]  # study order


def test_arms_train_in_turn_share_the_validation_split_record_their_cost_and_are_not_trained_twice(tmp_path):
    study = load_study(write_study(tmp_path / "study.json", {
        "resnet18-ewc-s0": {"backbone": "resnet18"}, "resnet18-mse-s1": {"backbone": "resnet18", "loss": "mse", "seed": 1}}))
    assert study.finished() == []
    dirs = train_study(study, progress=False)
    assert [d.name for d in dirs] == ["resnet18-ewc-s0", "resnet18-mse-s1"] and study.finished() == list(study.arms)
    runs = [load_run(d) for d in dirs]
    assert [r["config"]["loss"] for r in runs] == ["ewc", "mse"] and [r["config"]["seed"] for r in runs] == [0, 1]
    val_ids = [set(r["predictions"].query("split == 'val'")["id"]) for r in runs]
    assert val_ids[0] == val_ids[1] and len(val_ids[0]) == 2
    params = runs[0]["metrics"]["parameters"]
    assert params["total"] == params["backbone"] + params["head"] and 11e6 < params["backbone"] < 12e6  # resnet18
    assert runs[0]["metrics"]["final_evaluation_seconds"] > 0
    stamp = (dirs[0] / "metrics.json").stat().st_mtime_ns
    farnet_cli(["study", "--config", str(tmp_path / "study.json")])  # both finished: nothing is trained again
    assert (dirs[0] / "metrics.json").stat().st_mtime_ns == stamp
    cost = ablation.cost_table(runs)
    assert list(cost["epochs"]) == [1, 1] and (cost["params_m"] > 11).all()


def test_with_overrides_applies_to_every_arm_and_keeps_the_arm_names(tmp_path):
    study = load_study(write_study(tmp_path / "study.json", {"a": {"seed": 3}, "b": {"loss": "mse"}}))
    small = with_overrides(study, {"epochs": 2, "results_dir": str(tmp_path / "other")})
    assert [c.epochs for c in small.arms.values()] == [2, 2] and [c.run_name for c in small.arms.values()] == ["a", "b"]
    assert small.arms["a"].seed == 3 and small.arms["b"].loss == "mse"
    assert small.run_dir("a") == tmp_path / "other" / "a"


def test_committed_isbi_ablation_study_is_the_issue_s_design():
    """Five backbones with EWC, MSE and Adaptive Wing on densenet121, the reference with three seeds,
    all sharing the data, input size and optimiser of the CPU protocol they were made with (recipe 1)."""
    study = load_study(REPO / "configs" / "isbi2015_ablation.json")
    cpu = json.loads((REPO / "configs" / "recipe1" / "isbi2015_cpu.json").read_text())
    arms = {(c.backbone, c.loss, c.seed) for c in study.arms.values()}
    assert {b for b, loss, s in arms if loss == "ewc"} == {"densenet121", "densenet169", "resnet50", "vgg16_bn",
                                                           "efficientnet_b0"}
    assert {loss for b, loss, s in arms if b == "densenet121"} == {"ewc", "mse", "awing"}
    assert {s for b, loss, s in arms if (b, loss) == ("densenet121", "ewc")} == {0, 1, 2}
    for cfg in study.arms.values():
        assert cfg.dataset == "isbi2015" and cfg.weights is None and cfg.ground_truth == "mean"
        assert list(cfg.input_size) == cpu["input_size"] and cfg.sigma == cpu["sigma"] and cfg.lr == cpu["lr"]
        assert cfg.val_count == cpu["val_count"] and cfg.split_seed == cpu["split_seed"] and cfg.test_splits == ["test1"]
        assert cfg.epochs == study.base.epochs and cfg.milestones == study.base.milestones
    assert {(a["backbone"], a["loss"]) for a in study.anchors} >= {("densenet121", "ewc"), ("densenet121", "mse")}


def test_committed_isbi_ablation_arm_runs_on_real_isbi_at_a_tiny_size(isbi_root, tmp_path):
    study = with_overrides(load_study(REPO / "configs" / "isbi2015_ablation.json"),
                           {"root": str(isbi_root), "input_size": [64, 64], "sigma": 1.0, "epochs": 1, "milestones": [1],
                            "results_dir": str(tmp_path), "head_scale": 0.125, "threads": THREADS, "backend": "torch"})
    run = load_run(train_study(study, ["efficientnet_b0-ewc-s0"], progress=False)[0])
    assert run["metrics"]["splits"]["test1"]["n_images"] == 150 and np.isfinite(run["metrics"]["splits"]["test1"]["mre"])
    assert run["config"]["backbone"] == "efficientnet_b0" and run["metrics"]["val_count"] == 20
