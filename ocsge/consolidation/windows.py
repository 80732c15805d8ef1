"""Opening a consolidation window: what it is made of, read from the stored products (pyarrow + shapely: no pandas in
a service): the flagged cells of the 65 m change grid, and the polygons of both millésimes in them.

The grid of the new millésime's automatic map against the previous millésime (``change_grid_auto``) is
preferred — it is what photo-interpreters review at IGN — else the grid between two published millésimes
(``change_grid``). The polygons are those of ``occupation_auto`` of the new millésime, else its
``occupation``; the previous millésime's are its ``occupation``. Layers are read by record batches and only
the polygons meeting a flagged cell are kept, so memory follows the window, not the département.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pyarrow.parquet as pq
import shapely

from ocsge.consolidation.model import (
    InvalidInput,
    NotFound,
    Polygon,
    PreviousPolygon,
    Provenance,
    Task,
    TaskStatus,
    Window,
)
from ocsge.consolidation.store import ConsolidationStore, now, window_id
from ocsge.errors import OcsgeError
from ocsge.products import product_key
from ocsge.storage import Storage
from ocsge.territory import departement

BATCH_ROWS = 50_000


@dataclass(frozen=True)
class Cell:
    id: str
    geometry: shapely.Geometry
    changed_area_m2: float


@dataclass(frozen=True)
class Feature:
    id: str
    code_cs: str
    code_us: str
    geometry: shapely.Geometry


@dataclass(frozen=True)
class WindowSources:
    grid_key: str
    auto_key: str
    previous_key: str


def find_sources(storage: Storage, dep: str, millesime: int, previous: int) -> WindowSources:
    if previous >= millesime:
        raise InvalidInput("previous_millesime", f"must be before {millesime}")
    pair = (previous, millesime)
    grid = next(
        (
            k
            for k in (product_key("change_grid_auto", dep, pair), product_key("change_grid", dep, pair))
            if storage.exists(k)
        ),
        None,
    )
    if grid is None:
        raise NotFound(f"no change grid for {dep} {previous}-{millesime}: run `ocsge grid` first")
    auto = next(
        (
            k
            for k in (product_key("occupation_auto", dep, millesime), product_key("occupation", dep, millesime))
            if storage.exists(k)
        ),
        None,
    )
    if auto is None:
        raise NotFound(f"no layer of millésime {millesime} for {dep}: run `ocsge rules` or `ocsge ingest`")
    prev = product_key("occupation", dep, previous)
    if not storage.exists(prev):
        raise NotFound(f"no occupation layer of millésime {previous} for {dep}: run `ocsge ingest`")
    return WindowSources(grid, auto, prev)


def _geometry_column(schema_names: list[str]) -> str:
    return "geometry" if "geometry" in schema_names else next(n for n in schema_names if "geom" in n)


def _batches(storage: Storage, key: str, columns: list[str]) -> Iterator[dict[str, list[object]]]:
    with storage.local_copy(key) as path:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        geom = _geometry_column(names)
        wanted = [c for c in columns if c in names] + [geom]
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=wanted):
            data = batch.to_pydict()
            data["geometry"] = data.pop(geom)
            yield data


def flagged_cells(storage: Storage, grid_key: str) -> list[Cell]:
    cells: list[Cell] = []
    for data in _batches(storage, grid_key, ["cell_id", "flagged", "changed_area_m2"]):
        geoms = shapely.from_wkb(np.array(data["geometry"], dtype=object))
        for i, flagged in enumerate(data.get("flagged") or [True] * len(geoms)):
            if flagged:
                cells.append(
                    Cell(
                        str(data["cell_id"][i]),
                        geoms[i],
                        float((data.get("changed_area_m2") or [0.0] * len(geoms))[i] or 0.0),
                    )
                )
    return cells


def features_in(
    storage: Storage, key: str, cells: list[Cell]
) -> tuple[list[Feature], tuple[float, float, float, float]]:
    """Polygons of a layer meeting any of ``cells``, and the bounds of the whole layer (the territory)."""
    tree = shapely.STRtree([c.geometry for c in cells]) if cells else None
    kept: list[Feature] = []
    bounds = [np.inf, np.inf, -np.inf, -np.inf]
    for data in _batches(storage, key, ["id", "code_cs", "code_us"]):
        geoms = shapely.from_wkb(np.array(data["geometry"], dtype=object))
        if len(geoms):
            b = shapely.total_bounds(geoms)
            bounds = [min(bounds[0], b[0]), min(bounds[1], b[1]), max(bounds[2], b[2]), max(bounds[3], b[3])]
        if tree is None:
            continue
        hit = np.unique(tree.query(geoms, predicate="intersects")[0])
        for i in hit:
            kept.append(Feature(str(data["id"][i]), str(data["code_cs"][i]), str(data["code_us"][i]), geoms[i]))
    return kept, (float(bounds[0]), float(bounds[1]), float(bounds[2]), float(bounds[3]))


def _bbox(geom: shapely.Geometry) -> tuple[float, float, float, float]:
    b = geom.bounds
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


def open_window(
    store: ConsolidationStore,
    storage: Storage,
    departement_code: object,
    millesime: int,
    previous_millesime: int,
    closes: date,
    actor: str,
) -> Window:
    """Open the consolidation window of a département's new millésime: one task per flagged cell of the
    change grid, and snapshots of both millésimes' polygons in those cells (all or nothing)."""
    try:
        dep = departement(departement_code)
    except OcsgeError as exc:
        raise InvalidInput("departement", str(exc)) from None
    if closes < datetime.now(UTC).date():
        raise InvalidInput("closes", "the window would be closed already")
    found = find_sources(storage, dep.code, millesime, previous_millesime)
    cells = flagged_cells(storage, found.grid_key)
    auto, territory = features_in(storage, found.auto_key, cells)
    previous, _ = features_in(storage, found.previous_key, cells)
    if not all(math.isfinite(v) for v in territory):
        raise NotFound(f"the layer {found.auto_key} is empty")
    wid = window_id(dep.code, millesime)
    bounds: dict[bytes, tuple[float, float, float, float]] = {}

    def wkb(geom: shapely.Geometry) -> bytes:
        data = shapely.to_wkb(geom)
        bounds[data] = _bbox(geom)
        return data

    tasks = [Task(wid, c.id, wkb(c.geometry), TaskStatus.TODO, 1, c.changed_area_m2) for c in cells]
    polygons = [Polygon(wid, f.id, f.code_cs, f.code_us, wkb(f.geometry), 1, Provenance.AUTO) for f in auto]
    prev = [PreviousPolygon(wid, f.id, f.code_cs, f.code_us, wkb(f.geometry)) for f in previous]
    window = Window(
        wid,
        dep.code,
        millesime,
        previous_millesime,
        now(),
        closes.isoformat(),
        dep.epsg,
        territory,
        found.grid_key,
        found.auto_key,
        found.previous_key,
        actor,
    )
    return store.open_window(window, tasks, polygons, prev, bounds)
