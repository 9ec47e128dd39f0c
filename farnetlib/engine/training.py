"""Training: FARNet + coarse-to-fine loss, validation-based model selection, resume, run folder.

``train(cfg)`` reads as its steps: set up the process (device, torchrun), open the run folder,
build the data (validation carved by ``split_seed``), build the model and optimiser, resume from
``checkpoints/last.pt``, then per epoch train, validate, checkpoint; finally evaluate the model
selected on validation on each test split, once.

Single process (CPU or one GPU) by default. Several GPUs: launch with torchrun, e.g.
``torchrun --nproc_per_node=4 -m farnetlib.engine.cli train --config configs/isbi2015_gpu_paper.json``;
each process trains on its shard through DistributedDataParallel (``sync_bn=True`` for
SyncBatchNorm at batch 1 per GPU), rank 0 validates and writes the one run folder. The path is
tested on CPU with two gloo processes (tests/test_distributed.py).
"""
from __future__ import annotations

import json
import math
import random
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from ..progress import log, tqdm

from ..losses import CoarseToFineLoss, build_loss
from ..model import parameter_counts
from ..config import RESUMABLE_FIELDS, ConfigError, TrainConfig
from .loaders import TrainData, build_train_data
from .distributed import Process, broadcast_object, setup_process, teardown_process
from ..checkpoint import build_model, load_checkpoint, read_checkpoint
from ..data.io import atomic_path, read_json_record, write_atomic
from .evaluation import backend_heatmaps, evaluate_splits, predict_source, split_metrics
from ..precision import allocator, make_scaler, to_layout
from .autotune import choose_execution, save_execution
from .runs import environment, run_lock
from .schedule import build_schedule
from .sources import config_data_identity, data_identity
from .steps import LOSS_KEYS, StepContext, train_step
from .stopping import StopControl, Stretches

