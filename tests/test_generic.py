"""The generic dataset (``dataset: "csv"``), the registry behind it, conversion and verification."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import tiny

from farnetlib.data.convert import from_coco, write_demo_dataset
from farnetlib.data.registry import to_generic
from farnetlib.engine.cli import main as farnet_cli
from farnetlib.data.generic import CsvLandmarks, inspect_csv
from farnetlib.data.io import DatasetError
from farnetlib.engine import TrainConfig, train
from farnetlib.config import ConfigError
from farnetlib.losses import CoarseToFineLoss, EWCLoss
from farnetlib.metrics import radial_errors, summarize
from farnetlib.model import FARNetOutput

NUMBERS = ["pred_x", "pred_y", "gt_x", "gt_y", "error_px", "error_mm", "peak"]


def _same_run(a, b) -> None:
    """Two run folders hold identical predictions and metrics (numbers, not the qualifiers)."""
    pa = pd.read_csv(a / "predictions.csv", dtype={"id": str})
    pb = pd.read_csv(b / "predictions.csv", dtype={"id": str})
    assert list(pa["id"]) == list(pb["id"]) and list(pa["split"]) == list(pb["split"])
    pd.testing.assert_frame_equal(pa[NUMBERS], pb[NUMBERS], check_exact=True)
    ma, mb = (json.loads((d / "metrics.json").read_text())["splits"] for d in (a, b))
    assert set(ma) == set(mb)
    for split in ma:
        for key in ("mre", "sd", "mre_px", "n_images", "unit", *[k for k in ma[split] if k.startswith("sdr_")]):
            assert ma[split][key] == mb[split][key], (split, key)


def test_isbi_converted_trains_identically(tmp_path, isbi_root):
    """The ISBI copy in the generic format gives the built-in reader's predictions and metrics exactly."""
    root = isbi_root
    out = tmp_path / "isbi_csv"
    to_generic("isbi2015", root, out)
    common = dict(input_size=(64, 64), epochs=1, val_count=20, test_splits=["test1"], sigma=2.0, outside="keep")
    a = train(tiny(tmp_path, dataset="isbi2015", root=str(root), run_name="builtin", **common), progress=False)
    b = train(tiny(tmp_path, dataset="csv", root=str(out), run_name="csv", **common), progress=False)
    _same_run(a, b)
    meta = json.loads((b / "metrics.json").read_text())["splits"]["test1"]
    assert meta["dataset"] == "csv" and meta["dataset_name"] == "isbi2015" and meta["unit"] == "mm"


def test_hand_converted_fold_trains_identically(tmp_path, hand_root):
    """Hand fold 2 through the generic ``fold`` column = the built-in reader's fold 2, exactly."""
    root = hand_root
    out = tmp_path / "hand_csv"
    to_generic("hand_xray", root, out)
    common = dict(input_size=(64, 64), epochs=1, val_count=10, sigma=2.0, missing="skip", outside="keep")
    a = train(tiny(tmp_path, dataset="hand_xray", root=str(root), dataset_options={"fold": 2}, run_name="builtin", **common),
              progress=False)
    b = train(tiny(tmp_path, dataset="csv", root=str(out), dataset_options={"fold": 2}, run_name="csv", **common),
              progress=False)
    _same_run(a, b)
    from farnetlib.data import HandXray

    for split in ("train", "test"):
        assert CsvLandmarks(out, split, fold=2, missing="skip").ids == HandXray(root, 2, split, missing="skip").ids


def _generic_copy(root, n=12, k=5, missing_every=0, splits=None):
    """A generic copy from synthetic images; returns its rows as the reader sees them."""
    write_demo_dataset(root, n, k, (96, 80), splits=splits, missing_every=missing_every)
    table = pd.read_csv(root / "landmarks.csv")
    return [{"points": table.loc[i, [f"{a}{j}" for j in range(k) for a in "xy"]].to_numpy(float).reshape(k, 2)}
            for i in range(n)]


