"""National mosaics over the catalogue: a rio-tiler backend that asks the :class:`AssetFinder` which
COGs cover a tile, a reader that keeps datasets open between requests, and per-layer metadata
(bounds, départements, legend) cached until the catalogue changes.

Only storage keys returned by the finder ever reach GDAL: a layer id is parsed against the registry,
never used as a path.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import attr
import numpy as np
import rasterio
from morecantile import Tile, TileMatrixSet
from rasterio.crs import CRS
from rasterio.errors import CRSError, RasterioError
from rasterio.warp import transform_bounds
from rio_tiler.constants import WGS84_CRS
from rio_tiler.errors import InvalidBandName, InvalidExpression
from rio_tiler.expression import parse_expression
from rio_tiler.io import Reader
from rio_tiler.models import ImageData, PointData
from rio_tiler.mosaic.backend import BaseBackend

from ocsge.storage import Storage
from services.assets import AssetFinder, AssetRef, BBox
from services.params import InvalidParameter, check_bbox, check_point
from services.tiles import limits
from services.tiles import tms as tms_registry
from services.tiles.budget import check_deadline
from services.tiles.datasets import POOL
from services.tiles.layers import Layer, parse_layer
from services.tiles.palettes import LegendEntry, colormap_of, legend_from_dataset
from services.tiles.reprojection import crs_text, tile_surely_inside
from services.tiles.reprojection import install as install_cached_reprojection

install_cached_reprojection()  # a dataset's default warp transform is computed once, not per tile

FRANCE_BBOX: BBox = (-5.5, 41.0, 10.0, 51.5)

# --- reading only where a dataset can have data ---------------------------------------------------

# Clip a read to the dataset's footprint only when that saves most of the image (below this share of it).
CLIP_BELOW = 0.5


def _crs_key(crs: Any) -> str:
    return crs_text(crs, wkt=False)


@lru_cache(maxsize=512)  # keys: dataset/layer bounds from the catalogue × the CRSs we serve (bounded anyway)
def projected_bounds(bounds: BBox, src: str, dst: str) -> BBox | None:
    """``bounds`` (in ``src``) as bounds in ``dst``; None where they cannot be projected."""
    if src == dst:
        return bounds
    try:
        out = transform_bounds(src, dst, *bounds, densify_pts=21)
    except (ValueError, CRSError, RasterioError):
        return None
    return tuple(out) if all(math.isfinite(v) for v in out) else None  # type: ignore[return-value]


def pixel_window(footprint: BBox, bounds: BBox, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The pixels (col0, row0, col1, row1) of a ``width``×``height`` image of ``bounds`` that ``footprint``
    (same CRS) can reach, with a pixel of margin: None where it misses the image, the whole image where it
    covers most of it (:data:`CLIP_BELOW`)."""
    minx, miny, maxx, maxy = bounds
    left, bottom = max(minx, footprint[0]), max(miny, footprint[1])
    right, top = min(maxx, footprint[2]), min(maxy, footprint[3])
    if left >= right or bottom >= top:
        return None
    resx, resy = (maxx - minx) / width, (maxy - miny) / height
    col0 = max(0, math.floor((left - minx) / resx) - 1)
    col1 = min(width, math.ceil((right - minx) / resx) + 1)
    row0 = max(0, math.floor((maxy - top) / resy) - 1)
    row1 = min(height, math.ceil((maxy - bottom) / resy) + 1)
    if col0 >= col1 or row0 >= row1:
        return None
    if (col1 - col0) * (row1 - row0) >= CLIP_BELOW * width * height:
        return 0, 0, width, height
    return col0, row0, col1, row1


# --- open datasets: checked out of one pool for the duration of a read (services/tiles/datasets.py) ------


def forget_datasets() -> None:
    """Close the pooled datasets (tests that rewrite files call it)."""
    POOL.clear()


