"""Caches of decoded, resized images so an epoch does not re-decode 1935 x 2400 JPEGs.

``ImageCache(disk_dir=None)`` keeps arrays in memory keyed by the source's ``cache_key`` and the
target size. With ``disk_dir`` it also stores ``<sha256 of the file>_<H>x<W>.npy`` files, so a new
process (or a DataLoader worker) reuses them; the key is the file's content hash, so a changed
file is never served stale. Where ``disk_dir`` is None the environment variable
``FARNET_CACHE_DIR`` (when set) names the folder: one setting that reaches every process of a
session, papermill kernels and ``farnet`` subprocesses included (the test suite sets it to one
temporary folder, so its workers decode each real image once). The cache never changes a pixel:
what it serves is what ``resize_image(read_image(i), size)`` returns.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .io import sha256_file
from .transforms import resize_image

__all__ = ["CACHE_DIR_ENV", "ImageCache"]


CACHE_DIR_ENV = "FARNET_CACHE_DIR"


class ImageCache:
    def __init__(self, disk_dir: str | Path | None = None, memory: bool = True) -> None:
        disk_dir = disk_dir if disk_dir is not None else os.environ.get(CACHE_DIR_ENV) or None
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        self.memory = memory
        self._mem: dict[tuple[str, tuple[int, int]], np.ndarray] = {}
        self._hashes: dict[str, str] = {}
        self.hits = self.misses = 0

    def get(self, source, i: int, size: tuple[int, int]) -> np.ndarray:
        """Image ``i`` of ``source`` resized to ``size`` (H, W), as uint8."""
        size = (int(size[0]), int(size[1]))
        key = (source.cache_key(i), size)
        if self.memory and key in self._mem:
            self.hits += 1
            return self._mem[key]
        disk_path = self._disk_path(source, i, key[0], size)
        if disk_path is not None and disk_path.is_file():
            arr = np.load(disk_path)
            self.hits += 1
        else:
            self.misses += 1
            arr = resize_image(source.read_image(i), size)
            if disk_path is not None:
                _save_atomic(disk_path, arr)
        if self.memory:
            self._mem[key] = arr
        return arr

    def _disk_path(self, source, i: int, key: str, size: tuple[int, int]) -> Path | None:
        if self.disk_dir is None:
            return None
        path = source.image_paths[i]
        if not path.is_file():  # in-memory sources (synthetic) have no file to hash
            return None
        if key not in self._hashes:
            self._hashes[key] = sha256_file(path)
        return self.disk_dir / f"{self._hashes[key]}_{size[0]}x{size[1]}.npy"


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    """``np.save`` through a uniquely named temporary file (``tempfile``, not the seeded global RNG:
    torchrun ranks seed alike and once collided on one name) renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.npy", dir=path.parent)
    os.close(fd)
    try:
        np.save(tmp, arr)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
