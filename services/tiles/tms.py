"""The tile matrix sets we serve: Web Mercator (also as ``PM``, the Géoplateforme name), Lambert-93 and
WorldCRS84Quad. Restricting the set keeps capabilities small (serving-stack §2.3).

**Géoplateforme identifiers** (../shared/reference/geoplateforme-rok4.md §1–2). IGN's server (ROK4) names
the set of a layer ``<tms>_<top>_<bottom>``: every OCS GE layer of ``data.geopf.fr/wmts`` is advertised
with ``TILEMATRIXSET=PM_6_16`` (PM restricted to its tile matrices 6–16), and GetTile also takes the bare
``PM``. Its ``PM`` is tile for tile our Web Mercator grid (same origin, 256 px tiles, same cell sizes; ids
"0"–"21"), so we accept (:func:`resolve`):

- ``PM`` and ``WebMercatorQuad``: the whole grid;
- ``PM_{a}_{b}`` for any ``0 <= a <= b <= 21`` (the levels of the Géoplateforme's PM): the same tiles, and
  a tile matrix outside ``a``–``b`` is out of range, as on the Géoplateforme. Levels outside what a layer
  serves (PM 5–18) are out of range too, so ``PM_0_19`` is accepted and answers 5–18 (the intersection);
  ``PM_3_24`` or ``PM_16_6`` are refused (not a Géoplateforme id);
- ``LAMB93`` (ours, see below) and ``WorldCRS84Quad``.

Refused with an explanation: the Géoplateforme's Lambert-93 sets (``2154_*``, ``LAMB93_*`` such as
``2154_5cm_6_22`` or ``LAMB93_10cm``): their grids have origin (0, 12 000 000) and cell sizes
0.1·2^(21−z) m (or 131072/2^z m, or the IGNF ``LAMB93`` ladder), which share no tile matrix with our
``LAMB93`` (origin at the corner of the EPSG:2154 area of use, 6529.12/2^z m), so a tile address in
them would land elsewhere here. Our ``LAMB93`` is our own grid, not the Géoplateforme's historical IGNF
``LAMB93`` (which the Géoplateforme does not use for OCS GE anyway: OCS GE is only in ``PM_6_16``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
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

# The Géoplateforme's id for its OCS GE layers (every one of them: PM tile matrices 6–16).
GEOPF_OCSGE = "PM_6_16"
# Levels of the Géoplateforme's PM (PM.json, ids "0"–"21"); PM_{a}_{b} must stay inside.
PM_LEVELS = (0, 21)

# Sets listed in WMTS capabilities (WebMercatorQuad is accepted on requests but not repeated there).
ADVERTISED = ("PM", GEOPF_OCSGE, "LAMB93", "WorldCRS84Quad")


class UnknownTileMatrixSet(KeyError):
    """An id we do not serve; ``reason`` says why, for the client."""

    def __init__(self, name: str, reason: str | None = None) -> None:
        super().__init__(name)
        self.name = name
        self.reason = reason or (
            f"unknown TILEMATRIXSET {name!r}: expected one of {', '.join(ADVERTISED)}, WebMercatorQuad "
            f"or PM_{{min}}_{{max}} with {PM_LEVELS[0]} <= min <= max <= {PM_LEVELS[1]}"
        )

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class TmsRef:
    """A tile matrix set id as a client sent it, and the grid we render it in."""

    id: str  # as requested, e.g. "PM_6_16"
    base: str  # a set of SUPPORTED, e.g. "PM"
    minzoom: int | None = None  # the alias's own restriction of the base's tile matrices
    maxzoom: int | None = None

    def allows(self, z: int) -> bool:
        return (self.minzoom is None or self.minzoom <= z) and (self.maxzoom is None or z <= self.maxzoom)


_PM_RANGE = re.compile(r"^PM_(\d{1,3})_(\d{1,3})$")
_GEOPF_LAMBERT = re.compile(r"^(?:2154|LAMB93|IGNF)_[A-Za-z0-9_]+$")


@lru_cache(maxsize=512)
def resolve(name: str) -> TmsRef:
    """The grid behind a TILEMATRIXSET id (the module doc lists what is accepted); raises
    :class:`UnknownTileMatrixSet` with the reason otherwise."""
    if name in SUPPORTED.list():
        return TmsRef(name, name)
    m = _PM_RANGE.match(name or "")
    if m:
        a, b = int(m[1]), int(m[2])
        lo, hi = PM_LEVELS
        if not lo <= a <= b <= hi:
            raise UnknownTileMatrixSet(
                name, f"TILEMATRIXSET {name!r}: PM_{{min}}_{{max}} needs {lo} <= min <= max <= {hi} (the tile "
                      f"matrices of the Géoplateforme's PM); this service advertises {GEOPF_OCSGE} and PM")
        return TmsRef(name, "PM", a, b)
    if _GEOPF_LAMBERT.match(name or ""):
        ours = _BY_NAME["LAMB93"].matrix(0)
        raise UnknownTileMatrixSet(
            name, f"TILEMATRIXSET {name!r} is a Géoplateforme Lambert-93 grid (origin 0, 12000000): its tile "
                  f"matrices are not ours, so its tile addresses cannot be served here. Our Lambert-93 set is "
                  f"LAMB93 (origin {ours.pointOfOrigin[0]:.4f}, {ours.pointOfOrigin[1]:.4f}, cell size "
                  f"{ours.cellSize:.6f} m at matrix 0, halved at each level): read its tile matrices from "
                  f"GetCapabilities. OCS GE on the Géoplateforme is only in {GEOPF_OCSGE}, which is served here.")
    raise UnknownTileMatrixSet(name)


# morecantile's registry deep-copies a TMS on every get() (≈ 3 ms): tiles use these shared, read-only ones.
_BY_NAME: dict[str, TileMatrixSet] = {name: SUPPORTED.get(name) for name in SUPPORTED.list()}


def get(name: str) -> TileMatrixSet:
    """The set named ``name``: one of SUPPORTED, or a ``PM_{a}_{b}`` alias as the set of its tile matrices
    (ids "a"–"b", each identical to PM's), which is what capabilities describe."""
    try:
        return _BY_NAME[name]
    except KeyError:
        return _alias_set(name)


@lru_cache(maxsize=64)
def _alias_set(name: str) -> TileMatrixSet:
    ref = resolve(name)
    base = _BY_NAME[ref.base]
    lo = base.minzoom if ref.minzoom is None else ref.minzoom
    hi = base.maxzoom if ref.maxzoom is None else ref.maxzoom
    doc = base.model_dump(mode="json", exclude_none=True)
    doc["id"] = name
    doc["title"] = f"{base.title or ref.base}, tile matrices {lo}–{hi} (Géoplateforme {name})"
    doc["tileMatrices"] = [m for m in doc["tileMatrices"] if lo <= int(m["id"]) <= hi]
    return TileMatrixSet.model_validate(doc)


def _metres_per_unit(tms: TileMatrixSet) -> float:
    return 111_319.49 if CRS.from_user_input(tms.crs.srs).is_geographic else 1.0


@lru_cache(maxsize=256)
def zoom_range(name: str, pm_minzoom: int, pm_maxzoom: int) -> tuple[int, int]:
    """Zoom limits in ``name`` equivalent to Web Mercator zooms (at 46.5°N, mainland France); for a
    ``PM_{a}_{b}`` alias, the intersection with ``a``–``b`` (empty when ``min > max``)."""
    if name in ("PM", "WebMercatorQuad"):
        return pm_minzoom, pm_maxzoom
    if name not in _BY_NAME:
        ref = resolve(name)
        lo, hi = zoom_range(ref.base, pm_minzoom, pm_maxzoom)
        return (lo if ref.minzoom is None else max(lo, ref.minzoom),
                hi if ref.maxzoom is None else min(hi, ref.maxzoom))
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