def test_missing_landmarks_masked_and_counted(tmp_path):
    """10 % empty cells: training runs, and the metrics count the labelled landmarks only."""
    root = tmp_path / "toy"
    rows = _generic_copy(root, n=16, k=5, missing_every=10, splits=["train"] * 12 + ["test"] * 4)
    empty = sum(int(np.isnan(r["points"][:, 0]).sum()) for r in rows)
    assert empty == 8  # 80 cells, every 10th empty
    run = train(tiny(tmp_path, dataset="csv", root=str(root), val_count=3, epochs=1), progress=False)
    preds = pd.read_csv(run / "predictions.csv", dtype={"id": str})
    metrics = json.loads((run / "metrics.json").read_text())["splits"]
    test = preds[preds["split"] == "test"]
    labelled = test[test["gt_x"].notna()]
    n_missing = int(test["gt_x"].isna().sum())
    assert n_missing == sum(int(np.isnan(r["points"][:, 0]).sum()) for r in rows[12:])
    assert metrics["test"].get("missing_landmarks", 0) == n_missing
    assert metrics["test"]["mre"] == pytest.approx(labelled["error_mm"].mean(), rel=1e-12)
    assert test.loc[test["gt_x"].isna(), "error_mm"].isna().all()


def test_summarize_leaves_missing_out_exactly():
    errors = np.array([[1.0, np.nan], [3.0, 5.0]])
    out = summarize(errors, radii=(2.0, 4.0))
    assert out["mre"] == 3.0 and out["sd"] == pytest.approx(np.std([1.0, 3.0, 5.0]))
    assert out["sdr_2"] == pytest.approx(100 / 3) and out["sdr_4"] == pytest.approx(200 / 3)
    assert out["missing_landmarks"] == 1 and "missing_landmarks" not in summarize(errors[1:], (2.0,))
    gt = np.array([[[0.0, 0.0], [np.nan, np.nan]]])
    assert np.isnan(radial_errors(np.zeros((1, 2, 2)), gt)[0, 1])
    with pytest.raises(ValueError, match="NaN"):  # a half-missing label is an error, not a missing landmark
        radial_errors(np.zeros((1, 2, 2)), np.array([[[0.0, 0.0], [np.nan, 1.0]]]))


def test_loss_leaves_missing_heatmaps_out():
    """With a mask, each output's loss is the mean over the present heatmaps' pixels only."""
    torch.manual_seed(0)
    out = FARNetOutput(torch.rand(2, 3, 4, 4), torch.rand(2, 3, 8, 8))
    tc, tf = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 8, 8)
    present = torch.tensor([[True, False, True], [True, True, True]])
    crit = CoarseToFineLoss(EWCLoss(40.0))
    got = crit(out, tc, tf, present)
    w = lambda t: torch.exp(t * np.log(40.0))  # noqa: E731
    fine = torch.stack([(w(tf[n, k]) * (out.fine[n, k] - tf[n, k]) ** 2).mean() for n, k in present.nonzero()])
    assert got["fine"].item() == pytest.approx(fine.mean().item(), rel=1e-6)
    assert torch.equal(crit(out, tc, tf)["loss"], crit(out, tc, tf, None)["loss"])


def test_val_split_is_the_validation(tmp_path):
    root = tmp_path / "toy"
    _generic_copy(root, n=10, splits=["train"] * 6 + ["val"] * 2 + ["test"] * 2)
    source = CsvLandmarks(root, "train")
    assert len(source) == 8 and [source.ids[i] for i in source.validation_indices] == ["im06", "im07"]
    run = train(tiny(tmp_path, dataset="csv", root=str(root), epochs=1), progress=False)
    preds = pd.read_csv(run / "predictions.csv", dtype={"id": str})
    assert sorted(preds.loc[preds["split"] == "val", "id"].unique()) == ["im06", "im07"]
    assert sorted(preds.loc[preds["split"] == "test", "id"].unique()) == ["im08", "im09"]


def test_config_checks_dataset_options(tmp_path):
    with pytest.raises(ConfigError, match="unknown option.*'folds'.*known: \\['file', 'fold'\\]"):
        TrainConfig(dataset="csv", root=str(tmp_path), dataset_options={"folds": 2})
    with pytest.raises(ConfigError, match="option 'fold' = '2' must be int or null"):
        TrainConfig(dataset="csv", root=str(tmp_path), dataset_options={"fold": "2"})
    with pytest.raises(ConfigError, match="must be one of"):
        TrainConfig(dataset="my_xrays", root=str(tmp_path))


