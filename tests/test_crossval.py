"""Cross-validation over fold runs (hand set): pooled tables from run folders alone."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from farnetlib.crossval import fold_points, pooled_per_landmark, pooled_predictions, pooled_table
from farnetlib.engine import TrainConfig, load_run, train_folds
from farnetlib.config import ConfigError
from helpers import THREADS

REPO = Path(__file__).resolve().parents[1]


def fake_run(fold: int, ids: list[str], offset_px: float, k: int = 6) -> dict:
    """A hand fold run whose predictions are ``offset_px`` right of the ground truth; landmarks
    (1, 5) are 100 px apart and (0, 4) 50 px apart, so 1 px is 0.5 mm or 1 mm."""
    rows = []
    for i in ids:
        gt = np.array([[0.0, 0.0], [0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [0.0, 50.0], [0.0, 100.0]])[:k]
        for lm, (x, y) in enumerate(gt):
            rows.append({"split": "test", "id": i, "landmark": lm + 1, "pred_x": x + offset_px, "pred_y": y,
                         "gt_x": x, "gt_y": y})
    return {"name": f"fold{fold}", "config": {"dataset": "hand_xray", "hand_fold": fold},
            "predictions": pd.DataFrame(rows)}


def test_pooled_table_gives_each_fold_and_all_test_images_in_mm_for_both_pairs():
    runs = [fake_run(1, ["a", "b"], 4.0), fake_run(2, ["c"], 8.0), fake_run(3, ["d", "e", "f"], 2.0)]
    table = pooled_table(runs, radii=(2.0, 4.0, 10.0))
    payer, gu2net = table.loc["1-5"], table.loc["0-4"]
    assert payer.loc["fold 1", "mre"] == pytest.approx(2.0) and payer.loc["fold 2", "mre"] == pytest.approx(4.0)
    assert payer.loc["pooled", "n_images"] == 6
    assert payer.loc["pooled", "mre"] == pytest.approx((2 * 2.0 + 4.0 + 3 * 1.0) / 6)  # image-weighted
    assert gu2net.loc["pooled", "mre"] == pytest.approx(2 * payer.loc["pooled", "mre"])  # 1 px = 1 mm there
    assert payer.loc["pooled", "sdr_2"] == pytest.approx(100 * 5 / 6)  # fold 2's image is the only one > 2 mm
    per_landmark = pooled_per_landmark(runs, radii=(2.0,))
    assert len(per_landmark) == 7 and per_landmark.loc["all", "mre"] == pytest.approx(payer.loc["pooled", "mre"])
    rows = pooled_predictions(runs, pair=(0, 4))
    assert len(rows) == 6 * 6 and set(rows["fold"]) == {1, 2, 3}
    assert rows["error_mm"].mean() == pytest.approx(gu2net.loc["pooled", "mre"])


def test_pooled_table_refuses_an_image_tested_twice_a_repeated_fold_and_other_datasets():
    with pytest.raises(ValueError, match=r"tested in folds 1 and 2: \['b'\]"):
        fold_points([fake_run(1, ["a", "b"], 1.0), fake_run(2, ["b"], 1.0)])
    with pytest.raises(ValueError, match="two runs for fold 1"):
        fold_points([fake_run(1, ["a"], 1.0), fake_run(1, ["b"], 1.0)])
    other = fake_run(1, ["a"], 1.0)
    other["config"]["dataset"] = "isbi2015"
    with pytest.raises(ValueError, match="for fold runs .*got dataset 'isbi2015' without a fold"):
        fold_points([other])
    csv = fake_run(1, ["a"], 1.0)
    csv["config"].update(dataset="csv", dataset_options={"fold": None})  # a CSV without a fold column
    with pytest.raises(ValueError, match="got dataset 'csv' without a fold"):
        fold_points([csv])
    with pytest.raises(ConfigError, match="'synthetic' has no cross-validation folds"):
        train_folds(TrainConfig(dataset="synthetic"))


@pytest.mark.slow
def test_hand_gpu_config_runs_three_folds_at_a_tiny_size_then_pools_every_test_image_once(hand_root, tmp_path):
    """configs/hand_xray_gpu.json on the real 138-image copy at 64 x 64, one epoch per fold: every
    present test image of Payer's lists (36 + 47 + 52) is predicted exactly once. It runs from random
    init here (ImageNet weights cannot be fetched), in fp32 and with missing=skip (our copy is partial).
    The CPU protocol is tested through `farnet cv` and notebook 04 in test_notebooks.py."""
    values = json.loads((REPO / "configs" / "hand_xray_gpu.json").read_text())
    assert values["input_size"] == [512, 512] and values["weights"] == "imagenet" and values["missing"] == "raise"
    values.update(root=str(hand_root), input_size=[64, 64], sigma=2.0, epochs=1, milestones=[], batch_size=8,
                  backbone="resnet18", weights=None, missing="skip", num_workers=0, cache_dir=None,
                  results_dir=str(tmp_path), threads=THREADS, eval_batch_size=8, precision="fp32", channels_last=False,
                  head_scale=0.125, backend="torch")
    run_dirs = train_folds(TrainConfig.from_dict(values), progress=False)
    assert [d.name for d in run_dirs] == [f"{values['run_name']}-fold{k}" for k in (1, 2, 3)]
    runs = [load_run(d) for d in run_dirs]
    assert [r["metrics"]["splits"]["test"]["n_images"] for r in runs] == [36, 47, 52]
    table = pooled_table(runs)
    assert table.loc[("1-5", "pooled"), "n_images"] == 135 and table.loc[("0-4", "pooled"), "n_images"] == 135
    assert np.isfinite(table["mre"]).all()
    # the engine's own fold-1 metric (pair from the config) equals the table's recomputation
    assert table.loc[("1-5", "fold 1"), "mre"] == pytest.approx(runs[0]["metrics"]["splits"]["test"]["mre"])