__all__ = ["train", "seed_everything", "save_checkpoint"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def train(cfg: TrainConfig, run_dir: str | Path | None = None, resume: bool = True,
          stop_after_epochs: int | None = None, progress: bool = True,
          prior_history: list[dict] | None = None, execution_from: Path | None = None) -> Path:
    """Train per ``cfg``; return the run folder.

    ``resume``: continue from ``checkpoints/last.pt`` when the folder has one; a finished run (its
    ``metrics.json`` written) is not trained or evaluated again. The call stops early, resumably,
    before an epoch that would not fit in ``cfg.time_limit`` minutes, or after the epoch under way
    on the first SIGTERM/SIGINT (see :mod:`farnetlib.engine.stopping`); it then returns without the
    final evaluation (no ``metrics.json``) and says how it stopped. ``stop_after_epochs`` ends the
    call after that many epochs in the same way (used by tests). ``prior_history`` (the history
    rows of a similar run, e.g. the previous fold) lets the time limit estimate the first epoch;
    ``execution_from`` (its folder) gives its measured precision and layout to a run with "auto"
    options that has none yet (:func:`~farnetlib.engine.autotune.choose_execution`).
    """
    proc = setup_process(cfg)
    stop = StopControl(cfg.time_limit, prior_history=prior_history)
    try:
        seed_everything(cfg.seed)
        identity = None
        if run_dir is None:
            if cfg.run_name is None:  # the default name carries the data's identity
                identity = config_data_identity(cfg)
            run_dir = Path(cfg.results_dir) / (cfg.run_name or cfg.default_run_name(identity["sha256"]))
        run_dir = Path(run_dir)
        lock = run_lock(run_dir, f"farnet train, since {time.strftime('%H:%M')}") if proc.main else nullcontext()
        with lock:
            return _train_locked(cfg, run_dir, resume, stop_after_epochs, progress, proc, stop, execution_from,
                                 identity)
    finally:
        stop.restore()
        teardown_process(proc)


def _train_locked(cfg: TrainConfig, run_dir: Path, resume: bool, stop_after_epochs: int | None, progress: bool,
                  proc: Process, stop: StopControl, execution_from: Path | None = None,
                  identity: dict | None = None) -> Path:
    """:func:`train` once the run folder is this process's: validate everything, then write and train."""
    stretches = None
    epoch, phase = 0, "the start"
    try:
        _check_run_dir(cfg, run_dir, resume)  # before anything is built or written
        if resume:
            identity = _check_same_data(cfg, run_dir, identity)
        if resume and _already_finished(run_dir, cfg, proc, progress):
            return run_dir
        data = build_train_data(cfg, proc, progress)
        trainer = _Trainer(cfg, data, proc, run_dir, execution_from)
        _write_run_records(cfg, run_dir, proc, resume, trainer, identity or data_identity(data.source))
        if proc.main and progress:
            log.info(_plan_line(cfg, data, run_dir, trainer))
        start, best, history = _resume(trainer, run_dir, proc, progress) if resume else (0, math.inf, [])
        stretches = Stretches(run_dir, start, trainer.execution_record(), write=proc.main)
        for epoch in range(start, cfg.epochs):
            reason = "stop_after_epochs" if stop_after_epochs is not None and epoch - start >= stop_after_epochs \
                else broadcast_object(proc, stop.reason_to_stop(history, cfg.stage(epoch)[0]) if proc.main else None)
            if reason is not None:
                stretches.end(reason)
                if proc.main and progress and reason != "stop_after_epochs":
                    log.info(f"stopped after epoch {epoch} of {cfg.epochs} ({reason}); run the same command to "
                             f"resume at epoch {epoch + 1}")
                return run_dir
            phase = f"epoch {epoch + 1} of {cfg.epochs}"
            row = _train_epoch(trainer, data, cfg, epoch, proc, progress)
            best = _end_epoch(trainer, data, cfg, row, best, history, run_dir, proc, progress)
            stretches.epoch_done(epoch)

        phase = "the final evaluation"
        if proc.main:
            _final_evaluation(cfg, run_dir, data, proc.device, progress)
        stretches.end("finished")
        proc.barrier()  # every process returns once the run folder is complete
        return run_dir
    except KeyboardInterrupt as err:
        if stretches is not None:
            stretches.end(f"abandoned {phase.split(' of ')[0]} ({err or 'interrupt'})")
        if proc.main and progress:
            done = stretches.row["last_epoch"] if stretches is not None else epoch
            log.info(f"abandoned {phase}; last.pt holds epoch {done}: run the same command to resume")
        raise


class _Trainer:
    """The model and everything that updates it: optimiser, schedule, scaler, loss, execution options."""

    def __init__(self, cfg: TrainConfig, data: TrainData, proc: Process, run_dir: Path,
                 execution_from: Path | None = None) -> None:
        model = build_model(cfg, data.source.num_landmarks, weights=cfg.weights).to(proc.device)
        self.execution = choose_execution(cfg, model, proc.device, run_dir, reuse_from=execution_from)
        self.cfg, self.proc, self.num_landmarks = cfg, proc, data.source.num_landmarks
        self.model = to_layout(model, self.execution.channels_last)
        self.net = self.model
        if proc.world > 1:
            if cfg.sync_bn:
                if proc.device.type != "cuda":
                    raise ConfigError("config field 'sync_bn' = True: SyncBatchNorm needs CUDA devices")
                self.net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
                self.model = self.net
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[proc.device.index] if proc.device.type == "cuda" else None)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.optimizer = _optimizer(cfg, self.model.parameters())
        self.schedule = build_schedule(cfg, self.optimizer, len(data.loader(cfg.stage(0)[0])))
        self.scheduler = self.schedule.scheduler
        self.scaler = make_scaler(proc.device, self.execution.precision)
        self.criterion = CoarseToFineLoss(build_loss(cfg.loss, **cfg.loss_options()), cfg.coarse_weight, cfg.fine_weight)

    def step_context(self, epoch: int) -> StepContext:
        """What a training step of ``epoch`` needs: its input size and Gaussian targets (progressive
        epochs train smaller, with sigma scaled alike)."""
        coarse, fine = self.cfg.codecs(self.num_landmarks, epoch)
        size = fine.input_size
        return StepContext(device=self.proc.device, precision=self.execution.precision,
                           channels_last=self.execution.channels_last, input_size=size, codec_fine=fine,
                           codec_coarse=coarse, criterion=self.criterion)

    def execution_record(self) -> dict:
        """The execution options of this stretch, for ``stretches.csv``."""
        return {"precision": self.execution.precision, "channels_last": self.execution.channels_last,
                "execution": self.execution.how, "cpu_flags": " ".join(self.execution.cpu_flags),
                "allocator": allocator()}


def _plan_line(cfg: TrainConfig, data: TrainData, run_dir: Path, trainer: _Trainer) -> str:
    """One line at the start: what is trained on what, how long, and where it is written."""
    tests = ", ".join(f"{sp} {len(src)}" if not isinstance(src, str) else f"{sp} absent"
                      for sp, src in data.test_sources.items())
    steps = math.ceil(len(data.train_idx) / cfg.batch_size)
    size = "x".join(map(str, cfg.input_size))
    return (f"training {cfg.dataset}: {len(data.train_idx)} train / {len(data.val_idx)} validation images"
            f"{'; test ' + tests if tests else ''}; {cfg.backbone} at {size}, {cfg.epochs} epochs of {steps} steps "
            f"(batch {cfg.batch_size}, {trainer.execution.precision}); run folder {run_dir}")


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


