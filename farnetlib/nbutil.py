"""Helpers for the notebooks: run from the repository root wherever Jupyter was started."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .data.registry import default_data_root

__all__ = ["repo_root", "chdir_repo_root", "default_data_root", "compact_figures", "interactive_figure", "show"]


def repo_root() -> Path:
    """The repository root: the folder at or above the working directory with farnetlib's pyproject.toml."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "farnetlib").is_dir():
            return folder
    raise FileNotFoundError(f"no farnet repository root at or above {here}: run from inside the repository")


def chdir_repo_root() -> Path:
    """Change to the repository root (:func:`repo_root`) and return it."""
    root = repo_root()
    os.chdir(root)
    return root


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


def interactive_figure(figure, **controls):
    """``figure(**values)`` with a control per keyword (ipywidgets: a widget, or ``interact``'s
    abbreviations) in a notebook someone looks at; executed headless (papermill, nbconvert, the docs,
    CI) or without ipywidgets, the figure is drawn once at the controls' default values, so batch runs
    and the static pages show it (and it is returned; interactively: None)."""
    import matplotlib.pyplot as plt

    from .progress import headless_notebook

    try:
        import ipywidgets
    except ImportError:
        ipywidgets = None
    defaults = {k: getattr(c, "value", c) for k, c in controls.items()}
    if ipywidgets is None or headless_notebook() or "ipykernel" not in sys.modules:
        fig = figure(**defaults)
        plt.show()
        return fig

    def draw(**values):
        figure(**values)
        plt.show()

    ipywidgets.interact(draw, **controls)
    return None


def show(section) -> None:
    """Display a :class:`farnetlib.run_report.Section` in a notebook: Markdown text, notes as plain
    lines, tables, and figures (each shown once, then closed)."""
    import matplotlib.pyplot as plt
    import pandas as pd
    from IPython.display import Markdown, display

    for item in section.items:
        if isinstance(item, tuple) and item[0] == "note":
            print(item[1])
        elif isinstance(item, str):
            display(Markdown(item))
        elif isinstance(item, (pd.DataFrame, pd.Series)):
            display(item)
        else:
            display(item)
            plt.close(item)
