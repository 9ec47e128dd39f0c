"""The training recipe's levers: lr schedules, progressive resizing, augmentation levels, execution options."""
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from farnetlib.data import AUGMENT_LEVELS
from farnetlib.engine import TrainConfig, load_run, train
from farnetlib.engine import autotune
from farnetlib.engine.schedule import build_schedule, lr_factor
from helpers import tiny


def test_the_step_schedule_with_warm_up_matches_multisteplr_after_the_warm_up():
    cfg = TrainConfig(epochs=6, milestones=[2, 4], lr_gamma=0.1, warmup_epochs=1)
    spe = 5
    factors = [lr_factor(cfg, s, spe) for s in range(6 * spe)]
    assert factors[:spe] == pytest.approx([(s + 1) / spe for s in range(spe)])  # linear warm-up to 1
    assert factors[spe:2 * spe] == pytest.approx([1.0] * spe)
    assert factors[2 * spe:4 * spe] == pytest.approx([0.1] * 2 * spe)
    assert factors[4 * spe:] == pytest.approx([0.01] * 2 * spe)


def test_the_cosine_schedule_warms_up_then_falls_to_zero_at_the_last_step():
    cfg = TrainConfig(epochs=10, schedule="cosine", warmup_epochs=2)
    spe = 4
    f = np.array([lr_factor(cfg, s, spe) for s in range(10 * spe + 1)])
    assert f[7] == pytest.approx(1.0) and f[8] == pytest.approx(1.0)  # end of warm-up: the peak
    assert np.all(np.diff(f[8:]) < 0) and f[-1] == pytest.approx(0.0, abs=1e-12)
    assert f[8 + 16] == pytest.approx(0.5)  # half-way through the cosine part


def test_the_plain_step_schedule_is_the_reference_multisteplr_stepped_per_epoch():
    cfg = TrainConfig(epochs=4, milestones=[2])
    schedule = build_schedule(cfg, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), steps_per_epoch=3)
    assert isinstance(schedule.scheduler, torch.optim.lr_scheduler.MultiStepLR) and not schedule.per_step


def test_progressive_epochs_train_smaller_with_sigma_scaled_and_validate_at_full_size(tmp_path):
    cfg = tiny(tmp_path, run_name="prog", input_size=(128, 96), sigma=4.0, epochs=3, progressive_epochs=2,
               schedule="cosine", warmup_epochs=1)
    assert cfg.stage(0) == ((64, 64), pytest.approx(4.0 * (0.5 + 64 / 96) / 2), pytest.approx(4.0 * (0.5 + 64 / 96) / 2))
    assert cfg.stage(2) == ((128, 96), 4.0, 4.0)
    run = load_run(train(cfg, progress=False))
    assert run["history"]["train_size"].tolist() == ["64x64", "64x64", "128x96"]
    assert run["history"]["val_mre"].notna().all()
    # the learning rate recorded at the start of each epoch follows the per-step cosine schedule
    spe = 2  # 7 training images at batch 4
    assert run["history"]["lr"].tolist() == pytest.approx([1e-3 * lr_factor(cfg, e * spe, spe) for e in range(3)])


def test_cosine_epochs_may_not_change_on_resume(tmp_path):
    from farnetlib.engine import ConfigError

    cfg = tiny(tmp_path, run_name="cos", epochs=2, schedule="cosine")
    train(cfg, stop_after_epochs=1, progress=False)
    with pytest.raises(ConfigError, match="cosine schedule's horizon"):
        train(replace(cfg, epochs=3), progress=False)


def test_augmentation_levels_widen_every_range():
    mild, standard, strong = (AUGMENT_LEVELS[k] for k in ("mild", "standard", "strong"))
    for field in ("rotation_deg", "translate", "brightness", "noise_sd"):
        assert getattr(mild, field) < getattr(standard, field) < getattr(strong, field), field
    for field in ("scale", "gamma", "contrast"):
        width = [np.ptp(getattr(a, field)) for a in (mild, standard, strong)]
        assert width[0] < width[1] < width[2], field


