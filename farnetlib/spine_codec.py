"""Vertebra identity by order: decoding spine heatmaps so that the vertebrae come out top to bottom.

FARNet predicts one heatmap per corner per vertebra (68 channels on the AASCE set). Seventeen
vertebrae look alike, and the network miscounts: a channel fires on the vertebra above or below its
own, two channels land on one vertebra, and every Cobb angle built on them bends. Methods that detect
vertebrae without identity and order them top to bottom (Yi et al., "Vertebra-focused landmark
detection for scoliosis assessment", MICCAI 2020) avoid this by construction. This decoder brings
that order to the existing 68-channel heatmaps, with no retraining (``decoder: "spine_ordered"``;
``"spine_peaks"`` for ``mode="peaks"``):

1. per corner type (top-left, top-right, bottom-left, bottom-right), the 17 channels are merged
   (their pixel-wise maximum) and the merged map's local maxima (``window`` x ``window``) are the
   candidate corners, at most ``candidates`` of the strongest;
2. candidates are sorted top to bottom (image y; a spine's vertebrae follow y, however curved the
   spine, unless it folds back on itself);
3. ``mode="assign"`` (default): each vertebra's channel gets one candidate, in strictly increasing
   order down the spine, maximising the sum of each channel's own heatmap value at its candidate
   (dynamic programming, O(17 x candidates)); a channel may stay without a candidate (then it keeps
   its own maximum), which is how a vertebra that is not in the image (a missing top vertebra) or
   not found is handled. ``mode="peaks"``: the 17 strongest candidates, sorted, assigned in order
   (identity from order alone; fewer than 17 candidates: every channel keeps its own maximum);
4. each corner is refined to sub-pixel on the merged map (:class:`farnetlib.heatmaps.QuadraticDecoder`
   on the 3 x 3 neighbourhood) and its peak value is its own channel's value there.

Identity-free targets (issue 38, option 2; config ``targets: "spine_corners"``): instead of one
heatmap per corner per vertebra, FARNet is trained on one heatmap per corner *type* (4 channels, each
with a Gaussian at that corner of every vertebra: :func:`corner_type_targets`), so it never has to
count vertebrae from local evidence. :class:`CornerTypeDecoder` (``decoder: "spine_corners"``) turns
them back into the 68 landmarks: per channel the ``vertebrae`` strongest local maxima, sorted top to
bottom, assigned in order.

The landmark order is the AASCE one (:mod:`farnetlib.spine`): vertebra-major, 4 corners each.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .decoders import QuadraticDecoder

__all__ = ["OrderedSpineDecoder", "CornerTypeDecoder", "ordered_assignment", "corner_type_targets",
           "corner_type_present", "local_maxima", "MODES"]

MODES = ("assign", "peaks")


def ordered_assignment(scores: np.ndarray) -> np.ndarray:
    """For ``(V, m)`` scores of V ordered slots against m ordered candidates: the candidate of each
    slot (-1: none), strictly increasing over the slots that have one, maximising the summed score
    of the assigned pairs (an unassigned slot scores 0; negative scores are never taken)."""
    v_count, m = scores.shape
    # f[v, j]: best total of slots 0..v with candidates among 0..j-1 used (j = 0..m)
    f = np.zeros((v_count + 1, m + 1))
    take = np.zeros((v_count + 1, m + 1), dtype=bool)
    for v in range(1, v_count + 1):
        for j in range(1, m + 1):
            skip_slot, skip_candidate = f[v - 1, j], f[v, j - 1]
            pair = f[v - 1, j - 1] + scores[v - 1, j - 1]
            best = max(skip_slot, skip_candidate)
            if scores[v - 1, j - 1] > 0 and pair > best:
                f[v, j], take[v, j] = pair, True
            else:
                f[v, j] = best
    out = np.full(v_count, -1)
    v, j = v_count, m
    while v > 0 and j > 0:
        if take[v, j]:
            out[v - 1] = j - 1
            v, j = v - 1, j - 1
        elif f[v, j] == f[v - 1, j]:
            v -= 1
        else:
            j -= 1
    return out


def local_maxima(heatmap: torch.Tensor, window: int = 5, min_peak: float = 0.02, limit: int | None = None) -> np.ndarray:
    """``(m, 2)`` integer (y, x) of the ``(H, W)`` map's local maxima over ``window`` x ``window``
    that reach ``min_peak`` x its maximum, the strongest first (at most ``limit``)."""
    pooled = F.max_pool2d(heatmap[None, None], window, stride=1, padding=window // 2)[0, 0]
    top = heatmap.max()
    keep = heatmap == pooled
    if top > 0:  # an untrained network's maps may lie below zero: then every local maximum counts
        keep &= heatmap >= min_peak * top
    ys, xs = torch.nonzero(keep, as_tuple=True)
    order = torch.argsort(heatmap[ys, xs], descending=True)[:limit]
    return torch.stack([ys[order], xs[order]], dim=1).numpy()


def _subpixel(heatmap: torch.Tensor, yx: np.ndarray) -> np.ndarray:
    """(x, y) of integer (y, x) peaks refined on their 3 x 3 neighbourhood of the ``(H, W)`` map
    (:class:`farnetlib.heatmaps.QuadraticDecoder`); on the image border, the axis across it stays integer
    (the peak's other side is not in the map)."""
    padded = F.pad(heatmap[None, None], (1, 1, 1, 1), mode="constant", value=float(heatmap.min()) - 1.0)[0, 0]
    patches = torch.stack([padded[y:y + 3, x:x + 3] for y, x in yx])  # centre = the candidate
    pts, _ = QuadraticDecoder().decode(patches[None])
    pts = pts[0].numpy() - 1.0 + yx[:, ::-1]
    h, w = heatmap.shape
    border = np.stack([(yx[:, 1] == 0) | (yx[:, 1] == w - 1), (yx[:, 0] == 0) | (yx[:, 0] == h - 1)], axis=1)
    return np.where(border, yx[:, ::-1], pts)


def corner_type_targets(heatmaps: torch.Tensor, corners: int = 4) -> torch.Tensor:
    """``(..., V * corners, H, W)`` per-landmark targets (vertebra-major) -> ``(..., corners, H, W)``:
    per corner type the pixel-wise maximum over the vertebrae (a unit Gaussian at each vertebra's corner)."""
    *lead, k, h, w = heatmaps.shape
    if k % corners:
        raise ValueError(f"spine_corners targets need vertebrae x {corners} corners landmarks, got {k}")
    return heatmaps.reshape(*lead, k // corners, corners, h, w).amax(dim=-4)


def corner_type_present(present: torch.Tensor, corners: int = 4) -> torch.Tensor:
    """``(N, V * corners)`` labelled landmarks -> ``(N, corners)``: a corner type's heatmap enters the
    loss where any vertebra has that corner labelled (a missing one is then a zero in its target)."""
    n, k = present.shape
    return present.reshape(n, k // corners, corners).any(dim=1)


class CornerTypeDecoder:
    """Decode ``(B, corners, H, W)`` identity-free spine heatmaps into ``(B, vertebrae x corners)``
    landmarks (module docstring): per corner type the ``vertebrae`` strongest local maxima
    (``window`` x ``window``), sorted top to bottom and assigned in order, each refined to sub-pixel
    on its channel. Where a channel has fewer maxima than vertebrae, the lowest vertebrae take the
    lowest maximum found, with peak value 0 (so that their low confidence shows)."""

    name = "spine_corners"

    def __init__(self, vertebrae: int = 17, corners: int = 4, window: int = 5, min_peak: float = 0.02) -> None:
        if vertebrae < 1:
            raise ValueError(f"vertebrae must be >= 1, got {vertebrae}")
        if window < 3 or window % 2 == 0:
            raise ValueError(f"window must be odd and >= 3, got {window}")
        self.vertebrae, self.corners, self.window, self.min_peak = vertebrae, corners, window, min_peak

    def _decode_channel(self, channel: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """One ``(H, W)`` corner-type map -> ``(V, 2)`` points top to bottom and ``(V,)`` peaks."""
        yx = local_maxima(channel, self.window, self.min_peak, limit=self.vertebrae)
        if len(yx) == 0:  # not a finite map's usual case; its maximum then stands for all
            yx = np.array([divmod(int(channel.argmax()), channel.shape[1])])
        yx = yx[np.lexsort((yx[:, 1], yx[:, 0]))]  # top to bottom (ties: left to right)
        pts, peak = _subpixel(channel, yx), channel[yx[:, 0], yx[:, 1]].numpy()
        missing = self.vertebrae - len(yx)
        if missing:
            pts = np.concatenate([pts, np.repeat(pts[-1:], missing, axis=0)])
            peak = np.concatenate([peak, np.zeros(missing, dtype=peak.dtype)])
        return pts, peak

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, corners, H, W)`` -> points ``(B, V x corners, 2)`` (x, y) in heatmap pixels and peak values."""
        if heatmaps.ndim != 4 or heatmaps.shape[1] != self.corners:
            raise ValueError(f"the spine_corners decoder needs (B, {self.corners} corner types, H, W) heatmaps "
                             f"(a model trained with targets 'spine_corners'), got {tuple(heatmaps.shape)}")
        maps = heatmaps.detach().float().cpu()
        if not torch.isfinite(maps).all():
            raise ValueError("heatmaps contain NaN or inf")
        b = maps.shape[0]
        pts = np.zeros((b, self.vertebrae, self.corners, 2))
        peak = np.zeros((b, self.vertebrae, self.corners))
        for i in range(b):
            for c in range(self.corners):
                pts[i, :, c], peak[i, :, c] = self._decode_channel(maps[i, c])
        k = self.vertebrae * self.corners
        return (torch.from_numpy(pts.reshape(b, k, 2)).float(), torch.from_numpy(peak.reshape(b, k)).float())

    __call__ = decode


class OrderedSpineDecoder:
    """Decode ``(B, V * corners, H, W)`` spine heatmaps with the vertebrae in order (module docstring)."""

    def __init__(self, corners: int = 4, mode: str = "assign", candidates: int = 40, window: int = 5,
                 min_peak: float = 0.02) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if window < 3 or window % 2 == 0:
            raise ValueError(f"window must be odd and >= 3, got {window}")
        self.corners, self.mode, self.candidates, self.window, self.min_peak = corners, mode, candidates, window, min_peak
        self.name = "spine_ordered" if mode == "assign" else "spine_peaks"
        self._refine = QuadraticDecoder()

    def _decode_one(self, maps: torch.Tensor, own: torch.Tensor, own_peak: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """One image's ``(V, corners, H, W)`` maps -> ``(V, corners, 2)`` points and ``(V, corners)`` peaks."""
        v_count = maps.shape[0]
        pts, peak = own.numpy().copy(), own_peak.numpy().copy()
        for c in range(self.corners):
            channel = maps[:, c]
            merged = channel.amax(dim=0)
            yx = local_maxima(merged, self.window, self.min_peak, self.candidates)
            if len(yx) == 0:
                continue
            yx = yx[np.lexsort((yx[:, 1], yx[:, 0]))]  # top to bottom (ties: left to right)
            scores = channel[:, yx[:, 0], yx[:, 1]].numpy()  # (V, m): each vertebra's channel at each candidate
            if self.mode == "assign":
                chosen = ordered_assignment(scores)
            elif len(yx) >= v_count:
                strongest = np.sort(np.argsort(-merged[yx[:, 0], yx[:, 1]].numpy(), kind="stable")[:v_count])
                chosen = strongest  # sorted top to bottom, assigned in order
            else:
                continue
            has = chosen >= 0
            if has.any():
                refined = _subpixel(merged, yx[chosen[has]])
                pts[has, c] = refined
                peak[has, c] = scores[np.flatnonzero(has), chosen[has]]
        return pts, peak

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, K, H, W)`` -> points ``(B, K, 2)`` (x, y) in heatmap pixels and peak values, K = V x corners."""
        if heatmaps.ndim != 4 or heatmaps.shape[1] % self.corners:
            raise ValueError(f"the spine_ordered decoder needs (B, vertebrae x {self.corners} corners, H, W) heatmaps "
                             f"(the AASCE landmark order), got {tuple(heatmaps.shape)}")
        maps = heatmaps.detach().float().cpu()
        own, own_peak = self._refine.decode(maps)  # each channel's own maximum: the fallback
        b, k, h, w = maps.shape
        v_count = k // self.corners
        out_pts, out_peak = [], []
        for i in range(b):
            p, q = self._decode_one(maps[i].reshape(v_count, self.corners, h, w),
                                    own[i].reshape(v_count, self.corners, 2), own_peak[i].reshape(v_count, self.corners))
            out_pts.append(p.reshape(k, 2))
            out_peak.append(q.reshape(k))
        return torch.from_numpy(np.stack(out_pts)).float(), torch.from_numpy(np.stack(out_peak)).float()

    __call__ = decode
