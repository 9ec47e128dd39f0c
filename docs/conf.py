"""Sphinx configuration of the farnet docs site (``make docs``): the pages in ``docs/``, the results
page and the **executed notebooks committed under ``results/``** (rendered as they are, never run
again), and an API reference from the docstrings of the public names."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))

project = "farnet"
author = "the farnet authors"
copyright = "2026, the farnet authors"  # noqa: A001 - Sphinx's name
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
html_theme = "furo"
html_title = "farnet"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
nb_execution_mode = "off"  # the committed executed copies, as they are
nb_merge_streams = True
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # not torch.nn.Module.forward's "Define the computation performed at every call"
autodoc_mock_imports = ["openvino", "onnxruntime", "nncf"]

# The executed notebooks worth reading, in reading order: (source under results/, page name, title).
NOTEBOOKS = [
    ("quickstart/00_quickstart.ipynb", "00_quickstart", None),
    ("inside_farnet/05_inside_farnet.ipynb", "05_inside_farnet", None),
    ("clinical/07_cephalometric_analysis.ipynb", "07_cephalometric_analysis", None),
    ("isbi2015_cpu/04_tables_and_figures.ipynb", "isbi2015_cpu-tables", "ISBI 2015, 60-minute CPU protocol: tables and figures"),
    ("isbi2015_overnight/04_tables_and_figures.ipynb", "isbi2015_2h-tables", "ISBI 2015, 2-hour CPU run: tables and figures"),
    ("hand_xray_cpu/04_tables_and_figures.ipynb", "hand_xray_cpu-tables", "Hand X-rays, 60-minute CPU protocol: tables and figures"),
    ("hand_xray_overnight/04_tables_and_figures.ipynb", "hand_xray_overnight-tables", "Hand X-rays, overnight protocol: tables and figures"),
    ("aasce_cpu/04_tables_and_figures.ipynb", "aasce_cpu-tables", "AASCE spine, 60-minute CPU protocol: tables and figures"),
    ("aasce_overnight/04_tables_and_figures.ipynb", "aasce_2h-tables", "AASCE spine, 2-hour CPU run: tables and figures"),
    ("isbi2015_ablation/03_backbone_ablation.ipynb", "isbi2015_ablation", None),
    ("aasce_cpu/exploration/01_data_exploration.ipynb", "aasce-exploration", "AASCE spine: data exploration"),
    ("hand_xray_cpu/exploration/01_data_exploration.ipynb", "hand_xray-exploration", "Hand X-rays: data exploration"),
]


def _retitle(notebook: dict, title: str) -> dict:
    """The notebook with its first heading replaced by ``title`` (the page's name in the site)."""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            if text.lstrip().startswith("# "):
                first, _, rest = text.lstrip().partition("\n")
                cell["source"] = f"# {title}\n{rest}"
                return notebook
    notebook["cells"].insert(0, {"cell_type": "markdown", "metadata": {}, "source": f"# {title}"})
    return notebook


def _generate(_app=None) -> None:
    """Copy the results page and the executed notebooks into ``docs/_generated/`` (git-ignored)."""
    out = DOCS / "_generated"
    shutil.rmtree(out, ignore_errors=True)
    (out / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "results" / "README.md", out / "results.md")
    shutil.copy(REPO / "benchmarks" / "README.md", out / "benchmarks.md")
    lines = ["# Executed notebooks", "",
             "Each page is a notebook as it was executed for the committed results (papermill), not run again "
             "for the docs. The notebooks themselves are in `notebooks/`; their executed copies in `results/`.", "",
             "```{toctree}", ":maxdepth: 1", ""]
    for src, name, title in NOTEBOOKS:
        path = REPO / "results" / src
        if not path.is_file():
            raise FileNotFoundError(f"docs: the executed notebook {path} is missing (docs/conf.py NOTEBOOKS)")
        if title is None:
            shutil.copy(path, out / "notebooks" / f"{name}.ipynb")
        else:
            notebook = _retitle(json.loads(path.read_text()), title)
            (out / "notebooks" / f"{name}.ipynb").write_text(json.dumps(notebook))
        lines.append(name)
    (out / "notebooks" / "index.md").write_text("\n".join(lines + ["```", ""]))


_generate()


# Links in the pages are written for reading them on a code host (``../results/README.md``); in the
# site they point at the generated copies.
SITE_LINKS = {"](../results/README.md)": "](/_generated/results.md)",
              "](../benchmarks/README.md)": "](/_generated/benchmarks.md)"}


def _site_links(_app, docname: str, source: list[str]) -> None:
    if not docname.startswith("_generated"):
        for old, new in SITE_LINKS.items():
            source[0] = source[0].replace(old, new)


def setup(app) -> None:  # noqa: D103 - Sphinx's hook
    app.add_css_file("farnet.css")
    app.connect("source-read", _site_links)


html_static_path = ["_static"]
