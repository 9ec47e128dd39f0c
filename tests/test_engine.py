import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from farnetlib.data import Synthetic, write_isbi_layout
from farnetlib.engine import ConfigError, TrainConfig, evaluate, load_model, load_run, predict, train
from farnetlib.engine.runs import RUN_FILES
from farnetlib.engine.sources import carve_validation
from farnetlib.model import FARNet
from helpers import THREADS, tiny

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("field,value,match", [
    ("backbone", "alexnet", "'backbone'.*densenet121"),
    ("input_size", (100, 64), "'input_size'.*multiples of 32"),
    ("loss", "huber", "'loss'"),
    ("epochs", 0, "'epochs'"),
    ("ground_truth", "both", "'ground_truth'"),
    ("decoder", "soft", "'decoder'"),
    ("dataset", "mnist", "'dataset'"),
    ("contrast", "hist", "'contrast'.*clahe"),
])
def test_bad_config_values_name_the_field(field, value, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{field: value})


def test_real_dataset_needs_root_and_unknown_fields_are_refused():
    with pytest.raises(ConfigError, match="'root'"):
        TrainConfig(dataset="isbi2015")
    with pytest.raises(ConfigError, match="unknown config field.*'epoch'"):
        TrainConfig.from_dict({"epoch": 3})


def test_validation_split_is_fixed_by_seed_and_disjoint():
    tr, va = carve_validation(150, 20, seed=0)
    assert len(va) == 20 and len(tr) == 130 and not set(tr) & set(va)
    assert carve_validation(150, 20, seed=0) == (tr, va)
    assert carve_validation(150, 20, seed=1)[1] != va


