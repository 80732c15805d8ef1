"""The tile matrix sets we serve: Web Mercator (also as ``PM``, the Géoplateforme name), Lambert-93 and
WorldCRS84Quad. Restricting the set keeps capabilities small (serving-stack §2.3)."""

from __future__ import annotations

import math
from functools import lru_cache

import morecantile
from morecantile import TileMatrixSet
from pyproj import CRS

# Lambert-93 official projected bounds (EPSG:2154 area of use, serving-stack §2.5)
LAMB93_EXTENT = (-357823.2365, 6037008.6939, 1313632.3628, 7230727.3772)

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
PM = WEB_MERCATOR.model_copy(update={"id": "PM", "title": "Web Mercator (Géoplateforme PM)"})
LAMB93 = TileMatrixSet.custom(
    list(LAMB93_EXTENT), CRS.from_epsg(2154), id="LAMB93", title="Lambert-93 (EPSG:2154)", minzoom=0, maxzoom=18
)
WORLD_CRS84 = morecantile.tms.get("WorldCRS84Quad")

TMS = morecantile.tms.register({"PM": PM, "LAMB93": LAMB93}, overwrite=True)
SUPPORTED = TMS.register({}, overwrite=True)  # a copy we can trim
for _name in list(SUPPORTED.list()):
    if _name not in ("WebMercatorQuad", "PM", "LAMB93", "WorldCRS84Quad"):
        SUPPORTED.tilematrixsets.pop(_name, None)

# Sets listed in WMTS capabilities (WebMercatorQuad is accepted on requests but not repeated there).
ADVERTISED = ("PM", "LAMB93", "WorldCRS84Quad")


class UnknownTileMatrixSet(KeyError):
    pass


# morecantile's registry deep-copies a TMS on every get() (≈ 3 ms): tiles use these shared, read-only ones.
_BY_NAME: dict[str, TileMatrixSet] = {name: SUPPORTED.get(name) for name in SUPPORTED.list()}


def get(name: str) -> TileMatrixSet:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownTileMatrixSet(name) from None


def _metres_per_unit(tms: TileMatrixSet) -> float:
    return 111_319.49 if CRS.from_user_input(tms.crs.srs).is_geographic else 1.0


@lru_cache(maxsize=256)
def zoom_range(name: str, pm_minzoom: int, pm_maxzoom: int) -> tuple[int, int]:
    """Zoom limits in ``name`` equivalent to Web Mercator zooms (at 46.5°N, mainland France)."""
    if name in ("PM", "WebMercatorQuad"):
        return pm_minzoom, pm_maxzoom
    tms = get(name)
    scale = math.cos(math.radians(46.5))

    def equivalent(z: int) -> int:
        res_m = WEB_MERCATOR.matrix(z).cellSize * scale
        target = res_m / _metres_per_unit(tms)
        return min(range(tms.minzoom, tms.maxzoom + 1), key=lambda k: abs(math.log(tms.matrix(k).cellSize / target)))

    return equivalent(pm_minzoom), equivalent(pm_maxzoom)


def crs_urn(tms: TileMatrixSet) -> str:
    """The CRS as WMTS 1.0 clients (GDAL, OpenLayers, QGIS) expect it in SupportedCRS."""
    epsg = tms.rasterio_crs.to_epsg()
    if epsg == 4326 or "CRS84" in tms.crs.srs:
        return "urn:ogc:def:crs:OGC:1.3:CRS84"
    return f"urn:ogc:def:crs:EPSG::{epsg}"