@attr.s
class CachedReader(Reader):
    """rio-tiler's COG reader over a dataset from the per-thread cache (opened once, read many times).

    Every read checks, before GDAL is called, that the render is within its deadline, that the bands asked
    for (``bidx``, or those an ``expression`` names) exist, and that the output stays within
    :data:`~services.tiles.limits.MAX_READ_SIDE` a side (an image asked for without any size is read at
    most that large), whatever route or parameters led there (:mod:`services.tiles.limits`)."""

    _pooled_path: str | None = attr.ib(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if self.dataset is None:
            self._checkout(self.input)
        super().__attrs_post_init__()

    def _checkout(self, path: str) -> None:
        self.dataset = POOL.checkout(path)
        self._pooled_path = path

    def close(self) -> None:
        """Give the dataset back to the pool (titiler and the mosaic reader use readers as context managers)."""
        super().close()
        if self._pooled_path is not None and self.dataset is not None:
            POOL.checkin(self._pooled_path, self.dataset)
            self._pooled_path = None

    def _check_bands(self, indexes: Any, expression: str | None) -> None:
        if expression:
            if len(expression) > limits.MAX_EXPRESSION:
                raise InvalidExpression(f"expression: at most {limits.MAX_EXPRESSION} characters")
            wanted, param = parse_expression(expression), "expression"
        elif indexes is not None:
            wanted, param = ((indexes,) if isinstance(indexes, int) else tuple(indexes)), "bidx"
        else:
            return
        count = self.dataset.count
        missing = [i for i in wanted if not 1 <= int(i) <= count]
        if missing:
            raise InvalidBandName(f"{param}: band {missing[0]} does not exist, this dataset has "
                                  f"{count} band{'s' if count > 1 else ''} (1…{count})")

    def _check_nodata(self, nodata: Any) -> None:
        """A ``nodata`` override the dataset's type can hold (numpy refuses ``inf`` or 300 for uint8)."""
        dtype = np.dtype(self.dataset.dtypes[0])
        if nodata is None or dtype.kind not in "iu":
            return
        info = np.iinfo(dtype)
        if not (math.isfinite(nodata) and float(nodata).is_integer() and info.min <= nodata <= info.max):
            raise InvalidParameter("nodata", f"{nodata!r} is not a value of this {dtype} dataset "
                                             f"(an integer in {info.min}…{info.max})")

    def tile_exists(self, tile_x: int, tile_y: int, tile_z: int) -> bool:
        """rio-tiler's answer, without its per-call PROJ transformation when the tile's centre is inside the
        dataset (the common case: :func:`~services.tiles.reprojection.tile_surely_inside`)."""
        b = self.tms.xy_bounds(Tile(tile_x, tile_y, tile_z))
        if tile_surely_inside((b.left, b.bottom, b.right, b.top), self.tms.rasterio_crs, tuple(self.bounds),
                              self.crs):
            return True
        return super().tile_exists(tile_x, tile_y, tile_z)

    def tile(self, tile_x: int, tile_y: int, tile_z: int, tilesize: int | None = None, indexes: Any = None,
             expression: str | None = None, buffer: float | None = None, **kwargs: Any) -> ImageData:
        check_deadline()
        self._check_bands(indexes, expression)
        size = tilesize or 512  # None: the matrix's own tile size (256 in every set we serve)
        extra = 2 * ((buffer or 0) + (kwargs.get("padding") or 0))
        limits.check_read(size + extra, size + extra, "tilesize")
        return super().tile(tile_x, tile_y, tile_z, tilesize=tilesize, indexes=indexes, expression=expression,
                            buffer=buffer, **kwargs)

    def part(self, bbox: BBox, dst_crs: CRS | None = None, bounds_crs: CRS = WGS84_CRS, indexes: Any = None,
             expression: str | None = None, max_size: int | None = None, height: int | None = None,
             width: int | None = None, buffer: float | None = None, **kwargs: Any) -> ImageData:
        check_deadline()
        self._check_bands(indexes, expression)
        self._check_nodata(kwargs.get("nodata"))
        if not (width and height):  # the size rio-tiler would choose, made explicit (and bounded)
            width, height, max_size = self._part_size(bbox, bounds_crs, dst_crs or bounds_crs, width, height,
                                                      max_size)
        extra = 2 * ((buffer or 0) + (kwargs.get("padding") or 0))
        if width and height:
            limits.check_read(width + extra, height + extra)
            if not extra:
                clipped = self._clipped_part(bbox, dst_crs or bounds_crs, bounds_crs, width, height, indexes,
                                             expression, kwargs)
                if clipped is not None:
                    return clipped
        return super().part(bbox, dst_crs=dst_crs, bounds_crs=bounds_crs, indexes=indexes, expression=expression,
                            max_size=max_size, height=height, width=width, buffer=buffer, **kwargs)

    def _clipped_part(self, bbox: BBox, dst_crs: CRS, bounds_crs: CRS, width: int, height: int, indexes: Any,
                      expression: str | None, kwargs: dict[str, Any]) -> ImageData | None:
        """The image read only over the pixels the dataset can reach, the rest masked, when that is a small
        part of it (:func:`pixel_window`); None to read the whole image as usual.

        GDAL warps every output pixel of a read, also those far outside the dataset (and slowly, where the
        inverse projection fails): a département COG under a national WMS map, or any COG under a world bbox,
        would cost the whole image per asset. The sub-window is aligned on the output grid, so the pixels
        read are the pixels the full read would have given."""
        out = bbox if bounds_crs == dst_crs else projected_bounds(tuple(bbox), _crs_key(bounds_crs), _crs_key(dst_crs))
        footprint = projected_bounds(tuple(self.bounds), _crs_key(self.crs), _crs_key(dst_crs))
        if out is None or footprint is None:
            return None
        window = pixel_window(footprint, out, width, height)
        if window == (0, 0, width, height):
            return None
        resx, resy = (out[2] - out[0]) / width, (out[3] - out[1]) / height
        empty = window is None
        if window is None:  # the dataset misses the image: read the one pixel nearest to it, for the bands
            col = min(max(math.floor(((footprint[0] + footprint[2]) / 2 - out[0]) / resx), 0), width - 1)
            row = min(max(math.floor((out[3] - (footprint[1] + footprint[3]) / 2) / resy), 0), height - 1)
            window = (col, row, col + 1, row + 1)
        col0, row0, col1, row1 = window
        sub_bbox = (out[0] + col0 * resx, out[3] - row1 * resy, out[0] + col1 * resx, out[3] - row0 * resy)
        sub = super().part(sub_bbox, dst_crs=dst_crs, bounds_crs=dst_crs, indexes=indexes, expression=expression,
                           height=row1 - row0, width=col1 - col0, **kwargs)
        data = np.zeros((sub.count, height, width), dtype=sub.array.dtype)
        mask = np.ones((sub.count, height, width), dtype=bool)
        if not empty:
            data[:, row0:row1, col0:col1] = sub.array.data
            mask[:, row0:row1, col0:col1] = np.ma.getmaskarray(sub.array)
        return ImageData(np.ma.MaskedArray(data, mask=mask), assets=sub.assets, bounds=out, crs=dst_crs,
                         metadata=sub.metadata, nodata=sub.nodata, scales=sub.scales, offsets=sub.offsets,
                         band_names=sub.band_names, band_descriptions=sub.band_descriptions,
                         dataset_statistics=sub.dataset_statistics)

    def read(self, indexes: Any = None, expression: str | None = None, **kwargs: Any) -> ImageData:
        """Whole-dataset reads (preview, statistics)."""
        check_deadline()
        self._check_bands(indexes, expression)
        self._check_nodata(kwargs.get("nodata"))
        width, height, max_size = kwargs.get("width"), kwargs.get("height"), kwargs.get("max_size")
        size = limits.output_size(width, height, max_size, self.dataset.height / max(self.dataset.width, 1))
        if size is None and max(self.dataset.width, self.dataset.height) > limits.MAX_IMAGE_SIDE:
            kwargs["max_size"] = limits.MAX_IMAGE_SIDE
        elif size is not None:
            limits.check_read(*size, "width" if width else "height" if height else "max_size")
        return super().read(indexes=indexes, expression=expression, **kwargs)

    def point(self, lon: float, lat: float, coord_crs: CRS = WGS84_CRS, indexes: Any = None,
              expression: str | None = None, **kwargs: Any) -> PointData:
        check_deadline()
        self._check_bands(indexes, expression)
        self._check_nodata(kwargs.get("nodata"))
        return super().point(lon, lat, coord_crs=coord_crs, indexes=indexes, expression=expression, **kwargs)

    def _part_size(self, bbox: BBox, bounds_crs: CRS, dst_crs: CRS, width: int | None, height: int | None,
                   max_size: int | None) -> tuple[int | None, int | None, int | None]:
        """(width, height, max_size) for a part read given one side or none: the other side computed from the
        bbox's shape as rio-tiler would; without a size, the full resolution up to ``max_size`` (default
        :data:`~services.tiles.limits.MAX_IMAGE_SIDE`), made explicit where it is reached, so that the read
        can be clipped (:meth:`_clipped_part`). Beyond :data:`~services.tiles.limits.MAX_READ_SIDE`: 400."""
        out = bbox if bounds_crs == dst_crs else projected_bounds(tuple(bbox), _crs_key(bounds_crs), _crs_key(dst_crs))
        if out is None or not (out[2] > out[0] and out[3] > out[1]):
            if width or height:
                raise limits.ImageTooLarge("bbox", "this box has no extent in the output CRS")
            return None, None, max_size or limits.MAX_IMAGE_SIDE  # rio-tiler will say what is wrong
        aspect = (out[3] - out[1]) / (out[2] - out[0])
        if width or height:
            w, h = limits.output_size(width, height, None, aspect) or (0.0, 0.0)
            limits.check_read(w, h, "width" if width else "height")
            return max(1, math.ceil(w)), max(1, math.ceil(h)), None
        max_size = max_size or limits.MAX_IMAGE_SIDE
        limits.check_read(max_size, max_size, "max_size")
        footprint = projected_bounds(tuple(self.bounds), _crs_key(self.crs), _crs_key(dst_crs))
        if footprint is None or not (footprint[2] > footprint[0] and footprint[3] > footprint[1]):
            return None, None, max_size
        native_w = (out[2] - out[0]) / ((footprint[2] - footprint[0]) / self.dataset.width)
        native_h = (out[3] - out[1]) / ((footprint[3] - footprint[1]) / self.dataset.height)
        if max(native_w, native_h) <= max_size:
            return None, None, max_size  # full resolution fits: rio-tiler reads it as it is
        if aspect <= 1:
            return max_size, max(1, math.ceil(max_size * aspect)), None
        return max(1, math.ceil(max_size / aspect)), max_size, None


@attr.s
class KeyReader(CachedReader):
    """A :class:`CachedReader` whose input is a storage key of ``storage`` (bound by
    :meth:`CatalogBackend.bind`): mosaics handle keys, never local paths or ``/vsis3/`` URLs, so that
    nothing a client sees (``…/assets`` answers, error messages) names where the storage lives."""

    storage: ClassVar[Storage]

    def __attrs_post_init__(self) -> None:
        if self.dataset is None:
            self._checkout(self.storage.gdal_path(self.input))
        super().__attrs_post_init__()


# --- per-layer metadata ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerInfo:
    layer: Layer
    assets: tuple[AssetRef, ...]
    bounds: BBox  # WGS84
    departements: tuple[str, ...]
    legend: tuple[LegendEntry, ...]
    colormap: dict[int, tuple[int, int, int, int]]
    departement: str | None = None  # the layer restricted to one département (a ``departement`` filter)

    @property
    def available(self) -> bool:
        return bool(self.assets)


def layer_assets(finder: AssetFinder, layer: Layer, bbox: BBox | None = None,
                 departement: str | None = None) -> list[AssetRef]:
    assets = finder.find(layer.product, bbox=bbox, years=layer.years, departement=departement)
    previous = layer.previous_years
    if previous is not None:
        assets = [a for a in assets if len(a.years) == 2 and previous[0] <= a.years[0] <= previous[1]]
    return assets


class LayerCatalog:
    """Layer metadata from the finder, recomputed when ``finder.version()`` changes."""

    def __init__(self, finder: AssetFinder) -> None:
        self.finder = finder
        self._lock = threading.Lock()
        self._cache: dict[str, LayerInfo] = {}
        self._version: str | None = None

    def info(self, layer: Layer | str, departement: str | None = None) -> LayerInfo:
        """The layer's metadata; with ``departement`` (a normalised code), the layer restricted to it."""
        layer = parse_layer(layer) if isinstance(layer, str) else layer
        version = self.finder.version()
        cache_key = layer.id if departement is None else f"{layer.id}|{departement}"
        with self._lock:
            if version != self._version:
                self._cache.clear()
                self._version = version
            cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        assets = tuple(layer_assets(self.finder, layer, departement=departement))
        boxes = [a.bbox for a in assets if a.bbox is not None]
        bounds = (
            (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
            if boxes
            else FRANCE_BBOX
        )
        legend = self._legend(layer, assets)
        info = LayerInfo(layer, assets, bounds, tuple(sorted({a.departement for a in assets})), legend,
                         colormap_of(legend), departement)
        with self._lock:
            if self._version == version:
                if len(self._cache) > 4096:  # filtered variants: bounded by départements × layers anyway
                    self._cache.clear()
                self._cache[cache_key] = info
        return info

    def _legend(self, layer: Layer, assets: tuple[AssetRef, ...]) -> tuple[LegendEntry, ...]:
        colormap: dict[int, tuple[int, int, int, int]] | None = None
        tags: dict[str, str] = {}
        if assets and layer.palette_kind not in ("couverture", "usage", "prediction"):
            try:
                with POOL.dataset(self.finder.storage.gdal_path(assets[0].key)) as ds:
                    colormap = ds.colormap(1)
                    tags = ds.tags(1)
            except (ValueError, rasterio.RasterioIOError):
                colormap = None
        return legend_from_dataset(layer.palette_kind, colormap, tags)

    def available_layers(self) -> list[LayerInfo]:
        from services.tiles.layers import all_layers

        return [info for info in (self.info(layer) for layer in all_layers()) if info.available]


# --- the mosaic backend ------------------------------------------------------------------------------


def tile_bbox_wgs84(tms: TileMatrixSet, x: int, y: int, z: int) -> BBox:
    """Geographic bounds of a tile (morecantile keeps its transformer; rasterio would build one per call)."""
    b = tms.bounds(Tile(x, y, z))
    return (b.left, b.bottom, b.right, b.top)


@attr.s
class CatalogBackend(BaseBackend):
    """Mosaic of one layer: ``input`` is a layer id; assets come from the bound finder only."""

    finder: ClassVar[AssetFinder]
    catalog: ClassVar[LayerCatalog]

    key_reader: ClassVar[type[KeyReader]]

    reader: type[Reader] = attr.ib(default=CachedReader)
    # given by the renderer, which has looked it up already (not ``info``: that is the backend's info() method)
    layer_info: LayerInfo | None = attr.ib(default=None)
    layer: Layer = attr.ib(init=False)

    def __attrs_post_init__(self) -> None:
        self.reader = self.key_reader  # assets are storage keys: whatever titiler passes (its Reader) cannot open them
        info = self.layer_info if self.layer_info is not None and self.layer_info.layer.id == self.input else None
        if info is None:
            info = self.layer_info = self.catalog.info(parse_layer(self.input))
        self.layer = info.layer
        self.bounds = info.bounds
        self.crs = WGS84_CRS
        name = self.tms.id
        self.minzoom, self.maxzoom = (
            tms_registry.zoom_range(name, self.layer.minzoom, self.layer.maxzoom)
            if name in tms_registry.SUPPORTED.list()
            else (self.tms.minzoom, self.tms.maxzoom)
        )

    @classmethod
    def bind(cls, finder: AssetFinder, catalog: LayerCatalog | None = None) -> type[CatalogBackend]:
        """A backend class reading from ``finder`` (one per app, so that apps stay independent)."""
        key_reader = type("BoundKeyReader", (KeyReader,), {"storage": finder.storage})
        return type("BoundCatalogBackend", (cls,), {"finder": finder, "catalog": catalog or LayerCatalog(finder),
                                                    "key_reader": key_reader})

    def _keys(self, assets: list[AssetRef]) -> list[str]:
        """Storage keys, relative to the root: what ``…/assets`` answers and what the key reader opens."""
        check_deadline()
        return [a.key for a in assets]

    @property
    def departement(self) -> str | None:
        return self.layer_info.departement if self.layer_info is not None else None

    def assets_for_tile(self, x: int, y: int, z: int, **kwargs: Any) -> list[str]:
        return self._keys(layer_assets(self.finder, self.layer, tile_bbox_wgs84(self.tms, x, y, z),
                                       self.departement))

    def assets_for_point(self, lng: float, lat: float, coord_crs: CRS | None = None, **kwargs: Any) -> list[str]:
        lng, lat = check_point("lon,lat", lng, lat, coord_crs or WGS84_CRS, "coord_crs")  # before PROJ sees it
        if coord_crs is not None and coord_crs != WGS84_CRS:
            xmin, ymin, _, _ = transform_bounds(coord_crs, WGS84_CRS, lng, lat, lng, lat)
            lng, lat = xmin, ymin
        return self._keys(layer_assets(self.finder, self.layer, (lng, lat, lng, lat), self.departement))

    def assets_for_bbox(self, xmin: float, ymin: float, xmax: float, ymax: float, coord_crs: CRS | None = None,
                        **kwargs: Any) -> list[str]:
        xmin, ymin, xmax, ymax = check_bbox("bbox", (xmin, ymin, xmax, ymax), coord_crs or WGS84_CRS, "coord_crs")
        if coord_crs is not None and coord_crs != WGS84_CRS:
            xmin, ymin, xmax, ymax = transform_bounds(coord_crs, WGS84_CRS, xmin, ymin, xmax, ymax, densify_pts=11)
        return self._keys(layer_assets(self.finder, self.layer, (xmin, ymin, xmax, ymax), self.departement))

    def asset_name(self, asset: Any) -> str:
        return str(asset).rsplit("/", 1)[-1]
