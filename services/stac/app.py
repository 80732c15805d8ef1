"""The STAC API app, assembled from stac-fastapi 7 parts over one :class:`CatalogBackend`.

Read-only by construction: no transaction extension is registered. Errors are STAC error documents
(``{"code", "description"}``): a request the client got wrong is a 400 naming the parameter, a missing
collection or item a 404, an unreachable database a 503; anything unexpected is logged and answered
with a generic 500 that reveals nothing of the internals.
"""

from __future__ import annotations

import logging
from typing import Any

import attr
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from stac_fastapi.api.app import StacApi
from stac_fastapi.api.models import (
    ItemCollectionUri,
    JSONResponse,
    create_get_request_model,
    create_post_request_model,
    create_request_model,
)
from stac_fastapi.extensions import (
    CollectionSearchExtension,
    FieldsExtension,
    FreeTextExtension,
    ItemCollectionFilterExtension,
    OffsetPaginationExtension,
    SearchFilterExtension,
    TokenPaginationExtension,
)
from stac_fastapi.extensions.fields import FieldsConformanceClasses
from stac_fastapi.extensions.filter.client import AsyncBaseFiltersClient
from stac_fastapi.extensions.free_text import FreeTextConformanceClasses
from stac_fastapi.extensions.sort import ItemCollectionSortExtension, SearchSortExtension
from stac_fastapi.types.config import ApiSettings
from stac_fastapi.types.errors import NotFoundError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from catalog.search.base import CatalogBackend
from catalog.search.pgstac import PgstacError
from catalog.search.request import InvalidSearch, UnknownCollection
from ocsge import __version__

log = logging.getLogger(__name__)

QUERYABLES = {
    "ocsge:departement": {"type": "string", "title": "Département (01…95, 2A, 2B, 971…976)"},
    "ocsge:millesime": {"type": "integer", "title": "Millésime (année de prise de vue)"},
    "ocsge:millesime_avant": {"type": "integer", "title": "Millésime antérieur (différences)"},
    "ocsge:millesime_index": {"type": "integer", "title": "Rang du millésime (M1, M2, M3)"},
    "ocsge:campaign": {"type": "string", "title": "Campagne (2017-2020, 2021-2023, 2024-2026)"},
    "ocsge:source": {"type": "string", "enum": ["official", "auto"], "title": "Source"},
    "ocsge:product": {"type": "string", "title": "Produit"},
    "ocsge:block": {"type": "string", "title": "Bloc (prédictions)"},
    "proj:code": {"type": "string", "title": "CRS"},
    "datetime": {"type": "string", "format": "date-time"},
    "id": {"type": "string"},
    "collection": {"type": "string"},
    "geometry": {"$ref": "https://geojson.org/schema/Geometry.json"},
}


@attr.s
class QueryablesClient(AsyncBaseFiltersClient):
    async def get_queryables(self, collection_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        return {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "$id": "queryables",
            "type": "object",
            "title": f"Queryables of {collection_id}" if collection_id else "Queryables",
            "properties": QUERYABLES,
            "additionalProperties": True,
        }


class MountedBaseUrl:
    """Links must carry the path the app is mounted under (``/stac``): Starlette's ``base_url`` is the top
    app's, so the mount's ``root_path`` becomes the app root for this sub-app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "app_root_path": scope.get("root_path", "")}
        await self.app(scope, receive, send)


def _error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"code": code, "description": description})


def add_error_handlers(app: FastAPI) -> None:
    async def bad_request(request: Request, exc: Exception) -> JSONResponse:
        return _error(400, "BadRequest", str(exc))

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return _error(404, "NotFound", str(exc))

    async def unknown_collection(request: Request, exc: Exception) -> JSONResponse:
        # in a search, an unknown collection is a parameter the client got wrong
        return _error(400, "BadRequest", str(exc))

    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return _error(400, "BadRequest", "; ".join(parts) or "invalid request")

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "NotFound" if exc.status_code == 404 else "BadRequest" if exc.status_code == 400 else "Error"
        return _error(exc.status_code, code, str(exc.detail))

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.error("catalogue backend unavailable: %s", exc)
        return _error(503, "ServiceUnavailable", "the catalogue is temporarily unavailable")

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return _error(500, "InternalError", "internal error")

    app.add_exception_handler(InvalidSearch, bad_request)
    app.add_exception_handler(UnknownCollection, unknown_collection)
    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(RequestValidationError, validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(PgstacError, unavailable)
    app.add_exception_handler(Exception, internal)


class StacSettings(ApiSettings):
    """stac-fastapi settings: our title, description, version and landing page id."""

    stac_fastapi_title: str = "OCS GE cloud — STAC API"
    stac_fastapi_description: str = (
        "Catalogue STAC de l'occupation du sol à grande échelle (OCS GE) et de ses produits dérivés, "
        "par département et millésime."
    )
    stac_fastapi_version: str = __version__
    stac_fastapi_landing_id: str = "ocsge"


def create_stac_app(backend: CatalogBackend) -> FastAPI:
    """The STAC API over ``backend``; the backend is closed when the app shuts down."""
    from contextlib import asynccontextmanager

    from services.stac.client import CatalogCoreClient

    search_extensions = [
        FieldsExtension(),
        SearchFilterExtension(client=QueryablesClient()),
        SearchSortExtension(),
        TokenPaginationExtension(),
    ]
    item_extensions = [
        FieldsExtension(conformance_classes=[FieldsConformanceClasses.ITEMS]),
        ItemCollectionFilterExtension(client=QueryablesClient()),
        ItemCollectionSortExtension(),
        TokenPaginationExtension(),
    ]
    collection_search = CollectionSearchExtension.from_extensions([
        FreeTextExtension(conformance_classes=[FreeTextConformanceClasses.COLLECTIONS]),
        OffsetPaginationExtension(),
    ])

    items_get = create_request_model("ItemCollectionUri", base_model=ItemCollectionUri,
                                     extensions=item_extensions, request_type="GET")

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        yield
        backend.close()

    settings = StacSettings()
    api = StacApi(
        settings=settings,
        app=FastAPI(title=settings.stac_fastapi_title, version=__version__, lifespan=lifespan,
                    openapi_url="/api", docs_url="/api.html", redoc_url=None),
        client=CatalogCoreClient(backend=backend, landing_page_id=settings.stac_fastapi_landing_id,
                                 title=settings.stac_fastapi_title, description=settings.stac_fastapi_description),
        extensions=[*search_extensions, *item_extensions[1:2], collection_search],
        search_get_request_model=create_get_request_model(search_extensions),
        search_post_request_model=create_post_request_model(search_extensions),
        items_get_request_model=items_get,
        collections_get_request_model=collection_search.GET,
        response_class=JSONResponse,
        exceptions={},
    )
    add_error_handlers(api.app)
    api.app.add_middleware(MountedBaseUrl)
    api.app.state.backend = backend
    return api.app
