"""ImageNet backbones as five-level feature pyramids (strides 2, 4, 8, 16, 32).

FARNet (Ao & Wu, "Feature Aggregation and Refinement Network for 2D Anatomical Landmark
Detection", J. Digit. Imaging 36, 2023) taps an ImageNet classifier at five strides and compares
several popular backbones. Each backbone here is torchvision's own model; the taps are taken with
``torchvision.models.feature_extraction.create_feature_extractor`` and the channel counts are read
from a forward pass, not written down per name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torchvision import models
from torchvision.models.feature_extraction import create_feature_extractor

__all__ = ["backbone_state_dict", "load_backbone_weights", "BACKBONES", "Backbone", "build_backbone", "load_imagenet_state_dict"]


def _densenet_nodes(_: nn.Module) -> list[str]:
    # F1 after conv0 (1/2), F2..F4 after dense blocks 1..3, F5 after norm5 (1/32), as in the
    # reference code.
    return ["features.conv0", "features.denseblock1", "features.denseblock2",
            "features.denseblock3", "features.norm5"]


def _resnet_nodes(_: nn.Module) -> list[str]:
    return ["relu", "layer1", "layer2", "layer3", "layer4"]


def _vgg_nodes(model: nn.Module) -> list[str]:
    # The output of each of the five max-pools is one stride level.
    pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    return [f"features.{i}" for i in pools]


def _efficientnet_nodes(model: nn.Module) -> list[str]:
    # Stages 1 (1/2), 2 (1/4), 3 (1/8), 5 (1/16) and the final 1x1 conv stage 8 (1/32).
    return ["features.1", "features.2", "features.3", "features.5", f"features.{len(model.features) - 1}"]


_FAMILIES: dict[str, Callable[[nn.Module], list[str]]] = {
    **{f"densenet{n}": _densenet_nodes for n in (121, 161, 169, 201)},
    **{f"resnet{n}": _resnet_nodes for n in (18, 34, 50, 101, 152)},
    **{f"vgg{n}_bn": _vgg_nodes for n in (11, 13, 16, 19)},
    **{f"efficientnet_b{n}": _efficientnet_nodes for n in range(8)},
}
BACKBONES: tuple[str, ...] = tuple(_FAMILIES)


@dataclass(frozen=True)
class Backbone:
    """A feature extractor returning ``[F1..F5]`` (strides 2..32) and their channel counts."""

    name: str
    body: nn.Module
    channels: tuple[int, int, int, int, int]


def load_imagenet_state_dict(name: str, allow_download: bool = True) -> dict[str, torch.Tensor]:
    """torchvision's default ImageNet weights for ``name``, from the torch cache if present.

    The file lives at ``$TORCH_HOME/hub/checkpoints/<file>`` (``torch.hub.get_dir()``). Without
    internet, place the file there by hand; the error message gives the exact path and URL.
    """
    weights = models.get_model_weights(name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    help_text = (f"ImageNet weights for {name!r} are not in the torch cache. Download {weights.url} "
                 f"on a machine with internet and place it at {cached}, or pass weights=<path to a "
                 f"state dict>.")
    if not allow_download:
        raise FileNotFoundError(help_text)
    try:
        return weights.get_state_dict(progress=True)
    except Exception as err:  # no network, proxy, partial file: say how to fix it
        raise RuntimeError(f"{help_text} (download failed: {err})") from err


def build_backbone(name: str, weights: str | os.PathLike | None = None,
                   allow_download: bool = True) -> Backbone:
    """Build ``name`` from torchvision and wrap it as a five-level feature extractor.

    ``weights``: ``None`` (random init), ``"imagenet"`` (torchvision's DEFAULT weights, via the
    torch cache) or a path to a state dict of the torchvision classification model.
    """
    if name not in _FAMILIES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    model = models.get_model(name, weights=None)
    if weights is not None:
        model.load_state_dict(backbone_state_dict(name, weights, allow_download))
    nodes = _FAMILIES[name](model)
    body = create_feature_extractor(model, return_nodes={n: f"f{i + 1}" for i, n in enumerate(nodes)})
    was_training = body.training
    body.eval()
    with torch.no_grad():
        feats = body(torch.zeros(1, 3, 64, 64))
    body.train(was_training)
    sizes = [f.shape[-1] for f in feats.values()]
    if sizes != [32, 16, 8, 4, 2]:
        raise RuntimeError(f"backbone {name} taps {nodes} give widths {sizes} for a 64 px input, "
                           "expected strides 2, 4, 8, 16, 32")
    channels = tuple(int(f.shape[1]) for f in feats.values())
    return Backbone(name=name, body=body, channels=channels)  # type: ignore[arg-type]


def backbone_state_dict(name: str, weights: str | os.PathLike, allow_download: bool = True) -> dict[str, torch.Tensor]:
    """The state dict of torchvision's classification model ``name`` that ``weights`` names:
    ``"imagenet"`` (:func:`load_imagenet_state_dict`) or the path of a state dict."""
    if str(weights) == "imagenet":
        state = load_imagenet_state_dict(name, allow_download=allow_download)
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights file not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
    return _fix_legacy_densenet_keys(state) if name.startswith("densenet") else state


def load_backbone_weights(body: nn.Module, name: str, weights: str | os.PathLike, allow_download: bool = True) -> None:
    """Load ``weights`` (:func:`backbone_state_dict`) into a built feature extractor of ``name``: its
    layers keep torchvision's names; the classifier and the layers after the last tap are not in it.
    A state dict that lacks any of the extractor's tensors is an error naming them."""
    missing, _ = body.load_state_dict(backbone_state_dict(name, weights, allow_download), strict=False)
    if missing:
        raise ValueError(f"backbone weights {weights} do not fit {name}: missing {', '.join(missing[:4])}"
                         f"{' ...' if len(missing) > 4 else ''}")


def _fix_legacy_densenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old DenseNet checkpoints name layers ``norm.1``; torchvision now uses ``norm1``."""
    import re

    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    out = {}
    for key, value in state.items():
        m = pattern.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out
