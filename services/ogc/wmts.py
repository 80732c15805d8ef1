"""WMTS 1.0.0, KVP and RESTful, with Géoplateforme-style identifiers.

KVP exactly as clients of ``data.geopf.fr/wmts`` send it (``SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&
LAYER=OCSGE.COUVERTURE.2021-2023&STYLE=normal&TILEMATRIXSET=PM_6_16&TILEMATRIX=z&TILEROW=y&TILECOL=x&
FORMAT=image/png``), dispatched to the renderer in-process (no redirect); RESTful templates for clients
that prefer them. A saved Géoplateforme URL works with only the host changed: the Géoplateforme's
tile matrix set ids (``PM_6_16``, any ``PM_{a}_{b}``, ``PM``) are accepted on GetTile, GetFeatureInfo and
the RESTful template (:func:`services.tiles.tms.resolve` says which and why others are refused).

Capabilities list only layers with data in the catalogue, each linked to ``PM``, ``PM_6_16`` (as the
Géoplateforme advertises its OCS GE layers), ``LAMB93`` and ``WorldCRS84Quad``, with TileMatrixSetLimits
computed from their bounds; each style has two LegendURLs: ours (``/tiles/{layer}/legend.png``) and the
legend under IGN's file name (``/tiles/legendes/OCSGE.COUVERTURE-legend.png`` …), served by this router.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from morecantile import Tile, TileMatrixSet

from ocsge.errors import UnknownDepartementError
from services.ogc.documents import render
from services.ogc.featureinfo import check_format, feature_info_response
from services.ogc.kvp import Kvp, OgcError, ows_exception
from services.tiles import tms as tms_registry
from services.tiles.layers import KINDS, STYLE, UnknownLayerError, kind_of_legend_file, legend_file
from services.tiles.mosaic import LayerInfo
from services.tiles.palettes import default_legend, legend_png
from services.tiles.render import EXTENSIONS, FORMATS, LayerNotPublished, OutOfRange, Renderer

STYLES = (STYLE, "default")  # "default" is what some clients send when they know no better


def tile_limits(tms: TileMatrixSet, bounds: tuple[float, float, float, float], z: int) -> tuple[int, int, int, int]:
    """(min_row, max_row, min_col, max_col) of the tiles covering WGS84 ``bounds`` at zoom ``z``."""
    west, south, east, north = bounds
    geo = tms.rasterio_geographic_crs
    from rasterio.warp import transform

    xs, ys = transform("EPSG:4326", geo, [west, east, west, east], [north, north, south, south])
    matrix = tms.matrix(z)
    cols, rows = [], []
    for lon, lat in zip(xs, ys, strict=True):
        t = tms.tile(lon, lat, z, ignore_coalescence=True)
        cols.append(min(max(t.x, 0), matrix.matrixWidth - 1))
        rows.append(min(max(t.y, 0), matrix.matrixHeight - 1))
    return min(rows), max(rows), min(cols), max(cols)


def tile_matrix_set(tms: TileMatrixSet, maxzoom: int) -> dict[str, Any]:
    """A TileMatrixSet of the capabilities: its id, CRS URN and tile matrices up to ``maxzoom``."""
    return {"id": tms.id, "crs": tms_registry.crs_urn(tms),
            "matrices": [tms.matrix(z) for z in range(tms.minzoom, min(maxzoom, tms.maxzoom) + 1)]}


def legend_url(base: str, kind: str) -> str:
    """The legend of a kind under IGN's file name (the Géoplateforme's ``…/legendes/…``)."""
    return f"{base}/tiles/legendes/{legend_file(kind)}"


def tile_matrix_set_links(info: LayerInfo) -> list[dict[str, Any]]:
    """The layer's TileMatrixSetLinks: each advertised set it has zooms in, with the (z, min_row, max_row,
    min_col, max_col) limits of its bounds."""
    links = []
    for name in tms_registry.ADVERTISED:
        tms = tms_registry.get(name)
        zmin, zmax = tms_registry.zoom_range(name, info.layer.minzoom, info.layer.maxzoom)
        if zmin > zmax:
            continue
        links.append({"tms": name, "limits": [(z, *tile_limits(tms, info.bounds, z)) for z in range(zmin, zmax + 1)]})
    return links


def capabilities_xml(infos: list[LayerInfo], base: str) -> str:
    """The GetCapabilities document (``templates/wmts_capabilities.xml``); ``base`` is the public URL."""
    maxzoom = max([info.layer.maxzoom for info in infos] + [18])
    sets = [tile_matrix_set(tms_registry.get(name), max(tms_registry.zoom_range(name, 0, maxzoom)[1], 0))
            for name in tms_registry.ADVERTISED]
    layers = [{"info": info, "links": tile_matrix_set_links(info), "legend": legend_url(base, info.layer.kind)}
              for info in infos]
    return render(
        "wmts_capabilities.xml", base=base, layers=layers, sets=sets, style=STYLE,
        operations=("GetCapabilities", "GetTile", "GetFeatureInfo"),
        tile_formats=[(media, ext) for media, (_, ext) in FORMATS.items()],
        info_formats=("text/plain", "application/json", "text/html"),
        info_resources=(("application/json", "json"), ("text/plain", "txt"), ("text/html", "html")),
    )


def wmts_router(renderer: Renderer, base_url: Callable[[Request], str]) -> APIRouter:
    router = APIRouter(tags=["WMTS"])
    cache: dict[tuple[str, str], bytes] = {}
    lock = threading.Lock()

    def capabilities(request: Request) -> Response:
        base = base_url(request)
        key = (base, renderer.finder.version())
        with lock:
            body = cache.get(key)
        if body is None:
            body = capabilities_xml(renderer.catalog.available_layers(), base).encode()
            with lock:
                cache.clear()
                cache[key] = body
        return Response(body, media_type="application/xml")

    def resolve(layer_id: str, style: str | None, tms_name: str, departement: str | None = None
                ) -> tuple[LayerInfo, tms_registry.TmsRef]:
        try:
            info = renderer.resolve(layer_id, departement)
        except (UnknownLayerError, LayerNotPublished) as exc:
            raise OgcError("InvalidParameterValue", str(exc), locator="LAYER") from None
        except UnknownDepartementError as exc:
            raise OgcError("InvalidParameterValue", str(exc), locator="DEPARTEMENT") from None
        if style is not None and style not in STYLES:
            raise OgcError("InvalidParameterValue", f"unknown STYLE {style!r}: this layer has {STYLE!r}",
                           locator="STYLE")
        try:
            ref = tms_registry.resolve(tms_name)
        except tms_registry.UnknownTileMatrixSet as exc:
            raise OgcError("InvalidParameterValue", exc.reason, locator="TILEMATRIXSET") from None
        return info, ref

    def check_tile(info: LayerInfo, ref: tms_registry.TmsRef, z: int, row: int, col: int) -> None:
        """The alias's own tile matrices (PM_6_16: 6–16), then the layer's limits in the base set."""
        if not ref.allows(z):
            raise OgcError("TileOutOfRange", f"TileMatrix {z} is not in {ref.id} (tile matrices "
                                             f"{ref.minzoom}–{ref.maxzoom})", locator="TILEMATRIX")
        try:
            renderer.check_tile(info.layer, ref.base, z, col, row)
        except OutOfRange as exc:
            raise OgcError("TileOutOfRange", str(exc).replace(f" in {ref.base}", f" in {ref.id}"),
                           locator="TILEMATRIX" if "TileMatrix" in str(exc) else "TILEROW") from None

    def tile_format(fmt: str | None) -> str:
        media = (fmt or "image/png").split(";")[0].strip().lower()
        media = EXTENSIONS.get(media, media)
        if media not in FORMATS:
            raise OgcError("InvalidParameterValue", f"unsupported FORMAT {fmt!r}: expected {', '.join(FORMATS)}",
                           locator="FORMAT")
        return media

    async def get_tile(info: LayerInfo, ref: tms_registry.TmsRef, z: int, row: int, col: int,
                       media: str) -> Response:
        check_tile(info, ref, z, row, col)
        body = await renderer.run(renderer.tile, info, ref.base, z, col, row, media)
        return Response(body, media_type=media)

    async def feature_info(info: LayerInfo, ref: tms_registry.TmsRef, z: int, row: int, col: int, i: int, j: int,
                           fmt: str) -> Response:
        check_tile(info, ref, z, row, col)
        tms = tms_registry.get(ref.base)
        m = tms.matrix(z)
        if not (0 <= i < m.tileWidth and 0 <= j < m.tileHeight):
            raise OgcError("PointIJOutOfRange", f"I={i}, J={j} outside the {m.tileWidth}×{m.tileHeight} tile",
                           locator="I")
        left, bottom, right, top = tms.xy_bounds(Tile(col, row, z))
        px = left + (i + 0.5) * (right - left) / m.tileWidth
        py = top - (j + 0.5) * (top - bottom) / m.tileHeight
        pixel = await renderer.run(renderer.point, info, px, py, tms.rasterio_crs)
        return feature_info_response([(info.layer.id, pixel)], fmt)

    @router.get("/wmts", response_class=Response, summary="WMTS KVP (GetCapabilities, GetTile, GetFeatureInfo)")
    async def wmts_kvp(request: Request) -> Response:
        try:
            q = Kvp.of(request)
            service = q.get("SERVICE", "WMTS")
            if service.upper() != "WMTS":
                raise OgcError("InvalidParameterValue", f"SERVICE={service!r}: this endpoint is WMTS",
                               locator="SERVICE")
            req = q.require("REQUEST")
            version = q.get("VERSION")
            if version is not None and version != "1.0.0" and req.lower() != "getcapabilities":
                raise OgcError("VersionNegotiationFailed", f"VERSION={version!r}: only 1.0.0", locator="VERSION")
            if req.lower() == "getcapabilities":
                return await run_in_threadpool(capabilities, request)
            if req.lower() not in ("gettile", "getfeatureinfo"):
                raise OgcError("OperationNotSupported", f"REQUEST={req!r} is not supported", locator="REQUEST")
            tms_name = q.require("TILEMATRIXSET")
            layer, ref = resolve(q.require("LAYER"), q.get("STYLE"), tms_name, q.get("DEPARTEMENT"))
            z = q.integer("TILEMATRIX", 0)
            row = q.integer("TILEROW", 0)
            col = q.integer("TILECOL", 0)
            if req.lower() == "gettile":
                return await get_tile(layer, ref, z, row, col, tile_format(q.get("FORMAT")))
            fmt = check_format(q.get("INFOFORMAT") or q.get("INFO_FORMAT"), "INFOFORMAT")
            return await feature_info(layer, ref, z, row, col, q.integer("I", 0), q.integer("J", 0), fmt)
        except OgcError as exc:
            return ows_exception(exc)

    @router.get("/wmts/1.0.0/WMTSCapabilities.xml", response_class=Response, summary="WMTS RESTful capabilities")
    async def wmts_rest_capabilities(request: Request) -> Response:
        return await run_in_threadpool(capabilities, request)

    def _ints(**values: str) -> dict[str, int]:
        out = {}
        for name, raw in values.items():
            try:
                out[name] = int(raw)
            except ValueError:
                raise OgcError("InvalidParameterValue", f"{name}={raw!r} is not an integer", locator=name) from None
            if out[name] < 0:
                raise OgcError("InvalidParameterValue", f"{name}={raw!r} is negative", locator=name)
        return out

    @router.get("/wmts/1.0.0/{layer}/{style}/{tms}/{z}/{row}/{col}.{ext}", response_class=Response,
                summary="WMTS RESTful GetTile")
    async def wmts_rest_tile(layer: str, style: str, tms: str, z: str, row: str, col: str, ext: str,
                             departement: str | None = None) -> Response:
        try:
            resolved, ref = resolve(layer, style, tms, departement)
            n = _ints(TILEMATRIX=z, TILEROW=row, TILECOL=col)
            return await get_tile(resolved, ref, n["TILEMATRIX"], n["TILEROW"], n["TILECOL"], tile_format(ext))
        except OgcError as exc:
            return ows_exception(exc)

    @router.get("/wmts/1.0.0/{layer}/{style}/{tms}/{z}/{row}/{col}/{j}/{i}.{ext}", response_class=Response,
                summary="WMTS RESTful GetFeatureInfo")
    async def wmts_rest_info(layer: str, style: str, tms: str, z: str, row: str, col: str, j: str, i: str,
                             ext: str) -> Response:
        try:
            resolved, ref = resolve(layer, style, tms)
            n = _ints(TILEMATRIX=z, TILEROW=row, TILECOL=col, I=i, J=j)
            fmt = {"json": "application/json", "txt": "text/plain", "html": "text/html"}.get(ext)
            if fmt is None:
                raise OgcError("InvalidParameterValue", f"unsupported info format .{ext}", locator="INFOFORMAT")
            return await feature_info(resolved, ref, n["TILEMATRIX"], n["TILEROW"], n["TILECOL"], n["I"], n["J"],
                                      fmt)
        except OgcError as exc:
            return ows_exception(exc)

    def kind_legend(kind: str) -> bytes:
        """The legend of the newest published layer of a kind (its COG may carry its own classes), else the
        kind's default legend."""
        infos = [i for i in renderer.catalog.available_layers() if i.layer.kind == kind]
        legend = max(infos, key=lambda i: i.layer.campaign).legend if infos else default_legend(kind.lower())
        return legend_png(f"OCS GE — {KINDS[kind][1]}", legend)

    @router.get("/tiles/legendes/{name:path}", response_class=Response, tags=["Layers"],
                summary="Legend of a kind under IGN's file name (OCSGE.COUVERTURE-legend.png, ocsge/OCSGE_USAGE.png…)")
    async def ign_legend(name: str) -> Response:
        kind = kind_of_legend_file(name)
        if kind is None:
            known = ", ".join(legend_file(k) for k in KINDS)
            raise HTTPException(404, f"unknown legend {name!r}: expected one of {known}")
        return Response(await run_in_threadpool(kind_legend, kind), media_type="image/png")

    return router
