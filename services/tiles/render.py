"""The one raster renderer behind XYZ (``/tiles/{layer}/tiles/…``), WMTS (KVP and RESTful) and WMS: a tile,
a part (a bbox: WMS GetMap) and a point (GetFeatureInfo), all read through rio-tiler's mosaic backend
(:class:`~services.tiles.mosaic.CatalogBackend`, the one titiler's MosaicTilerFactory uses for TileJSON,
bbox and point), coloured with the layer's legend.

**Empty tiles.** A tile inside the layer's zoom levels and tile matrix but without data is a
**transparent 256×256 PNG with status 200** on every protocol (a white one in JPEG, where there is no
alpha), as the Géoplateforme answers: QGIS, GDAL, OpenLayers and Leaflet draw it without logging a tile
error, where a 204 or a 404 at every data edge makes Leaflet log ``tileerror`` and some WMTS clients retry.
A tile *outside* the zoom levels or the matrix is an error (404 on ``/tiles``, ``TileOutOfRange`` on WMTS).

**Checks once.** A request resolves its layer (parse + catalogue lookup) once with :meth:`Renderer.resolve`
and checks its tile limits once with :meth:`Renderer.check_tile`; the render methods take the resolved
:class:`~services.tiles.mosaic.LayerInfo` and check nothing again.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from rasterio.crs import CRS
from rio_tiler.constants import WGS84_CRS
from rio_tiler.errors import EmptyMosaicError, NoAssetFoundError, TileOutsideBounds
from rio_tiler.models import ImageData
from rio_tiler.utils import render

from ocsge.errors import OcsgeError
from services.assets import AssetFinder
from services.tiles import tms as tms_registry
from services.tiles.budget import RenderBudget, check_deadline
from services.tiles.layers import Layer, parse_layer
from services.tiles.mosaic import CatalogBackend, LayerCatalog, LayerInfo, pixel_window, projected_bounds
from services.tiles.ortho import is_ortho, photo_pixel, photo_rgba
from services.tiles.overviews import Overviews, Slab, merge_first
from services.tiles.palettes import legend_index

FORMATS: dict[str, tuple[str, str]] = {  # media type → (GDAL driver, extension)
    "image/png": ("PNG", "png"),
    "image/jpeg": ("JPEG", "jpg"),
    "image/webp": ("WEBP", "webp"),
}
EXTENSIONS = {ext: mt for mt, (_, ext) in FORMATS.items()} | {"jpeg": "image/jpeg"}


class OutOfRange(ValueError):
    """A tile outside the zoom levels or the matrix of its tile matrix set."""


class LayerNotPublished(OcsgeError, LookupError):
    """A well-formed layer id with no data in the catalogue (or none for the département asked for)."""

    def __init__(self, layer: str, message: str | None = None) -> None:
        super().__init__(message or f"layer {layer!r} has no published data")
        self.layer = layer


def departement_code(value: str) -> str:
    """A ``departement`` filter as a normalised code; raises UnknownDepartementError for anything else."""
    from ocsge.territory import departement

    return departement(value).code


_NO_DATA = (NoAssetFoundError, TileOutsideBounds, EmptyMosaicError)
T = TypeVar("T")


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


_LUTS: dict[int, tuple[dict[int, tuple[int, int, int, int]], np.ndarray]] = {}  # id(colormap) → (it, its LUT)
_LUTS_LOCK = threading.Lock()
# a pixel of a uint32 view of RGBA bytes with its alpha byte cleared (whatever the machine's byte order)
_NO_ALPHA = np.array([255, 255, 255, 0], dtype="uint8").view("uint32")[0]
_ALL = np.uint32(0xFFFFFFFF)


def colour_lut(colormap: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    """256×4 uint8: the RGBA of each class value, as rio-tiler's ``apply_cmap`` colours a uint8 band (its
    ``make_lut`` for a full 256-entry map; values without an entry transparent black, as its discrete map
    does). One per colour map object: a layer's map lives as long as its catalogue entry."""
    with _LUTS_LOCK:
        hit = _LUTS.get(id(colormap))
    if hit is not None and hit[0] is colormap:
        return hit[1]
    lut = np.zeros((256, 4), dtype="uint8")
    for value, colour in colormap.items():
        if float(value).is_integer() and 0 <= value <= 255:
            lut[int(value)] = colour
    with _LUTS_LOCK:
        if len(_LUTS) > 256:
            _LUTS.clear()
        _LUTS[id(colormap)] = (colormap, lut)  # the reference keeps the id from being reused
    return lut


