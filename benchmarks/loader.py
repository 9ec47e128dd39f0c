"""Data loading and target generation throughput on the real ISBI 2015 training set.

    python benchmarks/loader.py --root ../shared/data/isbi2015 [--size 800 640]

Measures samples/s of ``LandmarkDataset`` (decode + resize + normalise) without a cache, with a
warm in-memory cache and with a warm on-disk .npy cache (new process view); and the cost of heatmap
targets: the reference code's per-sample numpy Gaussians vs our batched, separable encoder.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import time_fn, write  # noqa: E402

from farnetlib.data import ISBI2015, ImageCache, LandmarkDataset  # noqa: E402
from farnetlib.heatmaps import GaussianHeatmapEncoder  # noqa: E402


def epoch_rate(ds: LandmarkDataset, n: int) -> float:
    t0 = time.perf_counter()
    for j in range(n):
        ds[j]
    return n / (time.perf_counter() - t0)


def reference_numpy_targets(landmarks: np.ndarray, h: int, w: int, sigma: float) -> np.ndarray:
    """What the reference code does per sample: one full-resolution numpy Gaussian per landmark."""
    out = np.zeros((len(landmarks), h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for k, (x, y) in enumerate(landmarks):
        out[k] = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default="../shared/data/isbi2015")
    ap.add_argument("--size", type=int, nargs=2, default=(800, 640), metavar=("H", "W"))
    ap.add_argument("--n", type=int, default=150)
    args = ap.parse_args()
    size = tuple(args.size)
    src = ISBI2015(args.root, "train")
    n = min(args.n, len(src))
    res: dict = {"dataset": "isbi2015 train (JPEG copy)", "input_hw": list(size), "samples": n}
    res["no_cache_samples_per_s"] = epoch_rate(LandmarkDataset(src, size, cache=ImageCache(memory=False)), n)
    mem = LandmarkDataset(src, size, cache=ImageCache())
    res["memory_cache_cold_samples_per_s"] = epoch_rate(mem, n)
    res["memory_cache_warm_samples_per_s"] = epoch_rate(mem, n)
    with tempfile.TemporaryDirectory() as d:
        epoch_rate(LandmarkDataset(src, size, cache=ImageCache(disk_dir=d, memory=False)), n)
        res["disk_cache_warm_samples_per_s"] = epoch_rate(
            LandmarkDataset(src, size, cache=ImageCache(disk_dir=d, memory=False)), n)
    h, w = size
    pts = mem[0]["landmarks"].numpy()
    res["targets_reference_numpy_per_sample"] = time_fn(lambda: reference_numpy_targets(pts, h, w, 10.0), repeats=5)
    enc = GaussianHeatmapEncoder(10.0)
    batch = torch.as_tensor(pts)[None]
    res["targets_ours_per_sample"] = time_fn(lambda: (enc.encode(batch, (h, w)), enc.encode(batch / 2, (h // 2, w // 2))),
                                             repeats=5)
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()})
    write(f"loader_isbi2015_{h}x{w}", res)


if __name__ == "__main__":
    main()