def test_train_writes_a_complete_run_folder(tmp_path):
    cfg = tiny(tmp_path, run_name="full")
    run_dir = train(cfg, progress=False)
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    run = load_run(run_dir)
    assert len(run["history"]) == 2
    assert run["history"]["lr"].tolist() == pytest.approx([1e-3, 1e-4])
    preds = run["predictions"]
    assert set(preds["split"]) == {"val", "test"}
    assert len(preds) == (3 + 4) * 5
    assert np.isfinite(preds[["pred_x", "pred_y", "error_px", "error_mm"]].to_numpy()).all()
    m = run["metrics"]["splits"]["test"]
    assert m["n_images"] == 4 and np.isfinite(m["mre"]) and m["unit"] == "mm"
    assert m["mre"] == pytest.approx(preds.query("split == 'test'")["error_mm"].mean())
    env = run["environment"]
    assert env["seed"] == 0 and env["packages"]["torch"] and "git_commit" in env
    assert json.loads((run_dir / "config.json").read_text())["backbone"] == "resnet18"


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path):
    full = load_run(train(tiny(tmp_path, run_name="a"), progress=False))
    cfg = tiny(tmp_path, run_name="b")
    run_dir = train(cfg, stop_after_epochs=1, progress=False)  # "killed" after epoch 1
    assert len(pd.read_csv(run_dir / "history.csv")) == 1 and not (run_dir / "metrics.json").exists()
    resumed = load_run(train(cfg, progress=False))
    assert len(resumed["history"]) == len(full["history"]) == 2
    np.testing.assert_allclose(resumed["history"]["train_loss"], full["history"]["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(resumed["history"]["val_mre"], full["history"]["val_mre"], rtol=1e-4)


def test_resume_refuses_a_different_config(tiny_run_copy, tmp_path):
    with pytest.raises(ConfigError, match="another config.*'lr'"):
        train(tiny(tmp_path, run_name=tiny_run_copy.name, epochs=1, lr=0.5), progress=False)


def test_a_checkpoint_write_that_fails_midway_leaves_the_previous_checkpoint_whole(tmp_path):
    from farnetlib.engine.training import save_checkpoint
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 3, "w": torch.arange(4)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("stopped while writing")

    with pytest.raises(RuntimeError, match="stopped while writing"):
        save_checkpoint({"epoch": 4, "w": torch.arange(1000), "x": Unpicklable()}, path)
    state = torch.load(path, weights_only=False)
    assert state["epoch"] == 3 and torch.equal(state["w"], torch.arange(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no half-written temporary left


def test_predict_and_evaluate_use_original_pixels(tiny_run):
    run_dir = tiny_run
    model, cfg = load_model(run_dir / "checkpoints" / "best.pt", device="cpu")
    image = Synthetic(1, 5, (200, 120), seed=9)[0].image
    with pytest.warns(DeprecationWarning, match="Predictor"):
        pts = predict(model, image, cfg.input_size, decoder="quadratic")
    assert pts.shape == (5, 2)
    assert (pts[:, 0] > -1).all() and (pts[:, 0] < 120).all() and (pts[:, 1] < 200).all()
    preds, metrics = evaluate(run_dir, "test", device="cpu")
    stored = load_run(run_dir)["metrics"]["splits"]["test"]
    assert metrics["mre"] == pytest.approx(stored["mre"], rel=1e-6)
    assert metrics["decoder"] == "argmax"  # the run's own decoder
    _, sub = evaluate(run_dir, "test", device="cpu", decoder="quadratic")
    assert sub["decoder"] == "quadratic" and sub["mre"] != metrics["mre"]


def test_isbi_test2_is_evaluated_from_the_official_layout_alone(tmp_path):
    """Train on an ISBI-layout copy without Test2, then evaluate Test2 from another copy."""
    kw = dict(n=10, num_landmarks=19, image_size=(96, 80))
    write_isbi_layout(tmp_path / "dev", {"train": Synthetic(seed=1, **kw), "test1": Synthetic(seed=2, n=3, num_landmarks=19, image_size=(96, 80))})
    cfg = tiny(tmp_path / "runs", dataset="isbi2015", root=str(tmp_path / "dev"), epochs=1, run_name="isbi")
    run_dir = train(cfg, progress=False)
    metrics = load_run(run_dir)["metrics"]
    assert "test1" in metrics["splits"] and "test2" in metrics["skipped"]
    write_isbi_layout(tmp_path / "official", {"test2": Synthetic(seed=3, n=2, num_landmarks=19, image_size=(96, 80))})
    preds, m = evaluate(run_dir, "test2", root=tmp_path / "official", device="cpu", write=True)
    assert m["n_images"] == 2 and m["ground_truth"] == "mean" and set(preds["id"]) == {"001", "002"}
    # the clinical block from the official layout alone: classes of the senior's landmarks, the junior beside
    assert m["clinical"]["n_images"] == 2 and m["clinical"]["class_ground_truth"] == "senior"
    assert 0 <= m["clinical"]["junior_vs_senior"]["mean_scr_%"] <= 100
    assert "test2" in load_run(run_dir)["metrics"]["splits"]
    _, senior = evaluate(run_dir, "test1", device="cpu", write=True, label="test1_senior", ground_truth="senior")
    run = load_run(run_dir)
    assert run["metrics"]["splits"]["test1_senior"]["ground_truth"] == "senior"
    assert senior["mre"] != run["metrics"]["splits"]["test1"]["mre"]
    assert set(run["predictions"]["split"]) == {"val", "test1", "test2", "test1_senior"}


def test_one_epoch_on_real_isbi_writes_a_complete_run(isbi_root, tmp_path):
    cfg = TrainConfig(dataset="isbi2015", root=str(isbi_root), input_size=(64, 64), sigma=1.0, epochs=1,
                      batch_size=8, backbone="resnet18", test_splits=["test1"], results_dir=str(tmp_path),
                      run_name="isbi-real", threads=THREADS, head_scale=0.125)  # FARNet's arithmetic: test_model
    run = load_run(train(cfg, progress=False))
    assert set(run["metrics"]["splits"]) == {"val", "test1"}
    m = run["metrics"]["splits"]["test1"]
    assert m["n_images"] == 150 and m["spacing"] == "0.1 mm/px" and m["ground_truth"] == "mean"
    assert np.isfinite(m["mre"]) and m["mre"] > 0
    assert run["metrics"]["train_count"] == 130 and run["metrics"]["val_count"] == 20
    assert len(run["predictions"].query("split == 'test1'")) == 150 * 19


@pytest.mark.parametrize("name", ["isbi2015_cpu", "isbi2015_gpu_paper", "isbi2015_gpu_recommended"])
def test_committed_protocol_configs_run_at_a_tiny_size(name, tmp_path):
    """The protocol configs parse, and their code path runs on CPU at a tiny size (weights aside:
    ImageNet weights cannot be fetched here, so the GPU configs run from random init in this test)."""
    values = json.loads((REPO_ROOT / "configs" / f"{name}.json").read_text())
    cfg = TrainConfig.from_dict(values)
    assert cfg.dataset == "isbi2015" and cfg.val_count == 20
    values.update(dataset="synthetic", root=None, dataset_options={"train": 6, "test": 2, "landmarks": 19,
                  "image_size": [96, 80]}, val_count=2, input_size=(64, 64), sigma=2.0, epochs=2,
                  progressive_epochs=min(values.get("progressive_epochs", 0), 1),  # one half-size epoch, if any
                  warmup_epochs=min(values.get("warmup_epochs", 0), 1), milestones=[1],
                  weights=None, cache_dir=None, num_workers=0, test_splits=None, results_dir=str(tmp_path), threads=THREADS,
                  head_scale=0.125, backend="torch")  # the configs' code path, not FARNet's 61 M-parameter arithmetic
    run = load_run(train(TrainConfig.from_dict(values), progress=False))
    assert np.isfinite(run["metrics"]["splits"]["test"]["mre"])


# --- issue 8: defects that would lose or overwrite a long run ------------------------------------------

def test_resume_loads_the_checkpoint_on_cpu_whatever_the_device(tmp_path, monkeypatch):
    """RNG states must stay CPU tensors: last.pt is read with map_location='cpu' (loading it onto a
    GPU made torch.set_rng_state raise), and every generator's state comes back."""
    from farnetlib.engine import training as train_mod
    cfg = tiny(tmp_path, run_name="rng")
    run_dir = train(cfg, stop_after_epochs=1, progress=False)
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert {"torch", "numpy", "python"} <= set(state["rng"]) and state["rng"]["torch"].device.type == "cpu"
    seen = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        seen.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(train_mod.torch, "load", recording_load)
    train(cfg, progress=False)
    assert seen and all(m == "cpu" for m in seen), seen


def test_run_started_without_fp16_resumes_with_fp16_and_its_scaler(tmp_path):
    """A CPU run saves a disabled GradScaler's empty state; resuming with fp16 (scaler enabled) must
    start the scaler afresh instead of failing in load_state_dict."""
    run_dir = train(tiny(tmp_path, run_name="scaler", precision="fp32"), stop_after_epochs=1, progress=False)
    run = load_run(train(tiny(tmp_path, run_name="scaler", precision="fp16"), progress=False))
    assert len(run["history"]) == 2 and np.isfinite(run["history"]["train_loss"]).all()
    assert run_dir == run["path"]


def test_rng_state_round_trip():
    import random

    from farnetlib.engine.training import restore_rng, rng_state

    saved = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_evaluate_never_overwrites_an_entry_without_force(tmp_path):
    run_dir = train(tiny(tmp_path, run_name="ow", epochs=1, decoder="quadratic"), progress=False)
    before = json.loads((run_dir / "metrics.json").read_text())["splits"]["test"]
    # another decoder gets its own label instead of replacing `test`
    _, m = evaluate(run_dir, "test", device="cpu", write=True, decoder="argmax")
    assert m["label"] == "test_argmax"
    stored = json.loads((run_dir / "metrics.json").read_text())["splits"]
    assert stored["test"] == before and stored["test_argmax"]["decoder"] == "argmax"
    with pytest.raises(FileExistsError, match="'test_argmax'.*--force"):
        evaluate(run_dir, "test", device="cpu", write=True, decoder="argmax")
    with pytest.raises(FileExistsError, match="'test'"):
        evaluate(run_dir, "test", device="cpu", write=True)
    evaluate(run_dir, "test", device="cpu", write=True, decoder="argmax", force=True)
    preds = load_run(run_dir)["predictions"]
    assert (preds["split"] == "test_argmax").sum() == 4 * 5  # replaced, not appended twice
    # a decoder with parameters (the CLI's --decoder takes the same JSON) is labelled with them
    _, m = evaluate(run_dir, "test", device="cpu", write=True, decoder={"name": "dark", "blur_kernel": 5})
    assert m["label"] == "test_dark-blur_kernel5" and m["decoder"] == "dark-blur_kernel5"


def test_a_finished_run_is_not_evaluated_again(tiny_run_copy, tmp_path):
    cfg = tiny(tmp_path, run_name=tiny_run_copy.name, epochs=1)
    run_dir = tiny_run_copy
    evaluate(run_dir, "test", device="cpu", write=True, label="test_extra")
    metrics_before = (run_dir / "metrics.json").read_text()
    preds_before = (run_dir / "predictions.csv").read_text()
    assert train(cfg, progress=False) == run_dir
    assert (run_dir / "metrics.json").read_text() == metrics_before
    assert (run_dir / "predictions.csv").read_text() == preds_before
    with pytest.raises(ConfigError, match="finished.*new run_name"):
        train(tiny(tmp_path, run_name=run_dir.name, epochs=3), progress=False)


def test_a_finished_run_committed_without_checkpoints_is_still_finished(tiny_run_copy, tmp_path, capsys):
    """Run folders are committed without ``checkpoints/``: the next session's ``farnet cv`` or
    ``train`` must count that run's epochs from ``history.csv``, not call it a run of 0 epochs."""
    shutil.rmtree(tiny_run_copy / "checkpoints")
    before = {p.name: p.read_bytes() for p in tiny_run_copy.iterdir() if p.is_file()}  # export/: predict's cache
    assert train(tiny(tmp_path, run_name=tiny_run_copy.name, epochs=1)) == tiny_run_copy
    assert "is finished (1 epochs, metrics.json written): nothing to do" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in tiny_run_copy.iterdir() if p.is_file()} == before  # nothing written
    with pytest.raises(ConfigError, match="finished and evaluated after 1 epochs; training it to 3"):
        train(tiny(tmp_path, run_name=tiny_run_copy.name, epochs=3), progress=False)


def test_validation_images_do_not_change_with_the_training_seed(tmp_path):
    from farnetlib.engine.loaders import build_train_data
    from farnetlib.engine.distributed import Process

    proc = Process(device=torch.device("cpu"))
    splits = [build_train_data(tiny(tmp_path, seed=s), proc, progress=False).val_idx for s in (0, 1, 2)]
    assert splits[0] == splits[1] == splits[2]
    other = build_train_data(tiny(tmp_path, split_seed=5), proc, progress=False).val_idx
    assert other != splits[0]


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "configs").rglob("*.json")))
def test_every_committed_config_and_study_file_loads(path):
    """Each file under configs/ is a valid config, or (with "arms") a study whose every arm is one:
    a protocol or pilot that fails to parse is found here, not at the start of a long run."""
    from farnetlib.engine.study import load_study

    raw = json.loads((REPO_ROOT / path).read_text())
    if "arms" in raw:
        study = load_study(REPO_ROOT / path)
        assert study.arms and all(a.run_name == name for name, a in study.arms.items())
    else:
        assert TrainConfig.from_dict(raw).dataset == raw["dataset"]


