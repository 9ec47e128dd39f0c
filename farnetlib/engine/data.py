"""Moved to :mod:`farnetlib.engine.loaders` (the name no longer reads as the ``farnetlib.data``
package); this name is the same module object and works for one release, with a DeprecationWarning."""
import sys
import warnings

from . import loaders as _moved

warnings.warn("farnetlib.engine.data moved to farnetlib.engine.loaders; import it from there", DeprecationWarning,
              stacklevel=2)
sys.modules[__name__] = _moved
