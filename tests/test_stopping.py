"""Interruptible training: the time limit, SIGTERM/SIGINT, and the record of each stretch."""
import json
import os
import signal

import numpy as np
import pandas as pd
import pytest

from farnetlib.engine import load_run, stopping, train
from farnetlib.engine import training as train_module  # the module (farnetlib.engine.train is the function)
from farnetlib.engine.stopping import estimate_epoch_seconds
from helpers import tiny


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same tiny run (3 epochs) trained in one go."""
    root = tmp_path_factory.mktemp("full")
    return load_run(train(tiny(root, run_name="full", epochs=3, milestones=[2]), progress=False))


def assert_same_training(run, reference):
    assert len(run["history"]) == len(reference["history"])
    np.testing.assert_allclose(run["history"]["train_loss"], reference["history"]["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(run["history"]["val_mre"], reference["history"]["val_mre"], rtol=1e-4)
    pd.testing.assert_frame_equal(run["predictions"][["pred_x", "pred_y"]],
                                  reference["predictions"][["pred_x", "pred_y"]], rtol=1e-4)


def test_the_time_limit_stops_before_an_epoch_that_would_not_fit_and_the_same_command_resumes(
        tmp_path, monkeypatch, capsys, uninterrupted):
    cfg = tiny(tmp_path, run_name="limited", epochs=3, milestones=[2], time_limit=1.0)
    # a clock at 0 s when the call starts and 59.9 s later on: epoch 1 (no estimate yet) is trained,
    # epoch 2 (estimated from epoch 1's measured seconds) would end after the 60 s limit
    times = iter([0.0])
    monkeypatch.setattr(stopping, "clock", lambda: next(times, 59.9))
    run_dir = train(cfg)
    out = capsys.readouterr().out
    assert "stopped after epoch 1 of 3 (time limit (1 min" in out and "run the same command to resume at epoch 2" in out
    assert len(pd.read_csv(run_dir / "history.csv")) == 1 and not (run_dir / "metrics.json").exists()
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    monkeypatch.setattr(stopping, "clock", lambda: 0.0)  # the next call has time enough
    resumed = load_run(train(cfg, progress=False))
    assert_same_training(resumed, uninterrupted)
    stretches = pd.read_csv(run_dir / "stretches.csv")
    assert stretches["stretch"].tolist() == [1, 2]
    assert stretches["first_epoch"].tolist() == [1, 2] and stretches["last_epoch"].tolist() == [1, 3]
    assert stretches["stopped"].iloc[0].startswith("time limit") and stretches["stopped"].iloc[1] == "finished"
    assert (stretches["wall_seconds"] > 0).all()
    assert stretches["commit"].notna().all()


def send_during_epoch(monkeypatch, epoch: int, times: int):
    """Send SIGTERM ``times`` times at the start of 0-based ``epoch`` (from the training thread)."""
    original = train_module._train_epoch

    def wrapped(parts, data, cfg, e, proc, progress):
        if e == epoch:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGTERM)
        return original(parts, data, cfg, e, proc, progress)

    monkeypatch.setattr(train_module, "_train_epoch", wrapped)


def test_sigterm_finishes_the_epoch_under_way_then_stops_resumably(tmp_path, monkeypatch, capsys, uninterrupted):
    cfg = tiny(tmp_path, run_name="term", epochs=3, milestones=[2])
    send_during_epoch(monkeypatch, epoch=0, times=1)
    before = signal.getsignal(signal.SIGTERM)
    run_dir = train(cfg)
    out = capsys.readouterr().out
    assert "SIGTERM: stopping after this epoch" in out and "stopped after epoch 1 of 3 (SIGTERM)" in out
    assert len(pd.read_csv(run_dir / "history.csv")) == 1  # epoch 1 was finished, validated and checkpointed
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers are restored after the call
    assert_same_training(load_run(train(cfg, progress=False)), uninterrupted)
    assert pd.read_csv(run_dir / "stretches.csv")["stopped"].tolist() == ["SIGTERM", "finished"]


def test_a_second_signal_abandons_the_epoch_and_the_run_resumes_from_the_one_before(
        tmp_path, monkeypatch, capsys, uninterrupted):
    cfg = tiny(tmp_path, run_name="abandon", epochs=3, milestones=[2])
    send_during_epoch(monkeypatch, epoch=1, times=2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert "abandoned epoch 2 of 3; last.pt holds epoch 1" in capsys.readouterr().out
    assert len(pd.read_csv(run_dir := tmp_path / "abandon" / "history.csv")) == 1
    monkeypatch.undo()
    assert_same_training(load_run(train(cfg, progress=False)), uninterrupted)
    assert pd.read_csv(run_dir.parent / "stretches.csv")["stopped"].iloc[0] == "abandoned epoch 2 (SIGTERM)"


def test_the_epoch_estimate_uses_the_same_input_size_or_scales_by_pixels():
    history = [{"epoch_seconds": 10.0, "train_size": "64x64"}, {"epoch_seconds": 40.0, "train_size": "128x128"}]
    assert estimate_epoch_seconds([], (64, 64)) is None
    assert estimate_epoch_seconds(history, (64, 64)) == 10.0
    assert estimate_epoch_seconds(history, (128, 128)) == 40.0
    assert estimate_epoch_seconds(history, (256, 128)) == pytest.approx(80.0)  # twice the pixels of 128 x 128
    assert estimate_epoch_seconds([{"epoch_seconds": 7.0}], (64, 64)) == 7.0  # rows of runs before train_size


def test_farnet_train_takes_a_time_limit_and_repeated_set(tmp_path, monkeypatch, capsys):
    from farnetlib.engine.cli import main

    times = iter([0.0])
    monkeypatch.setattr(stopping, "clock", lambda: next(times, 10_000.0))
    with pytest.raises(SystemExit) as stop:  # stopped, resumable: exit 3 (issue 39)
        main(["train", "--set", f"results_dir={tmp_path}", "run_name=\"cli\"", "--set", "epochs=3",
              "--set", "synthetic_train=8", "--set", "synthetic_test=2", "--set", "val_count=2",
              "synthetic_landmarks=3", "--set", "input_size=[64,64]", "backbone=\"resnet18\"", "precision=\"fp32\"",
              "--time-limit", "5"])
    assert stop.value.code == 3
    out = capsys.readouterr().out
    assert "stopped after epoch 1 of 3 (time limit (5 min" in out  # every --set counted: epochs=3 kept
    saved = pd.read_json(tmp_path / "cli" / "config.json", typ="series")
    assert saved["epochs"] == 3 and saved["time_limit"] == 5
    assert saved["dataset_options"] == {"train": 8, "test": 2, "landmarks": 3, "image_size": [320, 256]}  # flat --set


def test_a_study_time_limit_covers_all_arms_and_a_stopped_arm_ends_the_call(tmp_path, monkeypatch, capsys):
    from farnetlib.engine.study import load_study, train_study

    base = tiny(tmp_path, epochs=2).to_dict()
    base["run_name"] = None
    study_file = tmp_path / "study.json"
    study_file.write_text(json.dumps({"study": "s", "base": base,
                                      "arms": {"a": {"lr": 1e-3}, "b": {"lr": 5e-4}, "c": {"lr": 2e-4}}}))
    study = load_study(study_file)
    now = [0.0]  # a clock that advances 40 s per epoch: arm a takes 80 s of the 100-s limit
    monkeypatch.setattr(stopping, "clock", lambda: now[0])
    original = train_module._train_epoch

    def slow_epoch(*args):
        now[0] += 40.0
        return original(*args)

    monkeypatch.setattr(train_module, "_train_epoch", slow_epoch)
    runs = train_study(study, time_limit=100 / 60)
    out = capsys.readouterr().out
    assert [r.name for r in runs] == ["a", "b"]  # b: its first epoch (no estimate yet) ends at 120 s ...
    assert len(pd.read_csv(tmp_path / "b" / "history.csv")) == 1 and not (tmp_path / "b" / "metrics.json").exists()
    assert "arm b stopped before it finished; the same command resumes it" in out
    assert not (tmp_path / "c").exists()  # ... and the study call ends there: c is not started
    now[0] = 0.0
    assert [r.name for r in train_study(study, time_limit=100 / 60, progress=False)] == ["a", "b", "c"]
    assert all((tmp_path / arm / "metrics.json").is_file() for arm in "abc")