@pytest.mark.parametrize("bad,match", [({"augment_level": "wild"}, "augment_level"),
                                       ({"schedule": "linear"}, "schedule"),
                                       ({"progressive_epochs": 5, "epochs": 5}, "progressive_epochs"),
                                       ({"channels_last": "yes"}, "channels_last"),
                                       ({"eval_precision": "auto"}, "eval_precision"),
                                       ({"time_limit": 0}, "time_limit")])
def test_recipe_fields_are_checked(bad, match):
    from farnetlib.engine import ConfigError

    with pytest.raises(ConfigError, match=match):
        TrainConfig(**bad)


def test_auto_measures_bf16_only_where_the_cpu_has_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(autotune, "cpu_has_native_bf16", lambda: False)
    assert autotune.candidates(TrainConfig(precision="auto", channels_last="auto"), cpu) == [
        ("fp32", False), ("fp32", True)]
    monkeypatch.setattr(autotune, "cpu_has_native_bf16", lambda: True)
    assert autotune.candidates(TrainConfig(precision="auto", channels_last=False), cpu) == [
        ("fp32", False), ("bf16", False)]
    assert autotune.candidates(TrainConfig(precision="bf16", channels_last="auto"), cpu) == [
        ("bf16", False), ("bf16", True)]


def test_auto_keeps_the_fastest_measured_option_and_a_resumed_run_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setattr(autotune, "cpu_has_native_bf16", lambda: False)
    cfg = tiny(tmp_path, run_name="auto", epochs=2, precision="auto", channels_last="auto")
    speeds = {False: 2.0, True: 1.0}  # channels_last "faster" on this pretend CPU
    monkeypatch.setattr(autotune, "_time_steps", lambda model, c, device, p, cl, steps: speeds[cl])
    run_dir = train(cfg, stop_after_epochs=1, progress=False)
    saved = json.loads((run_dir / "execution.json").read_text())
    assert (saved["precision"], saved["channels_last"], saved["how"]) == ("fp32", True, "measured")
    assert saved["step_seconds"] == {"fp32/nchw": 2.0, "fp32/channels_last": 1.0}
    speeds.update({False: 1.0, True: 2.0})  # a re-measurement would now choose otherwise: it is not made
    train(cfg, progress=False)
    stretches = pd.read_csv(run_dir / "stretches.csv")
    assert stretches["execution"].tolist() == ["measured", "reused"]
    assert stretches["channels_last"].tolist() == [True, True]
    assert stretches["allocator"].notna().all()  # which malloc ran each stretch: it changes the speed


def test_a_later_fold_takes_the_measured_choice_of_the_fold_before(tmp_path, monkeypatch):
    """choose_execution(reuse_from=...): the folder's measured choice is taken, not re-measured; a
    configured one, or one from a CPU with other flags, is not."""
    from farnetlib.engine.evaluation import build_model

    monkeypatch.setattr(autotune, "cpu_has_native_bf16", lambda: False)
    cfg = tiny(tmp_path, precision="auto", channels_last="auto")
    model, cpu = build_model(cfg, 5), torch.device("cpu")
    monkeypatch.setattr(autotune, "_time_steps", lambda model, c, device, p, cl, steps: {False: 2.0, True: 1.0}[cl])
    first = autotune.choose_execution(cfg, model, cpu, tmp_path / "fold1")
    (tmp_path / "fold1").mkdir()
    autotune.save_execution(first, tmp_path / "fold1")
    monkeypatch.setattr(autotune, "_time_steps", lambda model, c, device, p, cl, steps: {False: 1.0, True: 2.0}[cl])
    later = autotune.choose_execution(cfg, model, cpu, tmp_path / "fold2", reuse_from=tmp_path / "fold1")
    assert (later.channels_last, later.how, later.step_seconds) == (True, "reused from fold1", first.step_seconds)
    assert autotune.choose_execution(cfg, model, cpu, tmp_path / "fold2").channels_last is False  # measured anew
    for other in (dict(how="configured"), dict(cpu_flags=["avx2"])):
        (tmp_path / "other").mkdir(exist_ok=True)
        autotune.save_execution(autotune.Execution(**{**first.__dict__, **other}), tmp_path / "other")
        again = autotune.choose_execution(cfg, model, cpu, tmp_path / "fold3", reuse_from=tmp_path / "other")
        assert (again.how, again.channels_last) == ("measured", False), other


