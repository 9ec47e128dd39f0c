"""Studies and cross-validation dispatched through submitit (farnetlib.engine.dispatch): the local
executor against the inline loop, requeue after the signal Slurm sends, the generated Slurm script, and
--status from the jobs record. No cluster here: sbatch and sacct are faked at the subprocess boundary
with submitit's own test double (``submitit.core.test_core.MockedSubprocess``)."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from farnetlib.engine.cli import main as farnet_cli
from farnetlib.config import ConfigError
from farnetlib.engine.dispatch import Launcher, dispatch, jobs_record_path, status_lines
from farnetlib.engine.study import load_study, train_study

pytest.importorskip("submitit")

HERE = Path(__file__).resolve().parent
# one thread everywhere: the local executor's processes and the inline loop then compute bit for bit alike
TINY = {"dataset": "synthetic", "dataset_options": {"train": 8, "test": 3, "landmarks": 4, "image_size": [96, 80]},
        "val_count": 2, "input_size": [64, 64], "sigma": 2.0, "batch_size": 4, "epochs": 2, "backbone": "resnet18",
        "milestones": [1], "threads": 1, "decoder": "quadratic", "head_scale": 0.125, "precision": "fp32",
        "backend": "torch", "lr": 1e-3}
ARMS = {"a-s0": {}, "b-mse": {"loss": "mse"}, "c-s1": {"seed": 1}}


def write_study(path: Path, results: Path, arms: dict = ARMS, base_extra: dict | None = None, **extra) -> Path:
    path.write_text(json.dumps({"study": "tiny", "base": {**TINY, "results_dir": str(results), **(base_extra or {})},
                                "arms": arms, **extra}))
    return path


def same_results(a: Path, b: Path) -> None:
    pa, pb = pd.read_csv(a / "predictions.csv"), pd.read_csv(b / "predictions.csv")
    pd.testing.assert_frame_equal(pa, pb)
    ma, mb = (json.loads((d / "metrics.json").read_text())["splits"] for d in (a, b))
    assert {k: v["mre"] for k, v in ma.items()} == {k: v["mre"] for k, v in mb.items()}


@pytest.mark.slow
def test_the_local_executor_trains_arms_as_parallel_processes_with_the_inline_results(tmp_path, capsys):
    inline = load_study(write_study(tmp_path / "inline.json", tmp_path / "inline"))
    train_study(inline, progress=False)
    study_file = write_study(tmp_path / "local.json", tmp_path / "local")
    farnet_cli(["study", "--config", str(study_file), "--executor", "local", "--max-parallel", "3"])
    out = capsys.readouterr().out
    assert out.count("started (process") == 3
    local = load_study(study_file)
    assert local.finished() == list(ARMS)
    for arm in ARMS:
        same_results(inline.run_dir(arm), local.run_dir(arm))
    record = json.loads(jobs_record_path(tmp_path / "local", "tiny").read_text())
    assert set(record["units"]) == set(ARMS) and {e["executor"] for e in record["units"].values()} == {"local"}
    pids = {e["job_id"] for e in record["units"].values()}
    assert len(pids) == 3 and str(os.getpid()) not in pids  # three processes of their own
    lines = status_lines(local.units(), tmp_path / "local", "tiny")
    assert all(" finished " in ln and "val " in ln and "test " in ln for ln in lines), lines
    # finished arms are not submitted again
    farnet_cli(["study", "--config", str(study_file), "--executor", "local"])
    assert "started" not in capsys.readouterr().out


def _task_pid(controller: int) -> int | None:
    """The job's task process (submitit's local controller starts one per task)."""
    children = Path(f"/proc/{controller}/task/{controller}/children")
    pids = children.read_text().split() if children.exists() else []
    return int(pids[0]) if pids else None


@pytest.mark.slow
def test_a_unit_signalled_as_slurm_does_is_requeued_and_equals_an_uninterrupted_one(tmp_path):
    """SIGUSR2 (what Slurm sends before the time limit, or on preemption) to a training job: submitit
    calls TrainUnit.checkpoint, the job is requeued, resumes from last.pt and ends as if never stopped."""
    arms = {"a": {"epochs": 6, "milestones": [4]}}
    inline = load_study(write_study(tmp_path / "inline.json", tmp_path / "inline", arms))
    train_study(inline, progress=False)
    study = load_study(write_study(tmp_path / "local.json", tmp_path / "local", arms))
    from farnetlib.engine.dispatch import TrainUnit, _local_executor

    unit = study.units()[0]
    job = _local_executor(tmp_path / "jobs", Launcher(executor="local")).submit(TrainUnit(unit.cfg.to_dict(), str(unit.run_dir)))
    history = unit.run_dir / "history.csv"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not (history.is_file() and len(history.read_text().splitlines()) >= 2):
        time.sleep(0.05)  # until the first epoch is recorded
    task = _task_pid(int(job.job_id))
    assert task is not None and not unit.finished, "the job ended before it could be signalled"
    os.kill(task, signal.SIGUSR2)
    job.wait()
    log = job.stdout() + (job.stderr() or "")
    assert "Requeued job" in log, log[-3000:]
    assert unit.finished
    same_results(inline.run_dir("a"), unit.run_dir)


def test_the_slurm_submission_is_one_job_array_with_our_options_and_status_follows_it(tmp_path, monkeypatch):
    from submitit.core.test_core import MockedSubprocess
    from submitit.slurm import slurm

    study_file = write_study(tmp_path / "study.json", tmp_path / "runs",
                             launcher={"executor": "slurm", "slurm_partition": "gpu", "slurm_time": 240,
                                       "slurm_gpus": 2, "slurm_cpus": 8, "slurm_mem": 64,
                                       "slurm_array_parallelism": 2, "slurm_extra": {"account": "lab"}})
    study = load_study(study_file)
    (study.run_dir("a-s0")).mkdir(parents=True)  # a finished arm is not submitted
    (study.run_dir("a-s0") / "metrics.json").write_text(json.dumps({"splits": {"val": {"mre": 1.5, "unit": "mm"}}}))
    mock = MockedSubprocess(known_cmds=["srun"])
    try:
        with mock.context():
            farnet_cli(["study", "--config", str(study_file), "--slurm-extra", "qos=high"])
            record = json.loads(jobs_record_path(tmp_path / "runs", "tiny").read_text())
            assert set(record["units"]) == {"b-mse", "c-s1"}
            assert [e["job_id"] for e in record["units"].values()] == ["12_0", "12_1"]  # one array
            script = next((tmp_path / "runs" / ".submitit" / "tiny").glob("12_submission.sh")).read_text()
            folder = str(tmp_path / "runs" / ".submitit" / "tiny")
            expected = (HERE / "data" / "slurm_submission.sh").read_text()
            assert script.replace(folder, "FOLDER").replace(sys.executable, "PYTHON") == expected
            lines = status_lines(study.units(), tmp_path / "runs", "tiny")
            assert lines[0].split()[:2] == ["a-s0", "finished"] and "val 1.500 mm" in lines[0]
            assert [ln.split()[1] for ln in lines[1:]] == ["running", "running"]
            # submitting again while they run submits nothing
            dispatch(study.units(), study.launcher, tmp_path / "runs", "tiny", progress=False)
            assert mock.job_count == 13
            mock.job_sacct.clear()
            mock.set_job_state("12", "PENDING", array=2)
            slurm.SlurmJob.watcher.clear()
            assert [ln.split()[1] for ln in status_lines(study.units(), tmp_path / "runs", "tiny")[1:]] == ["queued"] * 2
            stderr = Path(record["units"]["c-s1"]["stderr"])
            stderr.parent.mkdir(parents=True, exist_ok=True)
            stderr.write_text("Traceback ...\nRuntimeError: CUDA out of memory\n")
            mock.job_sacct["12"] = ("JobID|State\n12_0|PENDING\n12_0.ext+|PENDING\n12_0.0|PENDING\n"
                                    "12_1|OUT_OF_MEMORY\n12_1.ext+|OUT_OF_MEMORY\n12_1.0|OUT_OF_MEMORY")
            slurm.SlurmJob.watcher.clear()
            failed = status_lines(study.units(), tmp_path / "runs", "tiny")[2]
            assert "failed" in failed and "CUDA out of memory" in failed and str(stderr) in failed
            # a failed unit is submitted again (its run resumes), the queued one is not
            dispatch(study.units(), study.launcher, tmp_path / "runs", "tiny", progress=False)
            record = json.loads(jobs_record_path(tmp_path / "runs", "tiny").read_text())
            assert record["units"]["c-s1"]["job_id"] == "13" and record["units"]["b-mse"]["job_id"] == "12_0"
    finally:
        slurm.SlurmJob.watcher.clear()


def test_launcher_options_are_checked_and_the_extra_is_named():
    with pytest.raises(ConfigError, match="executor 'cloud'"):
        Launcher(executor="cloud")
    with pytest.raises(ConfigError, match="max_parallel"):
        Launcher(max_parallel=0)
    from farnetlib.engine.dispatch import launcher_from_dict

    with pytest.raises(ConfigError, match="unknown key.*'gpus'"):
        launcher_from_dict({"gpus": 2})


def test_cv_status_lists_every_fold(tmp_path, capsys):
    cfg = tmp_path / "cv.json"
    cfg.write_text(json.dumps({**TINY, "dataset": "hand_xray", "dataset_options": {}, "root": str(tmp_path / "hand"),
                               "results_dir": str(tmp_path / "runs"), "run_name": "h"}))
    farnet_cli(["cv", "--config", str(cfg), "--status"])
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[:3] for ln in out] == [["h-fold1", "not", "started"], ["h-fold2", "not", "started"],
                                              ["h-fold3", "not", "started"]]


def test_the_paper_ablation_study_file_is_27_runs_of_the_60_minute_recipe_for_slurm():
    """The paper's six backbones (EWC) and three losses (densenet121), three seeds each, at recipe 3 of
    the 60-minute CPU protocol; written for a cluster (its launcher block), not run here."""
    repo = HERE.parent
    study = load_study(repo / "configs" / "isbi2015_ablation_paper.json")
    cpu = json.loads((repo / "configs" / "isbi2015_cpu.json").read_text())
    assert len(study.arms) == 27 and study.launcher.executor == "slurm" and study.launcher.slurm_gpus == 1
    pairs = {(c.backbone, c.loss) for c in study.arms.values()}
    assert pairs == {(b, "ewc") for b in ("densenet121", "densenet169", "resnet101", "resnet152", "vgg16_bn",
                                          "vgg19_bn")} | {("densenet121", x) for x in ("mse", "l1", "awing")}
    assert all(sorted(c.seed for c in study.arms.values() if (c.backbone, c.loss) == p) == [0, 1, 2] for p in pairs)
    for cfg in study.arms.values():
        for key in ("input_size", "sigma", "lr", "epochs", "schedule", "warmup_epochs", "progressive_epochs",
                    "augment", "augment_level", "batch_size", "val_count", "split_seed", "test_splits"):
            value = getattr(cfg, key)
            assert (list(value) if isinstance(value, tuple) else value) == cpu[key], key
        assert cfg.weights is None and cfg.results_dir == "runs/isbi2015_ablation_paper"


@pytest.mark.slow
def test_farnet_cv_with_the_local_executor_equals_the_inline_folds(tmp_path, capsys):
    """A generic CSV dataset with a fold column: `farnet cv --executor local` trains both folds as
    processes of their own, with the inline loop's results, and prints the pooled table."""
    import numpy as np
    from PIL import Image

    from farnetlib.engine import TrainConfig, train_folds

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    rows = ["image,fold," + ",".join(f"x{k},y{k}" for k in range(4))]
    for i in range(12):
        Image.fromarray((rng.random((80, 64)) * 255).astype(np.uint8)).save(root / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,{1 + i % 2}," + ",".join(f"{v:.1f}" for v in rng.uniform(8, 56, 8)))
    (root / "landmarks.csv").write_text("\n".join(rows) + "\n")
    values = {**TINY, "dataset": "csv", "dataset_options": {}, "root": str(root), "run_name": "cv", "val_count": 2}
    inline = train_folds(TrainConfig.from_dict({**values, "results_dir": str(tmp_path / "inline")}), progress=False)
    cfg = tmp_path / "cv.json"
    cfg.write_text(json.dumps({**values, "results_dir": str(tmp_path / "local")}))
    farnet_cli(["cv", "--config", str(cfg), "--executor", "local", "--max-parallel", "2"])
    out = capsys.readouterr().out
    assert out.count("started (process") == 2 and "cv-fold1" in out and "cv-fold2" in out
    assert "pooled" in out  # the pooled table, as after the inline loop
    for run in inline:
        same_results(run, tmp_path / "local" / run.name)


def _slurm_answers() -> bool:
    import shutil
    import subprocess

    if shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in out.stdout.split())


