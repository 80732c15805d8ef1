"""The STAC API app, assembled from stac-fastapi 7 parts over one :class:`CatalogBackend`.

Read-only by construction: no transaction extension is registered. Errors are STAC error documents
(``{"code", "description"}``): a request the client got wrong is a 400 naming the parameter, a missing
collection or item a 404, a body over :data:`MAX_BODY_BYTES` a 413 (refused while it is read), an
unreachable database a 503; anything unexpected is logged and answered with a generic 500 that reveals
nothing of the internals.

Links are built by the client from :func:`services.urls.public_base_url` only: stac-fastapi's
``ProxyHeaderMiddleware`` (which lets a client's ``Forwarded: host=…`` rewrite every link) is not installed.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from catalog.search.request import (
    MAX_GEOMETRY_VERTICES,
    InvalidSearch,
    SearchTimeout,
    UnknownCollection,
    text_json_shape,
)


class _QuietDefaults(logging.Filter):
    """stac-fastapi builds a default ``ApiSettings`` at import time and warns that its title, description
    and version are the defaults; ours are set (:class:`StacSettings`), so that warning is noise at start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Using default values for")


logging.getLogger("stac_fastapi.types.config").addFilter(_QuietDefaults())

import attr  # noqa: E402
from brotli_asgi import BrotliMiddleware  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from pydantic import Field, field_validator, model_validator  # noqa: E402
from stac_fastapi.api.app import StacApi  # noqa: E402
from stac_fastapi.api.models import (  # noqa: E402
    ItemCollectionUri,
    JSONResponse,
    create_get_request_model,
    create_post_request_model,
    create_request_model,
)
from stac_fastapi.extensions import (  # noqa: E402
    CollectionSearchExtension,
    FieldsExtension,
    FreeTextExtension,
    ItemCollectionFilterExtension,
    OffsetPaginationExtension,
    SearchFilterExtension,
    TokenPaginationExtension,
)
from stac_fastapi.extensions.fields import FieldsConformanceClasses  # noqa: E402
from stac_fastapi.extensions.filter.client import AsyncBaseFiltersClient  # noqa: E402
from stac_fastapi.extensions.filter.request import FilterExtensionPostRequest  # noqa: E402
from stac_fastapi.extensions.free_text import FreeTextConformanceClasses  # noqa: E402
from stac_fastapi.extensions.sort import ItemCollectionSortExtension, SearchSortExtension  # noqa: E402
from stac_fastapi.types.config import ApiSettings  # noqa: E402
from stac_fastapi.types.errors import NotFoundError  # noqa: E402
from stac_fastapi.types.search import BaseSearchPostRequest  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.middleware.cors import CORSMiddleware  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

from catalog.search.base import CatalogBackend  # noqa: E402
from catalog.search.pgstac import PgstacError  # noqa: E402
from ocsge import __version__  # noqa: E402

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


# Documented limits of the STAC API (see also catalog.search.request): a body is refused while it is read
MAX_BODY_BYTES = 1 << 20  # 1 MiB: a 10 000-vertex intersects polygon at full precision is ≈ 400 KB
MAX_BODY_DEPTH = 100  # JSON nesting of a body (a CQL2 filter 32 operators deep with a geometry is ≈ 75)
# JSON arrays in a body: each GeoJSON position is one, so this bounds positions (intersects and filter
# geometries, MAX_GEOMETRY_VERTICES each) before the body is parsed — parsing 1 MiB of short positions
# alone costs about a second
MAX_BODY_ARRAYS = 2 * MAX_GEOMETRY_VERTICES + 1000


@attr.s
class QueryablesClient(AsyncBaseFiltersClient):
    settings: Any = attr.ib(default=None)
    backend: Any = attr.ib(default=None)

    async def get_queryables(self, collection_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        from starlette.concurrency import run_in_threadpool

        from services.urls import public_base_url

        if collection_id is not None and self.backend is not None and (
                await run_in_threadpool(self.backend.collection, collection_id)) is None:
            raise NotFoundError(f"collection {collection_id[:100]!r} does not exist")
        request: Request | None = kwargs.get("request")
        base = public_base_url(request, self.settings) + "/" if request is not None else ""
        path = f"collections/{collection_id}/queryables" if collection_id else "queryables"
        return {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "$id": f"{base}{path}",
            "type": "object",
            "title": f"Queryables of {collection_id}" if collection_id else "Queryables",
            "properties": QUERYABLES,
            "additionalProperties": True,
        }


class SearchPostBase(BaseSearchPostRequest):
    """POST /search body: ``collections`` also as one string (``"a"`` or ``"a,b"``), as some clients send;
    ``intersects`` kept as the client's GeoJSON object and checked by :func:`check_geometry` (vertex cap,
    nesting, shapely) — not by stac-pydantic's geometry union, which costs 2 s for 50 000 vertices before
    any cap could refuse them."""

    intersects: dict[str, Any] | None = Field(  # type: ignore[assignment]
        None, description=f"A GeoJSON geometry (at most {MAX_GEOMETRY_VERTICES} vertices); not with bbox.")

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, value: Any) -> Any:
        """Runs before stac-pydantic's own checks, which fail with a 500 on a body that is not an object."""
        if not isinstance(value, dict) and not isinstance(value, BaseSearchPostRequest):
            raise ValueError("the body of POST /search must be a JSON object (Content-Type: application/json)")
        return value

    @field_validator("collections", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value


class FilterPost(FilterExtensionPostRequest):
    """The filter of a POST search, in CQL2 JSON or, with ``filter-lang: cql2-text``, CQL2 text."""

    filter_expr: dict[str, Any] | str | bool | None = Field(  # type: ignore[assignment]
        None, alias="filter", description="A CQL2 filter: a JSON object, or a text with filter-lang cql2-text.")
    filter_lang: Literal["cql2-json", "cql2-text"] | None = Field(  # type: ignore[assignment]
        None, alias="filter-lang", description="cql2-json (default for an object) or cql2-text.")


@attr.s
class TextOrJsonFilterExtension(SearchFilterExtension):
    POST = FilterPost


def _error(status: int, code: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"code": code, "description": description}, headers=headers)


