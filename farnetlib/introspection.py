"""Looking inside FARNet for teaching: per-stage feature shapes, strides and parameter counts,
and simple measures of a heatmap (peak sharpness).

``stage_table(model, input_size)`` runs one forward pass with forward hooks on every named stage of
:class:`farnetlib.model.FARNet` and returns one row per stage: which part of the network it belongs
to (backbone, MSFA top-down / bottom-up / second top-down, heads, feature refinement), its output
shape, channels, stride relative to the input and parameter count.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .model import FARNet

__all__ = ["STAGES", "stage_table", "stage_parameters", "peak_area"]

# module name in FARNet -> (part of the network, what it does)
STAGES: dict[str, tuple[str, str]] = {
    "f0": ("FR input", "F0: 1x1 conv on the image, full resolution"),
    "t5": ("MSFA top-down", "T5 from F5 (3x3 + 1x1)"),
    "t4": ("MSFA top-down", "T4 = up(T5) ⊕ F4"),
    "t3": ("MSFA top-down", "T3 = up(T4) ⊕ F3"),
    "m2": ("MSFA top-down", "M2 = up(T3) ⊕ F2"),
    "down3": ("MSFA bottom-up", "stride-2 conv of M2"),
    "b3": ("MSFA bottom-up", "B3 = down(M2) ⊕ T3"),
    "down4": ("MSFA bottom-up", "stride-2 conv of B3"),
    "b4": ("MSFA bottom-up", "B4 = down(B3) ⊕ T4"),
    "down5": ("MSFA bottom-up", "stride-2 conv of B4"),
    "b5": ("MSFA bottom-up", "B5 = down(B4) ⊕ T5"),
    "u5": ("MSFA top-down 2", "1x1 conv of B5"),
    "u4": ("MSFA top-down 2", "up ⊕ B4"),
    "u3": ("MSFA top-down 2", "up ⊕ B3"),
    "u2": ("MSFA top-down 2", "up ⊕ M2"),
    "d1": ("MSFA top-down 2", "D1 = up ⊕ F1 (1/2 resolution)"),
    "coarse_head": ("coarse head", "heatmaps at 1/2 resolution"),
    "fine_head": ("FR module", "up(D1) ⊕ up(coarse) ⊕ F0 → fine heatmaps"),
}


def stage_parameters(model: FARNet) -> pd.DataFrame:
    """Parameters per part of the network (backbone, each MSFA pass, heads, FR)."""
    rows = [{"part": "backbone", "parameters": sum(p.numel() for p in model.backbone.parameters())}]
    for name, (part, _) in STAGES.items():
        rows.append({"part": part, "parameters": sum(p.numel() for p in getattr(model, name).parameters())})
    table = pd.DataFrame(rows).groupby("part", sort=False, as_index=False)["parameters"].sum()
    table["share_%"] = 100.0 * table["parameters"] / table["parameters"].sum()
    return table


@torch.no_grad()
def stage_table(model: FARNet, input_size: tuple[int, int] = (256, 224)) -> pd.DataFrame:
    """One forward pass of a zero image of ``input_size`` (H, W); a row per stage, in data-flow order."""
    h, w = input_size
    rows: list[dict] = []
    hooks = []

    def record(name: str, part: str, what: str, module: torch.nn.Module):
        def hook(_module, _inputs, output):
            outputs = output.items() if isinstance(output, dict) else [(name, output)]
            for key, out in outputs:
                label = key if isinstance(output, dict) else name
                rows.append({"stage": label, "part": part, "what": what if not isinstance(output, dict)
                             else f"backbone tap {label}", "shape": tuple(out.shape[1:]),
                             "channels": out.shape[1], "stride": h / out.shape[-2],
                             "parameters": sum(p.numel() for p in module.parameters()) if not isinstance(output, dict) else None})
        return hook

    hooks.append(model.backbone.register_forward_hook(record("backbone", "backbone", "", model.backbone)))
    for name, (part, what) in STAGES.items():
        module = getattr(model, name)
        hooks.append(module.register_forward_hook(record(name, part, what, module)))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, 3, h, w, device=device))
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    table = pd.DataFrame(rows)
    taps = table["part"] == "backbone"
    table.loc[taps, "stage"] = [f"F{i + 1}" for i in range(int(taps.sum()))]
    return table


def peak_area(heatmap: np.ndarray | torch.Tensor, fraction: float = 0.5) -> float:
    """Pixels at or above ``fraction`` of the heatmap's maximum: the blob's size (smaller = sharper)."""
    arr = heatmap.detach().cpu().numpy() if isinstance(heatmap, torch.Tensor) else np.asarray(heatmap)
    peak = float(arr.max())
    if not np.isfinite(peak) or peak <= 0:
        return float("nan")
    return float((arr >= fraction * peak).sum())
