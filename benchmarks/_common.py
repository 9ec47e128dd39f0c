"""Shared helpers for the benchmark scripts: machine facts and robust timing."""
from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from farnetlib.precision import allocator, cpu_flags

RESULTS = Path(__file__).resolve().parents[1] / "results" / "benchmarks"


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (the platform's processor string elsewhere)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor() or platform.machine())


def machine() -> dict:
    """Where a figure was measured: speeds compare only as ratios within one run on one machine,
    and the CPU flags (bf16, AMX, AVX-512) decide which execution options pay."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(), "cpu_flags": " ".join(cpu_flags()), "allocator": allocator(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def time_fn(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, sync: bool = False) -> dict:
    """Median, min and max wall seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def rss_during(fn: Callable[[], object], interval_s: float = 0.002) -> dict:
    """Resident memory (MiB) just before ``fn`` and its peak while ``fn`` runs, sampled from
    ``/proc/self/statm`` by a thread (native kernels release the GIL). Untimed: run it apart from
    the speed rounds. ``peak - before`` is what the call itself needs (activations, workspaces)."""
    page_mib = os.sysconf("SC_PAGE_SIZE") / 2**20

    def rss() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * page_mib

    before, peak, done = rss(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], rss())
    return {"rss_before_mib": before, "rss_peak_mib": peak[0], "call_mib": peak[0] - before}


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path
