"""Stopping a training run cleanly: a time limit, SIGTERM/SIGINT, and the record of each stretch.

A long run is trained in stretches (a session ends, a laptop sleeps, a job scheduler sends
SIGTERM). :class:`StopControl` decides before each epoch whether it still fits in ``time_limit``
minutes (estimated from the run's measured epoch times at the same training input size) and
catches the first SIGTERM/SIGINT: the epoch under way is finished, validated and checkpointed, then
the run stops; a second signal abandons the epoch at once (``last.pt`` holds the one before, and
the same command resumes). :class:`Stretches` keeps ``stretches.csv`` in the run folder: one row per
call of ``train`` (start, end, wall seconds, epochs, why it stopped, commit, execution options),
rewritten atomically after every epoch, so the total wall time of a run is known across
interruptions.
"""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pandas as pd

from ..progress import log
from ..data.io import write_atomic
from .runs import git_commit

__all__ = ["StopControl", "Stretches", "Deadline", "estimate_epoch_seconds", "previous_history"]

clock = time.monotonic  # the time source of the time limit (tests replace it)


def estimate_epoch_seconds(history: list[dict], size: tuple[int, int]) -> float | None:
    """Seconds the next epoch at training input ``size`` will take: the last measured epoch at that
    size, else the last epoch at another size scaled by the pixel count; None before any epoch."""
    tag = f"{size[0]}x{size[1]}"
    same = [r for r in history if r.get("train_size", tag) == tag and r.get("epoch_seconds")]
    if same:
        return float(same[-1]["epoch_seconds"])
    other = [r for r in history if r.get("epoch_seconds")]
    if not other:
        return None
    h, w = (int(v) for v in str(other[-1]["train_size"]).split("x"))
    return float(other[-1]["epoch_seconds"]) * size[0] * size[1] / (h * w)


def previous_history(run_dirs: list[Path]) -> list[dict]:
    """The history rows of the last of ``run_dirs`` (empty when none has any), for an estimate of the
    next run's first epoch."""
    path = Path(run_dirs[-1]) / "history.csv" if run_dirs else None
    return pd.read_csv(path).to_dict("records") if path is not None and path.is_file() else []


class StopControl:
    """The time limit (minutes, None for none) and the signal handlers of one call of ``train``."""

    def __init__(self, time_limit: float | None, install_signals: bool = True,
                 prior_history: list[dict] | None = None) -> None:
        self.limit_s = None if time_limit is None else 60.0 * float(time_limit)
        self.prior_history = prior_history or []  # another run's epochs, for an estimate before this one has any
        self.t0 = clock()
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is not None:  # the second one: abandon the epoch under way
            raise KeyboardInterrupt(name)
        self.signal_name = name
        log.info(f"{name}: stopping after this epoch (it is finished and checkpointed); send it again to "
                 "abandon the epoch")

    def elapsed(self) -> float:
        return clock() - self.t0

    def reason_to_stop(self, history: list[dict], size: tuple[int, int]) -> str | None:
        """Why not to start the next epoch (at training input ``size``), or None to go on."""
        if self.signal_name is not None:
            return self.signal_name
        if self.limit_s is None:
            return None
        estimate = estimate_epoch_seconds(history, size)
        if estimate is None:
            estimate = estimate_epoch_seconds(self.prior_history, size)
        if estimate is not None and self.elapsed() + estimate > self.limit_s:
            return (f"time limit ({self.limit_s / 60:g} min: {self.elapsed() / 60:.1f} min used, the next epoch "
                    f"takes about {estimate / 60:.1f} min)")
        return None

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class Deadline:
    """A time limit shared by several ``train`` calls (the folds of ``farnet cv``, the arms of a study)."""

    def __init__(self, time_limit: float | None) -> None:
        self.limit, self.t0 = time_limit, clock()

    def minutes_left(self) -> float | None:
        """What is left of the limit (None: no limit); :meth:`expired` says when nothing is."""
        if self.limit is None:
            return None
        return float(self.limit) - (clock() - self.t0) / 60

    def expired(self) -> bool:
        left = self.minutes_left()
        return left is not None and left <= 0


class Stretches:
    """``stretches.csv``: one row per call of ``train`` on a run folder (rank 0 only writes)."""

    FILE = "stretches.csv"

    def __init__(self, run_dir: Path, first_epoch: int, execution: dict, write: bool = True) -> None:
        self.path, self.write = Path(run_dir) / self.FILE, write
        self.rows = pd.read_csv(self.path).to_dict("records") if self.path.is_file() else []
        for row in self.rows:  # an earlier call that never said how it ended: killed, or requeued by a cluster
            if row["stopped"] == "running":
                row["stopped"] = "interrupted (killed, or signalled and requeued)"
        self.t0 = time.time()
        self.row = {"stretch": len(self.rows) + 1, "started": _iso(self.t0), "ended": _iso(self.t0),
                    "wall_seconds": 0.0, "first_epoch": first_epoch + 1, "last_epoch": first_epoch,
                    "epochs": 0, "stopped": "running", "commit": git_commit(), **execution}
        self._save()

    def epoch_done(self, epoch: int) -> None:
        self.row.update(last_epoch=epoch + 1, epochs=epoch + 1 - self.row["first_epoch"] + 1)
        self._save()

    def end(self, stopped: str) -> None:
        self.row["stopped"] = stopped
        self._save()

    def _save(self) -> None:
        if not self.write:
            return
        now = time.time()
        self.row.update(ended=_iso(now), wall_seconds=round(now - self.t0, 1))
        write_atomic(self.path, pd.DataFrame(self.rows + [self.row]).to_csv(index=False))


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))