def test_legacy_run_configs_load_with_their_fine_head(tmp_path):
    legacy = tiny(tmp_path).to_dict()
    legacy.pop("precision"), legacy.pop("fine_head_width")
    legacy["amp"] = None
    cfg = TrainConfig.from_dict(legacy)
    assert cfg.precision == "auto" and cfg.fine_head_width == 64
    assert TrainConfig.from_dict({**legacy, "amp": False}).precision == "fp32"


def test_reference_0_255_configs_load_as_intensity_range_and_keep_their_run_names():
    # the names below are what farnet computed before `reference_0_255` became `intensity_range`
    # (commit 925daa9), so the same command still finds and resumes the same run folder
    assert TrainConfig().default_run_name() == "synthetic-densenet121-s0-c3a6d7aa"
    assert TrainConfig(intensity_range="0-255").default_run_name() == "synthetic-densenet121-s0-c9e3242e"
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "intensity_range"}
    assert TrainConfig.from_dict({**old, "reference_0_255": True}).intensity_range == "0-255"
    assert TrainConfig.from_dict({**old, "reference_0_255": False}) == TrainConfig()
    with pytest.raises(ConfigError, match="'reference_0_255' = 'yes'"):
        TrainConfig.from_dict({**old, "reference_0_255": "yes"})
    with pytest.raises(ConfigError, match="intensity_range"):
        TrainConfig(intensity_range="0-256")


