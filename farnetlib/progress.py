"""Progress bars: tqdm where someone watches, none in notebooks executed headless.

A notebook run by papermill (or ``jupyter nbconvert --execute``, or any nbclient) would store every
bar update as an output of its own, hundreds of them before the first figure; there the engine's
one line per epoch is the progress report. Interactive notebooks and terminals keep tqdm's bars.
"""
from __future__ import annotations

import sys

from tqdm.auto import tqdm as _tqdm

__all__ = ["tqdm", "headless_notebook"]


def headless_notebook() -> bool:
    """Whether this process is a notebook kernel executed without a frontend: nbclient (which
    papermill and nbconvert use) starts kernels with an in-memory history file, Jupyter's frontends do not."""
    return any(arg == "--HistoryManager.hist_file=:memory:" for arg in sys.argv)


class tqdm(_tqdm):
    """``tqdm.auto.tqdm``, disabled in a headless notebook kernel (``tqdm.write`` and the rest unchanged)."""

    def __init__(self, *args, disable: bool = False, **kwargs) -> None:
        super().__init__(*args, disable=disable or headless_notebook(), **kwargs)
