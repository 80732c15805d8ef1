"""The raster tile service: national mosaics per layer (titiler's MosaicTilerFactory over the catalogue),
single COGs of the catalogue (TilerFactory), tile matrix sets, legends, and the OGC WMTS/WMS endpoints.

Paths (one app, the same behind CloudFront):
    /tiles/layers                                   available layers, their départements and links
    /tiles/{layer}/tiles/{tms}/{z}/{x}/{y}[.fmt]    XYZ tiles of a national mosaic (titiler)
    /tiles/{layer}/{tms}/tilejson.json              TileJSON (titiler)
    /tiles/{layer}/legend.png | legend.json         legend
    /tiles/items/{product}/{item}/…                 one COG of the catalogue (titiler)
    /tiles/tileMatrixSets[/{id}]                    tile matrix sets
    /wmts, /wmts/1.0.0/…                            WMTS KVP and RESTful
    /wms                                            WMS 1.3.0 / 1.1.1
"""



from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from rasterio.errors import RasterioIOError
from rio_tiler import errors as rt_errors
from titiler.core.errors import BadRequestError, TileNotFoundError
from titiler.core.factory import TilerFactory, TMSFactory
from titiler.mosaic.factory import MosaicTilerFactory

from ocsge.errors import UnknownDepartementError
from services.assets import AssetFinder
from services.caching import ETagMiddleware
from services.catalog_finder import default_finder
from services.errors import add_error_handlers
from services.ogc.wms import wms_router
from services.ogc.wmts import wmts_router
from services.tiles import tms as tms_registry
from services.tiles.budget import RenderBudget, RenderTimeout
from services.tiles.layers import Layer, UnknownLayerError
from services.tiles.limits import MAX_TILESIZE, guard
from services.tiles.overviews import MAX_NATIVE_ZOOM as NATIONAL_MAXZOOM
from services.tiles.palettes import legend_png
from services.tiles.render import EXTENSIONS, FORMATS, LayerNotPublished, OutOfRange, Renderer

# rio-tiler / titiler / rasterio errors the titiler endpoints (TileJSON, bbox, point, single COGs) may raise.
RASTER_STATUSES: dict[type[BaseException], int] = {
    BadRequestError: 400,
    TileNotFoundError: 404,
    rt_errors.TileOutsideBounds: 404,
    rt_errors.PointOutsideBounds: 404,
    rt_errors.NoAssetFoundError: 404,
    rt_errors.EmptyMosaicError: 404,
    rt_errors.MissingBands: 400,
    rt_errors.MissingAssets: 400,
    rt_errors.InvalidColorFormat: 400,
    rt_errors.InvalidAssetName: 404,
    rt_errors.InvalidBandName: 400,
    rt_errors.InvalidExpression: 400,
    rt_errors.InvalidFormat: 400,
    rt_errors.InvalidBufferSize: 400,
    rt_errors.InvalidBounds: 400,
    rt_errors.InvalidColorMapName: 400,
    rt_errors.InvalidMosaicMethod: 400,
    rt_errors.AssetAsBandError: 400,
    rt_errors.InvalidGeographicBounds: 400,
    rt_errors.MaxArraySizeError: 400,
    RenderTimeout: 503,  # past the render budget (services/tiles/budget.py): Retry-After
    UnknownLayerError: 404,
    LayerNotPublished: 404,
    RasterioIOError: 503,  # an asset the catalogue lists and GDAL cannot read
    NotImplementedError: 501,
}


def base_url(request: Request) -> str:
    from services.urls import public_base_url

    return public_base_url(request)


