"""Rendering that the OGC services share: one tile of a layer, a map of several layers over a bbox, and
the class under a point. Outputs are coloured with the layer's legend; areas without data are
transparent (PNG) or white (JPEG).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rio_tiler.colormap import apply_cmap
from rio_tiler.constants import WGS84_CRS
from rio_tiler.errors import EmptyMosaicError, NoAssetFoundError, PointOutsideBounds, TileOutsideBounds
from rio_tiler.models import ImageData
from rio_tiler.utils import render

from services.assets import AssetFinder, AssetRef
from services.tiles import tms as tms_registry
from services.tiles.layers import Layer
from services.tiles.mosaic import CachedReader, CatalogBackend, LayerCatalog, LayerInfo, layer_assets, open_dataset

FORMATS: dict[str, tuple[str, str]] = {  # media type → (GDAL driver, extension)
    "image/png": ("PNG", "png"),
    "image/jpeg": ("JPEG", "jpg"),
    "image/webp": ("WEBP", "webp"),
}
EXTENSIONS = {ext: mt for mt, (_, ext) in FORMATS.items()} | {"jpeg": "image/jpeg"}


class OutOfRange(ValueError):
    """A tile outside the zoom levels or the matrix of its tile matrix set."""


@dataclass(frozen=True)
class PixelInfo:
    layer: str
    value: int
    code: str | None
    label: str | None
    colour: str | None
    departement: str
    millesime: str
    asset: str

    def as_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


@lru_cache(maxsize=32)
def blank(media_type: str, width: int, height: int) -> bytes:
    data = np.zeros((3, height, width), dtype="uint8")
    if media_type == "image/jpeg":
        return render(np.full((3, height, width), 255, dtype="uint8"), img_format="JPEG")
    return render(data, np.zeros((height, width), dtype="uint8"), img_format=FORMATS[media_type][0])


def _rgba(img: ImageData, info: LayerInfo) -> np.ndarray:
    """4×H×W uint8: the class band coloured by the legend, alpha 0 where masked or nodata."""
    band = img.array.data[0].astype("uint8")
    rgb, alpha = apply_cmap(band[np.newaxis, ...], info.colormap)
    valid = ~np.ma.getmaskarray(img.array)[0]
    alpha = np.where(valid, alpha, 0).astype("uint8")
    return np.concatenate([rgb, alpha[np.newaxis, ...]], axis=0)


def encode_rgba(rgba: np.ndarray, media_type: str, bgcolor: tuple[int, int, int] | None = None,
                transparent: bool = True) -> bytes:
    driver = FORMATS[media_type][0]
    if driver == "JPEG" or not transparent:
        bg = np.array(bgcolor or (255, 255, 255), dtype="float32")[:, None, None]
        a = rgba[3:4].astype("float32") / 255.0
        rgb = (rgba[:3].astype("float32") * a + bg * (1 - a)).round().astype("uint8")
        return render(rgb, img_format=driver)
    return render(rgba[:3], rgba[3], img_format=driver)


class Renderer:
    """Layer rendering over one finder (the catalogue)."""

    def __init__(self, finder: AssetFinder, catalog: LayerCatalog | None = None) -> None:
        self.finder = finder
        self.catalog = catalog or LayerCatalog(finder)
        self.backend = CatalogBackend.bind(finder, self.catalog)

    def check_tile(self, layer: Layer, tms_name: str, z: int, x: int, y: int) -> None:
        tms = tms_registry.get(tms_name)
        minzoom, maxzoom = tms_registry.zoom_range(tms_name, layer.minzoom, layer.maxzoom)
        if not minzoom <= z <= maxzoom:
            raise OutOfRange(f"TileMatrix {z} is outside {minzoom}–{maxzoom} for {layer.id} in {tms_name}")
        matrix = tms.matrix(z)
        if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
            raise OutOfRange(
                f"tile column {x} / row {y} outside the {matrix.matrixWidth}×{matrix.matrixHeight} matrix {z}"
            )

    def tile(self, layer: Layer, tms_name: str, z: int, x: int, y: int, media_type: str = "image/png",
             tilesize: int = 256) -> bytes:
        self.check_tile(layer, tms_name, z, x, y)
        info = self.catalog.info(layer)
        tms = tms_registry.get(tms_name)
        try:
            with self.backend(layer.id, tms=tms) as src:
                img, _ = src.tile(x, y, z, tilesize=tilesize, threads=0)
        except (NoAssetFoundError, TileOutsideBounds, EmptyMosaicError):
            return blank(media_type, tilesize, tilesize)
        return encode_rgba(_rgba(img, info), media_type)

    def map(self, layers: list[Layer], bbox: tuple[float, float, float, float], crs: CRS, width: int, height: int,
            media_type: str = "image/png", transparent: bool = True,
            bgcolor: tuple[int, int, int] | None = None) -> bytes:
        """Layers overlaid in request order (the first at the bottom, as WMS says)."""
        canvas = np.zeros((4, height, width), dtype="uint8")
        for layer in layers:
            info = self.catalog.info(layer)
            try:
                with self.backend(layer.id, tms=tms_registry.WEB_MERCATOR) as src:
                    img, _ = src.part(bbox, dst_crs=crs, bounds_crs=crs, width=width, height=height,
                                      max_size=None, threads=0)
            except (NoAssetFoundError, TileOutsideBounds, EmptyMosaicError):
                continue
            rgba = _rgba(img, info)
            top = rgba[3:4] > 0
            canvas = np.where(top, rgba, canvas)
        return encode_rgba(canvas, media_type, bgcolor=bgcolor, transparent=transparent)

    def point(self, layer: Layer, lon: float, lat: float, crs: CRS = WGS84_CRS) -> PixelInfo | None:
        """The class at a point: the newest asset with data there wins (as in the mosaic)."""
        info = self.catalog.info(layer)
        if crs != WGS84_CRS:
            from rasterio.warp import transform

            xs, ys = transform(crs, WGS84_CRS, [lon], [lat])
            lon, lat = xs[0], ys[0]
        legend = {e.value: e for e in info.legend}
        for asset in layer_assets(self.finder, layer, (lon, lat, lon, lat)):
            value = self._value(asset, lon, lat)
            if value is None:
                continue
            entry = legend.get(value)
            return PixelInfo(layer.id, value, entry.code if entry else None, entry.label if entry else None,
                             entry.colour if entry else None, asset.departement, asset.millesime, asset.name)
        return None

    def _value(self, asset: AssetRef, lon: float, lat: float) -> int | None:
        path = self.finder.storage.gdal_path(asset.key)
        try:
            with CachedReader(path, dataset=open_dataset(path)) as src:
                pt = src.point(lon, lat)
        except (PointOutsideBounds, RasterioIOError):
            return None
        if np.ma.getmaskarray(pt.array)[0]:
            return None
        value = int(pt.array.data[0])
        return value or None
