"""Execution options of a training run: precision and memory layout, measured where "auto".

The fastest options differ between CPUs: on one with native bf16 (AVX-512 BF16 / AMX) bf16
autocast and channels_last pay, on an AVX2-only one bf16 is emulated and many times slower and
channels_last loses (``results/benchmarks/cpu_speedup_*.json``). With ``precision: "auto"`` or
``channels_last: "auto"`` on a CPU, :func:`choose_execution` times a few training steps of a copy
of the run's model at its batch and input size for each candidate, as ``cudnn.benchmark`` does,
and keeps the fastest; bf16 is a candidate only where the CPU computes it natively. The choice is
written to the run folder (``execution.json``) with the timings and the CPU flags, and a resumed
run on a CPU with the same flags reuses it (a re-measurement could pick differently by noise and
change what the rest of the run computes); so do the later folds of a cross-validation, from the
fold before (one choice for every fold, measured once: ``reuse_from``). On CUDA, "auto" means bf16 (fp16 on GPUs without bf16)
and channels_last, without measuring.
"""
from __future__ import annotations

import copy
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..config import TrainConfig
from ..precision import autocast, cpu_flags, cpu_has_native_bf16, resolve_precision, to_layout
from ..data.io import write_atomic

__all__ = ["Execution", "choose_execution", "candidates", "save_execution"]

_FILE = "execution.json"


@dataclass
class Execution:
    precision: str  # resolved: fp32 | bf16 | fp16
    channels_last: bool
    how: str  # "configured", "measured", "reused" (this run's execution.json), "reused from <run>", "cuda default"
    cpu_flags: list[str] = field(default_factory=cpu_flags)
    step_seconds: dict[str, float] = field(default_factory=dict)  # "<precision>/<layout>": median step s


def candidates(cfg: TrainConfig, device: torch.device) -> list[tuple[str, bool]]:
    """The (precision, channels_last) pairs to measure on a CPU, the configured values kept fixed."""
    precisions = (["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]) if cfg.precision == "auto" \
        else [resolve_precision(cfg.precision, device)]
    layouts = [False, True] if cfg.channels_last == "auto" else [bool(cfg.channels_last)]
    return [(p, c) for p in precisions for c in layouts]


def choose_execution(cfg: TrainConfig, model: torch.nn.Module, device: torch.device,
                     run_dir: Path | None = None, steps: int = 2, reuse_from: Path | None = None) -> Execution:
    """The precision and layout to train with (see the module docstring); ``model`` is not changed.
    ``reuse_from``: the folder of an earlier run with the same model, batch and input size (the
    previous fold) whose measured choice this run takes when it has none of its own."""
    auto = cfg.precision == "auto" or cfg.channels_last == "auto"
    if not auto:
        return Execution(resolve_precision(cfg.precision, device), bool(cfg.channels_last), "configured")
    if device.type == "cuda":
        return Execution(resolve_precision("auto", device),
                         True if cfg.channels_last == "auto" else bool(cfg.channels_last), "cuda default")
    for folder, how in ((run_dir, "reused"), (reuse_from, f"reused from {Path(reuse_from or '').name}")):
        saved = _load(folder)
        if saved is not None and saved.cpu_flags == cpu_flags() and saved.how != "configured":
            saved.how = how
            return saved
    options = candidates(cfg, device)
    if len(options) == 1:
        return Execution(options[0][0], options[0][1], "configured")
    times = {option: _time_steps(model, cfg, device, *option, steps) for option in options}
    best = min(times, key=times.get)
    return Execution(*best, "measured",
                     step_seconds={f"{p}/{'channels_last' if c else 'nchw'}": t for (p, c), t in times.items()})


def save_execution(execution: Execution, run_dir: Path) -> None:
    write_atomic(run_dir / _FILE, json.dumps(asdict(execution), indent=2))


def _load(run_dir: Path | None) -> Execution | None:
    path = run_dir / _FILE if run_dir is not None else None
    if path is None or not path.is_file():
        return None
    return Execution(**json.loads(path.read_text()))


def _time_steps(model: torch.nn.Module, cfg: TrainConfig, device: torch.device, precision: str,
                channels_last: bool, steps: int) -> float:
    """Median seconds of a forward/backward/update on a copy of ``model`` (after one warm-up step)."""
    net = to_layout(copy.deepcopy(model).to(device).train(), channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    gen = torch.Generator().manual_seed(0)
    x = to_layout(torch.randn(cfg.batch_size, 3, *cfg.input_size, generator=gen).to(device), channels_last)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        with autocast(device, precision):
            out = net(x)
        loss = out.coarse.float().mean() + out.fine.float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)
