"""The training data of a run: source, validation carve-out, image cache, and one DataLoader.

The loader is built once per run: with ``num_workers > 0`` its workers persist across epochs and
share the memory image cache filled before they start (images are decoded once per run); the
epoch reaches their augmentation through the dataset's shared-memory epoch counter, and the
sampler reshuffles per epoch with a generator seeded by ``(seed, epoch)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..progress import log
from ..data import (AUGMENT_LEVELS, DatasetError, ImageCache, LandmarkDataset, LandmarkSource, check_no_leakage,
                    image_counts)
from ..data.io import SplitAbsent
from ..data.registry import get_dataset
from ..config import TrainConfig
from .distributed import Process
from .sources import build_source, validation_split

__all__ = ["TrainData", "build_train_data", "EpochShuffleSampler", "open_test_splits", "check_counts"]


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation each epoch, fixed by ``(seed, epoch)`` (same order as a reseeded
    ``RandomSampler``), so a resumed run sees the data in the order an uninterrupted one did."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())


@dataclass
class TrainData:
    """The run's training data; ``loader(size)`` is the loader at one training input size (the
    config's ``input_size``, and a smaller one for the progressive epochs), built once each."""

    source: LandmarkSource
    train_idx: list[int]
    val_idx: list[int]
    cache: ImageCache
    make_loader: Callable[[tuple[int, int]], tuple[LandmarkDataset, Sampler, DataLoader]]
    test_sources: dict[str, LandmarkSource | str] = field(default_factory=dict)  # split -> source, or why absent
    image_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> found / expected images
    known_duplicates: list[str] = field(default_factory=list)  # the release's own cross-split copies
    loaders: dict = field(default_factory=dict)

    def loader(self, size: tuple[int, int]) -> DataLoader:
        size = (int(size[0]), int(size[1]))
        if size not in self.loaders:
            self.loaders[size] = self.make_loader(size)
        return self.loaders[size][2]

    def set_epoch(self, epoch: int) -> None:
        for dataset, sampler, _ in self.loaders.values():
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch)


def build_train_data(cfg: TrainConfig, proc: Process, progress: bool = True) -> TrainData:
    train_split = get_dataset(cfg.dataset).train_split
    source = build_source(cfg, train_split)
    train_idx, val_idx = validation_split(source, cfg)
    cache = ImageCache(disk_dir=cfg.cache_dir)
    augment = AUGMENT_LEVELS[cfg.augment_level] if cfg.augment else None

    def make_loader(size: tuple[int, int]) -> tuple[LandmarkDataset, Sampler, DataLoader]:
        dataset = LandmarkDataset(source, size, augment=augment, cache=cache, indices=train_idx,
                                  intensity_range=cfg.intensity_range, seed=cfg.seed,
                                  contrast=cfg.contrast)
        dataset.prefill_cache(progress=progress and proc.main)
        if proc.world > 1:
            sampler = DistributedSampler(dataset, num_replicas=proc.world, rank=proc.rank, shuffle=True,
                                         seed=cfg.seed)
        else:
            sampler = EpochShuffleSampler(len(dataset), cfg.seed)
        workers = cfg.num_workers > 0
        loader = DataLoader(dataset, cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                            persistent_workers=workers, pin_memory=proc.device.type == "cuda",
                            prefetch_factor=4 if workers else None)
        return dataset, sampler, loader

    test_sources = open_test_splits(cfg)
    present = {sp: s for sp, s in test_sources.items() if not isinstance(s, str)}
    counts = image_counts({train_split: source, **present})
    check_counts(cfg, counts, progress and proc.main)
    duplicates = check_no_leakage({train_split: source, **present})
    if duplicates and progress and proc.main:
        log.info(f"note: {len(duplicates)} image(s) of the official {cfg.dataset} release appear in two splits "
                 f"({'; '.join(duplicates)}); kept, as in every published result, and recorded in metrics.json")
    data = TrainData(source, train_idx, val_idx, cache, make_loader, test_sources, counts, duplicates)
    # every image is decoded before the first epoch: a damaged file fails now, not after hours of training
    data.loader(cfg.stage(0)[0])
    LandmarkDataset(source, cfg.input_size, cache=cache, indices=val_idx).prefill_cache(progress and proc.main)
    for test_source in present.values():
        LandmarkDataset(test_source, cfg.input_size, cache=cache).prefill_cache(progress and proc.main)
    return data


def open_test_splits(cfg: TrainConfig) -> dict[str, LandmarkSource | str]:
    """Each test split of the config: its source, or the reason it is absent (ISBI Test2 is not in
    every copy; it is then evaluated later from the official layout with ``farnet evaluate --root``).
    A split that is there but damaged (a bad annotation line, a label file of the wrong shape) is an
    error now, before any training; so is a split the config names in ``test_splits`` that is absent."""
    out: dict[str, LandmarkSource | str] = {}
    for split in cfg.splits_to_test:
        try:
            out[split] = build_source(cfg, split)
        except SplitAbsent as err:
            if cfg.test_splits is not None:
                raise DatasetError(f"test split {split!r} named in test_splits cannot be opened: {err}") from None
            out[split] = str(err)
        except DatasetError as err:
            raise DatasetError(f"test split {split!r} is damaged: {err}") from None
    return out


def check_counts(cfg: TrainConfig, counts: dict[str, dict[str, int]], say: bool) -> None:
    """A partial copy of the dataset (fewer images than its official count) is said at start, or
    refused with ``partial: "raise"``; the counts go into ``metrics.json`` either way."""
    short = {sp: c for sp, c in counts.items() if c["found"] < c["expected"]}
    if not short:
        return
    text = ", ".join(f"{sp} {c['found']} of {c['expected']}" for sp, c in short.items())
    if cfg.partial == "raise":
        raise DatasetError(f"{cfg.dataset} at {cfg.root}: partial copy ({text} images); set partial='warn' to "
                           "train on it anyway")
    if say:
        log.warning(f"{cfg.dataset} at {cfg.root} is a partial copy ({text} images); results are not "
                    "comparable with the full dataset's (partial='raise' makes this an error)")
