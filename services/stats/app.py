"""Commune statistics as JSON and CSV, read from the ``stats_commune_csv`` artifacts of the catalogue.

    /stats/{dep}                                 millésimes with commune statistics
    /stats/{dep}/{millesime}/communes.json|.csv  statistics per commune (``?commune=<INSEE>`` for one)
"""

import csv
import io
import json
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import Response

from services.assets import AssetFinder, AssetRef
from services.caching import ETagMiddleware
from services.catalog_finder import default_finder
from services.errors import add_error_handlers
from services.params import dep_code
from services.stats.analyses import analyses_router
from services.stats.tables import csv_response, typed

STATS_CSV = "stats_commune_csv"
INSEE_FIELDS = ("code_insee", "insee", "commune", "code_commune", "insee_com")


def stats_router(finder: AssetFinder) -> APIRouter:
    router = APIRouter(tags=["Statistics"])

    def base(request: Request) -> str:
        from services.urls import public_base_url

        return public_base_url(request)

    def stats_asset(dep: str, millesime: str) -> AssetRef:
        code = dep_code(dep)
        for asset in finder.find(STATS_CSV, departement=code):
            if asset.millesime == millesime:
                return asset
        raise HTTPException(404, f"no commune statistics for département {code}, millésime {millesime!r}")

    def rows(asset: AssetRef, commune: str | None) -> tuple[list[str], list[dict[str, str]]]:
        text = finder.storage.get_bytes(asset.key).decode("utf-8-sig")
        reader = csv.DictReader(io.StringIO(text))
        fields = list(reader.fieldnames or [])
        data = list(reader)
        if commune is not None:
            key = next((f for f in INSEE_FIELDS if f in fields), None)
            data = [r for r in data if key and r.get(key) == commune]
            if not data:
                raise HTTPException(404, f"no commune {commune!r} in these statistics")
        return fields, data

    @router.get("/stats/{dep}")
    def stats_listing(request: Request, dep: Annotated[str, Path()]) -> dict[str, Any]:
        code = dep_code(dep)
        found = finder.find(STATS_CSV, departement=code)
        b = base(request)
        return {"departement": code, "millesimes": [
            {"millesime": a.millesime, "json": f"{b}/stats/{code}/{a.millesime}/communes.json",
             "csv": f"{b}/stats/{code}/{a.millesime}/communes.csv"} for a in found]}

    @router.get("/stats/{dep}/{millesime}/communes.{ext}", response_class=Response)
    def stats(dep: Annotated[str, Path()], millesime: Annotated[str, Path()], ext: Annotated[str, Path()],
              commune: Annotated[str | None, Query(description="code INSEE")] = None) -> Response:
        if ext not in ("json", "csv"):
            raise HTTPException(400, f"unsupported format .{ext}: use .json or .csv")
        asset = stats_asset(dep, millesime)
        fields, data = rows(asset, commune)
        if ext == "csv":
            return csv_response(fields, data, asset.name)
        body = {"departement": asset.departement, "millesime": asset.millesime,
                "communes": [{k: typed(v) for k, v in r.items()} for r in data]}
        return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")

    router.include_router(analyses_router(finder))  # /stats/{dep}/analyses and the analysis tables
    return router


def create_app(finder: AssetFinder | None = None) -> FastAPI:
    app = FastAPI(title="OCS GE statistics", docs_url="/stats/docs", openapi_url="/stats/openapi.json")
    app.include_router(stats_router(finder or default_finder()))
    add_error_handlers(app)
    app.add_middleware(ETagMiddleware)
    return app
