"""No import loop among embedtag's modules: each can be read without another needing it first.

Every `import` counts, at the top of a module or inside a function (a lazy import is still a
loop a reader must follow) or under TYPE_CHECKING. The parent package a module sits in is not
counted as an import: Python reads it first, by construction.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "embedtag"


def module_names(package: Path) -> dict[str, Path]:
    names = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (`from a import b` counts a.b if b is a module)."""
    modules = module_names(package)
    top = package.name

    def known(name: str) -> str | None:  # the module itself, else the package that defines the name
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(known(a.name) for a in node.names if a.name.split(".")[0] == top)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .x import y
                    parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                if base.split(".")[0] != top:
                    continue
                targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else known(base) for a in node.names)
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def find_loop(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop (a path that comes back to its start), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for target in sorted(graph.get(node, ())):
            if target in on_path:
                return [*path[path.index(target):], target]
            if target not in done and (loop := visit(target)):
                return loop
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (loop := visit(start)):
            return loop
    return None


def test_no_import_loop_in_embedtag() -> None:
    graph = import_graph(PACKAGE)
    assert graph.get("embedtag.service.app"), "the graph was not read"
    loop = find_loop(graph)
    assert loop is None, "import loop: " + " -> ".join(loop or [])


def test_service_imports_go_one_way() -> None:
    """app -> routes -> batcher: no part of the service imports the app, and the batcher no route."""
    graph = import_graph(PACKAGE)
    service = {name for name in graph if name.startswith("embedtag.service.")}
    assert {"embedtag.service.routes_tag", "embedtag.service.openai_routes",
            "embedtag.service.corrections_routes"} <= graph["embedtag.service.app"]
    assert not any("embedtag.service.app" in graph[name] for name in service)
    assert not graph["embedtag.service.batcher"] & service


def test_a_loop_is_found(tmp_path: Path) -> None:
    """The check itself: a package whose modules import each other, one of them lazily."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import thing\n")
    (package / "c.py").write_text("import pkg.a\nthing = 1\n")
    (package / "d.py").write_text("from pkg import a\n")  # imports into the loop, not part of it
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.d"] == {"pkg.a"}
    assert find_loop(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (package / "c.py").write_text("thing = 1\n")
    assert find_loop(import_graph(package)) is None
