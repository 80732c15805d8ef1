"""Spatial chunking: read a polygon layer one window at a time and overlay two layers chunk by chunk.

Why: a département holds 10⁵–10⁶ polygons per millésime; a global overlay holds both layers, the
spatial index, every candidate pair and every output piece in memory at once. Here:

* :class:`SpatialSource` keeps only the bounding boxes of a layer in memory (32 bytes a polygon) and
  reads geometries by Parquet row group, with a small LRU cache. Our GeoParquet is Hilbert-sorted
  (``artifacts.to_geoparquet``), so a window touches few row groups.
* :func:`overlay_chunks` groups the polygons of layer A into chunks of about ``target`` polygons:
  each polygon belongs to the fine grid cell holding the centre of its bounding box, and cells are
  taken in Hilbert order, a run of cells per chunk (dense towns and empty countryside both give
  bounded, compact chunks). Each A polygon is processed exactly once, with all of its B partners
  (the B polygons whose bbox meets its bbox, found on the bbox arrays, then an STRtree), so pieces
  ``a ∩ b`` are complete: stitching the chunks is a concatenation, without seams to dissolve and
  without duplicates. A polygon of A wider than a chunk (a forest, a lagoon) is overlaid on its
  own, against one group of ``target`` B polygons at a time.
* Pairs of identical geometries (same WKB) are matched by hashing before any geometric work: in two
  successive millésimes most polygons are unchanged, and for a partition a polygon identical to one
  of the other layer overlaps nothing else there. Only the remaining polygons are intersected.
  :func:`overlay_identical_first` goes further for whole layers: it pairs identical polygons over the
  whole layers from a numba digest of the WKB column (:mod:`.wkb_digest`) without building any
  geometry, and hands only the rest to :func:`overlay_chunks`.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from shapely import STRtree

from inference_batch.products.artifacts import hilbert_index
from inference_batch.products.wkb_digest import MISSING, OK, digest

MIN_PIECE_AREA = 0.01  # m²: intersections smaller than this are numerical slivers


def polygonal(geoms: np.ndarray) -> np.ndarray:
    """Keep the polygonal part of each geometry (collections from intersections or make_valid)."""
    geoms = np.asarray(geoms, dtype=object)
    out = geoms.copy()
    types = shapely.get_type_id(geoms)
    # 3 Polygon, 6 MultiPolygon; anything else gets its polygon parts or becomes empty
    odd = np.flatnonzero((types != 3) & (types != 6) & (types != -1))
    for i in odd:
        g = geoms[i]
        if g is None or g.is_empty:
            continue
        parts = [p for p in shapely.get_parts(g) if shapely.get_type_id(p) in (3, 6)]
        flat = [q for p in parts for q in shapely.get_parts(p)]
        out[i] = (shapely.multipolygons(flat) if len(flat) > 1 else flat[0]) if flat else shapely.Polygon()
    return out


def repair(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """make_valid on the invalid ones, keeping polygonal parts; returns (geoms, mask of repaired)."""
    geoms = np.asarray(geoms, dtype=object)
    bad = ~shapely.is_valid(geoms) & ~shapely.is_missing(geoms)
    if bad.any():
        geoms = geoms.copy()
        geoms[bad] = polygonal(shapely.make_valid(geoms[bad]))
    return geoms, bad


PARALLEL_PAIRS = 2_000  # above this many pairs, intersections run on every core (GEOS releases the GIL)


def safe_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    workers = min(os.cpu_count() or 1, 8)
    if workers > 1 and len(a) >= PARALLEL_PAIRS:
        from concurrent.futures import ThreadPoolExecutor

        bounds = np.linspace(0, len(a), workers + 1).astype(int)
        with ThreadPoolExecutor(workers) as pool:
            parts = pool.map(lambda k: _intersection(a[bounds[k]:bounds[k + 1]], b[bounds[k]:bounds[k + 1]]),
                             range(workers))
            return np.concatenate(list(parts))
    return _intersection(a, b)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return shapely.intersection(a, b)
    except shapely.errors.GEOSException:
        out = np.empty(len(a), dtype=object)
        for i, (ga, gb) in enumerate(zip(a, b, strict=True)):
            try:
                out[i] = shapely.intersection(ga, gb)
            except shapely.errors.GEOSException:
                out[i] = shapely.intersection(shapely.make_valid(ga), shapely.make_valid(gb))
        return out


def cells_of_bounds(bounds: np.ndarray, x0: float, y0: float, size: float, *,
                    y_down: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (item, col, row) of a square grid of side ``size`` that an item's bbox overlaps, in one
    vectorised expansion (no Python loop over items). Rows count up from ``y0`` (map grids), or down
    from ``y0`` when ``y_down`` (raster windows, ``y0`` = top)."""
    c0 = np.floor((bounds[:, 0] - x0) / size).astype(np.int64)
    c1 = np.floor((bounds[:, 2] - x0) / size).astype(np.int64)
    if y_down:
        r0 = np.floor((y0 - bounds[:, 3]) / size).astype(np.int64)
        r1 = np.floor((y0 - bounds[:, 1]) / size).astype(np.int64)
    else:
        r0 = np.floor((bounds[:, 1] - y0) / size).astype(np.int64)
        r1 = np.floor((bounds[:, 3] - y0) / size).astype(np.int64)
    nc = c1 - c0 + 1
    count = nc * (r1 - r0 + 1)
    item = np.repeat(np.arange(len(bounds)), count)
    local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return item, c0[item] + local % nc[item], r0[item] + local // nc[item]


