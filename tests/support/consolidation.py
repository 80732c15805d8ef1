"""A tiny territory for the consolidation tests, and the store on each engine.

Département ``S01`` (Lambert-93), 260 m × 130 m, four 65 m cells wide and two high, origin on the grid:

    2021 (occupation, "official")     A: x 0–130 grass/agriculture    B: x 130–260 broadleaf/forestry
    2024 (occupation_auto)            A1: x 0–65 built/residential (changed)   A2: x 65–130 grass   B: forest

so the change grid of 2021 → 2024 (auto) flags the two cells of column 0 (ids ``0_0`` and ``0_1``: column
and row from the grid's origin), each half of A1. The grid is the real step's output (``run_grid``).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import shapely

from inference_batch.products.artifacts import key, write_vector
from inference_batch.products.grid import run_grid
from ocsge.consolidation.store import ConsolidationStore
from ocsge.storage import Storage

DEP = "S01"
PREVIOUS, NEW = 2021, 2024
X0, Y0 = 650_000.0, 6_859_710.0  # multiples of 65 m: the grid's cells line up with the polygons
CELL = 65.0
FLAGGED = ("0_0", "0_1")


def box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def layer(rows: list[tuple[str, str, str, shapely.Polygon]], millesime: int, source: str) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "id": [r[0] for r in rows],
            "code_cs": [r[1] for r in rows],
            "code_us": [r[2] for r in rows],
            "millesime": millesime,
            "source": source,
        },
        geometry=[r[3] for r in rows],
        crs="EPSG:2154",
    )


PREVIOUS_ROWS = [("P_A", "CS2.2.1", "US1.1", box(0, 0, 130, 130)), ("P_B", "CS2.1.1.1", "US1.2", box(130, 0, 260, 130))]
AUTO_ROWS = [
    ("N_A1", "CS1.1.1.1", "US5", box(0, 0, 65, 130)),
    ("N_A2", "CS2.2.1", "US1.1", box(65, 0, 130, 130)),
    ("N_B", "CS2.1.1.1", "US1.2", box(130, 0, 260, 130)),
]


def build_territory(storage: Storage) -> None:
    """Previous millésime, the new one's automatic map, and their change grid."""
    write_vector(storage, key("occupation", DEP, PREVIOUS), layer(PREVIOUS_ROWS, PREVIOUS, "ign"))
    write_vector(storage, key("occupation_auto", DEP, NEW), layer(AUTO_ROWS, NEW, "auto:model"))
    run_grid(storage, DEP, PREVIOUS, NEW, after_source="occupation_auto")


@functools.cache
def _to_lonlat() -> Any:
    from pyproj import Transformer

    return Transformer.from_crs(2154, 4326, always_xy=True)


def lonlat(x: float, y: float) -> tuple[float, float]:
    """Lon/lat of a point given in metres from the territory's origin."""
    return _to_lonlat().transform(X0 + x, Y0 + y)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConsolidationStore]:
    """The consolidation store on each engine: a SQLite file, or a fresh database on the session's
    PostgreSQL (``postgres`` fixture of support.catalog_fixtures; skipped locally without PostgreSQL)."""
    if request.param == "sqlite":
        s = ConsolidationStore(tmp_path / "consolidation" / "consolidation.sqlite")
    else:
        pg = request.getfixturevalue("postgres")
        s = ConsolidationStore(pg.create_database(f"consolidation_{uuid.uuid4().hex[:12]}"))
    try:
        yield s
    finally:
        s.close()
