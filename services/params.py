"""Parameters the apps share, checked before anything reads storage or calls GDAL/PROJ.

A coordinate is checked before it reaches a transform: finite (no ``nan``/``inf``) and inside the
envelope of its CRS (:func:`crs_envelope`), so that PROJ never sees ``1e308`` (``transform_bounds`` loops
on it) and GDAL never sizes a window from ``1e30`` (``Wrong values in DstRect``). A bad value raises
:class:`InvalidParameter`, which names the parameter; the error map answers it with a 400 (an OGC
``InvalidParameterValue`` under ``/wms`` and ``/wmts``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from fastapi import HTTPException

from ocsge.errors import OcsgeError
from ocsge.territory import departement

BBox = tuple[float, float, float, float]

WORLD: BBox = (-180.0, -90.0, 180.0, 90.0)
WEB_MERCATOR_HALF = 20037508.3427892  # half the side of the WebMercatorQuad square, in metres
# Slack on the edges: clients round the bounds they compute (180.0000001, 20037508.3428).
_SLACK = 1e-6


class InvalidParameter(OcsgeError, ValueError):
    """A request parameter out of its domain: a 400 naming ``param`` (OGC ``InvalidParameterValue``)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


def dep_code(dep: str) -> str:
    """A département code from the URL, or 404 (the URL never becomes a path)."""
    try:
        return departement(dep).code
    except OcsgeError as exc:
        raise HTTPException(404, str(exc)) from None


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "…"


def number(param: str, raw: Any) -> float:
    """A finite float (``nan``, ``inf`` and what does not parse are refused)."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidParameter(param, f"{_short(raw)!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidParameter(param, f"{_short(raw)!r} is not a finite number")
    return value


def integer(param: str, raw: Any, minimum: int, maximum: int) -> int:
    """An integer within ``minimum``…``maximum`` (inclusive)."""
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        raise InvalidParameter(param, f"{_short(raw)!r} is not an integer") from None
    if not minimum <= value <= maximum:
        raise InvalidParameter(param, f"{value} is outside {minimum}…{maximum}")
    return value


def _crs_key(crs: Any) -> str:
    """A hashable, canonical name of a CRS (rasterio, pyproj or a string)."""
    to_string = getattr(crs, "to_string", None)
    return to_string() if callable(to_string) else str(crs)


@lru_cache(maxsize=32)  # bounded: keyed by the CRSs clients name, which titiler lets them choose
def _envelope(key: str) -> BBox | None:
    from pyproj import CRS, Transformer
    from pyproj.exceptions import CRSError

    try:
        crs = CRS.from_user_input(key)
    except CRSError:
        return None
    if crs.is_geographic:
        return WORLD
    if crs.equals(CRS.from_epsg(3857), ignore_axis_order=True):
        return (-WEB_MERCATOR_HALF, -WEB_MERCATOR_HALF, WEB_MERCATOR_HALF, WEB_MERCATOR_HALF)
    area = crs.area_of_use
    if area is None:
        return None
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    xmin, ymin, xmax, ymax = to_crs.transform_bounds(*area.bounds, densify_pts=21)
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)) or xmin >= xmax or ymin >= ymax:
        return None
    # the area of use and as much again on every side: a client zoomed out over the area still gets its
    # map, while nothing reaches PROJ far outside the projection's domain
    dx, dy = xmax - xmin, ymax - ymin
    return xmin - dx, ymin - dy, xmax + dx, ymax + dy


def crs_envelope(crs: Any, param: str = "crs") -> BBox:
    """The coordinates a CRS accepts here, computed once per CRS: lon/lat ±180/±90 for a geographic CRS,
    the WebMercatorQuad square (±20 037 508.34 m) for EPSG:3857, and for any other projected CRS its
    area of use (pyproj's ``CRS.area_of_use``) transformed to the CRS and widened by its own size on every
    side (Lambert-93: x −2.08…3.02 Mm, y 4.78…8.46 Mm). A CRS with no declared area of use is refused."""
    envelope = _envelope(_crs_key(crs))
    if envelope is None:
        raise InvalidParameter(param, f"{_short(_crs_key(crs))!r} has no known area of use: use EPSG:4326, "
                                      "EPSG:3857 or EPSG:2154")
    return envelope


def _inside(value: float, low: float, high: float) -> bool:
    slack = (high - low) * _SLACK
    return low - slack <= value <= high + slack


def check_bbox(param: str, values: Sequence[Any], crs: Any = "EPSG:4326", crs_param: str = "crs") -> BBox:
    """Four finite numbers ``minx, miny, maxx, maxy`` (x = longitude in a geographic CRS), min < max,
    inside :func:`crs_envelope`."""
    if len(values) != 4:
        raise InvalidParameter(param, "expected four numbers minx,miny,maxx,maxy")
    minx, miny, maxx, maxy = (number(param, v) for v in values)
    if not (minx < maxx and miny < maxy):
        raise InvalidParameter(param, "the box is empty or inverted (min must be < max)")
    xmin, ymin, xmax, ymax = crs_envelope(crs, crs_param)
    if not (_inside(minx, xmin, xmax) and _inside(maxx, xmin, xmax) and _inside(miny, ymin, ymax)
            and _inside(maxy, ymin, ymax)):
        raise InvalidParameter(param, f"the box is outside {_short(_crs_key(crs))}'s range "
                                      f"{xmin:.10g},{ymin:.10g},{xmax:.10g},{ymax:.10g}")
    return minx, miny, maxx, maxy


def check_point(param: str, x: Any, y: Any, crs: Any = "EPSG:4326", crs_param: str = "crs") -> tuple[float, float]:
    """A finite point inside :func:`crs_envelope` (x = longitude in a geographic CRS)."""
    px, py = number(param, x), number(param, y)
    xmin, ymin, xmax, ymax = crs_envelope(crs, crs_param)
    if not (_inside(px, xmin, xmax) and _inside(py, ymin, ymax)):
        raise InvalidParameter(param, f"the point is outside {_short(_crs_key(crs))}'s range "
                                      f"{xmin:.10g},{ymin:.10g},{xmax:.10g},{ymax:.10g}")
    return px, py
