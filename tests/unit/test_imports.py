"""The house's arrows: no import cycle inside ``baker/``, and the core never imports the local cloud.

Read from the source with ``ast`` (every import, at module level or inside a function: a lazy
import is still an arrow), so the guard needs nothing installed and runs in milliseconds. Only
``baker/cli/`` and ``baker/demo.py`` may import ``baker.local``: what differs locally is handed
into the stages by the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

BAKER = Path(__file__).resolve().parents[2] / "baker"

#: what may import the local cloud
LOCAL_ALLOWED = ("baker.cli", "baker.demo", "baker.local")


def module_name(path: Path, root: Path = BAKER) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = BAKER) -> dict[str, set[str]]:
    """Module -> the baker modules it imports (``from pkg import mod`` is an arrow to ``pkg.mod``)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        arrows: set[str | None] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                arrows |= {owner(a.name) for a in node.names if a.name.split(".")[0] == "baker"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package up
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                if base.split(".")[0] != "baker":
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    arrows.add(full if full in modules else owner(base))
        graph[name] = {a for a in arrows if a and a != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, arrows = work[-1]
            nxt = next(arrows, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def local_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {
        (name, target)
        for name, targets in graph.items()
        if not name.startswith(LOCAL_ALLOWED)
        for target in targets
        if target.startswith("baker.local")
    }


def test_no_import_cycle_in_baker():
    assert sorted(map(sorted, cycles(import_graph()))) == []


def test_the_core_does_not_import_the_local_cloud():
    assert sorted(local_imports(import_graph())) == []


def test_the_guard_sees_a_cycle_and_a_core_import_of_the_local_cloud(tmp_path):
    """The guard itself: a lazy import closing a circle, and ``from baker import local``, are found."""
    pkg = tmp_path / "baker"
    (pkg / "local").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "local" / "__init__.py").write_text("")
    (pkg / "local" / "cloud.py").write_text("")
    (pkg / "a.py").write_text("from baker import b\n")
    (pkg / "b.py").write_text("def f():\n    from baker.a import x\n")
    (pkg / "c.py").write_text("from baker.local import cloud\n")
    graph = import_graph(pkg)
    assert cycles(graph) == [frozenset({"baker.a", "baker.b"})]
    assert local_imports(graph) == {("baker.c", "baker.local.cloud")}
