"""Helpers for the notebooks: run from the repository root wherever Jupyter was started."""
from __future__ import annotations

import os
from pathlib import Path

from .data.registry import default_data_root

__all__ = ["chdir_repo_root", "default_data_root", "compact_figures"]


def chdir_repo_root() -> Path:
    """Change to the repository root (the folder with farnetlib's pyproject.toml) and return it."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "farnetlib").is_dir():
            os.chdir(folder)
            return folder
    raise FileNotFoundError(f"no farnet repository root above {here}")


def compact_figures(dpi: int = 100, quality: int = 70) -> None:
    """Embed figures in executed notebooks as JPEG at ``dpi`` so that the notebooks committed under
    ``results/`` stay small (radiographs compress badly as PNG). Files written with
    ``farnetlib.plots.save`` keep their own format and resolution. Outside Jupyter: no-op."""
    import matplotlib.pyplot as plt

    plt.rcParams["figure.dpi"] = dpi
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    try:
        set_matplotlib_formats("jpeg", pil_kwargs={"quality": quality})
    except Exception:  # noqa: BLE001 - not inside an IPython kernel
        pass
