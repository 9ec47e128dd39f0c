"""Numeric precision and memory layout: one place that says what runs in which dtype.

``precision`` is ``"fp32"``, ``"bf16"`` (autocast to bfloat16; no loss scaling needed) or
``"fp16"`` (autocast to float16 with a ``GradScaler``). For training, ``"auto"`` resolves to ``bf16``
on a CUDA device that supports it (``fp16`` on older GPUs); on a CPU the engine measures (see
:mod:`farnetlib.engine.autotune`): bf16 pays only where the CPU has native bf16 instructions
(``avx512_bf16``/``amx_bf16``) and is many times slower elsewhere (``results/benchmarks/``);
:func:`resolve_precision` alone, without a measurement, gives ``fp32`` on a CPU.
Losses and decoding always run in float32 on the model's float32-cast outputs.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

__all__ = ["PRECISIONS", "resolve_device", "resolve_precision", "autocast", "make_scaler", "to_layout", "is_channels_last",
           "cpu_flags", "cpu_has_native_bf16", "allocator"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``"auto"``: the GPU where CUDA is available, else the CPU; a named CUDA device without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """The concrete precision (``fp32``/``bf16``/``fp16``) for ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """The autocast context of a resolved ``precision`` (a no-op context for ``fp32``)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for ``fp16`` (bf16 has float32's exponent range)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def to_layout(x: torch.Tensor | torch.nn.Module, channels_last: bool):
    """A tensor (4-D) or module in ``torch.channels_last`` memory format, or unchanged."""
    return x.to(memory_format=torch.channels_last) if channels_last else x


def is_channels_last(model: torch.nn.Module) -> bool:
    """Whether the model's 4-D weights are in channels_last (its inputs should follow)."""
    for p in model.parameters():
        if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


def cpu_flags() -> list[str]:
    """The CPU's vector-instruction flags that decide the fastest options (avx*, amx*, fma, f16c),
    from ``/proc/cpuinfo`` (empty where it cannot be read). Recorded with every speed figure."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))


def allocator() -> str:
    """The memory allocator of this process: a preloaded library (jemalloc, tcmalloc) or glibc's
    malloc, with its tunables. Recorded with speed figures: on a CPU it changes a training step's
    time measurably (freed and re-allocated activation tensors fault their pages in again)."""
    preload = " ".join(Path(p).name for p in os.environ.get("LD_PRELOAD", "").replace(":", " ").split())
    parts = [preload or "glibc malloc"]
    parts += [f"{name}={os.environ[name]}" for name in ("GLIBC_TUNABLES", "MALLOC_CONF") if os.environ.get(name)]
    return "; ".join(parts)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))
