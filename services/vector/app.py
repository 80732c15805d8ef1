"""Vector tiles from the PMTiles artifacts of the catalogue.

    /vector/datasets                                         what exists, with links
    /vector/{kind}/{dep}/{millesime}/{z}/{x}/{y}.mvt         one tile (``kind``: occupation | difference |
                                                             analyses)
    /vector/{kind}/{dep}/{millesime}/tilejson.json           TileJSON 3.0
    /vector/{kind}/{dep}/{millesime}/style.json              MapLibre style in the official colours; for the
                                                             analyses, the style and legend of
                                                             ``/stats/{dep}/{millesime}/carte.json`` with its
                                                             source read through this service
    /vector/{kind}/{dep}/{millesime}.pmtiles                 the file itself, with HTTP Range support

``dep`` is a département code, or ``FR`` for the national tileset of occupation and differences (the
départements' tiles joined, generalised at z6–9: ``inference_batch.products.national_tiles``), served the
same way with the same style.

A dataset is looked up among the finder's assets (never built from the request into a path). Tiles
keep their stored gzip encoding for clients that accept it.
"""

import gzip
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from pmtiles.tile import Compression

from ocsge.national import NATIONAL
from services.assets import AssetFinder, AssetRef
from services.caching import ETagMiddleware
from services.catalog_finder import default_finder
from services.errors import add_error_handlers
from services.params import dep_code
from services.ranges import serve_object
from services.vector.pmtiles_source import PMTilesSource, SourceCache
from services.vector.style import ATTRIBUTES, DEFAULT_ATTRIBUTE, maplibre_style

KINDS = {"occupation": "occupation_pmtiles", "difference": "difference_pmtiles", "analyses": "analyses_pmtiles"}


def _base(request: Request) -> str:
    from services.urls import public_base_url

    return public_base_url(request)


def create_app(finder: AssetFinder | None = None) -> FastAPI:
    finder = finder or default_finder()
    sources = SourceCache(finder.storage)
    app = FastAPI(title="OCS GE vector tiles", docs_url="/vector/docs", openapi_url="/vector/openapi.json")
    app.state.finder = finder
    app.state.sources = sources

    def dataset(kind: Annotated[str, Path()], dep: Annotated[str, Path()],
                millesime: Annotated[str, Path()]) -> AssetRef:
        if kind not in KINDS:
            raise HTTPException(404, f"unknown vector dataset kind {kind!r}: expected {', '.join(KINDS)}")
        code = NATIONAL if dep.upper() == NATIONAL else dep_code(dep)  # FR: the national tileset
        for asset in finder.find(KINDS[kind], departement=code):
            if asset.millesime == millesime:
                return asset
        raise HTTPException(404, f"no {kind} vector tiles for département {dep!r}, millésime {millesime!r}")

    def source_of(asset: AssetRef) -> PMTilesSource:
        return sources.get(asset.key, asset.size)

    def links(request: Request, kind: str, asset: AssetRef) -> dict[str, str]:
        base = f"{_base(request)}/vector/{kind}/{asset.departement}/{asset.millesime}"
        return {"tiles": base + "/{z}/{x}/{y}.mvt", "tilejson": base + "/tilejson.json",
                "style": base + "/style.json", "pmtiles": base + ".pmtiles"}

    @app.get("/vector/datasets")
    def datasets(request: Request) -> list[dict[str, Any]]:
        out = []
        for kind, product in KINDS.items():
            for asset in finder.find(product):
                src = source_of(asset)
                out.append({"kind": kind, "departement": asset.departement, "millesime": asset.millesime,
                            "national": asset.departement == NATIONAL,
                            "bounds": list(src.bounds), "minzoom": src.minzoom, "maxzoom": src.maxzoom,
                            "layers": [v.get("id") for v in src.vector_layers()], **links(request, kind, asset)})
        return out

    @app.get("/vector/{kind}/{dep}/{millesime}/{z}/{x}/{y}.{ext}", response_class=Response)
    def tile(request: Request, asset: Annotated[AssetRef, Depends(dataset)], z: int, x: int, y: int,
             ext: str) -> Response:
        if ext not in ("mvt", "pbf"):
            raise HTTPException(400, f"unsupported tile extension .{ext}: use .mvt or .pbf")
        src = source_of(asset)
        if not src.minzoom <= z <= src.maxzoom:
            raise HTTPException(404, f"zoom {z} outside {src.minzoom}–{src.maxzoom}")
        if not (0 <= x < (1 << z) and 0 <= y < (1 << z)):
            raise HTTPException(400, f"tile {z}/{x}/{y} does not exist")
        data = src.get(z, x, y)
        if data is None:
            return Response(status_code=204, headers={"Cache-Control": "public, max-age=3600"})
        headers = {"Vary": "Accept-Encoding"}
        if src.tile_compression == Compression.GZIP:
            if "gzip" in request.headers.get("accept-encoding", ""):
                headers["Content-Encoding"] = "gzip"
            else:
                data = gzip.decompress(data)
        return Response(data, media_type=src.media_type, headers=headers)

    @app.get("/vector/{kind}/{dep}/{millesime}/tilejson.json")
    def tilejson(request: Request, kind: str, asset: Annotated[AssetRef, Depends(dataset)]) -> dict[str, Any]:
        src = source_of(asset)
        lon, lat, zoom = src.center
        return {
            "tilejson": "3.0.0",
            "name": f"OCS GE {kind} {asset.departement} {asset.millesime}",
            "attribution": "OCS GE — IGN / OCS GE cloud",
            "tiles": [links(request, kind, asset)["tiles"]],
            "minzoom": src.minzoom,
            "maxzoom": src.maxzoom,
            "bounds": list(src.bounds),
            "center": [lon, lat, zoom],
            "vector_layers": src.vector_layers(),
        }

    @app.get("/vector/{kind}/{dep}/{millesime}/style.json")
    def style(request: Request, kind: str, asset: Annotated[AssetRef, Depends(dataset)],
              attribute: Annotated[str | None, Query(description="code_cs, code_us, cs_apres…")] = None,
              ) -> dict[str, Any]:
        if kind == "analyses":  # the analyses' own style (stats service), its tiles from this service
            from services.stats.analyses import analyses_style

            out = analyses_style("", asset.departement, asset.millesime, source_of(asset).bounds)
            out["sources"]["analyses"]["url"] = links(request, kind, asset)["tilejson"]
            return out
        attribute = attribute or DEFAULT_ATTRIBUTE[kind]
        if attribute not in ATTRIBUTES:
            raise HTTPException(400, f"unknown attribute {attribute!r}: expected one of {', '.join(ATTRIBUTES)}")
        src = source_of(asset)
        layers = src.vector_layers()
        source_layer = layers[0]["id"] if layers else kind
        return maplibre_style(f"OCS GE {kind} {asset.departement} {asset.millesime}",
                              links(request, kind, asset)["tilejson"], source_layer, attribute, src.bounds,
                              src.minzoom, src.maxzoom, national=asset.departement == NATIONAL)

    @app.api_route("/vector/{kind}/{dep}/{millesime}.pmtiles", methods=["GET", "HEAD"], response_class=Response)
    def raw(request: Request, kind: str, dep: str, millesime: str) -> Response:
        asset = dataset(kind, dep, millesime)
        return serve_object(request, finder.storage, asset.key, "application/vnd.pmtiles")

    add_error_handlers(app)
    app.add_middleware(ETagMiddleware)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "HEAD"], allow_headers=["*"],
                       expose_headers=["ETag", "Content-Range", "Content-Length", "Accept-Ranges"])
    return app
