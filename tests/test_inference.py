"""Exported models and inference backends: parity with eager PyTorch, the Predictor, clear errors."""
import sys
import os

import numpy as np
import pandas as pd
import pytest

from farnetlib.data import Synthetic
from farnetlib.engine import train
from farnetlib.inference import MissingExtra, Predictor, export_run
from helpers import tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run (2 epochs on synthetic data) and a few test images."""
    root = tmp_path_factory.mktemp("inference")
    run_dir = train(tiny(root, run_name="inf", decoder="quadratic"), progress=False)
    images = [s.image for s in Synthetic(3, 5, (96, 80), seed=21)]
    return run_dir, images


@pytest.mark.parametrize("backend,module", [("onnxruntime", "onnxruntime"), ("openvino", "openvino")])
def test_each_backend_agrees_with_eager_pytorch_within_a_hundredth_of_a_pixel(trained, backend, module):
    pytest.importorskip(module)
    run_dir, images = trained
    eager, _ = Predictor.from_run(run_dir, backend="torch", device="cpu").predict_arrays(images)
    fast = Predictor.from_run(run_dir, backend=backend)
    pts, peaks = fast.predict_arrays(images)
    assert np.abs(pts - eager).max() < 0.01
    assert fast.description == {"backend": backend, "precision": "fp32", "decoder": "quadratic"}  # pinned, read back


def test_an_export_alone_serves_predictions_in_original_pixels(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    run_dir, images = trained
    path = export_run(run_dir, "onnx", out_dir=tmp_path / "export")
    assert path.name == "model.onnx" and (tmp_path / "export" / "preprocess.json").is_file()
    from_file = Predictor.from_export(path).predict_arrays(images)[0]
    eager = Predictor.from_run(run_dir, backend="torch", device="cpu").predict_arrays(images)[0]
    assert np.abs(from_file - eager).max() < 0.01


def test_the_evaluation_records_its_backend_and_matches_torch(trained):
    pytest.importorskip("onnxruntime")
    from farnetlib.engine import evaluate

    run_dir, _ = trained
    torch_preds, torch_m = evaluate(run_dir, "test", backend="torch")
    ort_preds, ort_m = evaluate(run_dir, "test", backend="onnxruntime")
    assert torch_m["execution"]["backend"] == "torch" and ort_m["execution"]["backend"] == "onnxruntime"
    assert np.abs(ort_preds[["pred_x", "pred_y"]].to_numpy() - torch_preds[["pred_x", "pred_y"]].to_numpy()).max() < 0.01


def test_a_missing_backend_package_names_the_extra(trained, monkeypatch):
    run_dir, _ = trained
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'farnetlib\[onnx\]'"):
        Predictor.from_run(run_dir, backend="onnxruntime")


def test_the_predictor_round_trips_with_farnet_predicts_csv(trained, tmp_path):
    from PIL import Image

    from farnetlib.engine.cli import main

    run_dir, images = trained
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"im{i}.png")
    main(["predict", str(run_dir), str(folder), "--out", str(tmp_path / "out"), "--no-overlays"])
    csv = pd.read_csv(tmp_path / "out" / "predictions.csv")
    direct = Predictor.from_run(run_dir, device="cpu").predict_files(sorted(folder.iterdir()), progress=False)
    pd.testing.assert_frame_equal(csv[["image", "landmark", "x", "y"]], direct[["image", "landmark", "x", "y"]])
    one = Predictor.from_run(run_dir, device="cpu").predict(folder / "im0.png")
    assert len(one) == 5 and list(one["landmark"]) == [1, 2, 3, 4, 5]
    assert np.allclose(one[["x", "y"]], direct[direct["image"] == "im0.png"][["x", "y"]])


def test_auto_backend_is_the_fastest_parity_path_and_falls_back_to_torch(tmp_path, monkeypatch):
    """backend "auto" (the config default): OpenVINO f32 where installed, recorded with what was asked;
    a failing export is a warning and a torch evaluation, never a lost run."""
    pytest.importorskip("openvino")
    import json

    from farnetlib import inference

    auto = train(tiny(tmp_path, run_name="auto", epochs=1, backend="auto"), progress=False)
    plain = train(tiny(tmp_path, run_name="plain", epochs=1), progress=False)
    execution = json.loads((auto / "metrics.json").read_text())["execution"]
    assert execution == {"backend": "openvino", "precision": "fp32", "requested": "auto"}
    a = pd.read_csv(auto / "predictions.csv")
    b = pd.read_csv(plain / "predictions.csv")
    assert np.abs(a[["pred_x", "pred_y"]].to_numpy() - b[["pred_x", "pred_y"]].to_numpy()).max() < 0.01
    assert not (auto / "export").exists()  # made to evaluate with, not kept: `farnet export` writes one on demand
    assert not (auto / "checkpoints" / "last.pt").exists() and (auto / "checkpoints" / "best.pt").is_file()

    def broken(*args, **kwargs):
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(inference, "export_run", broken)
    with pytest.warns(RuntimeWarning, match=r"backend 'openvino' failed \(conversion failed\); using torch"):
        fell_back = train(tiny(tmp_path, run_name="fallback", epochs=1, backend="auto"), progress=False)
    assert json.loads((fell_back / "metrics.json").read_text())["execution"]["backend"] == "torch"


def test_a_preloaded_malloc_makes_openvino_tbb_bind_normally(monkeypatch):
    """With LD_PRELOAD (tcmalloc, jemalloc) OpenVINO's TBB, dlopened with RTLD_DEEPBIND, freed with
    glibc what the preloaded malloc allocated: training then exporting in one process aborted
    ("munmap_chunk(): invalid pointer", 3 of 3 tiny runs; 0 of 3 with the variable, issue 20)."""
    pytest.importorskip("openvino")
    import farnetlib.inference as inference

    monkeypatch.delenv("TBB_ENABLE_SANITIZERS", raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    inference.resolve_backend("auto")
    assert "TBB_ENABLE_SANITIZERS" not in os.environ  # nothing changes without a preload
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
    assert inference.resolve_backend("auto") == "openvino"
    assert os.environ["TBB_ENABLE_SANITIZERS"] == "1"
    monkeypatch.setenv("TBB_ENABLE_SANITIZERS", "0")  # a user's own setting is kept
    inference.resolve_backend("auto")
    assert os.environ["TBB_ENABLE_SANITIZERS"] == "0"


def test_one_grayscale_rule_for_files_and_arrays(tmp_path):
    """The same picture reaches the model as the same uint8 image whether it comes as a file (evaluate,
    predict on a folder) or as an array (Predictor.predict): float images in [0, 1] were min-max
    stretched as arrays but multiplied by 255 as files (issue 40)."""
    from PIL import Image

    from farnetlib.data.io import gray_uint8, read_gray

    rng = np.random.default_rng(0)
    dim = 0.2 + 0.3 * rng.random((40, 30)).astype(np.float32)  # a float image in [0, 1], not spanning it
    Image.fromarray(dim, mode="F").save(tmp_path / "dim.tif")
    np.testing.assert_array_equal(gray_uint8(dim), read_gray(tmp_path / "dim.tif"))
    assert gray_uint8(dim).max() < 140  # kept dim: x 255, not stretched to the full range
    wide = (rng.random((40, 30)) * 4000).astype(np.uint16)  # 16-bit: by its range, as a file
    Image.fromarray(wide).save(tmp_path / "wide.png")
    np.testing.assert_array_equal(gray_uint8(wide), read_gray(tmp_path / "wide.png"))
    rgb = (rng.random((40, 30, 3)) * 255).astype(np.uint8)  # colour: the luma a file gives
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(gray_uint8(rgb), read_gray(tmp_path / "rgb.png"))
    with pytest.raises(ValueError, match="NaN or infinite"):
        gray_uint8(np.full((4, 4), np.nan))
