"""Pixel spacing where the images carry none: set by a known distance between two landmarks."""
from __future__ import annotations

import numpy as np

__all__ = ["spacing_from_reference"]


def spacing_from_reference(gt, pair: tuple[int, int] = (1, 5), distance_mm: float = 50.0) -> np.ndarray:
    """Per-image isotropic spacing ``(N, 2)`` (mm/px) making landmarks ``pair`` ``distance_mm`` apart.

    Hand radiographs carry no spacing; Payer et al. set the distance between landmarks 1 and 5
    (0-based, the wrist) to 50 mm. The GU2Net lineage uses (0, 4). Always state which. Only the
    two landmarks of the pair must be finite (others may be missing, NaN).
    """
    gt = np.asarray(gt, dtype=np.float64)
    if gt.ndim != 3 or gt.shape[-1] != 2:
        raise ValueError(f"gt must have shape (N, K, 2), got {gt.shape}")
    i, j = pair
    k = gt.shape[1]
    if not (0 <= i < k and 0 <= j < k) or i == j:
        raise ValueError(f"reference pair {pair} is not two distinct landmarks of {k}")
    ends = gt[:, [i, j]]
    if not np.isfinite(ends).all():
        n = int(np.flatnonzero(~np.isfinite(ends).all((1, 2)))[0])
        raise ValueError(f"gt contains NaN/inf in the reference pair {pair} (first at image {n})")
    d = np.sqrt(((gt[:, i] - gt[:, j]) ** 2).sum(-1))
    if (d <= 0).any():
        raise ValueError(f"reference landmarks {pair} coincide in image(s) {np.flatnonzero(d <= 0).tolist()}")
    return np.repeat((distance_mm / d)[:, None], 2, axis=1)
