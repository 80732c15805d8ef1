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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import shapely
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount

from inference_batch.products.artifacts import key, write_vector
from inference_batch.products.grid import run_grid
from ocsge.consolidation.model import Role
from ocsge.consolidation.store import ConsolidationStore
from ocsge.storage import Storage, open_storage
from services.consolidation.app import create_consolidation_app
from services.consolidation.auth import Authenticator, hash_password
from services.consolidation.settings import ConsolidationSettings

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
    """Previous millésime, the new one's automatic map and zone construite, and their change grid."""
    write_vector(storage, key("occupation", DEP, PREVIOUS), layer(PREVIOUS_ROWS, PREVIOUS, "ign"))
    write_vector(storage, key("occupation_auto", DEP, NEW), layer(AUTO_ROWS, NEW, "auto:model"))
    zone = gpd.GeoDataFrame(
        {"id": ["ZC1"], "millesime": NEW, "source": "auto"}, geometry=[box(0, 0, 65, 130)], crs="EPSG:2154"
    )
    write_vector(storage, key("zone_construite_auto", DEP, NEW), zone)
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


# --- the API over a store, with one account per role ------------------------------------------------

BASE = f"/consolidation/{DEP}/{NEW}"
PEOPLE = {
    "admin": Role.ADMIN,
    "alice": Role.INTERPRETER,
    "bob": Role.INTERPRETER,
    "rita": Role.REVIEWER,
    "carl": Role.CONTRIBUTOR,
}
PASSWORD = "correct horse battery"
WINDOW = {"departement": DEP, "millesime": NEW, "previous_millesime": PREVIOUS, "closes": "2099-12-31"}


@dataclass
class Api:
    client: TestClient
    store: ConsolidationStore
    auth: Authenticator
    tokens: dict[str, str]
    root: Path

    def bearer(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def post(self, path: str, who: str | None, body: Any, **kw: Any) -> Any:
        headers = self.bearer(who) if who else {}
        return self.client.post(path, json=body, headers=headers | kw.pop("headers", {}), **kw)

    def task(self, task_id: str) -> dict[str, Any]:
        r = self.client.get(f"{BASE}/tasks/{task_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def polygon(self, task_id: str, polygon_id: str) -> dict[str, Any]:
        return next(f["properties"] for f in self.task(task_id)["polygons"]["features"] if f["id"] == polygon_id)


def make_api(db: ConsolidationStore, root: Path, **settings: Any) -> Api:
    """The consolidation app mounted at /consolidation over ``db`` and the storage ``root``, with the
    accounts of :data:`PEOPLE` and a bearer token for each."""
    storage = open_storage(root)
    app = create_consolidation_app(db, storage, ConsolidationSettings(**settings))
    client = TestClient(Starlette(routes=[Mount("/consolidation", app=app)]))
    auth: Authenticator = app.state.guard.auth
    tokens = {}
    for name, role in PEOPLE.items():
        account = db.get_account(name) or db.create_account(name, hash_password(PASSWORD), role, "test")
        tokens[name] = auth.issue(account)[0]
    return Api(client, db, auth, tokens, root)


def square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    """A GeoJSON polygon (lon/lat) of a rectangle given in metres from the territory's origin."""
    ring = [lonlat(x0, y0), lonlat(x1, y0), lonlat(x1, y1), lonlat(x0, y1), lonlat(x0, y0)]
    return {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}
