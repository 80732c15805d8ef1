"""Categorical COGs of a millésime: couverture, usage, artificialisation and zone construite.

Rasterised window by window (one window in memory at a time) into a tiled GeoTIFF in a per-run
scratch folder (removed on any exit, SIGTERM included, and swept at the next run), then copied by the
one COG writer (:mod:`inference_batch.writers.cog`). uint8, value 0 = nodata (outside the département
and wherever no polygon lies), the official palette embedded as a GDAL colour table so that any viewer
(QGIS, TiTiler) shows the IGN colours.

Pixel size (``DEFAULT_RESOLUTION``, 1.5 m): what is served decides it. The Géoplateforme publishes OCS GE
in ``PM_6_16`` (geoplateforme-rok4.md), our tile layers serve zooms 5–18 (``services/tiles/layers.py``),
and zoom 16's ground pixel at mainland France's mean latitude is 1.64 m (1.59 m in LAMB93's ladder):
1.5 m is the clean half-metre just below, so zoom 16 tiles are never upsampled, and 17–18 oversample a
class map whose exact boundaries the PMTiles give at every zoom. OCS GE's smallest units (50 m²
buildings) still cover ≥ 20 pixels. The former 0.5 m cost 9× the pixels (57 Gpx per raster for a
14 000 km² département, against 6.4 Gpx). ``--resolution`` still chooses another size.

Overviews: NEAREST, never GDAL's ``mode`` (12 minutes per raster at 10⁶ polygons) nor any pass over the
full-resolution raster: each window is decimated into every overview level while still in memory, and
the COG driver copies the levels as given. On a partition into polygons far larger than a pixel,
NEAREST picks a class of the pixel's footprint — what rasterising each overview level from the vectors
would burn — and invents no class, as the raster contract asks (``mode``/``nearest``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import math
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.shutil
import shapely
from affine import Affine
from rasterio.features import rasterize
from rasterio.transform import from_origin
from rasterio.windows import Window

from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import StepError, key, step_outputs
from inference_batch.products.inputs import layer_key, with_artif
from inference_batch.products.spatial import SpatialSource, cells_of_bounds
from inference_batch.scratch import scratch
from inference_batch.writers.cog import copy_to_cog
from inference_batch.writers.transaction import transaction
from ocsge import rasters, schema
from ocsge.errors import OcsgeError
from ocsge.nomenclature import NODATA, TABLES, Kind, leaves_under, palette
from ocsge.progress import done, progress, step
from ocsge.storage import Storage


def resolution_for_zoom(zoom: int, latitude: float = 46.5, tile_size: int = 256) -> float:
    """Ground size (m) of a pixel of a ``tile_size`` Web Mercator tile at ``zoom`` and ``latitude``."""
    return 2 * math.pi * 6_378_137 / (tile_size * 2**zoom) * math.cos(math.radians(latitude))


NATIVE_ZOOM = 16
# Pixel size of the class COGs: the native zoom of the served raster layers, at mainland France's mean
# latitude (46.5°N): ≈ 1.64 m → 1.5 m. Why zoom 16 and not the layers' max zoom (18, services/tiles):
# OCS GE's smallest units are 50 m² buildings (≈ 7 m a side) and 200–2 500 m² elsewhere, so at 1.5 m
# the smallest polygon still covers ≥ 20 pixels, and zooms 17–18 are served by oversampling a class
# map whose edges come from vectors anyway (the PMTiles give the exact boundaries at every zoom).
# 0.5 m (the former default, ≈ zoom 18) costs 9× the pixels: 57 Gpx per raster for a 14 000 km²
# département, against 6.4 Gpx at 1.5 m. ``--resolution`` still chooses another size.
DEFAULT_RESOLUTION = math.floor(resolution_for_zoom(NATIVE_ZOOM) * 2) / 2
WINDOW = 4096
COG_BLOCK = 512
# DEFLATE level of the class COGs. DEFLATE and not ZSTD: these COGs are downloads (alone and in the archive),
# and every desktop GIS reads DEFLATE TIFFs, while ZSTD needs GDAL ≥ 2.3 / libtiff ≥ 4.0.10 and is absent
# from ArcGIS's list of TIFF compressions. Level 5 rather than GDAL's 6 (libdeflate): on a 640 Mpx class raster
# the COG copy took 2.5–2.6 CPU-s instead of 3.6–3.8 for a file 21 % larger (8.4 MB instead of 7.0); levels 1–4
# cost as much as 5 and double the size (12.7 MB); ZSTD level 1 would take 0.8 CPU-s (7.6 MB).
# benchmarks/RESULTS_departement.md has the figures. Same pixels at any level: the rendering's fingerprint
# ignores it, so COGs written at another level stay up to date.
COG_DEFLATE_LEVEL = 5
RENDER_CACHE_BYTES = 512 * 2**20

ARTIF_PALETTE = rasters.palette("artif")
CONSTRUCTION_PALETTE = rasters.palette("construction")
CONSTRUCTION_LABELS = rasters.labels("construction")
INSIDE_ZC = rasters.value_of("construction", "zone construite")
OUTSIDE_ZC = rasters.value_of("construction", "hors zone construite")


def code_values(kind: Kind) -> Callable[[object], int]:
    """Raster value of a code; an intermediate code takes the leaf of the same colour (CS2.1.1 →
    CS2.1.1.3), else its first leaf; missing and unknown codes are nodata."""
    table = TABLES[kind]
    cache: dict[object, int] = {}

    def value(code: object) -> int:
        if code in cache:
            return cache[code]
        entry = table.get(code) if isinstance(code, str) else None
        v = NODATA
        if entry is not None:
            if entry.raster_value is not None:
                v = entry.raster_value
            else:
                leaves = leaves_under(kind, entry.code)
                same = [leaf for leaf in leaves if table[leaf].colour == entry.colour]
                pick = (same or leaves or [None])[0]
                v = table[pick].raster_value if pick else NODATA  # type: ignore[assignment]
        cache[code] = v
        return v

    return value


@dataclass
class Burn:
    """A layer burnt over a raster: its source and the value of each of its polygons."""

    source: SpatialSource
    values: Callable[[gpd.GeoDataFrame], np.ndarray]


@dataclass
class Raster:
    """One COG of a rendering pass: the value of each polygon of the pass's base layer, then ``overlays``
    burnt over it in order."""

    path: Path
    colormap: dict[int, tuple[int, int, int, int]]
    values: Callable[[gpd.GeoDataFrame], np.ndarray]
    overlays: tuple[Burn, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


def window_buckets(bounds: np.ndarray, x0: float, y_top: float, size_m: float) -> dict[tuple[int, int], np.ndarray]:
    """Rows of a layer by raster window (col, row) their bbox overlaps: one pass over the bboxes
    instead of one scan of the whole layer per window."""
    ok = ~np.isnan(bounds).any(axis=1)
    idx = np.flatnonzero(ok)
    rep, cols, rows = cells_of_bounds(bounds[ok], x0, y_top, size_m, y_down=True)
    order = np.lexsort((rows, cols))
    cols, rows, rows_idx = cols[order], rows[order], idx[rep][order]
    keys = cols * (1 << 32) + rows
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    return {(int(cols[s]), int(rows[s])): np.sort(rows_idx[s:e]) for s, e in zip(starts, ends, strict=True)}


def _burnable(frame: gpd.GeoDataFrame) -> np.ndarray:
    geoms = frame.geometry.to_numpy()
    return ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))


def _burn_over(out: np.ndarray, burn: Burn, idx: np.ndarray, transform: Affine) -> None:
    frame = burn.source.take(idx)
    vals = burn.values(frame)
    keep = _burnable(frame) & (vals != NODATA)
    if keep.any():
        rasterize(
            zip(frame.geometry.to_numpy()[keep], vals[keep].astype(int), strict=True),
            out=out,
            transform=transform,
            dtype=np.uint8,
        )


def position_dtype(polygons: int) -> type[np.integer]:
    """The smallest type holding the positions 0…``polygons`` of a window's burn: uint16 for the few thousand
    polygons of a window (OCS GE density), int32 beyond. Half the bytes of int32, and rasterio's rasterize of a
    4096² window of 2 700 polygons took 0.11 CPU-s in uint16 against 0.28–0.68 s in int32 (its burn and
    the lookup that follows go over every pixel of the window)."""
    return np.uint16 if polygons < np.iinfo(np.uint16).max else np.int32


def overview_factors(width: int, height: int, blocksize: int = COG_BLOCK, window: int = WINDOW) -> list[int]:
    """Decimation factors of the overview levels: halve until the level fits one ``blocksize`` block, as
    GDAL's COG driver would (rio-cogeo wants overviews down to 512 px). Capped at ``window`` so that every
    level is a whole stride of each streamed window (never reached by a département: 4096 × 512 px)."""
    factors: list[int] = []
    f = 1
    while (math.ceil(width / f) > blocksize or math.ceil(height / f) > blocksize) and f * 2 <= window:
        f *= 2
        factors.append(f)
    return factors


def decimate(block: np.ndarray, factor: int) -> np.ndarray:
    """NEAREST reduction of a window whose offsets are multiples of ``factor``: the top-left pixel of each
    ``factor``² cell, the pixel GDAL's NEAREST overviews pick when the size is a multiple of the factor
    (``int(0.5 + i·W/Wₖ)`` = ``i·factor``), and a pixel of the cell's own footprint otherwise. A view: free."""
    return block[::factor, ::factor]


