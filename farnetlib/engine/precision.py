"""Moved to :mod:`farnetlib.precision` (below both the engine and :mod:`farnetlib.inference`); this name is
the same module object and works for one release, with a DeprecationWarning."""
import sys
import warnings

from .. import precision as _moved

warnings.warn("farnetlib.engine.precision moved to farnetlib.precision; import it from there", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
