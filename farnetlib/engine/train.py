"""Training: FARNet + coarse-to-fine loss, validation-based model selection, resume, run folder.

Single process (CPU or one GPU) by default. Several GPUs: launch with torchrun, e.g.
``torchrun --nproc_per_node=4 -m farnetlib.engine.cli train --config configs/isbi2015_gpu_paper.json``;
each process then trains on its shard through DistributedDataParallel and rank 0 validates and
writes the run folder. (The multi-GPU path is not exercised by our CI, which has no GPU.)
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from ..data import Augment, DatasetError, ImageCache, LandmarkDataset
from ..heatmaps import GaussianHeatmapEncoder, rescale_points
from ..losses import CoarseToFineLoss, build_loss
from ..model import FARNet
from .config import ConfigError, DATASET_DEFAULTS, TrainConfig
from .evaluate import _amp, predict_source, resolve_device, split_metrics
from .runs import environment, make_run_dir
from .sources import build_source, carve_validation

__all__ = ["train", "seed_everything"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def _targets(pts: torch.Tensor, cfg: TrainConfig, enc_fine, enc_coarse) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = cfg.input_size
    half = (h // 2, w // 2)
    fine = enc_fine.encode(pts, (h, w))
    coarse = enc_coarse.encode(rescale_points(pts, (h, w), half), half)
    return coarse, fine


def _check_resume_config(run_dir: Path, cfg: TrainConfig) -> None:
    path = run_dir / "config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        new = json.loads(json.dumps(cfg.to_dict()))
        changed = {k for k in new if old.get(k) != new[k]} - {"epochs", "num_workers", "threads", "device"}
        if changed:
            raise ConfigError(f"run folder {run_dir} was started with another config (fields {sorted(changed)}); "
                              "use a new run_name or the same config to resume")


def train(cfg: TrainConfig, run_dir: str | Path | None = None, resume: bool = True,
          stop_after_epochs: int | None = None, progress: bool = True) -> Path:
    """Train per ``cfg``; return the run folder.

    ``resume``: continue from ``checkpoints/last.pt`` when the folder has one. ``stop_after_epochs``
    ends this call after that many epochs without the final test evaluation (as if killed; used to
    test resume and to split long runs across sessions).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(cfg.device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    main = rank == 0
    run_dir = Path(run_dir) if run_dir is not None else make_run_dir(cfg.results_dir, cfg.run_name, cfg.dataset, cfg.backbone, cfg.seed)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    if resume:
        _check_resume_config(run_dir, cfg)
    if main:
        cfg.save(run_dir / "config.json")
        (run_dir / "environment.json").write_text(json.dumps(environment(device, cfg.seed), indent=2))

    source = build_source(cfg, DATASET_DEFAULTS[cfg.dataset]["train_split"])
    train_idx, val_idx = carve_validation(len(source), cfg.val_count, cfg.seed)
    cache = ImageCache(disk_dir=cfg.cache_dir)
    train_ds = LandmarkDataset(source, cfg.input_size, augment=Augment() if cfg.augment else None, cache=cache,
                               indices=train_idx, reference_0_255=cfg.reference_0_255, seed=cfg.seed)
    model = FARNet(source.num_landmarks, backbone=cfg.backbone, weights=cfg.weights).to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = _optimizer(cfg, model.parameters())
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.lr_gamma)
    loss_kwargs = {"base": cfg.ewc_base} if cfg.loss == "ewc" else {}
    criterion = CoarseToFineLoss(build_loss(cfg.loss, **loss_kwargs), cfg.coarse_weight, cfg.fine_weight)
    enc_fine = GaussianHeatmapEncoder(cfg.sigma)
    enc_coarse = GaussianHeatmapEncoder(cfg.sigma_coarse or cfg.sigma)
    use_amp = _amp(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)

    start, best, history = 0, math.inf, []
    last_path, best_path = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    if resume and last_path.is_file():
        state = torch.load(last_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        start, best, history = state["epoch"] + 1, state["best"], state["history"]
        if main and progress:
            print(f"resuming {run_dir.name} at epoch {start + 1}/{cfg.epochs} (best val MRE {best:.3f})")

    epochs_done = 0
    for epoch in range(start, cfg.epochs):
        if stop_after_epochs is not None and epochs_done >= stop_after_epochs:
            return run_dir
        t0 = time.perf_counter()
        train_ds.set_epoch(epoch)
        if world > 1:
            sampler = DistributedSampler(train_ds, shuffle=True, seed=cfg.seed)
            sampler.set_epoch(epoch)
            loader = DataLoader(train_ds, cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers)
        else:
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            loader = DataLoader(train_ds, cfg.batch_size, shuffle=True, generator=gen, num_workers=cfg.num_workers)
        net.train()
        sums = {"loss": 0.0, "coarse": 0.0, "fine": 0.0}
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not (progress and main))
        for step, batch in enumerate(bar, start=1):
            images = batch["image"].to(device, non_blocking=True)
            coarse_t, fine_t = _targets(batch["landmarks"].to(device), cfg, enc_fine, enc_coarse)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                out = net(images)
            losses = criterion(type(out)(out.coarse.float(), out.fine.float()), coarse_t, fine_t)
            if not torch.isfinite(losses["loss"]):
                raise FloatingPointError(f"loss became {losses['loss'].item()} at epoch {epoch + 1}, step {step}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["loss"]).backward()
            scaler.step(optimizer)
            scaler.update()
            for k in sums:
                sums[k] += losses[k].item()
            bar.set_postfix(loss=f"{sums['loss'] / step:.4g}")
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        row = {"epoch": epoch + 1, "lr": lr, **{f"train_{k}": v / max(1, len(loader)) for k, v in sums.items()},
               "train_seconds": time.perf_counter() - t0}
        if main and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            val = split_metrics(predict_source(model, source, cfg, "val", indices=val_idx, cache=cache, progress=False), cfg)
            row.update(val_mre=val["mre"], val_sdr_2=val.get("sdr_2"), val_unit=val["unit"])
            if val["mre"] < best:
                best = val["mre"]
                torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "epoch": epoch,
                            "num_landmarks": source.num_landmarks, "val_mre": best}, best_path)
        row["epoch_seconds"] = time.perf_counter() - t0
        history.append(row)
        if main:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                        "torch_rng": torch.get_rng_state(), "epoch": epoch, "best": best, "history": history,
                        "config": cfg.to_dict(), "num_landmarks": source.num_landmarks}, last_path)
            pd.DataFrame(history).to_csv(run_dir / "history.csv", index=False)
            if progress:
                val_txt = f", val MRE {row['val_mre']:.3f} {row['val_unit']}" if "val_mre" in row else ""
                tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4g}{val_txt} "
                           f"({row['epoch_seconds']:.1f} s)")
        epochs_done += 1

    if main:
        _final_evaluation(cfg, run_dir, source, val_idx, cache, device, progress)
    if world > 1:
        dist.destroy_process_group()
    return run_dir


def _final_evaluation(cfg: TrainConfig, run_dir: Path, source, val_idx, cache, device, progress: bool) -> None:
    """Load the checkpoint selected on validation and evaluate val + each test split once."""
    state = torch.load(run_dir / "checkpoints" / "best.pt", map_location=device, weights_only=False)
    model = FARNet(source.num_landmarks, backbone=cfg.backbone).to(device)
    model.load_state_dict(state["model"])
    frames = [predict_source(model, source, cfg, "val", indices=val_idx, cache=cache, progress=progress)]
    metrics = {"run": run_dir.name, "selected_epoch": state["epoch"] + 1, "selection": "lowest validation MRE",
               "val_count": len(val_idx), "train_count": len(source) - len(val_idx), "splits": {}, "skipped": {}}
    metrics["splits"]["val"] = split_metrics(frames[0], cfg)
    for split in cfg.splits_to_test:
        try:
            test_source = build_source(cfg, split)
        except DatasetError as err:
            metrics["skipped"][split] = str(err)
            continue
        frame = predict_source(model, test_source, cfg, split, progress=progress)
        frames.append(frame)
        metrics["splits"][split] = split_metrics(frame, cfg)
    pd.concat(frames).to_csv(run_dir / "predictions.csv", index=False)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