def test_decoder_width_configs_load_as_head_scale_and_keep_their_run_names():
    """The network's width multiplier was called decoder_width (it read as the heatmap decoder's): old
    configs and run folders load, and the same command finds the same folder (names computed before)."""
    assert TrainConfig(head_scale=0.125).default_run_name() == "synthetic-densenet121-s0-c061d096"
    assert TrainConfig(head_scale=0.5).default_run_name() == "synthetic-densenet121-s0-46fc8f14"
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "head_scale"}
    assert TrainConfig.from_dict({**old, "decoder_width": 0.125}) == TrainConfig(head_scale=0.125)
    with pytest.raises(ConfigError, match="'decoder_width' and 'head_scale' are one field"):
        TrainConfig.from_dict({**old, "decoder_width": 0.125, "head_scale": 0.25})
    with pytest.warns(DeprecationWarning, match="head_scale"):
        assert FARNet(2, backbone="resnet18", decoder_width=0.125).head_scale == 0.125


def test_environment_records_accelerator_versions_and_all_packages(tiny_run):
    run = load_run(tiny_run)
    env = run["environment"]
    assert {"cuda_runtime", "cudnn", "nvidia_driver", "gpu_count"} <= set(env)
    assert env["all_packages"]["torch"] == env["packages"]["torch"] and len(env["all_packages"]) > 20