def _level_profile(profile: dict, factor: int) -> dict:
    width, height = math.ceil(profile["width"] / factor), math.ceil(profile["height"] / factor)
    level = {**profile, "width": width, "height": height, "transform": profile["transform"] @ Affine.scale(factor)}
    if min(width, height) < COG_BLOCK:  # a tile larger than the image: plain strips instead
        level.update(tiled=False)
        level.pop("blockxsize"), level.pop("blockysize")
    return level


def _mosaic(
    parts: list[tuple[Path, int, int]],
    width: int,
    height: int,
    vrt: Path,
    template: Path | None = None,
    overviews: list[Path] = (),
) -> None:
    """A VRT stacking ``parts`` (path, first row, rows) into one ``width × height`` raster, with
    ``overviews`` as its overview datasets (GDAL's ``<Overview>``): the COG driver copies those as they are
    (``OVERVIEWS=FORCE_USE_EXISTING``) instead of computing any. ``template`` (the first part) gives the
    georeferencing, nodata, colour table and tags."""
    if template is not None:
        rasterio.shutil.copy(template, vrt, driver="VRT")
        root = ElementTree.parse(vrt).getroot()
    else:
        root = ElementTree.Element("VRTDataset")
        ElementTree.SubElement(root, "VRTRasterBand", dataType="Byte", band="1")
    root.set("rasterXSize", str(width))
    root.set("rasterYSize", str(height))
    band = root.find("VRTRasterBand")
    assert band is not None
    for source in [c for c in band if c.tag.endswith("Source")]:
        band.remove(source)
    for path, row, rows in parts:
        source = ElementTree.SubElement(band, "SimpleSource")
        ElementTree.SubElement(source, "SourceFilename", relativeToVRT="0").text = str(path)
        ElementTree.SubElement(source, "SourceBand").text = "1"
        ElementTree.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(width), ySize=str(rows))
        ElementTree.SubElement(source, "DstRect", xOff="0", yOff=str(row), xSize=str(width), ySize=str(rows))
    for level in overviews:
        ovr = ElementTree.SubElement(band, "Overview")
        ElementTree.SubElement(ovr, "SourceFilename", relativeToVRT="0").text = str(level)
        ElementTree.SubElement(ovr, "SourceBand").text = "1"
    ElementTree.ElementTree(root).write(vrt)


