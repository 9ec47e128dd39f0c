"""Checkpoints and the models they hold: find a run's selected checkpoint, read it, build the FARNet
its config describes and load the weights. Below both the engine (training, evaluation) and
:mod:`farnetlib.inference` (exports, backends, the Predictor), which read checkpoints the same way."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from .config import TrainConfig
from .data.io import RunRecordError
from .model import FARNet, farnet
from .precision import resolve_device, to_layout

__all__ = ["selected_checkpoint", "read_checkpoint", "load_checkpoint", "load_model", "build_model"]


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint (on the CPU); a truncated or damaged file raises :class:`RunRecordError` naming it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, ImportError,
            pickle.UnpicklingError) as err:
        raise RunRecordError(f"checkpoint {path} is damaged ({str(err).splitlines()[0][:200]}); restore it, or remove "
                             "it (and, for last.pt, resume from scratch with --no-resume)") from None
    if not isinstance(state, dict):
        raise RunRecordError(f"checkpoint {path} holds {type(state).__name__}, not a farnet checkpoint")
    return state


def selected_checkpoint(run_or_checkpoint: str | Path) -> Path:
    """The selected model of a run folder (``checkpoints/best.pt``), or a checkpoint file given
    directly; a missing one says that weights are not in git and how to get them back."""
    path = Path(run_or_checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"no run folder or checkpoint at {path}")
    ckpt = path / "checkpoints" / "best.pt" if path.is_dir() else path
    if not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint at {ckpt}: a run's weights are not in git; train the run again "
                                "(the same farnet train command) or pass the path of a best.pt")
    return ckpt


def load_model(checkpoint: str | Path, device: str = "auto") -> tuple[FARNet, TrainConfig]:
    """A FARNet and its config from a checkpoint written by :func:`farnetlib.engine.train`."""
    model, cfg, _ = load_checkpoint(checkpoint, device)
    return model, cfg


def load_checkpoint(checkpoint: str | Path, device: str = "auto",
                    channels_last: bool | None = None) -> tuple[FARNet, TrainConfig, dict]:
    """:func:`load_model`, plus the checkpoint's other entries (selected epoch, validation MRE);
    ``channels_last``: the model's memory layout (None: the checkpoint config's ``eval_channels_last``)."""
    ckpt = read_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = build_model(cfg, ckpt["num_landmarks"])
    model.load_state_dict(ckpt.pop("model"))
    layout = cfg.eval_channels_last if channels_last is None else channels_last
    return to_layout(model.to(resolve_device(device)), layout).eval(), cfg, ckpt


def build_model(cfg: TrainConfig, num_landmarks: int, weights: str | None = None) -> FARNet:
    """The FARNet a config describes for ``num_landmarks`` landmarks (its heatmaps: one per landmark,
    or as ``targets`` says; ``weights`` only for the backbone's initialisation)."""
    return farnet(cfg.heatmap_channels(num_landmarks), backbone=cfg.backbone, weights=weights, fine_head_width=cfg.fine_head_width,
                  head_scale=cfg.head_scale)
