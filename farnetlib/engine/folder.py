"""Moved to :mod:`farnetlib.folder_prediction` (it uses the Predictor and draws overlays: above the
engine); this name is the same module object and works for one release, with a DeprecationWarning."""
import sys
import warnings

from .. import folder_prediction as _moved

warnings.warn("farnetlib.engine.folder moved to farnetlib.folder_prediction; import it from there", DeprecationWarning,
              stacklevel=2)
sys.modules[__name__] = _moved
