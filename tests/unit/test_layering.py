"""The package's modules form no import cycle, counting every import: top-level, inside
functions, and under TYPE_CHECKING. A kind's declaration is a leaf that config parsing
reads; its wirings are named by "module:attr" and imported where they run (kinds/wiring.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import modelserve

ROOT = Path(modelserve.__file__).parent


def module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = ("modelserve", *path.relative_to(ROOT).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def nearest(target: str) -> str:
        while target not in known and "." in target:
            target = target.rpartition(".")[0]
        return target

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {nearest(a.name) for a in node.names if a.name.startswith("modelserve")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if base.startswith("modelserve"):
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else nearest(base)
                          for a in node.names}
    # Importing a.b.c runs the __init__ of a and a.b first.
    for target in list(found):
        parts = target.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts))}
    return {t for t in found if t in known and t != name and not name.startswith(f"{t}.")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            found.append([v, *component])

    for v in graph:
        if v not in index:
            visit(v)
    return [sorted(c) for c in found if len(c) > 1]


def test_no_module_imports_its_way_back_to_itself() -> None:
    known = module_names()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert graph["modelserve.config"] >= {"modelserve.kinds"}  # the analysis sees imports
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles(graph) == []


def test_kind_declarations_import_nothing_heavy() -> None:
    known = module_names()
    for kind in ("chat", "embeddings", "images"):
        name = f"modelserve.kinds.{kind}"
        reached = imports(name, known[name], known)
        assert not {m for m in reached if m.startswith(("modelserve.api", "modelserve.fronts",
                                                         "modelserve.worker"))}, reached
