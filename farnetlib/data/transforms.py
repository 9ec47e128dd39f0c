"""Resizing, intensity normalisation and training augmentation with landmarks that follow.

Coordinates use the pixel-centre convention of :mod:`farnetlib.heatmaps`. Geometric augmentation
is one random affine map (rotation, isotropic scale, translation about the image centre) applied
to the image with ``scipy.ndimage.affine_transform`` and to the landmarks with the same matrix.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import affine_transform

from ..heatmaps import rescale_points

__all__ = ["resize_image", "resize_sample", "Augment", "AUGMENT_LEVELS", "to_tensor", "image_to_input", "INTENSITY_RANGES", "CONTRASTS", "adjust_contrast", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased) resize of a (H, W) uint8 image to ``size`` (H, W) with Pillow."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def resize_sample(image: np.ndarray, landmarks: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize (aspect not preserved) and map landmarks with per-axis scales."""
    return resize_image(image, size), rescale_points(landmarks, image.shape[:2], size)


@dataclass
class Augment:
    """Random affine + intensity augmentation (the recommended setting; the reference code has none).

    rotation_deg: max absolute rotation; scale: (min, max) zoom; translate: max shift as a fraction
    of each side; gamma, contrast: (min, max) factors; brightness: max additive shift in [0, 1]
    units; noise_sd: max SD of added Gaussian noise in [0, 1] units.
    """

    rotation_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.05
    gamma: tuple[float, float] = (0.7, 1.4)
    contrast: tuple[float, float] = (0.8, 1.2)
    brightness: float = 0.1
    noise_sd: float = 0.02

    def matrix(self, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """3x3 matrix mapping input (x, y, 1) to output (x, y, 1) coordinates."""
        h, w = size
        a = np.deg2rad(rng.uniform(-self.rotation_deg, self.rotation_deg))
        s = rng.uniform(*self.scale)
        tx, ty = rng.uniform(-self.translate, self.translate, size=2) * (w, h)
        cx, cy = (w - 1) / 2, (h - 1) / 2
        to_c = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
        rs = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0], [0, 0, 1]])
        back = np.array([[1, 0, cx + tx], [0, 1, cy + ty], [0, 0, 1]])
        return back @ rs @ to_c

    def geometric(self, image: np.ndarray, landmarks: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Warp a (H, W) image and (K, 2) landmarks with ``m`` (input -> output, x/y order)."""
        inv = np.linalg.inv(m)
        # scipy works in (row, col) = (y, x): swap axes of the inverse map.
        swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
        inv_rc = swap @ inv @ swap
        out = affine_transform(image, inv_rc[:2, :2], offset=inv_rc[:2, 2], order=1, mode="constant", cval=0)
        pts = np.c_[landmarks, np.ones(len(landmarks))] @ m.T
        return out, pts[:, :2]

    def intensity(self, image01: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Gamma, contrast, brightness and noise on a float image in [0, 1]."""
        x = np.clip(image01, 0, 1) ** rng.uniform(*self.gamma)
        x = (x - x.mean()) * rng.uniform(*self.contrast) + x.mean() + rng.uniform(-self.brightness, self.brightness)
        x = x + rng.normal(0, rng.uniform(0, self.noise_sd), size=x.shape)
        return np.clip(x, 0, 1)

    def __call__(self, image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (H, W) image + landmarks -> augmented float [0, 1] image + moved landmarks."""
        warped, pts = self.geometric(image, landmarks, self.matrix(image.shape[:2], rng))
        return self.intensity(warped.astype(np.float32) / 255.0, rng), pts


AUGMENT_LEVELS = {
    # the config's ``augment_level``: "standard" is Augment's defaults; "mild" halves every range,
    # "strong" widens them (rotation 15 deg, zoom 0.85-1.15, shifts 8 %)
    "mild": Augment(rotation_deg=5.0, scale=(0.95, 1.05), translate=0.025, gamma=(0.85, 1.2),
                    contrast=(0.9, 1.1), brightness=0.05, noise_sd=0.01),
    "standard": Augment(),
    "strong": Augment(rotation_deg=15.0, scale=(0.85, 1.15), translate=0.08, gamma=(0.6, 1.6),
                      contrast=(0.7, 1.3), brightness=0.15, noise_sd=0.03),
}


INTENSITY_RANGES = ("0-1", "0-255")
CONTRASTS = ("none", "clahe")
CLAHE_CLIP_LIMIT = 0.01  # scikit-image's default: the fraction of a tile's histogram kept per bin


def adjust_contrast(image: np.ndarray, contrast: str = "none") -> np.ndarray:
    """A (H, W) uint8 image with ``contrast`` applied: ``"none"`` (as is, FARNet's input) or
    ``"clahe"``, contrast-limited adaptive histogram equalisation (scikit-image's
    ``equalize_adapthist``, 8 x 8 tiles, clip limit 0.01), a common X-ray preprocessing: an option
    beyond the paper, applied to the image at the model's input size (cheap, and the same in
    training and inference)."""
    if contrast == "none":
        return image
    if contrast != "clahe":
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
    from skimage.exposure import equalize_adapthist

    return np.round(equalize_adapthist(image, clip_limit=CLAHE_CLIP_LIMIT) * 255.0).astype(np.uint8)



def to_tensor(image01: np.ndarray, intensity_range: str = "0-1") -> torch.Tensor:
    """(H, W) float image in [0, 1] -> (3, H, W) ImageNet-normalised tensor (gray replicated).

    ``intensity_range``: the range of the values that meet the ImageNet mean/std: ``"0-1"`` (the
    paper; what the mean/std are meant for) or ``"0-255"``, which reproduces the reference code's
    normalisation of 0-255 values (for faithfulness studies only).
    """
    x = torch.from_numpy(np.ascontiguousarray(image01, dtype=np.float32))
    if intensity_range not in INTENSITY_RANGES:
        raise ValueError(f"intensity_range must be one of {INTENSITY_RANGES}, got {intensity_range!r}")
    if intensity_range == "0-255":
        x = x * 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x.unsqueeze(0).expand(3, -1, -1) - mean) / std


def image_to_input(image: np.ndarray, input_size: tuple[int, int], intensity_range: str = "0-1",
                   contrast: str = "none") -> torch.Tensor:
    """A (H, W) uint8 grayscale image -> the normalised (3, h, w) float32 model input of ``input_size``
    (what the dataset does to an image, without augmentation)."""
    resized = adjust_contrast(resize_image(image, input_size), contrast)
    return to_tensor(resized.astype(np.float32) / 255.0, intensity_range)