"""farnetlib: an open, reproducible implementation of FARNet (Ao & Wu, J. Digit. Imaging 2023).

The public names below load on first use (PEP 562), so that ``farnet --help`` and light tools do not
import torch."""
from __future__ import annotations

import importlib

__version__ = "0.3.0"

# public name -> the module that defines it
_MODULES = {
    "BACKBONES": "backbones", "build_backbone": "backbones",
    "FARNet": "model", "FARNetOutput": "model", "farnet": "model",
    "EWCLoss": "losses", "build_loss": "losses", "CoarseToFineLoss": "losses",
    "GaussianHeatmapEncoder": "heatmaps", "HeatmapCodec": "heatmaps", "build_decoder": "heatmaps",
    "rescale_points": "heatmaps",
    "ArgmaxDecoder": "decoders", "QuadraticDecoder": "decoders", "DarkDecoder": "decoders",
    "Predictor": "inference",
}
__all__ = list(_MODULES)


def __getattr__(name: str):
    if name not in _MODULES:
        raise AttributeError(f"module 'farnetlib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULES[name]}", __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
