"""Progress bars: tqdm where someone watches, none in notebooks executed headless or in logs.

A notebook run by papermill (or ``jupyter nbconvert --execute``, or any nbclient) would store every
bar update as an output of its own, hundreds of them before the first figure; a command whose
output goes to a file (``nohup farnet train ... > run.log``) would fill it with carriage returns.
There the engine's one line per epoch is the progress report. Interactive notebooks and terminals
keep tqdm's bars; ``FARNET_PROGRESS=1`` forces them, ``=0`` hides them everywhere.
"""
from __future__ import annotations

import logging
import os
import sys

from tqdm.auto import tqdm as _tqdm

__all__ = ["tqdm", "headless_notebook", "bars_wanted", "log"]


class _StdoutLines(logging.Handler):
    """farnet's messages as plain lines on the current ``sys.stdout`` (where a notebook, a log file or
    a terminal shows them, as print would); warnings start with ``warning:``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = "warning: " if record.levelno >= logging.WARNING else ""
            sys.stdout.write(f"{prefix}{record.getMessage()}\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging's own rule: a failing handler never breaks the caller
            self.handleError(record)


# What the library says while it works (the plan line, resuming, stopping, data notes): the "farnetlib"
# logger, shown on stdout by default; logging.getLogger("farnetlib").setLevel(logging.WARNING) quiets it,
# and a handler of one's own (with propagate) takes it elsewhere.
log = logging.getLogger("farnetlib")
if not log.handlers:
    log.addHandler(_StdoutLines())
    log.setLevel(logging.INFO)
    log.propagate = False


def headless_notebook() -> bool:
    """Whether this process is a notebook kernel executed without a frontend: nbclient (which
    papermill and nbconvert use) starts kernels with an in-memory history file, Jupyter's frontends do not."""
    return any(arg == "--HistoryManager.hist_file=:memory:" for arg in sys.argv)


def bars_wanted() -> bool:
    """Whether progress bars have a watcher: a terminal, or an interactive notebook."""
    forced = os.environ.get("FARNET_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    if headless_notebook():
        return False
    if "ipykernel" in sys.modules:  # an interactive notebook (its stderr is no terminal, but shows bars)
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class tqdm(_tqdm):
    """``tqdm.auto.tqdm``, disabled where nobody watches it (:func:`bars_wanted`; ``tqdm.write`` and the
    rest unchanged)."""

    def __init__(self, *args, disable: bool = False, **kwargs) -> None:
        super().__init__(*args, disable=disable or not bars_wanted(), **kwargs)