real_slurm = pytest.mark.skipif(not _slurm_answers(), reason="no Slurm controller answers here (sinfo); "
                                                            "tests/slurm_localhost.sh starts a single-node one")


def _wait_finished(units, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(u.finished for u in units):
        time.sleep(1)


@real_slurm
@pytest.mark.slow
def test_a_real_slurm_runs_the_study_as_a_job_array_with_the_inline_results(tmp_path, capsys):
    inline = load_study(write_study(tmp_path / "inline.json", tmp_path / "inline", {"a": {}, "b": {"seed": 1}}))
    train_study(inline, progress=False)
    study_file = write_study(tmp_path / "slurm.json", tmp_path / "slurm", {"a": {}, "b": {"seed": 1}})
    farnet_cli(["study", "--config", str(study_file), "--executor", "slurm", "--slurm-cpus", "1", "--slurm-time", "20"])
    assert "as Slurm array" in capsys.readouterr().out
    study = load_study(study_file)
    _wait_finished(study.units())
    for arm in ("a", "b"):
        same_results(inline.run_dir(arm), study.run_dir(arm))
    farnet_cli(["study", "--config", str(study_file), "--status"])
    assert [ln.split()[1] for ln in capsys.readouterr().out.splitlines()] == ["finished", "finished"]


@real_slurm
@pytest.mark.slow
def test_a_real_slurm_job_signalled_usr2_is_requeued_and_ends_as_if_never_stopped(tmp_path, capsys):
    """scancel -s USR2, what Slurm sends before the time limit: submitit requeues the job (Slurm holds
    a requeued job about two minutes), which resumes from last.pt; the run equals an uninterrupted one."""
    import subprocess

    arms = {"long": {"epochs": 40, "milestones": [30]}}
    inline = load_study(write_study(tmp_path / "inline.json", tmp_path / "inline", arms))
    train_study(inline, progress=False)
    study_file = write_study(tmp_path / "slurm.json", tmp_path / "slurm", arms)
    farnet_cli(["study", "--config", str(study_file), "--executor", "slurm", "--slurm-cpus", "1", "--slurm-time", "20"])
    study = load_study(study_file)
    unit = study.units()[0]
    job = json.loads(jobs_record_path(tmp_path / "slurm", "tiny").read_text())["units"]["long"]["job_id"]
    history = unit.run_dir / "history.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (history.is_file() and len(history.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    assert not unit.finished, "the job ended before it could be signalled"
    subprocess.run(["scancel", "-s", "USR2", job], check=True)
    _wait_finished([unit], 600)
    assert unit.finished
    same_results(inline.run_dir("long"), unit.run_dir)
    stretches = pd.read_csv(unit.run_dir / "stretches.csv")
    assert len(stretches) == 2 and stretches["stopped"].tolist() == ["interrupted (killed, or signalled and requeued)",
                                                                     "finished"]