def create_app(finder: AssetFinder | None = None, budget: RenderBudget | None = None) -> FastAPI:
    """The tiles app; every rendering route runs on ``budget`` (default: the settings' render budget) after
    the caps of :mod:`services.tiles.limits`."""
    finder = finder or default_finder()
    renderer = Renderer(finder, budget=budget)
    app = FastAPI(title="OCS GE tiles", description="Raster tiles, WMTS and WMS of OCS GE layers",
                  docs_url="/tiles/docs", openapi_url="/tiles/openapi.json")
    app.state.finder = finder
    app.state.renderer = renderer

    def layer_path(layer: Annotated[str, Path(description="Layer id, e.g. OCSGE.COUVERTURE.2021-2023")]) -> str:
        try:
            return renderer.resolve(layer).layer.id
        except (UnknownLayerError, LayerNotPublished) as exc:
            raise HTTPException(404, str(exc)) from None

    def layer_colormap(layer: Annotated[str, Path()]) -> dict[int, tuple[int, int, int, int]]:
        return renderer.catalog.info(layer_path(layer)).colormap

    # single COGs of the catalogue: /tiles/items/{product}/{item}
    def item_path(product: Annotated[str, Path()], item: Annotated[str, Path()]) -> str:
        for asset in finder.find(product) if product in _ITEM_PRODUCTS else []:
            if item in (asset.item_id, asset.name.rsplit(".", 1)[0]):
                return asset.key  # a storage key, read by the key reader: no local path reaches an answer
        raise HTTPException(404, f"no {product!r} item {item!r} in the catalogue")

    items = TilerFactory(reader=renderer.backend.key_reader, path_dependency=item_path,
                         supported_tms=tms_registry.SUPPORTED,
                         router=renderer.budget.router(guard), router_prefix="/tiles/items/{product}/{item}",
                         add_viewer=False)
    app.include_router(items.router, prefix="/tiles/items/{product}/{item}", tags=["Single COG"])

    tmsf = TMSFactory(supported_tms=tms_registry.SUPPORTED, router_prefix="/tiles")
    app.include_router(tmsf.router, prefix="/tiles", tags=["Tile matrix sets"])

    @app.get("/tiles/layers", tags=["Layers"])
    def layers(request: Request) -> list[dict[str, Any]]:
        base = base_url(request)
        return [layer_summary(info.layer, renderer, base) for info in renderer.catalog.available_layers()]

    @app.get("/tiles/nomenclature.json", tags=["Layers"])
    def nomenclature() -> dict[str, dict[str, dict[str, Any]]]:
        """Codes, labels and colours of couverture and usage (the viewer labels vector features with it)."""
        from ocsge.nomenclature import TABLES

        return {kind.value: {c.code: {"label": c.label, "colour": c.colour, "value": c.raster_value,
                                      "parent": c.parent} for c in table.values()}
                for kind, table in TABLES.items()}

    @app.get("/tiles/{layer}/legend.json", tags=["Layers"])
    def legend_json(layer: Annotated[str, Depends(layer_path)]) -> dict[str, Any]:
        info = renderer.catalog.info(layer)
        return {"layer": layer, "title": info.layer.title,
                "classes": [e.__dict__ for e in info.legend]}

    @app.get("/tiles/{layer}/legend.png", tags=["Layers"], response_class=Response)
    def legend_image(layer: Annotated[str, Depends(layer_path)]) -> Response:
        info = renderer.catalog.info(layer)
        return Response(legend_png(info.layer.title, info.legend), media_type="image/png")

    async def xyz_tile(layer: str, tms: str, z: str, x: str, y: str, ext: str | None, tilesize: int | None,
                       departement: str | None = None) -> Response:
        """The XYZ tile, through the same renderer as WMTS and WMS (resolved and checked once)."""
        try:
            info = renderer.resolve(layer, departement)
        except (UnknownLayerError, LayerNotPublished) as exc:
            raise HTTPException(404, str(exc)) from None
        except UnknownDepartementError as exc:
            raise HTTPException(400, f"departement: {exc}") from None
        if tms not in tms_registry.SUPPORTED.list():
            raise HTTPException(400, f"unknown tile matrix set {tms!r}: expected one of "
                                     f"{', '.join(tms_registry.SUPPORTED.list())}")
        media = EXTENSIONS.get((ext or "png").lower())
        if media is None:
            raise HTTPException(400, f"unsupported tile format .{ext}: use one of "
                                     f"{', '.join(e for _, e in FORMATS.values())}")
        try:
            zi, xi, yi = int(z), int(x), int(y)
        except ValueError:
            raise HTTPException(400, f"tile {z}/{x}/{y}: z, x and y must be integers") from None
        try:
            renderer.check_tile(info.layer, tms, zi, xi, yi)
        except OutOfRange as exc:
            raise HTTPException(404, str(exc)) from None
        size = tilesize or tms_registry.get(tms).matrix(zi).tileWidth
        body = await renderer.run(renderer.tile, info, tms, zi, xi, yi, media, size)
        return Response(body, media_type=media)

    TileSize = Annotated[int | None, Query(ge=64, le=MAX_TILESIZE, description="Tile size in pixels (256 or 512)")]
    Departement = Annotated[str | None, Query(max_length=8, description="Only this département's data (e.g. 77); "
                                                                        "default: all of France")]

    @app.get("/tiles/{layer}/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}", response_class=Response,
             tags=["Mosaic layers"], summary="XYZ tile of a layer (transparent where there is no data)")
    async def xyz_tile_ext(layer: str, tileMatrixSetId: str, z: str, x: str, y: str, format: str,
                           tilesize: TileSize = None, departement: Departement = None) -> Response:
        return await xyz_tile(layer, tileMatrixSetId, z, x, y, format, tilesize, departement)

    @app.get("/tiles/{layer}/tiles/{tileMatrixSetId}/{z}/{x}/{y}", response_class=Response,
             tags=["Mosaic layers"], summary="XYZ tile of a layer, PNG")
    async def xyz_tile_png(layer: str, tileMatrixSetId: str, z: str, x: str, y: str,
                           tilesize: TileSize = None, departement: Departement = None) -> Response:
        return await xyz_tile(layer, tileMatrixSetId, z, x, y, None, tilesize, departement)

    mosaic = MosaicTilerFactory(
        backend=renderer.backend,
        path_dependency=layer_path,
        colormap_dependency=layer_colormap,
        supported_tms=tms_registry.SUPPORTED,
        router=renderer.budget.router(guard),
        router_prefix="/tiles/{layer}",
        add_viewer=False,
    )
    # TileJSON, bbox, point, info and assets of a layer; its tile routes are shadowed by the ones above.
    app.include_router(mosaic.router, prefix="/tiles/{layer}", tags=["Mosaic layers"])

    app.include_router(wmts_router(renderer, base_url))
    app.include_router(wms_router(renderer, base_url))

    add_error_handlers(app, ogc=True, extra=RASTER_STATUSES)

    app.add_middleware(ETagMiddleware)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "HEAD"], allow_headers=["*"],
                       expose_headers=["ETag"])
    return app