# --- run folder and resume -------------------------------------------------------------------------

DATA_RECORD = "data.json"  # the identity of the training data (engine.sources.data_identity)


def _check_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool) -> None:
    """Refuse, before anything is written, what would overwrite results or mix two configs; remove
    the temporary files a killed writer left (a DenseNet checkpoint's is about 1 GB: the folder is
    this process's now, so no live writer owns them)."""
    for folder in (run_dir, run_dir / "checkpoints"):
        for stale in folder.glob(".*.tmp") if folder.is_dir() else ():
            stale.unlink(missing_ok=True)
    if not resume and (run_dir / "metrics.json").is_file():
        raise ConfigError(f"run folder {run_dir} holds a finished run (metrics.json); training it again from "
                          "scratch would overwrite its results: remove the folder or use a new run_name")
    if resume:
        _check_resume_config(run_dir, cfg)


def _check_same_data(cfg: TrainConfig, run_dir: Path, identity: dict | None) -> dict | None:
    """A run folder that records its data (``data.json``) is resumed, or called finished, only on
    the same data (the same labels and images; the folder they lie in may change). Returns the
    identity where it had to be computed."""
    path = run_dir / DATA_RECORD
    if not path.is_file() or not _trained_anything(run_dir):
        return identity
    recorded = read_json_record(path)
    identity = identity or config_data_identity(cfg)
    if recorded.get("sha256") != identity["sha256"]:
        raise ConfigError(f"run folder {run_dir} was trained on other data ({recorded.get('images')} training images, "
                          f"data {str(recorded.get('sha256'))[:8]}; this config's: {identity['images']}, "
                          f"{identity['sha256'][:8]}): use a new run_name, or point root at the data it was trained on")
    return identity


def _write_run_records(cfg: TrainConfig, run_dir: Path, proc: Process, resume: bool, trainer: _Trainer,
                       identity: dict) -> None:
    """Rank 0 creates the folder and writes this stretch's config, environment and execution
    options, and the data's identity (a finished run never gets here: :func:`_check_run_dir` or
    :func:`_already_finished` stopped it, so its records stay read-only)."""
    if proc.main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / DATA_RECORD, json.dumps(identity, indent=2))
        cfg.save(run_dir / "config.json")
        _write_environment(run_dir / "environment.json", proc, cfg.seed, keep_previous=resume)
        save_execution(trainer.execution, run_dir)
    proc.barrier()


def _write_environment(path: Path, proc: Process, seed: int, keep_previous: bool) -> None:
    """This session's environment; a resumed run keeps the earlier sessions' under ``previous_sessions``
    (a long run may span machines)."""
    env = environment(proc.device, seed)
    if keep_previous and path.is_file():
        old = read_json_record(path)
        env["previous_sessions"] = old.pop("previous_sessions", []) + [old]
    write_atomic(path, json.dumps(env, indent=2))


def _trained_anything(run_dir: Path) -> bool:
    """True once the folder holds a trained epoch (a checkpoint, history or final metrics)."""
    return any((run_dir / f).is_file() for f in ("checkpoints/last.pt", "history.csv", "metrics.json"))


def _check_resume_config(run_dir: Path, cfg: TrainConfig) -> None:
    """A folder that holds a trained epoch resumes only with a config that trains the same thing;
    one whose start failed before any epoch (e.g. a diverging lr) takes the corrected config."""
    path = run_dir / "config.json"
    if path.is_file() and _trained_anything(run_dir):
        old = TrainConfig.from_dict(read_json_record(path)).to_dict()
        new = cfg.to_dict()
        changed = {k for k in new if json.dumps(old.get(k)) != json.dumps(new[k])} - RESUMABLE_FIELDS
        if cfg.schedule == "cosine" and old["epochs"] != new["epochs"]:
            changed.add("epochs (the cosine schedule's horizon)")
        if changed:
            raise ConfigError(f"run folder {run_dir} was started with another config (fields {sorted(changed)}); "
                              "use a new run_name or the same config to resume")