def default_workers() -> int:
    """Processes that rasterise a raster's strips: the cores this process may use, at most two (the batch
    machine's size; more would multiply the memory for little, the COG copy being multi-threaded anyway).
    One where other threads run (a server, a thread pool): forking them could copy a lock held by one of
    them and hang the worker."""
    if threading.active_count() > 1:
        return 1
    return max(1, min(2, len(os.sched_getaffinity(0))))


@dataclass(frozen=True)
class _Grid:
    profile: dict
    factors: list[int]
    window: int
    base_buckets: dict
    overlay_buckets: dict

    @property
    def width(self) -> int:
        return int(self.profile["width"])

    @property
    def height(self) -> int:
        return int(self.profile["height"])


def _strip_files(tmp: Path, output: int, strip: int, factors: list[int]) -> tuple[Path, list[Path]]:
    return tmp / f"raw{output}-{strip}.tif", [tmp / f"raw{output}-{strip}-ovr{f}.tif" for f in factors]


def _split_rows(grid: _Grid, workers: int) -> list[tuple[int, int]]:
    """Window rows cut into at most ``workers`` contiguous strips of about equal polygon counts (rows
    ``[y0, y1)``, each ``y0`` a multiple of the window, hence of every overview factor)."""
    starts = list(range(0, grid.height, grid.window))
    weight = np.zeros(len(starts))
    for (_, row), idx in grid.base_buckets.items():
        if 0 <= row < len(starts):
            weight[row] += len(idx)
    weight += max(1.0, weight.mean() / 10)  # pixels cost too, even where no polygon lies
    cuts = np.searchsorted(np.cumsum(weight), weight.sum() * np.arange(1, workers) / workers, side="left") + 1
    bounds = sorted({0, *(int(c) for c in cuts if 0 < c < len(starts)), len(starts)})
    return [(starts[i], starts[j] if j < len(starts) else grid.height) for i, j in itertools.pairwise(bounds)]