def test_augmentation_follows_the_epoch_into_persistent_workers():
    from torch.utils.data import DataLoader

    from farnetlib.data import Augment, LandmarkDataset

    ds = LandmarkDataset(Synthetic(3, 5, (96, 80), seed=4), (64, 64), augment=Augment(), seed=0)
    loader = DataLoader(ds, batch_size=3, num_workers=1, persistent_workers=True)
    seen = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        seen.append(next(iter(loader))["image"])
        direct = torch.stack([ds[j]["image"] for j in range(3)])
        torch.testing.assert_close(seen[-1], direct)
    assert not torch.equal(seen[0], seen[1])


@pytest.mark.parametrize("precision,channels_last", [("bf16", True), ("fp32", True)])
def test_training_runs_with_bf16_and_channels_last(tmp_path, precision, channels_last):
    run = load_run(train(tiny(tmp_path, run_name=f"{precision}-{channels_last}", epochs=1, precision=precision,
                              channels_last=channels_last), progress=False))
    assert np.isfinite(run["metrics"]["splits"]["test"]["mre"])
    assert run["config"]["precision"] == precision


def test_training_a_finished_run_from_scratch_is_refused_before_anything_is_written(tiny_run_copy, tmp_path):
    cfg = tiny(tmp_path, run_name=tiny_run_copy.name, epochs=1)
    run_dir = tiny_run_copy
    before = {name: (run_dir / name).read_text() for name in ("config.json", "environment.json", "metrics.json")}
    with pytest.raises(ConfigError, match="finished run.*remove the folder or use a new run_name"):
        train(cfg, resume=False, progress=False)
    assert {name: (run_dir / name).read_text() for name in before} == before