_ITEM_PRODUCTS = ("couverture_cog", "usage_cog", "artif_cog", "construction_cog", "prediction", "difference_cog")


def layer_summary(layer: Layer, renderer: Renderer, base: str) -> dict[str, Any]:
    info = renderer.catalog.info(layer)
    return {
        "id": layer.id,
        "title": layer.title,
        "kind": layer.kind,
        "campaign": layer.campaign,
        "previous": layer.previous,
        "bounds": list(info.bounds),
        "departements": list(info.departements),
        "minzoom": layer.minzoom,
        "maxzoom": layer.maxzoom,
        # zooms read from the national overview slabs (services/tiles/overviews.py); None: per département
        "national_maxzoom": NATIONAL_MAXZOOM if renderer.overviews.slabs_for(info) else None,
        "tiles": f"{base}/tiles/{layer.id}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png",
        "wmts": (f"{base}/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={layer.id}&STYLE=normal"
                 "&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}"),
        "tilejson": f"{base}/tiles/{layer.id}/WebMercatorQuad/tilejson.json",
        "legend": f"{base}/tiles/{layer.id}/legend.png",
        "legend_json": f"{base}/tiles/{layer.id}/legend.json",
        "departement_filter": "departement",  # ?departement=77 on tiles, DEPARTEMENT=77 on WMTS and WMS
    }