def test_the_allocator_is_named_from_the_environment(monkeypatch):
    from farnetlib.precision import allocator

    for name in ("LD_PRELOAD", "GLIBC_TUNABLES", "MALLOC_CONF"):
        monkeypatch.delenv(name, raising=False)
    assert allocator() == "glibc malloc"
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    monkeypatch.setenv("MALLOC_CONF", "background_thread:true")
    assert allocator() == "libjemalloc.so.2; MALLOC_CONF=background_thread:true"
    monkeypatch.delenv("LD_PRELOAD")
    monkeypatch.delenv("MALLOC_CONF")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1")
    assert allocator() == "glibc malloc; GLIBC_TUNABLES=glibc.malloc.trim_threshold=1"


def test_evaluation_runs_in_fp32_whatever_the_training_precision(tmp_path):
    from farnetlib.engine.evaluation import build_model, predict_source
    from farnetlib.engine.sources import build_source

    torch.manual_seed(0)
    cfg = tiny(tmp_path, precision="bf16")
    source = build_source(cfg, "test")
    model = build_model(cfg, source.num_landmarks)
    in_fp32 = predict_source(model, source, cfg, "test", progress=False)
    same = predict_source(model, source, replace(cfg, precision="fp32"), "test", progress=False)
    in_bf16 = predict_source(model, source, replace(cfg, eval_precision="bf16"), "test", progress=False)
    pd.testing.assert_frame_equal(in_fp32, same)
    assert not np.allclose(in_fp32[["pred_x", "pred_y"]], in_bf16[["pred_x", "pred_y"]], atol=1e-6)


def test_the_codecs_give_exactly_the_targets_training_always_used():
    from farnetlib.heatmaps import farnet_codecs
    from farnetlib.heatmaps import GaussianHeatmapEncoder, rescale_points

    pts = torch.rand(2, 5, 2) * torch.tensor([95.0, 127.0])
    coarse, fine = farnet_codecs((128, 96), sigma=3.0, sigma_coarse=2.0)
    assert torch.equal(fine.encode(pts), GaussianHeatmapEncoder(3.0).encode(pts, (128, 96)))
    assert torch.equal(coarse.encode(pts), GaussianHeatmapEncoder(2.0).encode(rescale_points(pts, (128, 96), (64, 48)),
                                                                              (64, 48)))


def test_config_sections_cover_every_field_once_and_decide_what_may_change_on_resume():
    """Every field is in exactly one section; what may change between stretches is the evaluation,
    runtime and paths sections (and epochs); committed run folders' configs still load."""
    import json
    from dataclasses import fields
    from pathlib import Path

    from farnetlib.config import RESUMABLE_FIELDS, SECTIONS, TrainConfig

    listed = [name for names in SECTIONS.values() for name in names]
    assert sorted(listed) == sorted(f.name for f in fields(TrainConfig)) and len(listed) == len(set(listed))
    assert RESUMABLE_FIELDS == set(SECTIONS["evaluation"]) | set(SECTIONS["runtime"]) | set(SECTIONS["paths"]) | {"epochs"}
    assert "lr" not in RESUMABLE_FIELDS and "seed" not in RESUMABLE_FIELDS and "decoder" in RESUMABLE_FIELDS
    repo = Path(__file__).resolve().parents[1]
    for run in ("isbi2015_cpu/isbi2015_cpu", "isbi2015_cpu/isbi2015_cpu_recipe2", "aasce_cpu/aasce_cpu"):
        cfg = TrainConfig.from_dict(json.loads((repo / "results" / run / "config.json").read_text()))
        assert cfg.section("model")["backbone"] == "densenet121"


def test_the_pilot_report_of_a_study_nobody_ran_says_so_in_one_line(tmp_path):
    """`reproduce pilots` on a study whose arms have not started: what to run, not a KeyError."""
    import subprocess
    import sys
    from pathlib import Path

    study = json.loads((Path(__file__).parents[1] / "configs/pilots/aasce_size.json").read_text())
    study["base"]["results_dir"] = str(tmp_path / "pilots")
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    done = subprocess.run([sys.executable, "-m", "farnetlib.reproduce", "pilots", "--study", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "no arm of the study has started" in done.stderr and f"farnet study --config {path}" in done.stderr