def _resume(trainer: _Trainer, run_dir: Path, proc: Process, progress: bool) -> tuple[int, float, list]:
    """Load ``last.pt`` into ``trainer``; (first epoch to run, best val MRE, history)."""
    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        return 0, math.inf, []
    # on CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest where it belongs
    state = read_checkpoint(path)
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    if trainer.scaler.is_enabled() and state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])  # a run started without fp16 saved none: start afresh
    restore_rng(state.get("rng", {"torch": state.get("torch_rng")}))
    if proc.main and progress:
        log.info(f"resuming {run_dir.name} at epoch {state['epoch'] + 2} (best val MRE {state['best']:.3f})")
    return state["epoch"] + 1, state["best"], state["history"]


def rng_state() -> dict:
    """Every random generator's state, as CPU objects (saved in ``last.pt``)."""
    out = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict) -> None:
    """Restore what :func:`rng_state` saved; CUDA states only where the same GPUs are present."""
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"].cpu())
    if state.get("numpy") is not None:
        np.random.set_state(state["numpy"])
    if state.get("python") is not None:
        random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def _already_finished(run_dir: Path, cfg: TrainConfig, proc: Process, progress: bool) -> bool:
    """A run whose final evaluation was written is never trained or evaluated again (entries added
    later stay). Its epochs are counted in ``history.csv``, so a finished run committed without its
    checkpoints (as run folders are) is still finished, and nothing is loaded or built for it."""
    if not (run_dir / "metrics.json").is_file():
        return False
    read_json_record(run_dir / "metrics.json")  # a damaged record is an error naming it, not "finished"
    history = run_dir / "history.csv"
    start = len(pd.read_csv(history)) if history.is_file() else 0
    if start < cfg.epochs:
        raise ConfigError(f"run {run_dir} is finished and evaluated after {start} epochs; training it to "
                          f"{cfg.epochs} would replace its test results: start a new run_name instead")
    if proc.main and progress:
        log.info(f"run {run_dir} is finished ({start} epochs, metrics.json written): nothing to do")
    return True


# --- one epoch -------------------------------------------------------------------------------------

def _train_epoch(trainer: _Trainer, data: TrainData, cfg: TrainConfig, epoch: int, proc: Process,
                 progress: bool) -> dict:
    """Train one epoch; the row of ``history.csv`` so far (losses averaged over all processes)."""
    t0 = time.perf_counter()
    ctx = trainer.step_context(epoch)
    loader = data.loader(ctx.input_size)
    data.set_epoch(epoch)
    trainer.net.train()
    sums = torch.zeros(len(LOSS_KEYS), device=proc.device, dtype=torch.float64)
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not (progress and proc.main))
    lr = trainer.optimizer.param_groups[0]["lr"]
    step = 0
    for step, batch in enumerate(bar, start=1):
        sums += train_step(trainer.net, trainer.optimizer, trainer.scaler, batch, ctx).double()
        if trainer.schedule.per_step:
            trainer.scheduler.step()
        if step % cfg.finite_check_every == 0:
            _check_finite(sums, epoch, step, cfg.finite_check_every)
            bar.set_postfix(loss=f"{sums[0].item() / step:.4g}")
    _check_finite(sums, epoch, step, cfg.finite_check_every)
    if proc.world > 1:
        dist.all_reduce(sums)
        sums /= proc.world
    if not trainer.schedule.per_step:
        trainer.scheduler.step()
    means = (sums / max(1, step)).tolist()
    return {"epoch": epoch + 1, "lr": lr, **{f"train_{k}": v for k, v in zip(LOSS_KEYS, means)},
            "train_seconds": time.perf_counter() - t0, "train_size": f"{ctx.input_size[0]}x{ctx.input_size[1]}"}


def _check_finite(sums: torch.Tensor, epoch: int, step: int, every: int) -> None:
    if not torch.isfinite(sums).all():
        first = max(1, step - every + 1)
        raise FloatingPointError(f"loss became {sums[0].item()} at epoch {epoch + 1}, between steps {first} and "
                                 f"{step} (checked every {every} steps; lower lr or check the data)")