class SpatialSource:
    """A polygon layer readable by windows; from an in-memory frame or a GeoParquet file."""

    def __init__(self, frame: gpd.GeoDataFrame | None = None, *, path: str | Path | None = None,
                 columns: list[str] | None = None, cache_groups: int = 16,
                 derive: Callable[[gpd.GeoDataFrame], gpd.GeoDataFrame] | None = None,
                 read_columns: list[str] | None = None) -> None:
        """``derive`` computes extra columns on each block read (e.g. the matrix class of a layer
        without ``artif``) from ``read_columns``; ``columns`` is what callers get."""
        if (frame is None) == (path is None):
            raise ValueError("give a frame or a path")
        self.columns = columns
        self.derive = derive
        self.read_columns = read_columns if read_columns is not None else columns
        self._frame = None
        self._cache: OrderedDict[int, gpd.GeoDataFrame] = OrderedDict()
        self._cache_groups = cache_groups
        if frame is not None:
            frame = frame.reset_index(drop=True)
            if derive is not None:
                frame = derive(frame)
            self._frame = frame if columns is None else frame[[*columns, frame.geometry.name]]
            self.crs = frame.crs
            b = frame.geometry.bounds.to_numpy(dtype=float)
            self.bounds = b
            self.offsets = np.array([0, len(frame)])
        else:
            self.path = Path(path)
            self._file = pq.ParquetFile(self.path)
            geo = json.loads(self._file.schema_arrow.metadata[b"geo"])
            self.geometry_column = geo["primary_column"]
            from pyproj import CRS

            crs = geo["columns"][self.geometry_column].get("crs", "OGC:CRS84")
            self.crs = CRS.from_user_input(crs) if crs is not None else None
            meta = self._file.metadata
            sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            self.bounds = self._read_bounds()
        self.n = len(self.bounds)

    @classmethod
    def open(cls, source: gpd.GeoDataFrame | str | Path, columns: list[str] | None = None) -> SpatialSource:
        if isinstance(source, gpd.GeoDataFrame):
            return cls(source, columns=columns)
        return cls(path=source, columns=columns)

    def _read_bounds(self) -> np.ndarray:
        names = self._file.schema_arrow.names
        if "bbox" in names:
            table = self._file.read(columns=["bbox"])
            col = table.column("bbox").combine_chunks()
            return np.column_stack([col.field(k).to_numpy(zero_copy_only=False)
                                    for k in ("xmin", "ymin", "xmax", "ymax")]).astype(float)
        parts = []
        for i in range(self._file.metadata.num_row_groups):
            t = self._file.read_row_group(i, columns=[self.geometry_column])
            parts.append(shapely.bounds(shapely.from_wkb(t.column(0).to_numpy(zero_copy_only=False))))
        return np.concatenate(parts) if parts else np.zeros((0, 4))

    @property
    def total_bounds(self) -> tuple[float, float, float, float]:
        b = self.bounds
        ok = ~np.isnan(b).any(axis=1)
        if not ok.any():
            return (0.0, 0.0, 0.0, 0.0)
        b = b[ok]
        return (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())

    def _group(self, i: int) -> gpd.GeoDataFrame:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        cols = None
        if self.read_columns is not None:
            cols = [*self.read_columns, self.geometry_column]
        t = self._file.read_row_group(i, columns=cols)
        geom = shapely.from_wkb(t.column(self.geometry_column).to_numpy(zero_copy_only=False))
        keep = [c for c in t.column_names if c not in (self.geometry_column, "bbox")]
        df = t.select(keep).to_pandas()
        gdf = gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geom, crs=self.crs), crs=self.crs)
        if self.derive is not None:
            gdf = self.derive(gdf)
            if self.columns is not None:
                gdf = gdf[[*self.columns, gdf.geometry.name]]
        self._cache[i] = gdf
        if len(self._cache) > self._cache_groups:
            self._cache.popitem(last=False)
        return gdf

    def take(self, idx: np.ndarray) -> gpd.GeoDataFrame:
        """Rows ``idx`` (global positions, any order) as a frame indexed by those positions."""
        idx = np.asarray(idx, dtype=np.int64)
        if self._frame is not None:
            out = self._frame.iloc[idx]
            out.index = idx
            return out
        groups = np.searchsorted(self.offsets, idx, side="right") - 1
        frames = []
        order = []
        for g in np.unique(groups):
            sel = np.flatnonzero(groups == g)
            part = self._group(int(g)).iloc[idx[sel] - self.offsets[g]]
            part.index = idx[sel]
            frames.append(part)
            order.append(sel)
        if not frames:
            return self._group(0).iloc[:0] if self.n else gpd.GeoDataFrame(geometry=[], crs=self.crs)
        out = pd.concat(frames)
        return out.loc[idx] if len(frames) > 1 else out

    def in_window(self, window: tuple[float, float, float, float]) -> np.ndarray:
        b = self.bounds
        xmin, ymin, xmax, ymax = window
        return np.flatnonzero((b[:, 0] <= xmax) & (b[:, 2] >= xmin) & (b[:, 1] <= ymax) & (b[:, 3] >= ymin))

    def iter_chunks(self, rows: int = 50_000) -> Iterator[gpd.GeoDataFrame]:
        """The whole layer, a block of rows at a time (streaming passes: areas, rasterising…)."""
        for start in range(0, self.n, rows):
            yield self.take(np.arange(start, min(self.n, start + rows)))

    def total_area(self) -> float:
        return float(sum(chunk.geometry.area.sum() for chunk in self.iter_chunks()))

    def wkb_blocks(self, rows: int) -> Iterator[tuple[int, pa.Array]]:
        """``(first row, WKB column)`` of the layer, ``rows`` rows at a time (within a Parquet row group),
        read without building any geometry."""
        if self._frame is not None:
            geoms = self._frame.geometry.to_numpy()
            for start in range(0, self.n, rows):
                yield start, pa.array(shapely.to_wkb(geoms[start:start + rows]), type=pa.binary())
            return
        for g in range(len(self.offsets) - 1):
            column = self._file.read_row_group(g, columns=[self.geometry_column]).column(0).combine_chunks()
            for start in range(0, len(column), rows):
                yield int(self.offsets[g]) + start, column.slice(start, rows)

    def attributes(self) -> pd.DataFrame:
        """The ``columns`` of every row, without geometry; a ``derive`` is applied to the distinct value
        combinations of its ``read_columns`` only (it is a function of each row's values)."""
        if self._frame is not None:
            return pd.DataFrame(self._frame.drop(columns=self._frame.geometry.name)).reset_index(drop=True)
        names = self._file.schema_arrow.names
        read = self.read_columns if self.read_columns is not None else [
            c for c in names if c not in (self.geometry_column, "bbox")]
        frame = self._file.read(columns=read).to_pandas()
        if self.derive is not None:
            combos = frame.drop_duplicates().reset_index(drop=True)
            derived = pd.DataFrame(self.derive(combos))
            frame = frame.merge(derived, on=list(read), how="left", sort=False)
        return frame if self.columns is None else frame[self.columns]


