"""stac-fastapi core client over a :class:`catalog.search.base.CatalogBackend` (embedded or pgstac).

The client only translates HTTP requests into :class:`SearchRequest` and pages into STAC responses with
links; searching is the backend's job. Backends are synchronous (an in-memory index, a psycopg pool):
calls run in the thread pool so the event loop keeps serving.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

import attr
from fastapi import Request
from stac_fastapi.types.core import AsyncBaseCoreClient
from stac_fastapi.types.errors import NotFoundError
from stac_fastapi.types.requests import get_base_url
from starlette.concurrency import run_in_threadpool

from catalog.search.base import CatalogBackend, SearchPage
from catalog.search.request import (
    InvalidSearch,
    SearchRequest,
    parse_bbox,
    parse_fields,
    parse_filter,
    parse_interval,
    parse_sortby,
)

GEOJSON = "application/geo+json"
JSON = "application/json"


def _dump(model: Any) -> Any:
    if model is None:
        return None
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json", exclude_none=True, by_alias=True)
    return model


@attr.s
class CatalogCoreClient(AsyncBaseCoreClient):
    backend: CatalogBackend = attr.ib(default=None)

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
        base = get_base_url(request)
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
        offset = offset or 0
        if limit:
            collections = collections[offset: offset + limit]
        elif offset:
            collections = collections[offset:]
        links = [{"rel": "root", "type": JSON, "href": base}, {"rel": "parent", "type": JSON, "href": base},
                 {"rel": "self", "type": JSON, "href": str(request.url)}]
        if limit and offset + limit < matched:
            links.append({"rel": "next", "type": JSON,
                          "href": _with_params(request, {"offset": offset + limit})})
        return {
            "collections": [self._collection_links(base, c) for c in collections],
            "links": links,
            "numberMatched": matched,
            "numberReturned": len(collections),
        }

    async def get_collection(self, collection_id: str, request: Request, **kwargs: Any) -> dict[str, Any]:
        collection = await run_in_threadpool(self.backend.collection, collection_id)
        if collection is None:
            raise NotFoundError(f"collection {collection_id!r} does not exist")
        return self._collection_links(get_base_url(request), collection)

    # --- items --------------------------------------------------------------------------------
    def _item_links(self, base: str, item: dict[str, Any]) -> None:
        _resolve_asset_hrefs(base, item)
        cid, iid = item.get("collection"), item.get("id")
        if cid is None or iid is None:
            return
        item["links"] = [
            {"rel": "self", "type": GEOJSON, "href": f"{base}collections/{cid}/items/{iid}"},
            {"rel": "parent", "type": JSON, "href": f"{base}collections/{cid}"},
            {"rel": "collection", "type": JSON, "href": f"{base}collections/{cid}"},
            {"rel": "root", "type": JSON, "href": base},
        ]

    async def _search(self, req: SearchRequest, request: Request, *, post_body: dict[str, Any] | None = None,
                      self_href: str | None = None) -> dict[str, Any]:
        page: SearchPage = await run_in_threadpool(self.backend.search, req)
        base = get_base_url(request)
        for item in page.items:
            self._item_links(base, item)
        links = [{"rel": "root", "type": JSON, "href": base},
                 {"rel": "self", "type": GEOJSON, "href": self_href or str(request.url)}]
        for rel, token in (("next", page.next_token), ("prev", page.prev_token)):
            if not token:
                continue
            if post_body is not None:
                links.append({"rel": rel, "type": GEOJSON, "method": "POST", "href": f"{base}search",
                              "body": {**post_body, "token": token}, "merge": False})
            else:
                links.append({"rel": rel, "type": GEOJSON, "href": _with_params(request, {"token": token})})
        out: dict[str, Any] = {"type": "FeatureCollection", "features": page.items, "links": links,
                               "numberReturned": len(page.items)}
        if page.matched is not None:
            out["numberMatched"] = page.matched
        return out

    async def get_search(self, request: Request, collections: list[str] | None = None,
                         ids: list[str] | None = None, bbox: Any = None, intersects: Any = None,
                         datetime: str | None = None, limit: int | None = None, token: str | None = None,
                         fields: list[str] | None = None, sortby: list[str] | None = None,
                         filter_expr: str | None = None, filter_lang: str | None = None,
                         **kwargs: Any) -> dict[str, Any]:
        import json

        geometry = None
        if intersects:
            try:
                geometry = json.loads(intersects) if isinstance(intersects, str) else _dump(intersects)
            except ValueError:
                raise InvalidSearch("intersects is not valid GeoJSON") from None
        include, exclude = parse_fields(fields)
        req = SearchRequest(
            collections=collections or None, ids=ids or None, bbox=tuple(bbox) if bbox else None,
            intersects=geometry, datetime=datetime, limit=limit or 10, token=token,
            filter=parse_filter(filter_expr, filter_lang) if filter_expr else None,
            sortby=parse_sortby(sortby), include=include, exclude=exclude,
        )
        return await self._search(req, request)

    async def post_search(self, search_request: Any, request: Request, **kwargs: Any) -> dict[str, Any]:
        body = _dump(search_request) or {}
        fields = getattr(search_request, "fields", None)
        include, exclude = (set(fields.include or ()), set(fields.exclude or ())) if fields else (set(), set())
        filter_expr = getattr(search_request, "filter_expr", None)
        req = SearchRequest(
            collections=search_request.collections or None, ids=search_request.ids or None,
            bbox=tuple(search_request.bbox) if search_request.bbox else None,
            intersects=_dump(search_request.intersects) if search_request.intersects else None,
            datetime=body.get("datetime"), limit=search_request.limit or 10,
            token=getattr(search_request, "token", None),
            filter=parse_filter(filter_expr) if filter_expr else None,
            sortby=parse_sortby(getattr(search_request, "sortby", None) or []),
            include=include, exclude=exclude,
        )
        body.pop("token", None)
        return await self._search(req, request, post_body=body, self_href=f"{get_base_url(request)}search")

    async def item_collection(self, collection_id: str, request: Request, bbox: Any = None,
                              datetime: str | None = None, limit: int | None = None, token: str | None = None,
                              fields: list[str] | None = None, sortby: list[str] | None = None,
                              filter_expr: str | None = None, filter_lang: str | None = None,
                              **kwargs: Any) -> dict[str, Any]:
        await self.get_collection(collection_id, request)
        include, exclude = parse_fields(fields)
        req = SearchRequest(
            collections=[collection_id], bbox=tuple(bbox) if bbox else None, datetime=datetime,
            limit=limit or 10, token=token, filter=parse_filter(filter_expr, filter_lang) if filter_expr else None,
            sortby=parse_sortby(sortby), include=include, exclude=exclude,
        )
        out = await self._search(req, request)
        base = get_base_url(request)
        out["links"].append({"rel": "collection", "type": JSON, "href": f"{base}collections/{collection_id}"})
        return out

    async def get_item(self, item_id: str, collection_id: str, request: Request, **kwargs: Any) -> dict[str, Any]:
        await self.get_collection(collection_id, request)
        item = await run_in_threadpool(self.backend.item, collection_id, item_id)
        if item is None:
            raise NotFoundError(f"item {item_id!r} does not exist in collection {collection_id!r}")
        self._item_links(get_base_url(request), item)
        return item


def _resolve_asset_hrefs(base: str, item: dict[str, Any]) -> None:
    """Asset hrefs published as a path (``/data/…``, when the deployment's public host is not known at
    deploy time: CloudFront's domain depends on the API it fronts) become absolute on the host that serves
    this request, which is the host that serves the data too."""
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
    for asset in (item.get("assets") or {}).values():
        href = asset.get("href") if isinstance(asset, dict) else None
        if isinstance(href, str) and href.startswith("/") and not href.startswith("//"):
            asset["href"] = origin + href


def _with_params(request: Request, params: dict[str, Any]) -> str:
    query = dict(request.query_params)
    query.update({k: str(v) for k, v in params.items()})
    return str(request.url.replace(query=urlencode(query)))


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