def save_checkpoint(state: dict, path: Path) -> None:
    """``torch.save`` into a uniquely named temporary file beside ``path``, then rename it over
    ``path`` (``os.replace``, atomic on one filesystem): a run stopped while writing keeps its
    previous checkpoint whole and resumable."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _end_epoch(trainer: _Trainer, data: TrainData, cfg: TrainConfig, row: dict, best: float,
               history: list, run_dir: Path, proc: Process, progress: bool) -> float:
    """Rank 0 ends an epoch: validate, keep the best model, save the state to resume from, write the
    history, say one line; returns the best validation MRE so far.

    ``row`` (this epoch's history row) gets the validation numbers and, as it is written, the
    epoch's seconds so far (training + validation)."""
    epoch = row["epoch"] - 1
    history.append(row)
    if proc.main:
        t_val = time.perf_counter()
        val = _validate(trainer, data, cfg, epoch)
        if val is not None:
            row.update(val_mre=val["mre"], val_sdr_2=val.get("sdr_2"), val_unit=val["unit"])
            if val["mre"] < best:
                best = val["mre"]
                _save_best(trainer, data, cfg, epoch, best, run_dir)
        row["epoch_seconds"] = row["train_seconds"] + (time.perf_counter() - t_val)
        _save_last(trainer, data, cfg, epoch, best, history, run_dir)
        write_atomic(run_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
        if progress:
            val_txt = f", val MRE {row['val_mre']:.3f} {row['val_unit']}" if "val_mre" in row else ""
            left = row["epoch_seconds"] * (cfg.epochs - epoch - 1) / 60
            eta = f"; about {left:.0f} min left at this epoch's speed" if epoch + 1 < cfg.epochs else ""
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4g}{val_txt} "
                       f"({row['epoch_seconds']:.1f} s{eta})")
    proc.barrier()
    return best


def _validate(trainer: _Trainer, data: TrainData, cfg: TrainConfig, epoch: int) -> dict | None:
    """Validation metrics of this epoch's model (every ``eval_every`` epochs and the last), else None."""
    if (epoch + 1) % cfg.eval_every and epoch + 1 != cfg.epochs:
        return None
    return split_metrics(predict_source(trainer.model, data.source, cfg, "val", indices=data.val_idx,
                                        cache=data.cache, progress=False), cfg)


def _save_best(trainer: _Trainer, data: TrainData, cfg: TrainConfig, epoch: int, best: float, run_dir: Path) -> None:
    """``best.pt``: the model selected on validation (what evaluation, export and predict read)."""
    save_checkpoint({"model": trainer.model.state_dict(), "config": cfg.to_dict(), "epoch": epoch,
                     "num_landmarks": data.source.num_landmarks, "val_mre": best},
                    run_dir / "checkpoints" / "best.pt")


def _save_last(trainer: _Trainer, data: TrainData, cfg: TrainConfig, epoch: int, best: float, history: list,
               run_dir: Path) -> None:
    """``last.pt``: everything a resumed run needs to continue as if never stopped."""
    save_checkpoint({"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
                     "scheduler": trainer.scheduler.state_dict(), "scaler": trainer.scaler.state_dict(),
                     "rng": rng_state(), "epoch": epoch, "best": best, "history": history,
                     "config": cfg.to_dict(), "num_landmarks": data.source.num_landmarks},
                    run_dir / "checkpoints" / "last.pt")


# --- the end ---------------------------------------------------------------------------------------

def _final_evaluation(cfg: TrainConfig, run_dir: Path, data: TrainData, device: torch.device, progress: bool) -> None:
    """Load the checkpoint selected on validation and evaluate val + each test split once."""
    t0 = time.perf_counter()
    model, _, state = load_checkpoint(run_dir / "checkpoints" / "best.pt", str(device), cfg.eval_channels_last)
    export_dir, had_export = run_dir / "export", (run_dir / "export").exists()
    heatmaps, execution = backend_heatmaps(run_dir, cfg.backend, cfg.backend_precision, str(device))
    frames, metrics = evaluate_splits(model, cfg, data.source, data.val_idx, data.cache, progress, data.test_sources,
                                      heatmaps=heatmaps)
    if not had_export and export_dir.exists():  # made only to evaluate with: `farnet export` writes one on demand
        shutil.rmtree(export_dir, ignore_errors=True)
    metrics = {"run": run_dir.name, "selected_epoch": state["epoch"] + 1, "selection": "lowest validation MRE",
               "val_count": len(data.val_idx), "train_count": len(data.source) - len(data.val_idx),
               "image_counts": data.image_counts, "known_duplicates": data.known_duplicates,
               "parameters": parameter_counts(model), "final_evaluation_seconds": time.perf_counter() - t0,
               **metrics}
    if execution["backend"] == "torch":
        execution = {**execution, "precision": cfg.eval_precision, "channels_last": cfg.eval_channels_last}
    metrics["execution"] = execution  # what computed the test heatmaps
    write_atomic(run_dir / "predictions.csv", pd.concat(frames).to_csv(index=False))
    write_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    # finished: the optimiser state in last.pt can serve nothing (a finished run is neither resumed nor
    # extended); best.pt, the selected weights, is what evaluate, export and predict read
    (run_dir / "checkpoints" / "last.pt").unlink(missing_ok=True)
