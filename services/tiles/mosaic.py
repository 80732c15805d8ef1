"""National mosaics over the catalogue: a rio-tiler backend that asks the :class:`AssetFinder` which
COGs cover a tile, a reader that keeps datasets open between requests, and per-layer metadata
(bounds, départements, legend) cached until the catalogue changes.

Only storage keys returned by the finder ever reach GDAL: a layer id is parsed against the registry,
never used as a path.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import attr
import rasterio
from morecantile import Tile, TileMatrixSet
from rasterio.crs import CRS
from rasterio.io import DatasetReader
from rasterio.warp import transform_bounds
from rio_tiler.constants import WGS84_CRS
from rio_tiler.io import Reader
from rio_tiler.mosaic.backend import BaseBackend

from services.assets import AssetFinder, AssetRef, BBox, gdal_env
from services.tiles import tms as tms_registry
from services.tiles.layers import Layer, parse_layer
from services.tiles.palettes import LegendEntry, colormap_of, legend_from_dataset

FRANCE_BBOX: BBox = (-5.5, 41.0, 10.0, 51.5)

# --- open datasets, kept per thread (a rasterio dataset must not be shared between threads) ---------

_local = threading.local()
OPEN_DATASETS_PER_THREAD = 64


def open_dataset(path: str) -> DatasetReader:
    cache: OrderedDict[str, DatasetReader] | None = getattr(_local, "datasets", None)
    if cache is None:
        cache = _local.datasets = OrderedDict()
    ds = cache.get(path)
    if ds is not None and not ds.closed:
        cache.move_to_end(path)
        return ds
    with rasterio.Env(**gdal_env()):
        ds = rasterio.open(path)
    cache[path] = ds
    while len(cache) > OPEN_DATASETS_PER_THREAD:
        _, old = cache.popitem(last=False)
        old.close()
    return ds


def forget_datasets() -> None:
    """Close this thread's cached datasets (tests that rewrite files call it)."""
    cache: OrderedDict[str, DatasetReader] | None = getattr(_local, "datasets", None)
    while cache:
        _, ds = cache.popitem()
        ds.close()


@attr.s
class CachedReader(Reader):
    """rio-tiler's COG reader over a dataset from the per-thread cache (opened once, read many times)."""

    def __attrs_post_init__(self) -> None:
        if self.dataset is None:
            self.dataset = open_dataset(self.input)
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

    @property
    def available(self) -> bool:
        return bool(self.assets)


def layer_assets(finder: AssetFinder, layer: Layer, bbox: BBox | None = None) -> list[AssetRef]:
    assets = finder.find(layer.product, bbox=bbox, years=layer.years)
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

    def info(self, layer: Layer | str) -> LayerInfo:
        layer = parse_layer(layer) if isinstance(layer, str) else layer
        version = self.finder.version()
        with self._lock:
            if version != self._version:
                self._cache.clear()
                self._version = version
            cached = self._cache.get(layer.id)
        if cached is not None:
            return cached
        assets = tuple(layer_assets(self.finder, layer))
        boxes = [a.bbox for a in assets if a.bbox is not None]
        bounds = (
            (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
            if boxes
            else FRANCE_BBOX
        )
        legend = self._legend(layer, assets)
        info = LayerInfo(layer, assets, bounds, tuple(sorted({a.departement for a in assets})), legend,
                         colormap_of(legend))
        with self._lock:
            if self._version == version:
                self._cache[layer.id] = info
        return info

    def _legend(self, layer: Layer, assets: tuple[AssetRef, ...]) -> tuple[LegendEntry, ...]:
        colormap: dict[int, tuple[int, int, int, int]] | None = None
        tags: dict[str, str] = {}
        if assets and layer.palette_kind not in ("couverture", "usage", "prediction"):
            try:
                ds = open_dataset(self.finder.storage.gdal_path(assets[0].key))
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

    reader: type[Reader] = attr.ib(default=CachedReader)
    info: LayerInfo | None = attr.ib(default=None)  # given by the renderer, which has looked it up already
    layer: Layer = attr.ib(init=False)

    def __attrs_post_init__(self) -> None:
        info = self.info if self.info is not None and self.info.layer.id == self.input else None
        if info is None:
            info = self.info = self.catalog.info(parse_layer(self.input))
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
        return type("BoundCatalogBackend", (cls,), {"finder": finder, "catalog": catalog or LayerCatalog(finder)})

    def _paths(self, assets: list[AssetRef]) -> list[str]:
        return [self.finder.storage.gdal_path(a.key) for a in assets]

    def assets_for_tile(self, x: int, y: int, z: int, **kwargs: Any) -> list[str]:
        return self._paths(layer_assets(self.finder, self.layer, tile_bbox_wgs84(self.tms, x, y, z)))

    def assets_for_point(self, lng: float, lat: float, coord_crs: CRS | None = None, **kwargs: Any) -> list[str]:
        if coord_crs is not None and coord_crs != WGS84_CRS:
            xmin, ymin, _, _ = transform_bounds(coord_crs, WGS84_CRS, lng, lat, lng, lat)
            lng, lat = xmin, ymin
        return self._paths(layer_assets(self.finder, self.layer, (lng, lat, lng, lat)))

    def assets_for_bbox(self, xmin: float, ymin: float, xmax: float, ymax: float, coord_crs: CRS | None = None,
                        **kwargs: Any) -> list[str]:
        if coord_crs is not None and coord_crs != WGS84_CRS:
            xmin, ymin, xmax, ymax = transform_bounds(coord_crs, WGS84_CRS, xmin, ymin, xmax, ymax, densify_pts=11)
        return self._paths(layer_assets(self.finder, self.layer, (xmin, ymin, xmax, ymax)))

    def asset_name(self, asset: Any) -> str:
        return str(asset).rsplit("/", 1)[-1]
