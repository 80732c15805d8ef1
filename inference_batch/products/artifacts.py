"""Reading and writing the artifacts of the product steps, atomically and resumably.

GeoParquet is written sorted along a Hilbert curve with a covering ``bbox`` column and bounded row
groups, so that :class:`~inference_batch.products.spatial.SpatialSource` can later read one spatial
chunk at a time. A :class:`StepOutputs` collects the keys a step writes and deletes them all when the
step fails, so that no product key ever holds a partial result of a failed run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ocsge.errors import OcsgeError
from ocsge.products import product_key
from ocsge.storage import Storage

ROW_GROUP_SIZE = 10_000

_JSON = "application/json"
_GEOPARQUET = "application/vnd.apache.parquet"



class StepError(OcsgeError):
    """A product step that cannot run on its inputs (missing input artifact, inconsistent inputs)."""


# --- Hilbert order ---------------------------------------------------------------------------

def hilbert_index(x: np.ndarray, y: np.ndarray, bounds: tuple[float, float, float, float],
                  level: int = 16) -> np.ndarray:
    """Position of points along a Hilbert curve over ``bounds`` (vectorised xy→d, 2^level cells a side)."""
    n = 1 << level
    xmin, ymin, xmax, ymax = bounds
    width = max(xmax - xmin, 1e-9)
    height = max(ymax - ymin, 1e-9)
    xi = np.clip(((np.asarray(x) - xmin) / width * (n - 1)).astype(np.int64), 0, n - 1)
    yi = np.clip(((np.asarray(y) - ymin) / height * (n - 1)).astype(np.int64), 0, n - 1)
    d = np.zeros(xi.shape, dtype=np.int64)
    s = n >> 1
    while s > 0:
        rx = (xi & s) > 0
        ry = (yi & s) > 0
        d += s * s * ((3 * rx) ^ ry)
        # rotate the quadrant
        flip = ~ry
        swap_x = flip & rx
        xi = np.where(swap_x, s - 1 - xi, xi)
        yi = np.where(swap_x, s - 1 - yi, yi)
        xi, yi = np.where(flip, yi, xi), np.where(flip, xi, yi)
        s >>= 1
    return d


def hilbert_sorted(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if len(gdf) < 2:
        return gdf
    b = gdf.geometry.bounds.to_numpy()
    total = (np.nanmin(b[:, 0]), np.nanmin(b[:, 1]), np.nanmax(b[:, 2]), np.nanmax(b[:, 3]))
    order = np.argsort(hilbert_index((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, total), kind="stable")
    return gdf.iloc[order].reset_index(drop=True)


# --- writers -----------------------------------------------------------------------------------

def to_geoparquet(gdf: gpd.GeoDataFrame, path: str | Path, *, sort: bool = True,
                  provenance: dict[str, str] | None = None) -> None:
    """GeoParquet 1.1 with a covering bbox column, Hilbert-sorted, in row groups of ROW_GROUP_SIZE;
    ``provenance`` goes to the ``ocsge`` key-value metadata the catalogue reads."""
    from geopandas.io.arrow import _geopandas_to_arrow

    if sort:
        gdf = hilbert_sorted(gdf)
    table = _geopandas_to_arrow(gdf.reset_index(drop=True), index=False, write_covering_bbox=True)
    if provenance:
        table = table.replace_schema_metadata({**table.schema.metadata, b"ocsge": json.dumps(provenance).encode()})
    if table.num_rows == 0:
        # no row group at all: an empty row group has no column statistics, which GeoParquet's
        # distribution class requires of every row group (geoparquet-validator fails it)
        pq.ParquetWriter(path, table.schema, compression="zstd").close()
        return
    pq.write_table(table, path, row_group_size=ROW_GROUP_SIZE, compression="zstd")


def write_vector(storage: Storage, key: str, gdf: gpd.GeoDataFrame, *, sort: bool = True,
                 provenance: dict[str, str] | None = None) -> str:
    with storage.writer(key) as tmp:
        to_geoparquet(gdf, tmp, sort=sort, provenance=provenance)
    return key


def write_json(storage: Storage, key: str, obj: Any) -> str:
    storage.put_bytes(key, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default).encode(),
                      content_type=_JSON)
    return key


def _json_default(o: object) -> object:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_table(storage: Storage, key: str, df: pd.DataFrame) -> str:
    """A table as Parquet or CSV, by the key's extension."""
    with storage.writer(key) as tmp:
        if key.endswith(".csv"):
            df.to_csv(tmp, index=False, float_format="%.4f")
        else:
            df.to_parquet(tmp, index=False)
    return key


