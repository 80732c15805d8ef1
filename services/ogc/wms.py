"""WMS 1.3.0 and 1.1.1: GetCapabilities, GetMap, GetFeatureInfo and GetLegendGraphic over the same layers
as WMTS.

Axis order follows the standard: in 1.3.0, ``EPSG:4326`` bboxes are ``minlat,minlon,maxlat,maxlon``
while ``CRS:84`` is lon/lat; in 1.1.1 ``SRS=EPSG:4326`` is lon/lat. A bbox that is inverted, out of the
CRS's range, or that only makes sense with its axes swapped is refused with an exception, as is an image
larger than ``MAX_SIZE`` a side (advertised as MaxWidth/MaxHeight) or a GetMap of more than
:data:`~services.tiles.limits.MAX_WMS_PIXELS` pixels × layers (:mod:`services.tiles.limits`): every number is
checked before PROJ or GDAL sees it, and GetMap/GetFeatureInfo render within the render budget.

GetMap formats are those of the tiles plus ``image/tiff`` and ``image/geotiff`` (both a georeferenced RGB(A)
GeoTIFF of the map), as the Géoplateforme's WMS-R offers for OCS GE; every layer is queryable
(GetFeatureInfo: class code and label); each style has two LegendURLs, GetLegendGraphic and the legend
under IGN's file name (``/tiles/legendes/OCSGE.COUVERTURE-legend.png`` …).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from ocsge.errors import UnknownDepartementError
from services.assets import intersects
from services.ogc.documents import render
from services.ogc.featureinfo import check_format, feature_info_response
from services.ogc.kvp import Kvp, OgcError, wms_exception
from services.ogc.wmts import legend_url
from services.params import InvalidParameter, check_bbox
from services.tiles import limits
from services.tiles.layers import STYLE, UnknownLayerError, parse_layer
from services.tiles.mosaic import LayerInfo
from services.tiles.palettes import legend_png
from services.tiles.render import FORMATS, LayerNotPublished, Renderer

MAX_SIZE = limits.MAX_WMS_SIDE
GEOTIFF_FORMATS = ("image/tiff", "image/geotiff")
MAP_FORMATS = (*FORMATS, *GEOTIFF_FORMATS)
VERSIONS = ("1.3.0", "1.1.1")
CRS_LIST = ("EPSG:3857", "EPSG:2154", "EPSG:4326", "CRS:84")
_RASTERIO_CRS = {"EPSG:3857": CRS.from_epsg(3857), "EPSG:2154": CRS.from_epsg(2154),
                 "EPSG:4326": CRS.from_epsg(4326), "CRS:84": CRS.from_epsg(4326),
                 "EPSG:900913": CRS.from_epsg(3857)}


def _bbox_in(info: LayerInfo, crs: str) -> tuple[float, float, float, float]:
    w, s, e, n = info.bounds
    if crs in ("EPSG:4326", "CRS:84"):
        return w, s, e, n
    return transform_bounds("EPSG:4326", _RASTERIO_CRS[crs], w, s, e, n, densify_pts=21)


def bounding_boxes(info: LayerInfo, version: str) -> list[tuple[str, float, float, float, float]]:
    """The layer's BoundingBoxes, (crs, minx, miny, maxx, maxy) in each CRS of the version, in its axis order
    (1.3.0 + EPSG:4326: latitude first)."""
    boxes = []
    for crs_name in CRS_LIST:
        if version == "1.1.1" and crs_name == "CRS:84":
            continue
        box = _bbox_in(info, crs_name)
        if version == "1.3.0" and crs_name == "EPSG:4326":
            box = (box[1], box[0], box[3], box[2])
        boxes.append((crs_name, *box))
    return boxes


def capabilities_xml(infos: list[LayerInfo], base: str, version: str) -> str:
    """The GetCapabilities document (``templates/wms_capabilities.xml``); ``base`` is the public URL."""
    if infos:
        bounds = (min(i.bounds[0] for i in infos), min(i.bounds[1] for i in infos),
                  max(i.bounds[2] for i in infos), max(i.bounds[3] for i in infos))
    else:
        bounds = (-5.5, 41.0, 10.0, 51.5)
    layers = [{"info": info, "boxes": bounding_boxes(info, version), "legend": legend_url(base, info.layer.kind)}
              for info in infos]
    return render(
        "wms_capabilities.xml", base=base, version=version, layers=layers, bounds=bounds, style=STYLE,
        max_size=MAX_SIZE, map_formats=MAP_FORMATS, info_formats=("text/plain", "application/json", "text/html"),
        crs_list=[c for c in CRS_LIST if not (version == "1.1.1" and c == "CRS:84")],
    )


class MapRequest:
    """The parameters GetMap and GetFeatureInfo share, checked."""

    def __init__(self, q: Kvp, version: str, renderer: Renderer, layers_param: str = "LAYERS") -> None:
        self.version = version
        self.crs_key = "CRS" if version == "1.3.0" else "SRS"
        names = [n for n in q.require(layers_param).split(",") if n]
        if not names:
            raise OgcError("MissingParameterValue", f"empty {layers_param}", locator=layers_param)
        if len(names) > limits.MAX_WMS_LAYERS:
            raise OgcError("InvalidParameterValue", f"{layers_param} names {len(names)} layers: at most "
                           f"{limits.MAX_WMS_LAYERS}", locator=layers_param)
        self.layers: list[LayerInfo] = []
        departement = q.get("DEPARTEMENT")  # vendor parameter: one département's data only
        for name in names:
            try:
                self.layers.append(renderer.resolve(name, departement))
            except (UnknownLayerError, LayerNotPublished) as exc:
                raise OgcError("LayerNotDefined", str(exc), locator=layers_param) from None
            except UnknownDepartementError as exc:
                raise OgcError("InvalidParameterValue", str(exc), locator="DEPARTEMENT") from None
        styles = q.get("STYLES") or q.get("STYLE") or ""
        style_list = styles.split(",") if styles else []
        if style_list and len(style_list) != len(names):
            raise OgcError("StyleNotDefined", f"STYLES has {len(style_list)} entries for {len(names)} layers",
                           locator="STYLES")
        for style in style_list:
            if style not in ("", STYLE, "default"):
                raise OgcError("StyleNotDefined", f"unknown style {style!r}: the layers have {STYLE!r}",
                               locator="STYLES")
        crs_name = (q.get(self.crs_key) or q.get("CRS") or q.get("SRS") or "").upper()
        if not crs_name:
            raise OgcError("MissingParameterValue", f"missing parameter {self.crs_key}", locator=self.crs_key)
        if crs_name not in _RASTERIO_CRS or (version == "1.1.1" and crs_name == "CRS:84"):
            raise OgcError("InvalidCRS" if version == "1.3.0" else "InvalidSRS",
                           f"{self.crs_key}={crs_name!r} is not supported: use one of {', '.join(CRS_LIST)}",
                           locator=self.crs_key)
        self.crs_name = crs_name
        self.crs = _RASTERIO_CRS[crs_name]
        raw = q.require("BBOX")
        try:
            box = [float(v) for v in raw.split(",")]
        except ValueError:
            raise OgcError("InvalidParameterValue", f"BBOX={raw[:80]!r} is not four numbers", locator="BBOX") from None
        if len(box) != 4:
            raise OgcError("InvalidParameterValue", f"BBOX={raw[:80]!r} is not four numbers", locator="BBOX")
        self.latlon = version == "1.3.0" and crs_name == "EPSG:4326"
        if self.latlon:  # WMS 1.3.0 + EPSG:4326: the CRS's own order, latitude first
            box = [box[1], box[0], box[3], box[2]]
        minx, miny, maxx, maxy = box
        if not all(math.isfinite(v) for v in box):
            raise OgcError("InvalidParameterValue", f"BBOX={raw[:80]!r} has a value that is not a finite number",
                           locator="BBOX")
        if not (minx < maxx and miny < maxy):
            raise OgcError("InvalidParameterValue", f"BBOX={raw[:80]!r} is empty or inverted (min must be < max)",
                           locator="BBOX")
        if crs_name in ("EPSG:4326", "CRS:84"):
            order = "lat,lon" if self.latlon else "lon,lat"
            if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
                raise OgcError("InvalidParameterValue",
                               f"BBOX={raw[:80]!r} is out of range for {crs_name} in {version} (axis order {order})",
                               locator="BBOX")
            self._check_axis_order(renderer, (minx, miny, maxx, maxy), raw, order)
        try:  # inside the CRS's envelope before PROJ/GDAL see it (1e308 hangs PROJ, 1e10 overflows GDAL)
            self.bbox = check_bbox("BBOX", (minx, miny, maxx, maxy), self.crs, self.crs_key)
        except InvalidParameter as exc:
            raise OgcError("InvalidParameterValue", str(exc), locator="BBOX") from None
        self.width = q.integer("WIDTH", 1, MAX_SIZE)
        self.height = q.integer("HEIGHT", 1, MAX_SIZE)

    def check_pixels(self) -> None:
        """A GetMap renders WIDTH × HEIGHT pixels per layer: at most ``MAX_WMS_PIXELS`` in all."""
        pixels = self.width * self.height * len(self.layers)
        if pixels > limits.MAX_WMS_PIXELS:
            raise OgcError("InvalidParameterValue",
                           f"WIDTH×HEIGHT×layers = {self.width}×{self.height}×{len(self.layers)} = {pixels} pixels, "
                           f"above the {limits.MAX_WMS_PIXELS} of one GetMap: ask a smaller image or fewer layers",
                           locator="LAYERS" if len(self.layers) > 1 else "WIDTH")

    def _check_axis_order(self, renderer: Renderer, box: tuple[float, float, float, float], raw: str,
                          order: str) -> None:
        """A bbox that misses every layer but hits one once its axes are swapped is a client error."""
        swapped = (box[1], box[0], box[3], box[2])
        hits = any(intersects(info.bounds, box) for info in self.layers)
        swapped_hits = any(intersects(info.bounds, swapped) for info in self.layers)
        if not hits and swapped_hits:
            raise OgcError("InvalidParameterValue",
                           f"BBOX={raw[:80]!r} looks like it has its axes swapped: {self.crs_name} in WMS "
                           f"{self.version} is {order}", locator="BBOX")


def _parse_bgcolor(raw: str | None) -> tuple[int, int, int] | None:
    if not raw:
        return None
    text = raw.lower().removeprefix("0x").removeprefix("#")
    try:
        value = int(text, 16)
    except ValueError:
        raise OgcError("InvalidParameterValue", f"BGCOLOR={raw!r} is not 0xRRGGBB", locator="BGCOLOR") from None
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


def _geotiff(png: bytes, m: MapRequest) -> bytes:
    """The rendered map (lossless PNG) as a GeoTIFF on the request's bbox and CRS (RGB, or RGBA with
    TRANSPARENT=TRUE)."""
    from rasterio.io import MemoryFile
    from rasterio.transform import from_bounds

    with MemoryFile(png) as mem, mem.open() as src:
        data = src.read()
    profile = {"driver": "GTiff", "width": m.width, "height": m.height, "count": data.shape[0], "dtype": "uint8",
               "crs": m.crs, "transform": from_bounds(*m.bbox, m.width, m.height), "compress": "deflate",
               "photometric": "RGB"}
    if data.shape[0] == 4:
        profile["alpha"] = "YES"
    with MemoryFile() as out:
        with out.open(**profile) as dst:
            dst.write(data)
        return out.read()


def wms_router(renderer: Renderer, base_url: Callable[[Request], str]) -> APIRouter:
    router = APIRouter(tags=["WMS"])
    cache: dict[tuple[str, str, str], bytes] = {}
    lock = threading.Lock()

    def capabilities(request: Request, version: str) -> Response:
        base = base_url(request)
        key = (base, version, renderer.finder.version())
        with lock:
            body = cache.get(key)
        if body is None:
            body = capabilities_xml(renderer.catalog.available_layers(), base, version).encode()
            with lock:
                if len(cache) > 8:
                    cache.clear()
                cache[key] = body
        media = "text/xml" if version == "1.3.0" else "application/vnd.ogc.wms_xml"
        return Response(body, media_type=media)

    def get_map(q: Kvp, version: str) -> Response:
        m = MapRequest(q, version, renderer)
        m.check_pixels()
        fmt = (q.require("FORMAT")).split(";")[0].strip().lower()
        if fmt not in MAP_FORMATS:
            raise OgcError("InvalidFormat", f"FORMAT={fmt!r} is not one of {', '.join(MAP_FORMATS)}",
                           locator="FORMAT")
        transparent = (q.get("TRANSPARENT") or "FALSE").upper() == "TRUE"
        bgcolor = _parse_bgcolor(q.get("BGCOLOR"))
        body = renderer.map(m.layers, m.bbox, m.crs, m.width, m.height,
                            "image/png" if fmt in GEOTIFF_FORMATS else fmt, transparent=transparent, bgcolor=bgcolor)
        if fmt in GEOTIFF_FORMATS:
            body = _geotiff(body, m)
        return Response(body, media_type=fmt)

    def get_feature_info(q: Kvp, version: str) -> Response:
        m = MapRequest(q, version, renderer, layers_param="QUERY_LAYERS" if "QUERY_LAYERS" in q else "LAYERS")
        fmt = check_format(q.get("INFO_FORMAT"), "INFO_FORMAT")
        names = ("I", "J") if ("I" in q or version == "1.3.0") and "X" not in q else ("X", "Y")
        i = q.integer(names[0], 0, m.width - 1, code="InvalidPoint")
        j = q.integer(names[1], 0, m.height - 1, code="InvalidPoint")
        minx, miny, maxx, maxy = m.bbox
        px = minx + (i + 0.5) * (maxx - minx) / m.width
        py = maxy - (j + 0.5) * (maxy - miny) / m.height
        count = max(1, q.integer("FEATURE_COUNT", 1, 100, required=False))
        results = [(info.layer.id, renderer.point(info, px, py, m.crs))
                   for info in m.layers[: max(count, len(m.layers))]]
        return feature_info_response(results, fmt)

    def get_legend(q: Kvp) -> Response:
        name = q.require("LAYER")
        try:
            layer = parse_layer(name)
        except UnknownLayerError as exc:
            raise OgcError("LayerNotDefined", str(exc), locator="LAYER") from None
        style = q.get("STYLE")
        if style not in (None, "", STYLE, "default"):
            raise OgcError("StyleNotDefined", f"unknown style {style!r}", locator="STYLE")
        info = renderer.catalog.info(layer)
        fmt = (q.get("FORMAT") or "image/png").lower()
        if fmt == "application/json":
            return Response(json.dumps({"layer": layer.id, "title": layer.title,
                                        "classes": [e.__dict__ for e in info.legend]}, ensure_ascii=False),
                            media_type="application/json")
        if fmt != "image/png":
            raise OgcError("InvalidFormat", f"FORMAT={fmt!r}: legends are image/png or application/json",
                           locator="FORMAT")
        return Response(legend_png(layer.title, info.legend), media_type="image/png")

    @router.get("/wms", response_class=Response, summary="WMS 1.3.0 / 1.1.1")
    async def wms(request: Request) -> Response:
        q = Kvp.of(request)
        version = q.get("VERSION") or q.get("WMTVER") or "1.3.0"
        exc_version = version if version in VERSIONS else "1.3.0"
        try:
            service = q.get("SERVICE", "WMS")
            if service.upper() != "WMS":
                raise OgcError("InvalidParameterValue", f"SERVICE={service!r}: this endpoint is WMS",
                               locator="SERVICE")
            req = q.require("REQUEST").lower()
            if req in ("getcapabilities", "capabilities"):
                # version negotiation: anything but 1.1.x gets 1.3.0
                return await run_in_threadpool(capabilities, request, "1.1.1" if version.startswith("1.1") else "1.3.0")
            if version not in VERSIONS:
                raise OgcError("InvalidParameterValue", f"VERSION={version!r}: use 1.3.0 or 1.1.1", locator="VERSION")
            if req == "getmap":
                return await renderer.run(get_map, q, version)
            if req == "getfeatureinfo":
                return await renderer.run(get_feature_info, q, version)
            if req == "getlegendgraphic":
                return await run_in_threadpool(get_legend, q)
            raise OgcError("OperationNotSupported", f"REQUEST={q.get('REQUEST')!r} is not supported",
                           locator="REQUEST")
        except OgcError as exc:
            return wms_exception(exc, exc_version)

    return router
