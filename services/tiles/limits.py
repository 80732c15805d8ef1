"""The caps that bound the work of every raster request before it starts (the render deadline of
:mod:`services.tiles.budget` is only the backstop). Each is a documented maximum (README, "Limits of the map
services"); a request beyond one is answered 400 naming the parameter (an OGC ``InvalidParameterValue`` on
``/wms``), before any storage read or GDAL/PROJ call.

:func:`guard` checks the parameters of every titiler route (``/tiles/items/…`` and the mosaic routes of a
layer: TileJSON, point, assets, info, preview, bbox, statistics); the reader (:class:`~services.tiles.mosaic.
CachedReader`) checks the final output size and band indexes again, whichever route or parameter
combination got there (one-sided ``width``/``height``, no size at all, ``expression``).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import HTTPException, Request

from services.params import InvalidParameter, check_bbox, check_point, crs_envelope, integer, number

MAX_TILESIZE = 1024  # tilesize of an XYZ / titiler tile
MAX_TILE_BUFFER = 64  # titiler tile ``buffer`` and ``padding``, pixels
MAX_IMAGE_SIDE = 2048  # width, height, max_size of preview / bbox / feature / statistics
MAX_READ_SIDE = MAX_IMAGE_SIDE + 2 * MAX_TILE_BUFFER  # any single read, whatever asked for it
MAX_READ_PIXELS = MAX_READ_SIDE * MAX_READ_SIDE
MAX_WMS_SIDE = 2048  # WMS WIDTH / HEIGHT (advertised as MaxWidth / MaxHeight)
MAX_WMS_PIXELS = 2 * MAX_WMS_SIDE * MAX_WMS_SIDE  # WIDTH × HEIGHT × number of LAYERS of one GetMap
MAX_WMS_LAYERS = 8  # entries of LAYERS / QUERY_LAYERS
MAX_HISTOGRAM_BINS = 1024  # histogram_bins (a count, or that many bins given by their edges)
MAX_CATEGORIES = 256  # statistics ``c``
MAX_PERCENTILES = 20  # statistics ``p``
MAX_BANDS = 16  # entries of ``bidx``
MAX_EXPRESSION = 256  # characters of ``expression``
MAX_BODY_BYTES = 1 << 20  # POST body of /feature and /statistics (a GeoJSON feature)
MAX_ZOOM = 30  # minzoom / maxzoom where no tile matrix set bounds them (its own zoom levels otherwise)

# (parameter, maximum): sizes titiler takes from the query or the path
_SIZES = (("tilesize", MAX_TILESIZE), ("max_size", MAX_IMAGE_SIDE), ("width", MAX_IMAGE_SIDE),
          ("height", MAX_IMAGE_SIDE))


class ImageTooLarge(InvalidParameter):
    """A read whose output would exceed :data:`MAX_READ_SIDE` (400)."""


def _values(request: Request, name: str) -> list[str]:
    path = request.path_params.get(name)
    return [str(path)] if path is not None else request.query_params.getlist(name)


def _crs(request: Request, name: str) -> str:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return "EPSG:4326"
    crs_envelope(raw, name)  # a CRS we can bound, or 400
    return raw


def _tile(request: Request) -> None:
    """z/x/y of a titiler tile route inside its tile matrix set (404 beyond, as the XYZ routes answer), and
    ``minzoom``/``maxzoom`` within its zoom levels (a tileset lists limits for every zoom between them)."""
    from services.tiles import tms as tms_registry

    tms_id = request.path_params.get("tileMatrixSetId")
    try:
        tms = tms_registry.get(str(tms_id)) if tms_id is not None else None
    except KeyError:
        return  # titiler answers the unknown id with its own 422
    low, high = (tms.minzoom, tms.maxzoom) if tms is not None else (0, MAX_ZOOM)
    for name in ("minzoom", "maxzoom"):
        for raw in _values(request, name):
            integer(name, raw, low, high)
    if tms is None or not all(k in request.path_params for k in ("z", "x", "y")):
        return
    try:
        z, x, y = (int(str(request.path_params[k])) for k in ("z", "x", "y"))
    except ValueError:
        return  # titiler's validation answers 422
    if not tms.minzoom <= z <= tms.maxzoom:
        raise HTTPException(404, f"z={z} is outside {tms.minzoom}…{tms.maxzoom} for {tms_id}")
    matrix = tms.matrix(z)
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        raise HTTPException(404, f"tile {z}/{x}/{y} is outside the {matrix.matrixWidth}×{matrix.matrixHeight} "
                                 f"matrix {z} of {tms_id}")


def guard(request: Request) -> None:
    """Every size, count and coordinate a titiler route takes, checked against the caps above."""
    if request.method == "POST":
        length = request.headers.get("content-length")
        if length is None or not length.isdigit() or int(length) > MAX_BODY_BYTES:
            raise HTTPException(413, f"the request body must declare its Content-Length and be at most "
                                     f"{MAX_BODY_BYTES} bytes")
    sizes: dict[str, int] = {}
    for name, maximum in _SIZES:
        for raw in _values(request, name):
            sizes[name] = integer(name, raw, 1, maximum)
    if sizes.get("width", 1) * sizes.get("height", 1) > MAX_IMAGE_SIDE * MAX_IMAGE_SIDE:
        raise InvalidParameter("width", f"width × height is above {MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE} pixels")
    for name in ("buffer", "padding"):
        for raw in _values(request, name):
            value = number(name, raw)
            if not 0 <= value <= MAX_TILE_BUFFER:
                raise InvalidParameter(name, f"{value:g} is outside 0…{MAX_TILE_BUFFER}")
    for raw in _values(request, "histogram_bins"):
        parts = raw.split(",")
        if len(parts) == 1:
            integer("histogram_bins", parts[0], 1, MAX_HISTOGRAM_BINS)
        elif len(parts) > MAX_HISTOGRAM_BINS + 1:
            raise InvalidParameter("histogram_bins", f"at most {MAX_HISTOGRAM_BINS} bins ({MAX_HISTOGRAM_BINS + 1} "
                                                     "edges)")
        else:
            for part in parts:
                number("histogram_bins", part)
    for raw in _values(request, "histogram_range"):
        for part in raw.split(","):
            number("histogram_range", part)
    for name, maximum in (("c", MAX_CATEGORIES), ("p", MAX_PERCENTILES), ("bidx", MAX_BANDS)):
        values = _values(request, name)
        if len(values) > maximum:
            raise InvalidParameter(name, f"at most {maximum} values")
        for raw in values:
            if name == "c":
                number(name, raw)
            else:
                integer(name, raw, 0 if name == "p" else 1, 100 if name == "p" else MAX_BANDS)
    for raw in _values(request, "expression"):
        if len(raw) > MAX_EXPRESSION:
            raise InvalidParameter("expression", f"at most {MAX_EXPRESSION} characters")
    for raw in _values(request, "rescale"):
        for part in raw.split(","):
            number("rescale", part)
    for raw in _values(request, "dst_crs"):
        crs_envelope(raw, "dst_crs")
    path = request.path_params
    if all(k in path for k in ("minx", "miny", "maxx", "maxy")):
        check_bbox("bbox", [path[k] for k in ("minx", "miny", "maxx", "maxy")], _crs(request, "coord_crs"),
                   "coord_crs")
    if "lon" in path and "lat" in path:
        check_point("lon,lat", path["lon"], path["lat"], _crs(request, "coord_crs"), "coord_crs")
    _tile(request)


def check_read(width: float, height: float, what: str = "width") -> None:
    """The output of one read (any reader method) within :data:`MAX_READ_SIDE` a side."""
    if not (math.isfinite(width) and math.isfinite(height)) or max(width, height) > MAX_READ_SIDE:
        raise ImageTooLarge(what, f"the image would be {_px(width)}×{_px(height)} pixels, above "
                                  f"{MAX_READ_SIDE} a side: ask a smaller width/height or max_size")


def _px(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and abs(value) < 1e12 else "∞"


def output_size(width: Any, height: Any, max_size: Any, aspect: float) -> tuple[float, float] | None:
    """The (width, height) rio-tiler will produce from these arguments, ``aspect`` = height / width of the
    area read; None when neither a size nor max_size is given (native resolution)."""
    if width and height:
        return float(width), float(height)
    if width:
        return float(width), float(width) * aspect
    if height:
        return float(height) / aspect if aspect else math.inf, float(height)
    if max_size:
        return float(max_size), float(max_size)
    return None
