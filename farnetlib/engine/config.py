"""Moved to :mod:`farnetlib.config` (below both the engine and :mod:`farnetlib.inference`); this name is
the same module object and works for one release, with a DeprecationWarning."""
import sys
import warnings

from .. import config as _moved

warnings.warn("farnetlib.engine.config moved to farnetlib.config; import it from there", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
