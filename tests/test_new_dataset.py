"""Adding a dataset touches its reader and its registry entry, nothing else (issue 40).

The toy dataset below ("dots": bright blobs on dark PNGs, landmarks in a points.json per split, 0.5
mm/px) is defined and registered in this file only: no farnetlib module names it. It then trains
through ``farnet train``, evaluates, reports (the notebook-04 sections), predicts with the
Predictor and converts to the generic CSV format like a built-in dataset.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from farnetlib.data import LandmarkSource
from farnetlib.data.convert import write_generic
from farnetlib.data.generic import CsvLandmarks
from farnetlib.data.registry import DATASETS, DatasetSpec, register_dataset, to_generic
from farnetlib.engine import evaluate, load_run
from farnetlib.engine.cli import main as farnet_cli
from farnetlib.inference import Predictor
from farnetlib.run_report import RunReport
from helpers import THREADS

SPLITS = {"train": 10, "test": 4}
K = 3


class Dots(LandmarkSource):
    """The toy reader: ``<root>/<split>/points.json`` ({file: [[x, y], ...]}) beside the PNGs."""

    name = "dots"
    num_landmarks = K
    landmark_names = ("left", "middle", "right")

    def __init__(self, root: str | Path, split: str) -> None:
        folder = Path(root) / split
        points = json.loads((folder / "points.json").read_text())
        self.ids = [Path(f).stem for f in points]
        self.image_paths = [folder / f for f in points]
        self.annotation_paths = [folder / "points.json"] * len(points)
        self.landmarks = np.array(list(points.values()), dtype=np.float64)
        self.spacings = np.full((len(points), 2), 0.5)
        self.check_labels()


def write_dots(root: Path) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:80, :96]
    for split, n in SPLITS.items():
        (root / split).mkdir(parents=True)
        points = {}
        for i in range(n):
            pts = np.array([[20, 40], [48, 30], [76, 40]]) + rng.uniform(-6, 6, (K, 2))
            image = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 18.0) for x, y in pts)
            Image.fromarray((40 + 200 * np.clip(image, 0, 1)).astype(np.uint8)).save(root / split / f"{split}{i}.png")
            points[f"{split}{i}.png"] = pts.tolist()
        (root / split / "points.json").write_text(json.dumps(points))


def dots_to_generic(root, out_root) -> Path:
    rows = [{"image": s.image_paths[i], "id": s.ids[i], "split": split, "points": s.landmarks[i], "spacing": 0.5}
            for split in SPLITS for s in [Dots(root, split)] for i in range(len(s))]
    return write_generic(out_root, rows, K, {"name": "dots", "landmark_names": list(Dots.landmark_names)})


@pytest.fixture
def dots(tmp_path):
    """The registry entry: the whole of what farnet needs to know about the dataset."""
    write_dots(tmp_path / "dots")
    register_dataset(DatasetSpec(
        "dots", lambda cfg, split: Dots(cfg.root, split), "train", lambda cfg: ["test"], ("train", "test"), (64, 64),
        radii=lambda cfg: [1.0, 2.0], describe=lambda cfg: {"ground_truth": "toy", "spacing": "0.5 mm/px", "unit": "mm"},
        landmark_names=Dots.landmark_names, spacing_mm=0.5, convert=dots_to_generic,
        options={"blur": ((int,), 0)}, check_options=lambda o: "option 'blur' must be >= 0" if o["blur"] < 0 else None))
    yield tmp_path / "dots"
    del DATASETS["dots"]


def test_a_dataset_registered_outside_the_library_trains_reports_predicts_and_converts(dots, tmp_path, capsys):
    sets = ["dataset=\"dots\"", f"root=\"{dots}\"", "input_size=[64,64]", "epochs=2", "batch_size=4", "val_count=3",
            "backbone=\"resnet18\"", "head_scale=0.125", "sigma=2.0", "milestones=[1]", f"threads={THREADS}",
            "precision=\"fp32\"", "backend=\"torch\"", f"results_dir=\"{tmp_path / 'runs'}\"", "run_name=\"dots\""]
    farnet_cli(["train", "--set", *sets])
    run_dir = tmp_path / "runs" / "dots"
    run = load_run(run_dir)
    test = run["metrics"]["splits"]["test"]
    assert test["unit"] == "mm" and test["n_images"] == SPLITS["test"] and test["spacing"] == "0.5 mm/px"
    assert list(run["predictions"]["landmark_name"].unique()) == list(Dots.landmark_names)
    # its own option is checked by its own rule, named in the error
    with pytest.raises(SystemExit):
        farnet_cli(["train", "--set", *sets, "dataset_options={\"blur\": -1}"])
    assert "option 'blur' must be >= 0" in capsys.readouterr().err

    _, again = evaluate(run_dir, "test", device="cpu", backend="torch")
    assert again["mre"] == pytest.approx(test["mre"], rel=1e-6)
    report = RunReport([run], tmp_path / "report", worst_cases=2)
    for section in (report.summary_section(), report.per_landmark_tables(), report.error_figures(),
                    report.worst_cases_section(), report.observers(), report.spine(), report.cross_validation()):
        assert all(not (isinstance(item, tuple) and "skipped" in item[1]) for item in section.items)
    assert (tmp_path / "report" / "figures" / "worst_cases-dots-test.png").is_file()
    assert pd.read_csv(tmp_path / "report" / "tables" / "summary_full.csv")["split"].tolist() == ["val", "test"]

    table = Predictor.from_run(run_dir, backend="torch", device="cpu").predict(dots / "test" / "test0.png")
    assert len(table) == K and np.allclose(table["x_mm"], table["x"] * 0.5)

    csv = to_generic("dots", dots, tmp_path / "generic")
    converted = CsvLandmarks(csv.parent, "test")
    assert len(converted) == SPLITS["test"] and np.allclose(converted.landmarks, Dots(dots, "test").landmarks)