def test_coco_round_trip(tmp_path):
    root = tmp_path / "toy"
    _generic_copy(root, n=4, k=3)
    source = CsvLandmarks(root, "train")
    coco = {"categories": [{"id": 1, "name": "ceph", "keypoints": ["a", "b", "c"]}],
            "images": [{"id": i + 1, "file_name": f"im{i:02d}.png"} for i in range(4)], "annotations": []}
    for i in range(4):
        kp = np.c_[source.landmarks[i], np.full(3, 2.0)]
        kp[1, 2] = 0 if i == 0 else 2  # not labelled -> missing
        kp[2, 2] = 1 if i == 1 else 2  # labelled, not visible -> kept by default
        coco["annotations"].append({"id": 10 + i, "image_id": i + 1, "category_id": 1, "keypoints": kp.ravel().tolist()})
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    from_coco(tmp_path / "coco.json", root / "images", tmp_path / "out")
    back = CsvLandmarks(tmp_path / "out", "train")
    assert back.ids == source.ids and back.landmark_names == ["a", "b", "c"]
    expected = source.landmarks.copy()
    expected[0, 1] = np.nan
    np.testing.assert_array_equal(back.landmarks, expected)
    from_coco(tmp_path / "coco.json", root / "images", tmp_path / "out2", occluded="missing")
    assert np.isnan(CsvLandmarks(tmp_path / "out2", "train").landmarks[1, 2]).all()
    with pytest.raises(FileExistsError, match="landmarks.csv exists"):
        from_coco(tmp_path / "coco.json", root / "images", tmp_path / "out")


def test_verify_lists_every_problem(tmp_path):
    root = tmp_path / "toy"
    _generic_copy(root, n=6, k=2)
    lines = (root / "landmarks.csv").read_text().splitlines()
    header = lines[0].split(",")
    lines[2] = lines[2] + ",7"  # wrong cell count (line 3)
    cells = lines[3].split(",")
    cells[header.index("x1")] = "abc"  # non-numeric (line 4)
    lines[3] = ",".join(cells)
    lines.append(lines[1])  # duplicate row of line 2
    cells = lines[5].split(",")
    cells[header.index("x0")] = "5000"  # outside its 80 x 96 image (line 6)
    lines[5] = ",".join(cells)
    (root / "landmarks.csv").write_text("\n".join(lines) + "\n")
    (root / "images" / "im04.png").unlink()  # missing image (line 6 names im04)
    (root / "images" / "im03.png").write_bytes(b"not an image")  # unreadable (line 5)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "images" / "stray.png")  # no row
    findings = inspect_csv(root)
    text = "\n".join(findings)
    assert f":3: {len(header) + 1} cells, the header has {len(header)}" in text
    assert ":4: non-numeric cell" in text
    assert ":8: image images/im00.png appears again (first on line 2)" in text
    assert ":6: image not found" in text and "im04.png" in text
    assert ":5: unreadable image" in text and "im03.png" in text
    assert "stray.png: image without a row" in text
    good = tmp_path / "good"
    _generic_copy(good, n=3, k=2)
    cells_line = (good / "landmarks.csv").read_text().splitlines()
    cells = cells_line[1].split(",")
    cells[header.index("x0")] = "5000"
    cells_line[1] = ",".join(cells)
    (good / "landmarks.csv").write_text("\n".join(cells_line) + "\n")
    assert any("lies outside the 80 x 96 image" in f for f in inspect_csv(good))
    with pytest.raises(DatasetError, match="non-numeric cell"):
        CsvLandmarks(root, "train")
    cli = subprocess.run([sys.executable, "-m", "farnetlib.data", "verify", "csv", str(root)],
                         capture_output=True, text=True)
    assert cli.returncode == 1 and "problem(s)" in cli.stdout and "Traceback" not in cli.stderr


def test_the_registry_owns_the_converters(tmp_path, capsys):
    """Each dataset's converter is in its DatasetSpec; one without is refused with those that have one."""
    from farnetlib.data.registry import DATASETS

    assert {n for n, s in DATASETS.items() if s.convert is not None} == {"isbi2015", "hand_xray", "aasce"}
    with pytest.raises(DatasetError, match="no converter for dataset 'synthetic'; known: isbi2015, hand_xray, aasce"):
        to_generic("synthetic", tmp_path, tmp_path / "out")
    with pytest.raises(SystemExit) as stop:
        farnet_cli(["convert", "synthetic", str(tmp_path), str(tmp_path / "out")])
    assert stop.value.code == 2 and "no converter for dataset 'synthetic'" in capsys.readouterr().err