def _render_strip(
    base: SpatialSource,
    outputs: list[Raster],
    grid: _Grid,
    strip: int,
    rows: tuple[int, int],
    tmp: Path,
    advance: Callable[..., object],
    parent: int | None = None,
) -> None:
    """Rasterise rows ``[y0, y1)`` of every output, and decimate each window into every overview level,
    into this strip's own files (see :func:`rasterise`)."""
    y0, y1 = rows
    window, factors = grid.window, grid.factors
    profile = {**grid.profile, "height": y1 - y0, "transform": grid.profile["transform"] @ Affine.translation(0, y0)}
    none = np.zeros(0, np.int64)
    with contextlib.ExitStack() as stack:
        dsts, level_dsts = [], []
        for i, r in enumerate(outputs):
            raw, levels = _strip_files(tmp, i, strip, factors)
            dst = stack.enter_context(rasterio.open(raw, "w", **profile))
            dst.write_colormap(1, r.colormap)
            dst.update_tags(OVERVIEW_RESAMPLING="NEAREST", **r.tags)
            dsts.append(dst)
            level_dsts.append(
                [
                    stack.enter_context(rasterio.open(p, "w", **_level_profile(profile, f)))
                    for p, f in zip(levels, factors, strict=True)
                ]
            )
        for row_off in range(y0, y1, window):
            if parent is not None and os.getppid() != parent:
                os._exit(1)  # the run was killed (SIGKILL): its scratch folder is swept by the next one
            for col_off in range(0, grid.width, window):
                w = Window(col_off, row_off - y0, min(window, grid.width - col_off), min(window, y1 - row_off))
                wt = rasterio.windows.transform(w, profile["transform"])
                cell = (col_off // window, row_off // window)
                idx = grid.base_buckets.get(cell, none)
                dtype = position_dtype(len(idx))
                position = np.zeros((w.height, w.width), dtype=dtype)  # 0: no polygon, k: the (k-1)th of idx
                frame = base.take(idx)
                keep = _burnable(frame)
                if keep.any():
                    rasterize(
                        zip(frame.geometry.to_numpy()[keep], np.flatnonzero(keep) + 1, strict=True),
                        out=position,
                        transform=wt,
                        dtype=dtype,
                    )
                for dst, levels, r in zip(dsts, level_dsts, outputs, strict=True):
                    lut = np.zeros(len(idx) + 1, np.uint8)
                    lut[1:] = r.values(frame)
                    out = lut[position]
                    for burn in r.overlays:
                        over = grid.overlay_buckets[id(burn.source)].get(cell, none)
                        if len(over):
                            _burn_over(out, burn, over, wt)
                    dst.write(out, 1, window=w)
                    for level, f in zip(levels, factors, strict=True):
                        small = decimate(out, f)
                        level.write(
                            small, 1, window=Window(w.col_off // f, w.row_off // f, small.shape[1], small.shape[0])
                        )
                advance(1)


def _reopened(source: SpatialSource) -> SpatialSource:
    """The same source with its own file handle and block cache: a forked worker must not share the
    parent's file position nor grow its cache."""
    twin = copy.copy(source)
    if getattr(source, "_frame", None) is None:
        import pyarrow.parquet as pq

        twin._file = pq.ParquetFile(source.path)
        twin._cache = type(source._cache)()
    return twin


def _run_strips(
    base: SpatialSource,
    outputs: list[Raster],
    grid: _Grid,
    strips: list[tuple[int, int]],
    tmp: Path,
    advance: Callable[..., object],
) -> None:
    """Each strip in its own forked process (the sources and value functions need no pickling); the
    caller's SIGTERM or error terminates them, and a worker whose parent died (SIGKILL) stops by itself."""
    if len(strips) == 1:
        _render_strip(base, outputs, grid, 0, strips[0], tmp, advance)
        return
    parent = os.getpid()

    def work(k: int, rows: tuple[int, int]) -> None:
        code = 0
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            sources = {id(b.source): _reopened(b.source) for r in outputs for b in r.overlays}
            mine = [
                dataclasses.replace(r, overlays=tuple(Burn(sources[id(b.source)], b.values) for b in r.overlays))
                for r in outputs
            ]
            ids = {id(b.source): grid.overlay_buckets[id(b.source)] for r in outputs for b in r.overlays}
            own = dataclasses.replace(grid, overlay_buckets={id(sources[k_]): v for k_, v in ids.items()})
            with rasterio.Env(GDAL_CACHEMAX=RENDER_CACHE_BYTES):
                _render_strip(_reopened(base), mine, own, k, rows, tmp, lambda *a: None, parent)
        except BaseException:  # reported through the exit code; the parent names the step
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)

    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=work, args=(k, rows), daemon=True) for k, rows in enumerate(strips)]
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
            advance(1)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join()
    failed = [k for k, proc in enumerate(procs) if proc.exitcode != 0]
    if failed:
        raise StepError(f"rasterising strips {failed} failed (exit codes {[procs[k].exitcode for k in failed]})")


