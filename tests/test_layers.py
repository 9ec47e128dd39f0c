"""The import graph of farnetlib: no circles, and no module importing above its layer.

Every ``import``/``from ... import`` of a farnetlib module counts, at module level or inside a
function (a lazy import is still an arrow). Run as a script for the graph's figures:
``python tests/test_layers.py`` prints modules, arrows, circles and upward arrows.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "farnetlib"

# Lowest first. A module may import its own layer and the layers below; prefixes match whole modules
# or packages (the longest prefix wins).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("farnetlib.progress", "farnetlib.metrics", "farnetlib.uncertainty", "farnetlib.data",
              "farnetlib.heatmaps", "farnetlib.decoders", "farnetlib.spine_codec", "farnetlib.losses", "farnetlib.backbones",
              "farnetlib.model", "farnetlib.ceph", "farnetlib.spine", "farnetlib.introspection")),
    ("shared", ("farnetlib.config", "farnetlib.precision", "farnetlib.checkpoint")),
    ("inference", ("farnetlib.inference",)),
    ("engine", ("farnetlib.engine",)),
    ("reports", ("farnetlib.tta", "farnetlib.reporting", "farnetlib.plots", "farnetlib.crossval",
                 "farnetlib.ablation", "farnetlib.pilots", "farnetlib.nbutil",
                 "farnetlib.folder_prediction", "farnetlib.run_report")),
    ("entry points", ("farnetlib.reproduce", "farnetlib.engine.cli", "farnetlib.data.__main__", "farnetlib",
                      "farnetlib.engine.config", "farnetlib.engine.precision", "farnetlib.engine.folder",
                      "farnetlib.engine.data")),  # the last: moved names
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The farnetlib modules ``path`` imports (``from .x import y`` counts ``x.y`` where y is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("farnetlib")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("farnetlib"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if _is_module(sub) else target)
    out.discard(name)
    return out


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    if rank is None:
        raise KeyError(f"{module} is in no layer of tests/test_layers.py: add it to LAYERS")
    return rank


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in g:
        if v not in index:
            visit(v)
    return out


def _package_init(importer: str, imported: str) -> bool:
    """A package's ``__init__`` re-exporting its own modules, or a module importing its package's names."""
    return imported == "farnetlib" or importer.startswith(imported + ".") or imported.startswith(importer + ".")


def upward(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in g.items() for b in targets
                  if b in g and not _package_init(a, b) and layer(b) > layer(a))


def test_no_import_circles():
    assert circles(graph()) == []


def test_no_module_imports_above_its_layer():
    assert upward(graph()) == []


def test_every_module_has_a_layer():
    for module in graph():
        layer(module)


def test_the_command_line_answers_help_without_loading_torch():
    """``farnet --help`` (and the parser of every subcommand) imports the standard library only."""
    code = ("import sys; from farnetlib.engine.cli import build_parser; build_parser(); "
            "import farnetlib, farnetlib.engine; print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


MOVED = {"farnetlib.engine.config": "farnetlib.config", "farnetlib.engine.precision": "farnetlib.precision",
         "farnetlib.engine.folder": "farnetlib.folder_prediction", "farnetlib.engine.data": "farnetlib.engine.loaders"}


def test_moved_modules_keep_their_old_names_for_one_release():
    """Each old name is the new module itself (monkeypatching either patches both), with a DeprecationWarning."""
    code = ("import importlib, warnings, json, sys\n"
            "out = {}\n"
            "for old, new in json.loads(sys.argv[1]).items():\n"
            "    with warnings.catch_warnings(record=True) as caught:\n"
            "        warnings.simplefilter('always')\n"
            "        module = importlib.import_module(old)\n"
            "    out[old] = [module is importlib.import_module(new),\n"
            "                any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)]\n"
            "print(json.dumps(out))")
    import json

    out = subprocess.run([sys.executable, "-c", code, json.dumps(MOVED)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {old: [True, True] for old in MOVED}


def test_the_parsers_executor_choices_are_the_dispatchers():
    from farnetlib.engine.cli import build_parser
    from farnetlib.engine.dispatch import EXECUTORS

    study = build_parser()._subparsers._group_actions[0].choices["study"]
    (executor,) = [a for a in study._actions if a.dest == "executor"]
    assert tuple(executor.choices) == EXECUTORS


if __name__ == "__main__":
    g = graph()
    lines = sum(len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py"))
    print(f"{len(g)} modules, {sum(len(v) for v in g.values())} arrows, {lines} library lines")
    for c in circles(g):
        print("circle:", " <-> ".join(c))
    for a, b in upward(g):
        print(f"upward: {a} ({LAYERS[layer(a)][0]}) -> {b} ({LAYERS[layer(b)][0]})")
