"""farnetlib: an open, reproducible implementation of FARNet (Ao & Wu, J. Digit. Imaging 2023)."""
from .backbones import BACKBONES, build_backbone
from .heatmaps import (ArgmaxDecoder, DarkDecoder, GaussianHeatmapEncoder, HeatmapCodec, QuadraticDecoder, build_decoder,
                       rescale_points)
from .losses import CoarseToFineLoss, EWCLoss, build_loss
from .model import FARNet, FARNetOutput, farnet

__version__ = "0.3.0"
__all__ = ["BACKBONES", "build_backbone", "FARNet", "FARNetOutput", "farnet", "EWCLoss", "build_loss",
           "CoarseToFineLoss", "GaussianHeatmapEncoder", "ArgmaxDecoder", "QuadraticDecoder", "DarkDecoder",
           "HeatmapCodec", "build_decoder", "rescale_points"]