def test_farnet_command_predicts_a_folder_of_images(tiny_run, tmp_path):
    """The installed console command, end to end: train, then predict on a folder (CSV + overlays)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    exe = shutil.which("farnet", path=str(Path(sys.executable).parent))
    assert exe, "the farnet console script is not installed next to this Python"
    run_dir = tiny_run
    images = tmp_path / "images"
    images.mkdir()
    for i, sample in enumerate(Synthetic(3, 5, (120, 90), seed=11)):
        Image.fromarray(sample.image).save(images / f"img{i}.png")
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "pred"
    proc = subprocess.run([exe, "predict", str(run_dir), str(images), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 3 * 5 and set(table["image"]) == {"img0.png", "img1.png", "img2.png"}
    assert table["x"].between(-1, 90).all() and table["y"].between(-1, 120).all() and table["peak"].notna().all()
    assert sorted(p.name for p in (out / "overlays").glob("*.png")) == ["img0.png.png", "img1.png.png", "img2.png.png"]
    bad = subprocess.run([exe, "predict", str(run_dir), str(tmp_path / "nothing"), "--out", str(out)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "no image file or folder" in bad.stderr



def test_dataset_options_replace_the_flat_dataset_fields_and_keep_names_and_old_configs():
    # names computed by farnet before hand_fold, synthetic_* ... became dataset_options (commit 925daa9)
    assert TrainConfig(dataset_options={"train": 10, "image_size": (96, 80)}).default_run_name() == \
        "synthetic-densenet121-s0-7632d66f"
    hand = TrainConfig(dataset="hand_xray", root="x", dataset_options={"fold": 2})
    assert hand.default_run_name() == "hand_xray-densenet121-s0-a72f89ac"
    assert hand.dataset_options == {"fold": 2, "scale_pair": [1, 5]}  # defaults filled in
    assert TrainConfig(dataset="csv", root="x", dataset_options={"fold": 2}).default_run_name() == \
        "csv-densenet121-s0-50dd5ace"
    old = {k: v for k, v in hand.to_dict().items() if k != "dataset_options"}
    old.update(hand_fold=3, hand_scale_pair=[0, 4], synthetic_train=60)  # every old config had every flat field
    assert TrainConfig.from_dict(old).dataset_options == {"fold": 3, "scale_pair": [0, 4]}
    flat_over_file = {**hand.to_dict(), "hand_fold": 1}  # `--set hand_fold=1` on a file with fold 2
    assert TrainConfig.from_dict(flat_over_file).dataset_options["fold"] == 1
    with pytest.raises(ConfigError, match="'fold' = 4 must be 1, 2 or 3"):
        TrainConfig(dataset="hand_xray", root="x", dataset_options={"fold": 4})
    with pytest.raises(ConfigError, match="unknown option.*'hand_fold'"):
        TrainConfig(dataset="hand_xray", root="x", dataset_options={"hand_fold": 2})
    with pytest.raises(ConfigError, match="'image_size'"):
        TrainConfig(dataset_options={"image_size": [96]})


def test_set_changes_one_dataset_option_of_the_config_file(tmp_path):
    from farnetlib.engine.cli import config_values

    path = tmp_path / "hand.json"
    path.write_text(json.dumps({"dataset": "hand_xray", "root": "x", "dataset_options": {"fold": 2, "scale_pair": [0, 4]}}))
    values = config_values(str(path), ["dataset_options.fold=3"])
    assert TrainConfig.from_dict(values).dataset_options == {"fold": 3, "scale_pair": [0, 4]}


def test_compose_config_applies_overrides_to_a_file_and_finds_the_data_folder(tmp_path, monkeypatch):
    from farnetlib.config import compose_config

    (tmp_path / "data" / "hand_xray").mkdir(parents=True)
    monkeypatch.setenv("FARNET_DATA", str(tmp_path / "data"))
    path = tmp_path / "hand.json"
    path.write_text(json.dumps({"dataset": "hand_xray", "epochs": 5, "dataset_options": {"fold": 2}}))
    cfg = compose_config(path, {"epochs": 1, "dataset_options.scale_pair": [0, 4]})
    assert cfg.epochs == 1 and cfg.dataset_options == {"fold": 2, "scale_pair": [0, 4]}
    assert cfg.root == str(tmp_path / "data" / "hand_xray")  # no root in the file: the shared data folder
    assert compose_config(path, root="elsewhere").root == "elsewhere"
    assert compose_config(None, {"epochs": 3}).dataset == "synthetic"
    with pytest.raises(ConfigError, match="hand.json: .*'epochs'"):
        compose_config(path, {"epochs": 0})


def test_configs_train_into_runs_and_compare_sets_a_run_beside_its_committed_reference(tiny_run, tmp_path, capsys):
    """Issue 41: the shipped configs write into the git-ignored runs/, the reports and `farnet compare`
    read the committed copies under results/; compare gives both runs' numbers, their paired difference
    and the seed spread of the reference's recipe where several seeds were committed."""
    from farnetlib.engine.cli import main
    from farnetlib.engine.runs import reference_folder
    from farnetlib.reporting import seed_spread

    assert reference_folder("runs/isbi2015_cpu") == Path("results/isbi2015_cpu")
    assert reference_folder("/data/elsewhere") == Path("/data/elsewhere")
    for path in sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.json")):
        text = json.loads(path.read_text())
        folder = (text.get("base") or text)["results_dir"]
        assert folder.startswith("runs/"), f"{path.name} writes into {folder}, a tracked folder"
    results = tmp_path / "results"
    a, b = (Path(shutil.copytree(tiny_run, results / name)) for name in ("a", "b"))
    config = json.loads((b / "config.json").read_text())
    (b / "config.json").write_text(json.dumps({**config, "seed": 1}))  # another seed of the same recipe
    preds = pd.read_csv(b / "predictions.csv")
    preds["error_px"] += 1.0
    preds["error_mm"] += 1.0
    (b / "predictions.csv").write_text(preds.to_csv(index=False))
    metrics = json.loads((b / "metrics.json").read_text())
    for m in metrics["splits"].values():
        m["mre"] += 1.0
    (b / "metrics.json").write_text(json.dumps(metrics))
    main(["compare", str(b), str(a)])
    out = capsys.readouterr().out
    assert f"b ({b}) against {a}" in out and "seed spread of the reference's recipe in the committed runs" not in out
    from farnetlib.reporting import compare_runs

    table = compare_runs(load_run(b), load_run(a))
    assert np.allclose(table["difference"], 1.0) and (table["difference_lower"] > 0.99).all()
    spread = seed_spread(load_run(a), results=results)
    assert spread is not None and (spread["seeds"] == 2).all() and np.allclose(spread["SD MRE"], np.sqrt(0.5))
