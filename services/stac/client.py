"""stac-fastapi core client over a :class:`catalog.search.base.CatalogBackend` (embedded or pgstac).

The client only translates HTTP requests into :class:`SearchRequest` and pages into STAC responses with
links; searching is the backend's job. Backends are synchronous (an in-memory index, a psycopg pool):
calls run in the thread pool so the event loop keeps serving.

Every link is built from one base, :func:`services.urls.public_base_url` (the configured public URL, the
trusted forwarding headers, or the request's own host, then the mount path): stac-fastapi's own URL
helpers (``get_base_url``, ``url_for``) are not used, so no header outside that policy changes a link.

Search pages of a backend that offers ``search_encoded`` (the embedded index) are assembled in bytes from
item templates: the asset base and each item's links are written into marks, with the bytes orjson would
have written for the same document — no parse and re-serialisation of every item (see
:mod:`catalog.search.item_index`).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import attr
import orjson
from fastapi import Request
from stac_fastapi.api.models import GeoJSONResponse
from stac_fastapi.types.core import AsyncBaseCoreClient
from stac_fastapi.types.errors import NotFoundError
from starlette.concurrency import run_in_threadpool
from starlette.routing import get_route_path

from catalog.search import item_index
from catalog.search.base import CatalogBackend, EncodedPage, SearchPage
from catalog.search.request import (
    DEFAULT_FIELDS,
    MAX_LIMIT,
    SEARCH_BUDGET_S,
    InvalidSearch,
    SearchRequest,
    SearchTimeout,
    parse_bbox,
    parse_fields,
    parse_filter,
    parse_interval,
    parse_sortby,
    text_json_depth,
)
from services.urls import public_base_url

GEOJSON = "application/geo+json"
JSON = "application/json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
STAC_VERSION = "1.1.0"
# stac-fastapi 7 declares sort as v1.1.0 only; pystac-client 0.9.1 looks for v1.0.x: declare both
EXTRA_CONFORMANCE = ("https://api.stacspec.org/v1.0.0/item-search#sort",)


class _GeoJSON(GeoJSONResponse):
    """GeoJSON serialised by orjson (≈ 10× the standard library's speed on a 50-item page)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class _EncodedGeoJSON(GeoJSONResponse):
    """GeoJSON already serialised."""

    def render(self, content: Any) -> bytes:
        return content  # type: ignore[no-any-return]


def _geojson(document: dict[str, Any]) -> GeoJSONResponse:
    """A page or item as a response already: FastAPI would otherwise walk every value of a returned dict
    through ``jsonable_encoder`` before serialising it — 2/3 of the CPU of a 50-item search page."""
    return _GeoJSON(document)


def _dump(model: Any) -> Any:
    if model is None:
        return None
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json", exclude_none=True, by_alias=True)
    return model


@attr.s
class CatalogCoreClient(AsyncBaseCoreClient):
    backend: CatalogBackend = attr.ib(default=None)
    settings: Any = attr.ib(default=None)  # ocsge Settings (public URL, proxy trust, asset base)

    def base(self, request: Request) -> str:
        """The public URL of the STAC API root, with its trailing slash."""
        return public_base_url(request, self.settings) + "/"

    def _self_href(self, request: Request) -> str:
        query = request.url.query
        return self.base(request) + get_route_path(request.scope).lstrip("/") + (f"?{query}" if query else "")

    # --- landing page, conformance --------------------------------------------------------------
    def conformance_classes(self) -> list[str]:
        return sorted({*super().conformance_classes(), *EXTRA_CONFORMANCE})

    async def landing_page(self, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        request: Request = kwargs["request"]
        base = self.base(request)
        return {
            "type": "Catalog",
            "id": self.landing_page_id,
            "title": self.title,
            "description": self.description,
            "stac_version": STAC_VERSION,
            "conformsTo": self.conformance_classes(),
            "links": [
                {"rel": "self", "type": JSON, "title": "This document", "href": base},
                {"rel": "root", "type": JSON, "title": "Root", "href": base},
                {"rel": "data", "type": JSON, "title": "Collections", "href": f"{base}collections"},
                {"rel": "conformance", "type": JSON, "title": "Conformance classes", "href": f"{base}conformance"},
                {"rel": "search", "type": GEOJSON, "title": "Item search (GET)", "href": f"{base}search",
                 "method": "GET"},
                {"rel": "search", "type": GEOJSON, "title": "Item search (POST)", "href": f"{base}search",
                 "method": "POST"},
                {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "type": "application/schema+json",
                 "title": "Queryables", "href": f"{base}queryables"},
                {"rel": "service-desc", "type": OPENAPI, "title": "OpenAPI service description",
                 "href": f"{base}api"},
                {"rel": "service-doc", "type": "text/html", "title": "OpenAPI service documentation",
                 "href": f"{base}api.html"},
            ],
            "stac_extensions": [],
        }

    # --- collections --------------------------------------------------------------------------
    def _collection_links(self, base: str, collection: dict[str, Any]) -> dict[str, Any]:
        out = dict(collection)
        cid = out["id"]
        extra = [link for link in out.get("links", []) if link.get("rel") not in
                 ("self", "root", "parent", "items", "item", "child", "queryables")]
        out["links"] = [
            {"rel": "self", "type": JSON, "href": f"{base}collections/{cid}"},
            {"rel": "parent", "type": JSON, "href": base},
            {"rel": "root", "type": JSON, "href": base},
            {"rel": "items", "type": GEOJSON, "href": f"{base}collections/{cid}/items"},
            {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "type": "application/schema+json",
             "href": f"{base}collections/{cid}/queryables"},
            *extra,
        ]
        return out

    async def all_collections(self, request: Request, bbox: Any = None, datetime: str | None = None,
                              limit: int | None = None, offset: int | None = None, q: Any = None,
                              **kwargs: Any) -> dict[str, Any]:
        base = self.base(request)
        collections = await run_in_threadpool(self.backend.collections)
        if bbox:
            box = parse_bbox(bbox)
            collections = [c for c in collections if _bbox_overlaps(c["extent"]["spatial"]["bbox"][0], box)]
        if datetime:
            start, end = parse_interval(datetime)
            collections = [c for c in collections if _interval_overlaps(c["extent"]["temporal"]["interval"][0],
                                                                        start, end)]
        if q:
            terms = [t.lower() for t in (q if isinstance(q, list) else str(q).split(",")) if t.strip()]
            collections = [c for c in collections if any(t.strip() in _text(c) for t in terms)]
        matched = len(collections)
        # stac-fastapi's model defaults limit to 10: without a limit from the client, every collection
        # (up to the maximum page) is returned, so that clients that do not page see the whole catalogue
        if "limit" not in request.query_params:
            limit = MAX_LIMIT
        limit = min(max(int(limit or MAX_LIMIT), 1), MAX_LIMIT)
        offset = max(int(offset or 0), 0)
        collections = collections[offset: offset + limit]
        links = [{"rel": "root", "type": JSON, "href": base}, {"rel": "parent", "type": JSON, "href": base},
                 {"rel": "self", "type": JSON, "href": self._self_href(request)}]
        if offset + limit < matched:
            links.append({"rel": "next", "type": JSON,
                          "href": self._with_params(request, {"offset": offset + limit, "limit": limit})})
        if offset > 0:
            links.append({"rel": "prev", "type": JSON,
                          "href": self._with_params(request, {"offset": max(0, offset - limit), "limit": limit})})
        return {
            "collections": [self._collection_links(base, c) for c in collections],
            "links": links,
            "numberMatched": matched,
            "numberReturned": len(collections),
        }

    async def get_collection(self, collection_id: str, request: Request, **kwargs: Any) -> dict[str, Any]:
        collection = await run_in_threadpool(self.backend.collection, collection_id)
        if collection is None:
            raise NotFoundError(f"collection {collection_id[:100]!r} does not exist")
        return self._collection_links(self.base(request), collection)

    # --- items --------------------------------------------------------------------------------
    def _item_links(self, base: str, item: dict[str, Any], with_links: bool = True) -> None:
        self._resolve_asset_hrefs(base, item)
        cid, iid = item.get("collection"), item.get("id")
        if cid is None or iid is None or not with_links:
            return
        item["links"] = _links_of_item(base, cid, iid)

    def _resolve_asset_hrefs(self, base: str, item: dict[str, Any]) -> None:
        """Asset hrefs published under a path asset base (``OCSGE_ASSET_BASE_URL=/data``, when the
        deployment's public host is not known at deploy time: CloudFront's domain depends on the API it
        fronts) become absolute on the host that serves this request, which serves the data too. Hrefs
        that are local file paths (a catalogue published without an asset base URL) are left alone."""
        prefix = getattr(self.settings, "asset_base_url", None) or ""
        if not prefix.startswith("/") or prefix.startswith("//"):
            return
        prefix = prefix.rstrip("/") + "/"
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
        for asset in (item.get("assets") or {}).values():
            href = asset.get("href") if isinstance(asset, dict) else None
            if isinstance(href, str) and href.startswith(prefix):
                asset["href"] = origin + href

    def _asset_prefix(self, base: str, asset_base: str) -> str | None:
        """The asset base as :meth:`_resolve_asset_hrefs` leaves it for every href under it, or None where
        that depends on each href (the dict path then)."""
        prefix = getattr(self.settings, "asset_base_url", None) or ""
        if not prefix.startswith("/") or prefix.startswith("//"):
            return asset_base
        prefix = prefix.rstrip("/") + "/"
        if asset_base.startswith(prefix):
            return "{0.scheme}://{0.netloc}".format(urlsplit(base)) + asset_base
        return None if prefix.startswith(asset_base) else asset_base

    async def _search_response(self, req: SearchRequest, request: Request, *, post: bool = False,
                               extra_links: tuple[dict[str, Any], ...] = ()) -> GeoJSONResponse:
        """The search page as a response: assembled from item templates when the backend offers them (the
        same bytes as the dict path's), else through :meth:`_search`."""
        search_encoded = getattr(self.backend, "search_encoded", None)
        base = self.base(request)
        asset_base = getattr(self.backend, "asset_base", None)
        prefix = self._asset_prefix(base, asset_base) if isinstance(asset_base, str) else None
        encoded: EncodedPage | None = None
        if search_encoded is not None and prefix is not None and not req.include and not req.exclude:
            encoded = await self._run_search(req, search_encoded)
        if encoded is None or encoded.asset_base != asset_base:
            out = await self._search(req, request, post=post)
            out["links"].extend(extra_links)
            return _geojson(out)
        mark = b'"' + orjson.dumps(prefix)[1:-1]
        features = [body.replace(item_index.ASSET_MARK_JSON, mark).replace(
                    item_index.LINKS_MARK_JSON, orjson.dumps(_links_of_item(base, cid, iid)))
                    for cid, iid, body in encoded.items]
        tail: dict[str, Any] = {"links": [*self._page_links(base, request, post, encoded), *extra_links],
                                "numberReturned": len(features)}
        if encoded.matched is not None:
            tail["numberMatched"] = encoded.matched
        body = b'{"type":"FeatureCollection","features":[' + b",".join(features) + b"]," + orjson.dumps(tail)[1:]
        return _EncodedGeoJSON(body)

    def _page_links(self, base: str, request: Request, post: bool,
                    page: SearchPage | EncodedPage) -> list[dict[str, Any]]:
        links = [{"rel": "root", "type": JSON, "href": base},
                 {"rel": "self", "type": GEOJSON, "href": f"{base}search" if post else self._self_href(request)}]
        for rel, token in (("next", page.next_token), ("prev", page.prev_token)):
            if not token:
                continue
            if post:
                # never the request body back: the client merges the token into the body it sent
                links.append({"rel": rel, "type": GEOJSON, "method": "POST", "href": f"{base}search",
                              "body": {"token": token}, "merge": True})
            else:
                links.append({"rel": rel, "type": GEOJSON, "href": self._with_params(request, {"token": token})})
        return links

    async def _search(self, req: SearchRequest, request: Request, *, post: bool = False) -> dict[str, Any]:
        page: SearchPage = await self._run_search(req)
        base = self.base(request)
        with_links = "links" in req.include or "links" not in req.exclude
        for item in page.items:
            self._item_links(base, item, with_links)
        links = self._page_links(base, request, post, page)
        out: dict[str, Any] = {"type": "FeatureCollection", "features": page.items, "links": links,
                               "numberReturned": len(page.items)}
        if page.matched is not None:
            out["numberMatched"] = page.matched
        return out

    async def _run_search(self, req: SearchRequest, search: Any = None) -> Any:
        """The backend's search in the thread pool, within :data:`SEARCH_BUDGET_S`: past it the request is
        answered 503 at once, and the search stops at its next checkpoint (embedded) or is cancelled by
        the database (pgstac ``statement_timeout``)."""
        req.deadline = time.monotonic() + SEARCH_BUDGET_S
        try:
            return await asyncio.wait_for(run_in_threadpool(search or self.backend.search, req), SEARCH_BUDGET_S + 1)
        except TimeoutError:
            raise SearchTimeout(f"the search did not finish within its {SEARCH_BUDGET_S:g} s budget") from None

    async def get_search(self, request: Request, collections: list[str] | None = None,
                         ids: list[str] | None = None, bbox: Any = None, intersects: Any = None,
                         datetime: str | None = None, limit: int | None = None, token: str | None = None,
                         fields: list[str] | None = None, sortby: list[str] | None = None,
                         filter_expr: str | None = None, filter_lang: str | None = None,
                         **kwargs: Any) -> dict[str, Any]:
        geometry = _get_intersects(intersects)
        include, exclude = _get_fields(request, fields)
        req = SearchRequest(
            collections=collections or None, ids=ids or None, bbox=tuple(bbox) if bbox else None,
            intersects=geometry, datetime=datetime, limit=limit or 10, token=token,
            filter=parse_filter(filter_expr, _get_filter_lang(request)) if filter_expr else None,
            sortby=parse_sortby(sortby), include=include, exclude=exclude,
        )
        return await self._search_response(req, request)  # type: ignore[return-value]

    async def post_search(self, search_request: Any, request: Request, **kwargs: Any) -> dict[str, Any]:
        given = search_request.model_fields_set
        fields = getattr(search_request, "fields", None)
        if "fields" in given and fields is None:
            raise InvalidSearch("fields must be an object with 'include' and/or 'exclude' lists, not null")
        include: set[str] = set()
        exclude: set[str] = set()
        if fields is not None and "fields" in given:
            spec: dict[str, Any] = {"exclude": list(fields.exclude or ())}
            if "include" in fields.model_fields_set or fields.include:
                spec["include"] = list(fields.include or ())
            include, exclude = parse_fields(spec)
        filter_expr = getattr(search_request, "filter_expr", None)
        filter_lang = getattr(search_request, "filter_lang", None) if "filter_lang" in given else None
        datetime = getattr(search_request, "datetime", None)
        req = SearchRequest(
            collections=search_request.collections or None, ids=search_request.ids or None,
            bbox=tuple(search_request.bbox) if search_request.bbox else None,
            intersects=_dump(search_request.intersects) if search_request.intersects else None,
            datetime=datetime if isinstance(datetime, str) or datetime is None else str(datetime),
            limit=search_request.limit or 10, token=getattr(search_request, "token", None),
            filter=parse_filter(filter_expr, filter_lang) if filter_expr is not None else None,
            sortby=parse_sortby(getattr(search_request, "sortby", None) or []),
            include=include, exclude=exclude,
        )
        return await self._search_response(req, request, post=True)  # type: ignore[return-value]

    async def item_collection(self, collection_id: str, request: Request, bbox: Any = None,
                              datetime: str | None = None, limit: int | None = None, token: str | None = None,
                              fields: list[str] | None = None, sortby: list[str] | None = None,
                              filter_expr: str | None = None, filter_lang: str | None = None,
                              **kwargs: Any) -> dict[str, Any]:
        await self.get_collection(collection_id, request)
        include, exclude = _get_fields(request, fields)
        req = SearchRequest(
            collections=[collection_id], bbox=tuple(bbox) if bbox else None, datetime=datetime,
            limit=limit or 10, token=token,
            filter=parse_filter(filter_expr, _get_filter_lang(request)) if filter_expr else None,
            sortby=parse_sortby(sortby), include=include, exclude=exclude,
        )
        base = self.base(request)
        collection_link = {"rel": "collection", "type": JSON, "href": f"{base}collections/{collection_id}"}
        return await self._search_response(req, request, extra_links=(collection_link,))  # type: ignore[return-value]

    async def get_item(self, item_id: str, collection_id: str, request: Request, **kwargs: Any) -> dict[str, Any]:
        await self.get_collection(collection_id, request)
        item = await run_in_threadpool(self.backend.item, collection_id, item_id)
        if item is None:
            raise NotFoundError(f"item {item_id[:100]!r} does not exist in collection {collection_id[:100]!r}")
        self._item_links(self.base(request), item)
        return _geojson(item)  # type: ignore[return-value]

    def _with_params(self, request: Request, params: dict[str, Any]) -> str:
        query = dict(request.query_params)
        query.update({k: str(v) for k, v in params.items()})
        return self.base(request) + get_route_path(request.scope).lstrip("/") + "?" + urlencode(query)


def _links_of_item(base: str, cid: Any, iid: Any) -> list[dict[str, Any]]:
    return [
        {"rel": "self", "type": GEOJSON, "href": f"{base}collections/{cid}/items/{iid}"},
        {"rel": "parent", "type": JSON, "href": f"{base}collections/{cid}"},
        {"rel": "collection", "type": JSON, "href": f"{base}collections/{cid}"},
        {"rel": "root", "type": JSON, "href": base},
    ]


def _get_intersects(intersects: Any) -> dict[str, Any] | None:
    """``intersects`` of a GET: GeoJSON text, its depth checked before it is parsed."""
    if not intersects:
        return None
    if not isinstance(intersects, str):
        return _dump(intersects)  # type: ignore[no-any-return]
    if text_json_depth(intersects) > 8:
        raise InvalidSearch("intersects nests deeper than a GeoJSON geometry does")
    try:
        value = json.loads(intersects)
    except ValueError:
        raise InvalidSearch("intersects is not valid GeoJSON") from None
    if not isinstance(value, dict):
        raise InvalidSearch("intersects must be a GeoJSON geometry object")
    return value


def _get_fields(request: Request, fields: list[str] | None) -> tuple[set[str], set[str]]:
    """``fields`` of a GET: given empty, the default set; absent, every field."""
    if fields:
        return parse_fields(fields)
    if "fields" in request.query_params:
        return set(DEFAULT_FIELDS), set()
    return set(), set()


def _get_filter_lang(request: Request) -> str | None:
    """``filter-lang`` as the client sent it (stac-fastapi's GET model defaults it to cql2-text even for a
    JSON filter), so that a JSON filter without filter-lang is still read as JSON."""
    value = request.query_params.get("filter-lang")
    return value or None


def _bbox_overlaps(a: list[float], b: tuple[float, float, float, float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _interval_overlaps(interval: list[str | None], start: float | None, end: float | None) -> bool:
    lo = parse_interval(interval[0])[0] if interval[0] else None
    hi = parse_interval(interval[1])[0] if interval[1] else None
    return not ((end is not None and lo is not None and lo > end) or (start is not None and hi is not None
                                                                         and hi < start))


def _text(collection: dict[str, Any]) -> str:
    return " ".join([collection.get("title", ""), collection.get("description", ""),
                     *collection.get("keywords", []), collection["id"]]).lower()