FINE = 64  # grid cells per chunk on average: chunks are built from runs of cells along a Hilbert curve


@dataclass
class Tiling:
    """Chunks of a layer: each polygon belongs to the fine grid cell holding the centre of its bbox;
    cells, in Hilbert order, are grouped greedily into chunks of about ``target`` polygons. Dense
    towns and empty countryside both give chunks of bounded size, and each chunk is spatially compact."""

    size: float  # side of a square holding ``target`` polygons at the mean density (m)
    chunk_of: np.ndarray  # chunk number per polygon (-1: empty geometry)
    count: int

    @classmethod
    def for_source(cls, src: SpatialSource, target: int) -> Tiling:
        b = src.bounds
        ok = ~np.isnan(b).any(axis=1)
        xmin, ymin, xmax, ymax = src.total_bounds
        width, height = max(xmax - xmin, 1.0), max(ymax - ymin, 1.0)
        n = max(int(ok.sum()), 1)
        size = max(float(np.sqrt(width * height * target / n)), 1.0)
        fine = size / np.sqrt(FINE)
        nx = int(np.ceil(width / fine)) + 1
        ny = int(np.ceil(height / fine)) + 1
        cx = np.where(ok, (b[:, 0] + b[:, 2]) / 2, xmin)
        cy = np.where(ok, (b[:, 1] + b[:, 3]) / 2, ymin)
        tx = np.clip(np.floor((cx - xmin) / fine).astype(np.int64), 0, nx - 1)
        ty = np.clip(np.floor((cy - ymin) / fine).astype(np.int64), 0, ny - 1)
        cells, cell_of, counts = np.unique(ty * nx + tx, return_inverse=True, return_counts=True)
        order = np.argsort(hilbert_index(cells % nx, cells // nx, (0, 0, nx, ny), level=16), kind="stable")
        chunk_of_cell = np.empty(len(cells), dtype=np.int64)
        chunk, filled = 0, 0
        for c in order:  # greedy runs along the curve (number of cells ≈ FINE × chunks: small)
            if filled and filled + counts[c] > target:
                chunk, filled = chunk + 1, 0
            chunk_of_cell[c] = chunk
            filled += counts[c]
        chunk_of = np.where(ok, chunk_of_cell[cell_of], -1)
        tiling = cls(size, chunk_of, chunk + 1 if len(cells) else 0)
        tiling._sorted = np.argsort(chunk_of, kind="stable")
        keys = chunk_of[tiling._sorted]
        tiling._bounds = np.searchsorted(keys, np.arange(tiling.count + 1))
        return tiling

    @property
    def order(self) -> range:
        return range(self.count)

    def members(self, chunk: int) -> np.ndarray:
        return np.sort(self._sorted[self._bounds[chunk]:self._bounds[chunk + 1]])


@dataclass
class Chunk:
    """The pieces ``a ∩ b`` of one chunk: global row numbers, areas, geometries, and the rows read."""

    ia: np.ndarray
    ib: np.ndarray
    area: np.ndarray
    geometry: np.ndarray
    a: gpd.GeoDataFrame  # rows of A owned by the chunk, indexed by global row number
    b: gpd.GeoDataFrame  # rows of B in the chunk's window

    def frame(self, columns_a: list[str], columns_b: list[str], suffixes: tuple[str, str] = ("_a", "_b"),
              mask: np.ndarray | None = None) -> gpd.GeoDataFrame:
        sel = slice(None) if mask is None else mask
        ia, ib = self.ia[sel], self.ib[sel]
        data = {"ia": ia, "ib": ib}
        for c in columns_a:
            data[c + suffixes[0]] = self.a[c].reindex(ia).to_numpy()
        for c in columns_b:
            data[c + suffixes[1]] = self.b[c].reindex(ib).to_numpy()
        data["area"] = self.area[sel]
        return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(self.geometry[sel], crs=self.a.crs), crs=self.a.crs)


HUGE_TILES = 1.0  # an A polygon wider than this many chunk sides is overlaid on its own, group by group


def _intersect(ga: np.ndarray, ia: np.ndarray, gb: np.ndarray, ib: np.ndarray, *, match_identical: bool,
               min_area: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pieces of positive area between two sets of polygons (global row numbers ``ia``, ``ib``)."""
    out_ia: list[np.ndarray] = []
    out_ib: list[np.ndarray] = []
    out_geom: list[np.ndarray] = []
    rest_a = np.ones(len(ia), dtype=bool)
    rest_b = np.ones(len(ib), dtype=bool)
    if match_identical and len(ib) and len(ia):
        lookup: dict[bytes, int] = {}
        for j, w in enumerate(shapely.to_wkb(gb)):
            if w is not None:
                lookup.setdefault(w, j)
        pairs = np.array([(i, j) for i, w in enumerate(shapely.to_wkb(ga))
                          if w is not None and (j := lookup.get(w)) is not None], dtype=np.int64).reshape(-1, 2)
        if len(pairs):
            rest_a[pairs[:, 0]] = False
            rest_b[pairs[:, 1]] = False
            out_ia.append(ia[pairs[:, 0]])
            out_ib.append(ib[pairs[:, 1]])
            out_geom.append(ga[pairs[:, 0]])
    sa = np.flatnonzero(rest_a & ~shapely.is_missing(ga) & ~shapely.is_empty(ga)) if len(ia) else np.zeros(0, int)
    sb = np.flatnonzero(rest_b & ~shapely.is_missing(gb) & ~shapely.is_empty(gb)) if len(ib) else np.zeros(0, int)
    if len(sa) and len(sb):
        qa, qb = STRtree(gb[sb]).query(ga[sa], predicate="intersects")
        if len(qa):
            inter = polygonal(safe_intersection(ga[sa][qa], gb[sb][qb]))
            keep = shapely.area(inter) >= min_area
            out_ia.append(ia[sa[qa[keep]]])
            out_ib.append(ib[sb[qb[keep]]])
            out_geom.append(inter[keep])
    if not out_ia:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, dtype=object)
    return np.concatenate(out_ia), np.concatenate(out_ib), np.concatenate(out_geom)


def overlay_chunks(a: SpatialSource, b: SpatialSource, *, target: int = 20_000,
                   min_area: float = MIN_PIECE_AREA, match_identical: bool = True,
                   on_chunk: Callable[[int, int], None] | None = None) -> Iterator[Chunk]:
    """Yield, chunk by chunk, every piece ``a ∩ b`` of positive area between two polygon layers.

    A polygon of A much larger than a tile (a forest, a lagoon) would stretch its chunk's window over
    most of B; it is overlaid on its own against B one tile-sized group of B polygons at a time."""
    tiling = Tiling.for_source(a, target)
    total = len(tiling.order)
    for k, tile in enumerate(tiling.order):
        ia_all = tiling.members(tile)
        bounds = a.bounds[ia_all]
        extent = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
        huge = extent > HUGE_TILES * tiling.size
        fa = a.take(ia_all)
        ga = fa.geometry.to_numpy()
        normal = ia_all[~huge]
        b_frames: list[gpd.GeoDataFrame] = []
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        if len(normal):
            nb = bounds[~huge]
            window = (nb[:, 0].min(), nb[:, 1].min(), nb[:, 2].max(), nb[:, 3].max())
            ib_all = b.in_window(window)
            if len(ib_all):  # only B polygons whose bbox meets the bbox of some A polygon of the chunk
                boxes_a = STRtree(shapely.box(nb[:, 0], nb[:, 1], nb[:, 2], nb[:, 3]))
                cb = b.bounds[ib_all]
                hit = boxes_a.query(shapely.box(cb[:, 0], cb[:, 1], cb[:, 2], cb[:, 3]), predicate="intersects")[0]
                ib_all = ib_all[np.unique(hit)]
            fb = b.take(ib_all)
            b_frames.append(fb)
            parts.append(_intersect(ga[~huge], normal, fb.geometry.to_numpy(), ib_all,
                                    match_identical=match_identical, min_area=min_area))
        for pos in np.flatnonzero(huge):
            cand = b.in_window(tuple(bounds[pos]))  # type: ignore[arg-type]
            if not len(cand):
                continue
            cb = b.bounds[cand]
            order = np.argsort(hilbert_index((cb[:, 0] + cb[:, 2]) / 2, (cb[:, 1] + cb[:, 3]) / 2,
                                             tuple(bounds[pos])), kind="stable")  # type: ignore[arg-type]
            for start in range(0, len(cand), target):
                group = np.sort(cand[order[start:start + target]])
                fb = b.take(group)
                ia_h, ib_h, g_h = _intersect(ga[pos:pos + 1], ia_all[pos:pos + 1], fb.geometry.to_numpy(), group,
                                             match_identical=False, min_area=min_area)
                if len(ib_h):
                    parts.append((ia_h, ib_h, g_h))
                    b_frames.append(fb.loc[np.unique(ib_h)])
        ia = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        ib = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        geom = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, dtype=object)
        fb_all = pd.concat(b_frames) if len(b_frames) > 1 else (b_frames[0] if b_frames else b.take(np.zeros(0, int)))
        fb_all = fb_all[~fb_all.index.duplicated()]
        if on_chunk is not None:
            on_chunk(k + 1, total)
        yield Chunk(ia, ib, shapely.area(geom) if len(geom) else np.zeros(0), geom, fa, fb_all)


@dataclass
class MatchedOverlay:
    """The overlay of two layers with identical geometries matched first (:func:`overlay_identical_first`).

    ``frames`` yields the pieces as frames of ``<column>_a``, ``<column>_b``, ``area`` and ``geometry``:
    first, the identical pairs whose attributes agree, summed by combination of attributes (no
    geometry: nothing of them is written, only counted); then the identical pairs whose attributes
    differ (their geometry is the polygon's own); then the pieces of the remaining polygons, overlaid
    chunk by chunk."""

    frames: Iterator[pd.DataFrame]
    area_a: float  # total area of each layer
    area_b: float
    blocks: int  # blocks of ``target`` polygons of A read
    identical: int  # pairs matched by fingerprint, without any geometric operation
    unmatched_a: int  # polygons left to the geometric overlay
    unmatched_b: int


def _areas_of_others(column: pa.Array, status: np.ndarray, area: np.ndarray) -> None:
    """Area by GEOS of the rows the digest could not read (3D, big-endian, other types)."""
    other = np.flatnonzero(status > 1)
    if len(other):
        geoms = shapely.from_wkb(column.take(pa.array(other)).to_numpy(zero_copy_only=False))
        area[other] = shapely.area(polygonal(geoms))


def _coded(frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each column as an object array whose equal values are one shared object (8 bytes a row, not a
    string each), and the number of each row's combination of values."""
    columns: dict[str, np.ndarray] = {}
    combo = np.zeros(len(frame), np.int64)
    for c in frame.columns:
        codes, uniques = pd.factorize(frame[c], use_na_sentinel=True)
        values = np.append(np.asarray(uniques, dtype=object), None)  # code −1 (missing) → None
        columns[c] = values[codes]
        combo = combo * np.int64(len(uniques) + 1) + (codes + 1)
    return columns, np.unique(combo, return_inverse=True)[1].ravel()


def _suffixed(columns: dict[str, np.ndarray], rows: np.ndarray, suffix: str) -> dict[str, np.ndarray]:
    return {f"{c}{suffix}": values[rows] for c, values in columns.items()}


def overlay_identical_first(a: SpatialSource, b: SpatialSource, *, target: int = 20_000,
                            min_area: float = MIN_PIECE_AREA,
                            needs_geometry: Callable[[pd.DataFrame], np.ndarray] | None = None,
                            max_unmatched: float = 0.3) -> MatchedOverlay | None:
    """Every piece ``a ∩ b`` of positive area, for two layers that are partitions (as OCS GE layers are),
    with the polygons that are identical in both (same WKB: most of them between two millésimes) paired
    by a fingerprint of their WKB (:mod:`.wkb_digest`) and never parsed, measured by GEOS nor
    intersected; only the others go through :func:`overlay_chunks`. ``needs_geometry`` says, on a frame
    of attributes ``<column>_a``/``<column>_b``, which identical pairs need their geometry (those that
    will be written); None: all of them. Memory: a fingerprint, an area and the attributes per polygon,
    one block of WKB, and the polygons that are not identical. Returns None, having read A, when more
    than ``max_unmatched`` of A is not identical to B: then :func:`overlay_chunks` is the better tool.

    For a partition, a polygon identical to one of the other layer overlaps nothing else there, so the
    pairs found are exactly the pieces the full overlay gives for those polygons. A geometry repeated
    within a layer is never paired (it goes to the geometric overlay)."""
    (attrs_a, combo_a), (attrs_b, combo_b) = _coded(a.attributes()), _coded(b.attributes())
    # B: fingerprints and areas, one block at a time
    parts = []
    for _, column in b.wkb_blocks(max(target, 1)):
        h1, h2, area, status = digest(column)
        _areas_of_others(column, status, area)
        parts.append((h1, h2, area, status))
    if not parts:
        parts = [(np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0), np.zeros(0, np.int8))]
    hb1, hb2, area_b, status_b = (np.concatenate(p) for p in zip(*parts, strict=True))
    del parts
    ok_b = np.flatnonzero(status_b == OK)
    keys, first, counts = np.unique(hb1[ok_b], return_index=True, return_counts=True)
    keys, rows_of_key = keys[counts == 1], ok_b[first[counts == 1]]
    claimed = np.zeros(b.n, dtype=bool)
    # A: fingerprints, pairing, and the WKB of what needs geometry, one block at a time
    area_a = np.zeros(a.n)
    pair_a: list[np.ndarray] = []
    pair_b: list[np.ndarray] = []
    keep_pairs: list[tuple[np.ndarray, np.ndarray, pa.Array]] = []  # identical, attributes differ
    keep_a: list[tuple[np.ndarray, pa.Array]] = []  # not identical
    unmatched = 0
    blocks = 0
    for start, column in a.wkb_blocks(max(target, 1)):
        blocks += 1
        h1, h2, area, status = digest(column)
        _areas_of_others(column, status, area)
        area_a[start:start + len(column)] = area
        pos = np.searchsorted(keys, h1)
        pos[pos >= len(keys)] = 0
        rb = rows_of_key[pos] if len(keys) else np.zeros(len(h1), np.int64)
        match = (status == OK) & (len(keys) > 0)
        if len(keys):
            match &= (keys[pos] == h1) & (hb2[rb] == h2)
        local = np.flatnonzero(match)
        local = local[~claimed[rb[local]]]
        local = local[np.unique(rb[local], return_index=True)[1]] if len(local) else local  # first claim wins
        claimed[rb[local]] = True
        ia, ib = start + local, rb[local]
        if len(local):
            mask = np.ones(len(local), bool) if needs_geometry is None else np.asarray(needs_geometry(
                pd.DataFrame({**_suffixed(attrs_a, ia, "_a"), **_suffixed(attrs_b, ib, "_b")})), dtype=bool)
            if mask.any():
                keep_pairs.append((ia[mask], ib[mask], column.take(pa.array(local[mask]))))
            pair_a.append(ia[~mask])
            pair_b.append(ib[~mask])
        rest = np.ones(len(column), bool)
        rest[local] = False
        rest &= status != MISSING  # null or empty: no piece
        if rest.any():
            keep_a.append((start + np.flatnonzero(rest), column.filter(pa.array(rest))))
            unmatched += int(rest.sum())
            if unmatched > max_unmatched * max(a.n, 1) and unmatched > target:
                return None
    # B again: the WKB of the polygons no polygon of A claimed
    rest_b = ~claimed & (status_b != MISSING)
    keep_b: list[tuple[np.ndarray, pa.Array]] = []
    if rest_b.any():
        for start, column in b.wkb_blocks(max(target, 1)):
            sel = rest_b[start:start + len(column)]
            if sel.any():
                keep_b.append((start + np.flatnonzero(sel), column.filter(pa.array(sel))))
    identical = int(sum(len(p) for p in pair_a)) + int(sum(len(p[0]) for p in keep_pairs))

    def frames() -> Iterator[pd.DataFrame]:
        ia = np.concatenate(pair_a) if pair_a else np.zeros(0, np.int64)
        ib = np.concatenate(pair_b) if pair_b else np.zeros(0, np.int64)
        if len(ia):  # summed by combination of attributes: the bulk of the layer in a few rows
            key = combo_a[ia] * np.int64(combo_b.max(initial=0) + 1) + combo_b[ib]
            keys, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            both = pd.DataFrame({**_suffixed(attrs_a, ia[first], "_a"), **_suffixed(attrs_b, ib[first], "_b")})
            both["area"] = np.bincount(inverse.ravel(), weights=area_a[ia], minlength=len(keys))
            yield both
        for ia_k, ib_k, wkb in keep_pairs:
            data = {**_suffixed(attrs_a, ia_k, "_a"), **_suffixed(attrs_b, ib_k, "_b"), "area": area_a[ia_k]}
            geometry = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))
            yield gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geometry, crs=a.crs), crs=a.crs)
        rest_frames = [_frame_of(keep_a, attrs_a, a.crs), _frame_of(keep_b, attrs_b, b.crs)]
        keep_a.clear()
        keep_b.clear()
        if not len(rest_frames[0]) or not len(rest_frames[1]):
            return
        rows_a, rows_b = (f.index.to_numpy() for f in rest_frames)
        for chunk in overlay_chunks(SpatialSource(rest_frames[0]), SpatialSource(rest_frames[1]), target=target,
                                    min_area=min_area):
            piece = chunk.frame(list(attrs_a), list(attrs_b))
            piece["ia"], piece["ib"] = rows_a[piece["ia"].to_numpy()], rows_b[piece["ib"].to_numpy()]
            yield piece

    return MatchedOverlay(frames(), float(area_a.sum()), float(area_b.sum()), blocks, identical,
                          int(sum(len(k[0]) for k in keep_a)), int(rest_b.sum()))


def _frame_of(parts: list[tuple[np.ndarray, pa.Array]], attrs: dict[str, np.ndarray], crs: object
              ) -> gpd.GeoDataFrame:
    """Rows (global numbers as index) with their attributes and geometries parsed from kept WKB."""
    rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    wkb = np.concatenate([p[1].to_numpy(zero_copy_only=False) for p in parts]) if parts else np.zeros(0, object)
    geometry = shapely.from_wkb(wkb) if len(wkb) else np.zeros(0, object)
    frame = gpd.GeoDataFrame({c: values[rows] for c, values in attrs.items()},
                             geometry=gpd.GeoSeries(geometry, crs=crs), crs=crs)
    frame.index = rows
    return frame