class GeoParquetAppender:
    """Streams GeoDataFrames into one GeoParquet file, so that a step over 10⁶ polygons never holds its
    whole output in memory. The schema is that of the first non-empty frame (columns all null there
    are taken as strings); the ``geo`` metadata (bbox, geometry types) is written at close."""

    def __init__(self, path: str | Path, template: gpd.GeoDataFrame, *,
                 provenance: dict[str, str] | None = None) -> None:
        from geopandas.io.arrow import _geopandas_to_arrow

        self.path = Path(path)
        self._to_arrow = _geopandas_to_arrow
        self.columns = list(template.columns)
        self.crs = template.crs
        self.template = template.iloc[:0]
        self.provenance = provenance
        self._writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        self._geo: dict[str, Any] = {}
        self._types: set[str] = set()
        self._bounds = [np.inf, np.inf, -np.inf, -np.inf]
        self.rows = 0

    def _table(self, gdf: gpd.GeoDataFrame) -> pa.Table:
        return self._to_arrow(gdf.reset_index(drop=True), index=False, write_covering_bbox=True)

    def _open(self, table: pa.Table) -> None:
        self._geo = json.loads(table.schema.metadata[b"geo"])
        fields = [pa.field(f.name, pa.large_string()) if pa.types.is_null(f.type) else f.remove_metadata()
                  for f in table.schema]
        self.schema = pa.schema(fields)
        # no stored Arrow schema: the footer's key-value metadata (written at close) is the schema metadata
        self._writer = pq.ParquetWriter(self.path, self.schema, compression="zstd", store_schema=False)

    def append(self, gdf: gpd.GeoDataFrame) -> None:
        if gdf.empty:
            return
        gdf = gdf[self.columns]
        if gdf.crs is None:
            gdf = gdf.set_crs(self.crs)
        table = self._table(gdf)
        if self._writer is None:
            self._open(table)
        table = table.replace_schema_metadata(None).cast(self.schema)
        for start in range(0, len(table), ROW_GROUP_SIZE):
            self._writer.write_table(table.slice(start, ROW_GROUP_SIZE))  # type: ignore[union-attr]
        self._types.update(t for t in gdf.geom_type.dropna().unique())
        b = gdf.total_bounds
        if np.isfinite(b).all():
            self._bounds = [min(self._bounds[0], b[0]), min(self._bounds[1], b[1]),
                            max(self._bounds[2], b[2]), max(self._bounds[3], b[3])]
        self.rows += len(gdf)

    def close(self) -> None:
        if self._writer is None:  # nothing appended: an empty but valid GeoParquet
            to_geoparquet(self.template, self.path, sort=False, provenance=self.provenance)
            return
        col = self._geo["columns"][self._geo["primary_column"]]
        col["geometry_types"] = sorted(self._types)
        col["bbox"] = [float(v) for v in self._bounds]
        meta = {"geo": json.dumps(self._geo)}
        if self.provenance:
            meta["ocsge"] = json.dumps(self.provenance)
        self._writer.add_key_value_metadata(meta)
        self._writer.close()


# --- readers -----------------------------------------------------------------------------------

def read_vector(storage: Storage, key: str, columns: list[str] | None = None) -> gpd.GeoDataFrame:
    if not storage.exists(key):
        raise StepError(f"missing input {key!r} under {storage.root}")
    with storage.local_copy(key) as path:
        return gpd.read_parquet(path, columns=columns)


def read_json(storage: Storage, key: str) -> Any:
    return json.loads(storage.get_bytes(key))


def read_table(storage: Storage, key: str) -> pd.DataFrame:
    with storage.local_copy(key) as path:
        return pd.read_csv(path) if key.endswith(".csv") else pd.read_parquet(path)


# --- rollback ------------------------------------------------------------------------------

class StepOutputs:
    """Keys written by one step, each registered once its own write succeeded (:meth:`writer` does it in
    that order); when the step fails, the keys it registered are deleted so that no product key holds a
    partial result. A key whose write failed is never registered: the storage writer left its previous
    content in place, and deleting it would destroy a published artifact.

    Steps run by ``ocsge products`` and the CLI verbs run in a transaction
    (:mod:`inference_batch.writers.transaction`): there nothing reached the storage before the step
    succeeded, and the rollback only drops staged writes."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.keys: list[str] = []

    def add(self, key: str) -> str:
        """Register a key *after* its write succeeded."""
        self.keys.append(key)
        return key

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[Path]:
        """The storage writer of ``key``; the key is registered once the write is in place."""
        with self.storage.writer(key) as tmp:
            yield tmp
        self.add(key)

    def rollback(self) -> None:
        for key in self.keys:
            with contextlib.suppress(Exception):
                self.storage.delete(key)


@contextlib.contextmanager
def step_outputs(storage: Storage) -> Iterator[StepOutputs]:
    outputs = StepOutputs(storage)
    try:
        yield outputs
    except BaseException:
        outputs.rollback()
        raise


def key(product: str, dep: object, millesime: int | tuple[int, int]) -> str:
    return product_key(product, dep, millesime)
