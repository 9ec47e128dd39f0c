"""Test-time augmentation: heatmaps of transformed inputs, mapped back to one frame and averaged.

Averaging heatmaps (not decoded coordinates) keeps one decoder for everything and lets a wrong
view be outvoted rather than averaged into a point between two peaks. Views:

- scales: the batch resized to ``s`` x the input size (sides multiples of 32), its heatmaps resized
  back (bilinear, pixel-centre convention as everywhere in farnetlib);
- shifts: the batch moved by (dx, dy) input pixels (zero = the mean intensity after ImageNet
  normalisation fills the border), its heatmaps moved back;
- flip: the horizontally mirrored batch, its heatmaps mirrored back and their landmarks permuted
  (``flip_permutation``: landmark k of the original is landmark perm[k] of the mirrored image).
  Only where the anatomy allows it: the spine's left and right corners swap; lateral cephalograms
  and left hands have no mirror twin.

Chosen on validation, never on test; test numbers with TTA are reported beside, never instead of,
the plain ones.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from .data.registry import get_dataset
from .engine.evaluation import load_checkpoint, predict_source, split_metrics
from .inference import fine_heatmaps
from .checkpoint import selected_checkpoint
from .data.io import read_json_record
from .engine.sources import build_source, validation_split

__all__ = ["TTA", "tta_heatmaps", "candidates", "tta_validation", "tta_evaluate"]


@dataclass(frozen=True)
class TTA:
    scales: tuple[float, ...] = (1.0,)
    shifts: tuple[tuple[int, int], ...] = ((0, 0),)
    flip_permutation: tuple[int, ...] | None = None

    @property
    def views(self) -> int:
        return len(self.scales) * len(self.shifts) * (2 if self.flip_permutation is not None else 1)

    def describe(self) -> str:
        flip = ", flip" if self.flip_permutation is not None else ""
        return f"scales {list(self.scales)}, shifts {[list(s) for s in self.shifts]}{flip} ({self.views} views)"


def _shift(t: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``t`` moved by (dx, dy) pixels, zeros coming in at the border."""
    if dx == 0 and dy == 0:
        return t
    out = torch.zeros_like(t)
    h, w = t.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = t[..., ys, xs]
    return out


def _resize(t: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)


def tta_heatmaps(forward: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, tta: TTA) -> torch.Tensor:
    """The mean of ``forward``'s fine heatmaps (B, K, H, W, float32) over the views of ``tta``."""
    h, w = batch.shape[-2:]
    total, views = None, 0
    for scale in tta.scales:
        size = (max(32, 32 * round(h * scale / 32)), max(32, 32 * round(w * scale / 32)))
        for dx, dy in tta.shifts:
            flips = (False, True) if tta.flip_permutation is not None else (False,)
            for flip in flips:
                x = _shift(_resize(batch, size), round(dx * size[1] / w), round(dy * size[0] / h))
                x = torch.flip(x, dims=[-1]) if flip else x
                hm = forward(x).float()
                if flip:
                    hm = torch.flip(hm, dims=[-1])[:, list(tta.flip_permutation)]
                hm = _resize(_shift(hm, -round(dx * size[1] / w), -round(dy * size[0] / h)), (h, w))
                total = hm if total is None else total + hm
                views += 1
    return total / views


def candidates(flip_permutation: Sequence[int] | None = None, shift: int = 4) -> dict[str, TTA]:
    """The TTA settings compared on validation: none, three scales, five shifts of ``shift`` input
    pixels, both, and (where the anatomy allows) the mirror."""
    shifts = ((0, 0), (shift, 0), (-shift, 0), (0, shift), (0, -shift))
    out = {"none": TTA(), "scales": TTA(scales=(0.875, 1.0, 1.125)), "shifts": TTA(shifts=shifts),
           "scales+shifts": TTA(scales=(0.875, 1.0, 1.125), shifts=shifts)}
    if flip_permutation is not None:
        out["flip"] = TTA(flip_permutation=tuple(flip_permutation))
        out["scales+flip"] = TTA(scales=(0.875, 1.0, 1.125), flip_permutation=tuple(flip_permutation))
    return out


def _forward(model):
    return lambda x: fine_heatmaps(model, x).cpu()


def tta_evaluate(run_dir, split: str, tta: TTA, root=None):
    """(predictions, metrics) of a run's selected model on ``split`` (``"val"``: its validation
    images) with ``tta``: the engine's prediction and metrics, the heatmaps averaged over the views."""
    model, cfg, _ = load_checkpoint(selected_checkpoint(Path(run_dir)), "cpu")
    if root is not None:
        cfg = replace(cfg, root=str(root))
    if split == "val":
        source = build_source(cfg, get_dataset(cfg.dataset).train_split)
        indices = validation_split(source, cfg)[1]
    else:
        source, indices = build_source(cfg, split), None
    if cfg.targets == "spine_corners" and tta.flip_permutation is not None:  # the corner types mirror, not the landmarks
        tta = replace(tta, flip_permutation=tuple(p % 4 for p in tta.flip_permutation[:4]))
    forward = _forward(model)
    preds = predict_source(model, source, cfg, split, indices=indices, progress=False,
                           heatmaps=lambda x: tta_heatmaps(forward, x, tta))
    return preds, split_metrics(preds, cfg, source)


def tta_validation(run_dir, settings: dict[str, TTA] | None = None, root=None):
    """One row per TTA setting: validation MRE, SD, SDRs, views and seconds (choose here, never on test)."""
    if settings is None:
        dataset = read_json_record(Path(run_dir) / "config.json")["dataset"]
        settings = candidates(get_dataset(dataset).flip_permutation)
    rows = []
    for name, tta in settings.items():
        t0 = time.perf_counter()
        _, m = tta_evaluate(run_dir, "val", tta, root)
        rows.append({"tta": name, "views": tta.views, "setting": tta.describe(), "val_mre": m["mre"], "val_sd": m["sd"],
                     **{f"val_{k}": v for k, v in m.items() if k.startswith("sdr_")}, "unit": m["unit"],
                     "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows).set_index("tta")