def rasterise(
    base: SpatialSource,
    outputs: list[Raster],
    *,
    resolution: float,
    bounds: tuple[float, float, float, float] | None = None,
    window: int = WINDOW,
    description: str = "",
    quiet: bool = False,
    workers: int | None = None,
) -> None:
    """Render ``outputs`` (COGs on one grid) in one pass over ``base``.

    Each window burns the *position* of every base polygon once (an int32 raster), and each output is a
    lookup of its values by position: the four class COGs of a millésime cost one rasterisation, not four
    (rasterio's per-geometry GeoJSON conversion dominates ``rasterize``). Burn order is the layer order,
    later polygons over earlier ones, as ``rasterize`` itself does.

    Overviews come from the same pass: each window, still in memory, is decimated into every overview level
    (:func:`decimate`, windows aligned on every factor), so no pass over the full-resolution raster follows
    — GDAL's overview pass took four fifths of the COG copy's time. The COG driver then only copies and
    compresses the levels it is given, on every core.

    Parallel: the rows are cut into ``workers`` strips (default :func:`default_workers`) of about equal
    polygon counts, each rasterised by a forked process into its own files, which a VRT stacks back for
    the COG copy. Memory stays bounded: one window per output per worker, plus each worker's block cache.
    Scratch rasters are ZSTD level 1, written once and read once; all live in the run's scratch folder.
    """
    if bounds is None:
        bounds = base.total_bounds
    xmin, ymin, xmax, ymax = bounds
    xmin, ymin = np.floor(xmin / resolution) * resolution, np.floor(ymin / resolution) * resolution
    xmax, ymax = np.ceil(xmax / resolution) * resolution, np.ceil(ymax / resolution) * resolution
    width = max(1, round((xmax - xmin) / resolution))
    height = max(1, round((ymax - ymin) / resolution))
    transform = from_origin(xmin, ymax, resolution, resolution)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint8",
        "crs": base.crs,
        "transform": transform,
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": COG_BLOCK,
        "blockysize": COG_BLOCK,
        "compress": "zstd",
        "zstd_level": 1,
        "BIGTIFF": "IF_SAFER",
    }
    size_m = window * resolution
    grid = _Grid(
        profile,
        overview_factors(width, height, window=window),
        window,
        window_buckets(base.bounds, xmin, ymax, size_m),
        {id(b.source): window_buckets(b.source.bounds, xmin, ymax, size_m) for r in outputs for b in r.overlays},
    )
    strips = _split_rows(grid, workers or default_workers())
    # The block cache holds the overview levels' partly written blocks until a window row completes them.
    # rasterio.Env takes GDAL_CACHEMAX in *bytes* (GDALSetCacheMax64): 512 there would be 512 bytes, and
    # rasterize, which burns in chunks of the cache's size, then took 20× longer.
    with scratch("render") as tmp, contextlib.ExitStack() as stack, rasterio.Env(GDAL_CACHEMAX=RENDER_CACHE_BYTES):
        units = -(-width // window) * -(-height // window) if len(strips) == 1 else len(strips)
        advance = (
            stack.enter_context(progress(f"rasterise {description}", units)) if not quiet else (lambda *a, **k: None)
        )
        _run_strips(base, outputs, grid, strips, tmp, advance)
        for i, r in enumerate(outputs):
            files = [_strip_files(tmp, i, k, grid.factors) for k in range(len(strips))]
            levels = []
            for n, f in enumerate(grid.factors):
                level = tmp / f"out{i}-ovr{f}.vrt"
                _mosaic(
                    [(fs[1][n], y0 // f, -(-(y1 - y0) // f)) for fs, (y0, y1) in zip(files, strips, strict=True)],
                    -(-width // f),
                    -(-height // f),
                    level,
                )
                levels.append(level)
            vrt = tmp / f"out{i}.vrt"
            _mosaic(
                [(fs[0], y0, y1 - y0) for fs, (y0, y1) in zip(files, strips, strict=True)],
                width,
                height,
                vrt,
                template=files[0][0],
                overviews=levels,
            )
            # the COG driver compresses on every core already; it copies the levels given, computes none
            copy_to_cog(vrt, r.path, resampling="NEAREST", compress="DEFLATE", LEVEL=COG_DEFLATE_LEVEL,
                        OVERVIEWS="FORCE_USE_EXISTING" if levels else "NONE")


def source_tags(storage: Storage, dep: object, millesime: int) -> dict[str, str]:
    """``OCSGE_SOURCE`` for the catalogue: ``official`` for IGN deliveries, ``auto`` for our production."""
    occ = key("occupation", dep, millesime)
    if not storage.exists(occ):
        return {}
    import pyarrow.parquet as pq

    with storage.local_copy(occ) as path:
        if schema.SOURCE not in pq.read_schema(path).names:
            return {}
        values = set(pq.read_table(path, columns=[schema.SOURCE]).column(0).unique().to_pylist())
    if values == {"ign"}:
        return {"OCSGE_SOURCE": "official"}
    if values and all(str(v).startswith("auto") for v in values):
        return {"OCSGE_SOURCE": "auto"}
    return {}


LAYERS = ("couverture", "usage", "artif", "construction")
COG_PRODUCT = {
    "couverture": "couverture_cog",
    "usage": "usage_cog",
    "artif": "artif_cog",
    "construction": "construction_cog",
}


def input_label(storage: Storage, dep: object, millesime: int) -> str:
    """The layer a step of ``millesime`` reads, for its error messages (never raises)."""
    try:
        return layer_key(storage, dep, millesime)
    except OcsgeError:
        return key("occupation", dep, millesime)


def run_render(
    storage: Storage,
    dep: object,
    millesime: int,
    *,
    resolution: float = DEFAULT_RESOLUTION,
    layers: tuple[str, ...] = LAYERS,
    force: bool = False,
    window: int = WINDOW,
) -> dict[str, str]:
    """Step: the class COGs of one département × millésime, written together once all are rendered
    (a transaction: a failure leaves every previous COG as it was)."""
    label = f"render {dep} {millesime} (input {input_label(storage, dep, millesime)})"
    with transaction(storage, label) as staged:
        return _render(staged, dep, millesime, resolution=resolution, layers=layers, force=force, window=window)


def _render(
    storage: Storage,
    dep: object,
    millesime: int,
    *,
    resolution: float,
    layers: tuple[str, ...],
    force: bool,
    window: int,
) -> dict[str, str]:
    keys = {layer: key(COG_PRODUCT[layer], dep, millesime) for layer in layers}
    occ_key = layer_key(storage, dep, millesime)
    zc_key = key("zone_construite", dep, millesime)
    occ_source = key("occupation", dep, millesime)  # the source tags come from the occupation layer
    digests = {
        layer: fingerprint(
            storage,
            [occ_key, occ_source, *([zc_key] if layer == "construction" else [])],
            params={"resolution": resolution},
        )
        for layer in layers
    }
    todo = [layer for layer in layers if force or not is_up_to_date(storage, keys[layer], digests[layer])]
    if not todo:
        done(f"render {dep} {millesime}: already done")
        return keys
    if "construction" in todo and not storage.exists(zc_key):
        raise StepError(f"render {dep} {millesime}: no zone construite layer ({zc_key})")
    cols = [c for c in (schema.CODE_CS, schema.CODE_US, schema.ARTIF)]
    with contextlib.ExitStack() as stack:
        occ_path = stack.enter_context(storage.local_copy(occ_key))
        import pyarrow.parquet as pq

        names = set(pq.read_schema(occ_path).names)
        occ = SpatialSource(path=occ_path, columns=[c for c in cols if c in names])
        if schema.ARTIF not in names and "artif" in todo:
            occ = SpatialSource(path=occ_path, columns=cols, read_columns=cols[:2], derive=with_artif)
        cs_value, us_value = code_values(Kind.COUVERTURE), code_values(Kind.USAGE)
        values: dict[str, Callable[[gpd.GeoDataFrame], np.ndarray]] = {
            "couverture": lambda f: np.array([cs_value(c) for c in f[schema.CODE_CS]], np.uint8),
            "usage": lambda f: np.array([us_value(c) for c in f[schema.CODE_US]], np.uint8),
            "artif": lambda f: np.array([rasters.value_of("artif", a) for a in f[schema.ARTIF]], np.uint8),
            "construction": lambda f: np.full(len(f), OUTSIDE_ZC, np.uint8),
        }
        colormaps = {
            "couverture": palette(Kind.COUVERTURE),
            "usage": palette(Kind.USAGE),
            "artif": ARTIF_PALETTE,
            "construction": CONSTRUCTION_PALETTE,
        }
        overlays: dict[str, tuple[Burn, ...]] = {}
        if "construction" in todo:
            zc = SpatialSource(path=stack.enter_context(storage.local_copy(zc_key)), columns=[])
            overlays["construction"] = (Burn(zc, lambda f: np.full(len(f), INSIDE_ZC, np.uint8)),)
        tags = {"OCSGE_MILLESIME": str(millesime), **source_tags(storage, dep, millesime)}
        step(f"render {dep} {millesime} {', '.join(todo)} at {resolution:g} m")
        # Each key is written through its own writer and stamped after it; the transaction lands them
        # together, so a failure at any point leaves every previous COG in place (nothing to roll back).
        with contextlib.ExitStack() as writers:
            targets = []
            for layer in todo:
                writers.enter_context(refreshing(storage, keys[layer], digests[layer]))
                targets.append(
                    Raster(
                        writers.enter_context(storage.writer(keys[layer])),
                        colormaps[layer],
                        values[layer],
                        overlays.get(layer, ()),
                        {"OCSGE_PRODUCT": COG_PRODUCT[layer], **tags},
                    )
                )
            rasterise(
                occ,
                targets,
                resolution=resolution,
                bounds=occ.total_bounds,
                window=window,
                description=f"{', '.join(todo)} {millesime}",
            )
    done(f"render {dep} {millesime}: {', '.join(todo)}")
    return keys


def _change_values(frame: gpd.GeoDataFrame) -> np.ndarray:
    """Difference class of each evolution polygon: couverture, usage, or both changed (ocsge.rasters)."""
    cs = (frame[schema.CS_AVANT] != frame[schema.CS_APRES]).to_numpy()
    us = (frame[schema.US_AVANT] != frame[schema.US_APRES]).to_numpy()
    return np.select(
        [cs & us, cs, us],
        [
            rasters.value_of("difference", "couverture et usage"),
            rasters.value_of("difference", "couverture"),
            rasters.value_of("difference", "usage"),
        ],
        NODATA,
    ).astype(np.uint8)


def _artif_change_values(frame: gpd.GeoDataFrame) -> np.ndarray:
    flow = frame["artificialisation"].to_numpy()
    return np.select(
        [flow > 0, flow < 0],
        [rasters.value_of("difference", "artificialisation"), rasters.value_of("difference", "désartificialisation")],
        NODATA,
    ).astype(np.uint8)


def run_render_difference(
    storage: Storage,
    dep: object,
    before: int,
    after: int,
    *,
    resolution: float = DEFAULT_RESOLUTION,
    force: bool = False,
    window: int = WINDOW,
) -> dict[str, str]:
    """Step: the class COG of the changes between two millésimes, on the grid of the later one's COGs.
    Artificialisation flows (±1) are burnt over the couverture/usage changes: they are what users map."""
    label = f"render {dep} {before}-{after} difference (input {key('difference', dep, (before, after))})"
    with transaction(storage, label) as staged:
        return _render_difference(staged, dep, before, after, resolution=resolution, force=force, window=window)


def _render_difference(
    storage: Storage, dep: object, before: int, after: int, *, resolution: float, force: bool, window: int
) -> dict[str, str]:
    pair = (before, after)
    out = key("difference_cog", dep, pair)
    diff_key, artif_key = key("difference", dep, pair), key("artif_difference", dep, pair)
    later_key = layer_key(storage, dep, after)
    digest = fingerprint(storage, [diff_key, artif_key, later_key], params={"resolution": resolution})
    if not force and is_up_to_date(storage, out, digest):
        done(f"render {dep} {before}-{after} difference: already done")
        return {"difference_cog": out}
    for needed in (diff_key, artif_key):
        if not storage.exists(needed):
            raise StepError(f"render {dep} {before}-{after}: no {needed} (run `ocsge diff` first)")
    with contextlib.ExitStack() as stack:
        later = SpatialSource(path=stack.enter_context(storage.local_copy(later_key)), columns=[])
        changes = SpatialSource(
            path=stack.enter_context(storage.local_copy(diff_key)),
            columns=[schema.CS_AVANT, schema.US_AVANT, schema.CS_APRES, schema.US_APRES],
        )
        flows = SpatialSource(path=stack.enter_context(storage.local_copy(artif_key)), columns=["artificialisation"])
        step(f"render {dep} {before}-{after} difference at {resolution:g} m")
        with refreshing(storage, out, digest), step_outputs(storage) as outputs, outputs.writer(out) as tmp:
            tags = {
                "OCSGE_PRODUCT": "difference_cog",
                "OCSGE_MILLESIME": f"{before}-{after}",
                **{f"CLASS_{v}": label for v, label in rasters.labels("difference").items()},
            }
            rasterise(
                changes,
                [
                    Raster(
                        tmp, rasters.palette("difference"), _change_values, (Burn(flows, _artif_change_values),), tags
                    )
                ],
                resolution=resolution,
                bounds=later.total_bounds,
                window=window,
                description=f"difference {before}-{after}",
            )
    done(f"render {dep} {before}-{after}: difference")
    return {"difference_cog": out}