def _rgba(img: ImageData, info: LayerInfo) -> np.ndarray:
    """4×H×W uint8: the class band coloured by the legend, alpha 0 where masked or nodata.

    One lookup of a whole RGBA pixel (the table seen as uint32) per class value, then the alpha byte cleared
    where masked: a pixel-interleaved H×W×4 array, returned as its 4×H×W view, which the PNG encoder takes
    without a copy (:func:`encode_rgba`). Five times cheaper than a per-channel lookup."""
    if is_ortho(info.layer.kind):  # a photo: its own colours (services/tiles/ortho.py)
        return photo_rgba(img)
    band = img.array.data[0].astype("uint8", copy=False)
    pixels = colour_lut(info.colormap).view("uint32")[:, 0].take(band)  # H×W, one uint32 per RGBA pixel
    np.bitwise_and(pixels, np.where(np.ma.getmaskarray(img.array)[0], _NO_ALPHA, _ALL), out=pixels)
    return pixels.view("uint8").reshape(*band.shape, 4).transpose(2, 0, 1)


# zlib level of the PNGs: GDAL's PNG driver's default, the size the tiles always had
PNG_COMPRESS_LEVEL = 6


def encode_png(rgba: np.ndarray, transparent: bool = True) -> bytes:
    """A 4×H×W uint8 image as an 8-bit RGBA PNG (RGB where not ``transparent``), encoded by Pillow: the
    same pixels as GDAL's PNG driver wrote, at less than half its CPU time (no MEM dataset, no copy into
    it: ``benchmarks/RESULTS_national.md``)."""
    bands = rgba if transparent else rgba[:3]
    hwc = np.ascontiguousarray(bands.transpose(1, 2, 0))  # no copy for the view :func:`_rgba` returns
    out = io.BytesIO()
    Image.fromarray(hwc, "RGBA" if transparent else "RGB").save(out, format="PNG",
                                                                compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()


def encode_rgba(rgba: np.ndarray, media_type: str, bgcolor: tuple[int, int, int] | None = None,
                transparent: bool = True) -> bytes:
    driver = FORMATS[media_type][0]
    if driver == "JPEG" or not transparent:
        bg = np.array(bgcolor or (255, 255, 255), dtype="float32")[:, None, None]
        a = rgba[3:4].astype("float32") / 255.0
        rgb = (rgba[:3].astype("float32") * a + bg * (1 - a)).round().astype("uint8")
        if driver == "PNG":
            return encode_png(rgb, transparent=False)
        return render(rgb, img_format=driver)
    if driver == "PNG":
        return encode_png(rgba)
    return render(rgba[:3], rgba[3], img_format=driver)


class Renderer:
    """Layer rendering over one finder (the catalogue)."""

    def __init__(self, finder: AssetFinder, catalog: LayerCatalog | None = None,
                 budget: RenderBudget | None = None) -> None:
        self.finder = finder
        self.catalog = catalog or LayerCatalog(finder)
        self.backend = CatalogBackend.bind(finder, self.catalog)
        self.budget = budget or RenderBudget.from_settings()  # every protocol renders through it
        self.overviews = Overviews(finder.storage)  # the national path of the low zooms

    def _slabs(self, slabs: tuple[Slab, ...], read: Callable[[Any], ImageData],
               tms: Any = tms_registry.WEB_MERCATOR) -> ImageData | None:
        """``read`` on each national slab (their keys are the manifest's, never a client's), merged."""
        readers = [lambda key=s.key: read(self.backend.key_reader(key, tms=tms)) for s in slabs]
        return merge_first(readers)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn`` on a render worker within the request's time budget (:mod:`services.tiles.budget`)."""
        return await self.budget.run(fn, *args, **kwargs)

    def resolve(self, layer_id: str, departement: str | None = None) -> LayerInfo:
        """Parse a layer id and look it up in the catalogue (raises UnknownLayerError, LayerNotPublished);
        with ``departement``, the layer restricted to that département (raises UnknownDepartement)."""
        code = None if departement in (None, "") else departement_code(departement)
        info = self.catalog.info(parse_layer(layer_id), code)
        if not info.available:
            if code is not None and self.catalog.info(info.layer).available:
                raise LayerNotPublished(layer_id, f"layer {layer_id!r} has no published data for département {code}")
            raise LayerNotPublished(layer_id)
        return info

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

    def tile(self, info: LayerInfo, tms_name: str, z: int, x: int, y: int, media_type: str = "image/png",
             tilesize: int = 256) -> bytes:
        """One tile, already checked with :meth:`check_tile`; an empty one is transparent (module doc)."""
        tms = tms_registry.get(tms_name)
        b = tms.xy_bounds(x, y, z)
        slabs = self.overviews.for_read(info, (b.left, b.bottom, b.right, b.top), tms.crs.srs, tilesize)
        if slabs is not None:  # the national path (services/tiles/overviews.py)
            img = self._slabs(slabs, lambda r: r.tile(x, y, z, tilesize=tilesize), tms)
            if img is None:
                return blank(media_type, tilesize, tilesize)
            return encode_rgba(_rgba(img, info), media_type)
        try:
            with self.backend(info.layer.id, tms=tms, layer_info=info) as src:
                img, _ = src.tile(x, y, z, tilesize=tilesize, threads=0)
        except _NO_DATA:
            return blank(media_type, tilesize, tilesize)
        return encode_rgba(_rgba(img, info), media_type)

    def map(self, infos: list[LayerInfo], bbox: tuple[float, float, float, float], crs: CRS, width: int,
            height: int, media_type: str = "image/png", transparent: bool = True,
            bgcolor: tuple[int, int, int] | None = None) -> bytes:
        """Layers overlaid in request order (the first at the bottom, as WMS says).

        Each layer is read only over the part of the image its data can reach (and each of its COGs over
        its own part, :meth:`~services.tiles.mosaic.CachedReader.part`): a national or world map costs what
        the data's extent costs, not what the image's does."""
        canvas = np.zeros((4, height, width), dtype="uint8")
        for info in infos:
            check_deadline()
            footprint = projected_bounds(tuple(info.bounds), "EPSG:4326", crs.to_string())
            window = (0, 0, width, height) if footprint is None else pixel_window(footprint, bbox, width, height)
            if window is None:
                continue
            col0, row0, col1, row1 = window
            minx, _, _, maxy = bbox
            resx, resy = (bbox[2] - bbox[0]) / width, (bbox[3] - bbox[1]) / height
            part = (minx + col0 * resx, maxy - row1 * resy, minx + col1 * resx, maxy - row0 * resy)
            if window == (0, 0, width, height):
                part = bbox  # the very same request as before clipping existed
            slabs = self.overviews.for_read(info, part, crs.to_string(), col1 - col0)
            if slabs is not None:  # the national path (services/tiles/overviews.py)
                img = self._slabs(slabs, lambda r, part=part, w=col1 - col0, h=row1 - row0: r.part(
                    part, dst_crs=crs, bounds_crs=crs, width=w, height=h, max_size=None))
                if img is not None:
                    rgba = _rgba(img, info)
                    region = canvas[:, row0:row1, col0:col1]
                    canvas[:, row0:row1, col0:col1] = np.where(rgba[3:4] > 0, rgba, region)
                continue
            try:
                with self.backend(info.layer.id, tms=tms_registry.WEB_MERCATOR, layer_info=info) as src:
                    img, _ = src.part(part, dst_crs=crs, bounds_crs=crs, width=col1 - col0, height=row1 - row0,
                                      max_size=None, threads=0)
            except _NO_DATA:
                continue
            rgba = _rgba(img, info)
            region = canvas[:, row0:row1, col0:col1]
            canvas[:, row0:row1, col0:col1] = np.where(rgba[3:4] > 0, rgba, region)
        return encode_rgba(canvas, media_type, bgcolor=bgcolor, transparent=transparent)

    def point(self, info: LayerInfo, x: float, y: float, crs: CRS = WGS84_CRS) -> PixelInfo | None:
        """The class at a point, read by the mosaic backend's ``point``: the newest asset with data there wins
        (as in the tiles); None where no asset has a class."""
        try:
            with self.backend(info.layer.id, tms=tms_registry.WEB_MERCATOR, layer_info=info) as src:
                values = src.point(x, y, coord_crs=crs, threads=0)
        except _NO_DATA:
            return None
        by_name = {a.name: a for a in info.assets}
        legend = legend_index(info.legend)  # every value of a class range (confidence)
        for name, pt in values:
            if np.ma.getmaskarray(pt.array)[0]:
                continue
            value = int(pt.array.data[0])
            asset = by_name.get(name)
            if asset is not None and is_ortho(info.layer.kind):  # a photo: its band values, no class
                code, label, colour = photo_pixel(info.layer.kind, pt.array.data)
                return PixelInfo(info.layer.id, value, code, label, colour, asset.departement, asset.millesime,
                                 asset.name)
            if not value or asset is None:
                continue
            entry = legend.get(value)
            return PixelInfo(info.layer.id, value, entry.code if entry else None, entry.label if entry else None,
                             entry.colour if entry else None, asset.departement, asset.millesime, asset.name)
        return None