class RequestBodyLimit:
    """Refuse a request body larger than ``max_bytes`` while reading it (413, without reading the rest;
    at once when ``Content-Length`` says so), and a JSON body nested deeper than ``max_depth`` (400)
    before anything parses it. The accepted body is replayed to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, max_depth: int = MAX_BODY_DEPTH) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        too_large = _error(413, "PayloadTooLarge", f"request body is larger than {self.max_bytes} bytes")
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > self.max_bytes:
                    await too_large(scope, receive, send)
                    return
            except ValueError:
                await _error(400, "BadRequest", "invalid Content-Length")(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and b"json" in headers.get(b"content-type", b"json"):
            depth, arrays = text_json_shape(body)
            problem = ("request body must be a JSON object" if not body.lstrip().startswith(b"{")
                       else f"request body nests JSON deeper than {self.max_depth} levels" if depth > self.max_depth
                       else f"request body has more than {MAX_BODY_ARRAYS} JSON arrays (intersects and filter "
                            f"geometries have at most {MAX_GEOMETRY_VERTICES} vertices each)"
                       if arrays > MAX_BODY_ARRAYS else None)
            if problem:
                await _error(400, "BadRequest", problem)(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


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
            message = str(err.get("msg"))[:200]
            parts.append(f"{where[:100]}: {message}" if where else message)
        return _error(400, "BadRequest", "; ".join(parts) or "invalid request")

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "NotFound" if exc.status_code == 404 else "BadRequest" if exc.status_code == 400 else "Error"
        return _error(exc.status_code, code, str(exc.detail)[:300])

    async def too_deep(request: Request, exc: Exception) -> JSONResponse:
        return _error(400, "BadRequest", "request nests too deep")

    async def timeout(request: Request, exc: Exception) -> JSONResponse:
        log.warning("search over its budget on %s", request.url.path)
        return _error(503, "ServiceUnavailable", str(exc), headers={"Retry-After": "10"})

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.error("catalogue backend unavailable: %s", exc)
        return _error(503, "ServiceUnavailable", "the catalogue is temporarily unavailable",
                      headers={"Retry-After": "5"})

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return _error(500, "InternalError", "internal error")

    app.add_exception_handler(InvalidSearch, bad_request)
    app.add_exception_handler(UnknownCollection, unknown_collection)
    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(RequestValidationError, validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RecursionError, too_deep)
    app.add_exception_handler(PgstacError, unavailable)
    app.add_exception_handler(SearchTimeout, timeout)
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


def create_stac_app(backend: CatalogBackend, settings: Any = None) -> FastAPI:
    """The STAC API over ``backend``; the backend is closed when the app shuts down. ``settings`` (ocsge
    :class:`~ocsge.settings.Settings`, default the process's) give the public URL, the proxy trust and
    the asset base URL."""
    from contextlib import asynccontextmanager

    from ocsge.settings import get_settings
    from services.stac.client import STAC_VERSION, CatalogCoreClient

    settings = settings or get_settings()
    queryables = QueryablesClient(settings=settings, backend=backend)
    search_extensions = [
        FieldsExtension(),
        TextOrJsonFilterExtension(client=queryables),
        SearchSortExtension(),
        TokenPaginationExtension(),
    ]
    item_extensions = [
        FieldsExtension(conformance_classes=[FieldsConformanceClasses.ITEMS]),
        ItemCollectionFilterExtension(client=queryables),
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

    api_settings = StacSettings()
    api = StacApi(
        settings=api_settings,
        app=FastAPI(title=api_settings.stac_fastapi_title, version=__version__, lifespan=lifespan,
                    openapi_url="/api", docs_url="/api.html", redoc_url=None),
        client=CatalogCoreClient(backend=backend, settings=settings,
                                 landing_page_id=api_settings.stac_fastapi_landing_id,
                                 title=api_settings.stac_fastapi_title,
                                 description=api_settings.stac_fastapi_description),
        extensions=[*search_extensions, *item_extensions[1:2], collection_search],
        search_get_request_model=create_get_request_model(search_extensions),
        search_post_request_model=create_post_request_model(search_extensions, base_model=SearchPostBase),
        items_get_request_model=items_get,
        collections_get_request_model=collection_search.GET,
        response_class=JSONResponse,
        exceptions={},
        stac_version=STAC_VERSION,
        # stac-fastapi's defaults without its ProxyHeaderMiddleware: links follow services.urls only
        middlewares=[
            Middleware(BrotliMiddleware),
            Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["OPTIONS", "POST", "GET"],
                       allow_headers=["Content-Type"], max_age=600),
            Middleware(RequestBodyLimit),
        ],
    )
    add_error_handlers(api.app)
    api.app.state.backend = backend
    return api.app
