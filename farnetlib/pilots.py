"""Recipe pilots: short runs that compare training levers at equal wall time, on validation only.

A pilot study is an ordinary study file (:mod:`farnetlib.engine.study`) whose arms change one or
two levers (batch size, schedule, lr, augmentation, progressive resizing, precision) of a
reference arm and whose epochs were chosen so that every arm takes about the same wall time; the
base config names no test split, so pilots never see a test image. Optional ``"reference"`` (the
arm the others are compared with) and ``"decisions"`` (arm -> what was decided from it) keys of the
study file go into the table.

Numbers at equal time: each arm's best validation MRE among the epochs that ended within the
shortest arm's training time (``equal_time_minutes``), beside the arm's own final best; the
learning curves plot validation MRE against cumulative epoch time.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .config import TrainConfig
from .engine.study import Study
from .plots import plain_log_axis

__all__ = ["pilot_runs", "pilot_table", "learning_curves"]


def pilot_runs(study: Study) -> dict[str, pd.DataFrame]:
    """Each arm's ``history.csv`` (arms not started yet are left out) with ``minutes``: the
    cumulative training + validation time at the end of each epoch."""
    out = {}
    for arm in study.arms:
        path = study.run_dir(arm) / "history.csv"
        if path.is_file():
            history = pd.read_csv(path)
            history["minutes"] = history["epoch_seconds"].cumsum() / 60
            out[arm] = history
    return out


def _changes(arm: TrainConfig, base: TrainConfig) -> str:
    """What an arm sets differently from the study's base, as ``field=value`` pairs."""
    a, b = arm.to_dict(), base.to_dict()
    skip = {"run_name", "epochs", "milestones"}
    return ", ".join(f"{k}={a[k]}" for k in a if k not in skip and json.dumps(a[k]) != json.dumps(b[k])) or "base"


def _execution(run_dir: Path) -> str:
    path = run_dir / "execution.json"
    if not path.is_file():
        return ""
    e = json.loads(path.read_text())
    return f"{e['precision']}{' + channels_last' if e['channels_last'] else ''} ({e['how']})"


def pilot_table(study: Study, raw: dict | None = None) -> pd.DataFrame:
    """One row per started arm: its levers, epochs, execution options, wall time, validation MRE
    at the common time and at its end, the difference to the reference arm at equal time, and the
    decision (``raw``: the study file's JSON, for ``reference``/``decisions``)."""
    raw = raw or {}
    runs = pilot_runs(study)
    if not runs:
        return pd.DataFrame()
    equal = min(h["minutes"].iloc[-1] for h in runs.values())
    rows = []
    for arm, h in runs.items():
        within = h[h["minutes"] <= equal + 1e-9]
        stretches = study.run_dir(arm) / "stretches.csv"
        wall = pd.read_csv(stretches)["wall_seconds"].sum() / 60 if stretches.is_file() else np.nan
        rows.append({"arm": arm, "levers": _changes(study.arms[arm], study.base),
                     "batch": study.arms[arm].batch_size, "epochs run": len(h),
                     "epochs planned": study.arms[arm].epochs, "execution": _execution(study.run_dir(arm)),
                     "wall (min)": wall, "epoch time (min)": h["minutes"].iloc[-1],
                     "val MRE at equal time (mm)": within["val_mre"].min() if len(within) else np.nan,
                     "val MRE final (mm)": h["val_mre"].min(), "best epoch": int(h["val_mre"].idxmin()) + 1,
                     "finished": (study.run_dir(arm) / "metrics.json").is_file(),
                     "commit": _commit(study.run_dir(arm))})
    table = pd.DataFrame(rows).set_index("arm")
    reference = raw.get("reference")
    if reference in table.index:
        table["vs reference at equal time (mm)"] = (table["val MRE at equal time (mm)"]
                                                    - table.loc[reference, "val MRE at equal time (mm)"])
    table["decision"] = [raw.get("decisions", {}).get(a, "") for a in table.index]
    table.attrs["equal_time_minutes"] = equal
    return table


def _commit(run_dir: Path) -> str:
    path = run_dir / "stretches.csv"
    return ", ".join(dict.fromkeys(str(c)[:10] for c in pd.read_csv(path)["commit"])) if path.is_file() else ""


def learning_curves(study: Study, title: str = "", unit: str = "mm") -> Figure:
    """Validation MRE (log axis) against cumulative epoch time, one line per arm; the equal-time
    line is dashed, and each arm's best epoch is circled."""
    runs = pilot_runs(study)
    fig = Figure(figsize=(8, 4.8))
    ax = fig.add_subplot()
    for arm, h in runs.items():
        (line,) = ax.plot(h["minutes"], h["val_mre"], marker=".", label=arm)
        best = h["val_mre"].idxmin()
        ax.scatter([h["minutes"][best]], [h["val_mre"][best]], s=60, facecolors="none", edgecolors=line.get_color())
    if runs:
        ax.axvline(min(h["minutes"].iloc[-1] for h in runs.values()), color="0.5", ls="--", lw=1,
                   label="equal time (the shortest arm)")
    ax.set_yscale("log")
    plain_log_axis(ax.yaxis)
    ax.set_xlabel("training + validation time (min, cumulative over epochs)")
    ax.set_ylabel(f"validation MRE ({unit}, log scale)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title or study.name)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig
