"""Training and evaluation engine: the train loop, evaluation, run folders, folds and studies.

The names below load on first use (PEP 562): ``farnet --help`` does not import torch."""
from __future__ import annotations

import importlib

# public name -> the module that defines it (TrainConfig and ConfigError live in farnetlib.config)
_MODULES = {
    "TrainConfig": "..config", "ConfigError": "..config", "train": ".training",
    "evaluate": ".evaluation", "predict": ".evaluation", "predict_source": ".evaluation",
    "load_model": "..checkpoint", "load_run": ".runs", "list_runs": ".runs", "train_folds": ".folds",
    "load_study": ".study", "train_study": ".study",
}
__all__ = list(_MODULES)


def __getattr__(name: str):
    if name not in _MODULES:
        raise AttributeError(f"module 'farnetlib.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
