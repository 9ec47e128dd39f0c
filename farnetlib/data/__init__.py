"""Dataset readers, preprocessing, augmentation, caching and verification."""
from .aasce import AASCESpine
from .base import LandmarkSource, Sample
from .cache import ImageCache
from .checks import check_no_leakage, image_counts
from .dataset import LandmarkDataset
from .hand import HandXray
from .io import DatasetError
from .isbi import ISBI2015, ISBI_LANDMARKS
from .manifest import VerifyReport, build_manifest, verify
from .registry import open_dataset
from .synthetic import Synthetic, write_isbi_layout
from .transforms import AUGMENT_LEVELS, Augment, resize_sample

__all__ = ["AASCESpine", "HandXray", "ISBI2015", "ISBI_LANDMARKS", "Synthetic", "write_isbi_layout",
           "LandmarkSource", "Sample", "LandmarkDataset", "ImageCache", "Augment", "AUGMENT_LEVELS", "resize_sample",
           "DatasetError", "open_dataset", "check_no_leakage", "image_counts", "verify", "build_manifest", "VerifyReport"]
