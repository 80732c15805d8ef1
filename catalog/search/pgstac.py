"""The pgstac backend: the catalogue in PostgreSQL + PostGIS through pgstac's own SQL functions.

Search requests go to ``pgstac.search(jsonb)`` as JSON built from a validated :class:`SearchRequest`
(CQL2 parsed by ``cql2`` first), so no client text is ever spliced into SQL. Loading uses pypgstac's
Loader with upsert, and removes items of our collections that are no longer published, so the database
mirrors the snapshot exactly.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from catalog.search.base import SearchPage
from catalog.search.request import (
    SEARCH_BUDGET_S,
    InvalidSearch,
    SearchRequest,
    SearchTimeout,
    UnknownCollection,
    apply_fields,
)
from ocsge.errors import OcsgeError


class PgstacError(OcsgeError):
    """pgstac cannot be reached or refused an operation."""


def migrate(dsn: str) -> str:
    """Install or upgrade the pgstac schema (idempotent); returns its version."""
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    try:
        with PgstacDB(dsn=dsn) as db:
            return str(Migrate(db).run_migration())
    except Exception as exc:
        raise PgstacError(f"pgstac migration failed on {_safe_dsn(dsn)}: {exc}") from exc


def load(dsn: str, collections: list[dict[str, Any]], items: list[dict[str, Any]]) -> None:
    """Upsert collections and items; delete items of these collections that are not in ``items``."""
    import psycopg
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    migrate(dsn)
    try:
        with PgstacDB(dsn=dsn) as db:
            loader = Loader(db=db)
            loader.load_collections(iter(collections), insert_mode=Methods.upsert)
            if items:
                loader.load_items(iter(items), insert_mode=Methods.upsert)
        keep: dict[str, list[str]] = {c["id"]: [] for c in collections}
        for item in items:
            keep.setdefault(item["collection"], []).append(item["id"])
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET search_path TO pgstac, public")
            for collection_id, ids in keep.items():
                conn.execute("DELETE FROM items WHERE collection = %s AND NOT (id = ANY(%s))",
                             (collection_id, ids))
    except psycopg.Error as exc:
        raise PgstacError(f"loading pgstac at {_safe_dsn(dsn)} failed: {exc}") from exc


def _safe_dsn(dsn: str) -> str:
    """A DSN without its password, for messages."""
    import re

    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", dsn)


def to_pgstac(req: SearchRequest) -> dict[str, Any]:
    """The JSON body pgstac's ``search()`` takes."""
    body: dict[str, Any] = {"limit": req.limit}
    if req.collections:
        body["collections"] = req.collections
    if req.ids:
        body["ids"] = req.ids
    if req.bbox is not None:
        body["bbox"] = list(req.bbox)
    if req.intersects is not None:
        body["intersects"] = req.intersects
    if req.datetime is not None:
        body["datetime"] = req.datetime
    if req.filter is not None:
        body["filter"] = req.filter
        body["filter-lang"] = "cql2-json"
    if req.sortby:
        body["sortby"] = [{"field": f, "direction": d} for f, d in req.sortby]
    if req.token:
        body["token"] = req.open_token()
    return body


# how long the set of collection ids is trusted: an id not in it is looked up at once (a newly published
# collection is found on its first search), a removed one is answered with empty pages until then
KNOWN_COLLECTIONS_TTL_S = 30.0


class PgstacBackend:
    """:class:`CatalogBackend` over a pgstac database through a small connection pool (``max_connections``:
    1 per Lambda behind RDS Proxy, a few for a local server)."""

    def __init__(self, dsn: str, *, max_connections: int = 4, hydrate_in_python: bool = True) -> None:
        self.dsn = dsn
        self.max_connections = max_connections
        # pgstac stores items without what their collection's base item holds; search() puts it back with a
        # recursive jsonb merge per item, ≈ 90 % of its time (benchmarks/RESULTS_catalog.md run 8): asked with
        # ``nohydrate`` it returns each item's base item beside it, and hydraters (Rust, pypgstac's own
        # dependency) merges them here — 20 → 4 ms of PostgreSQL per 10-item page, the same items (test)
        self.hydrate_in_python = hydrate_in_python
        self._known_collections: tuple[float, frozenset[str]] = (-KNOWN_COLLECTIONS_TTL_S, frozenset())
        self._pool: Any = None
        self._lock = threading.Lock()

    def _get_pool(self) -> Any:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    import orjson
                    from psycopg.types.json import set_json_loads
                    from psycopg_pool import ConnectionPool

                    def configure(conn: Any) -> None:
                        conn.execute("SET search_path TO pgstac, public")
                        # the search time budget, enforced by the database (the query is cancelled)
                        conn.execute(f"SET statement_timeout = {int(SEARCH_BUDGET_S * 1000)}")
                        # a 50-item page is ≈ 150 kB of JSON: orjson parses it several times faster than json
                        set_json_loads(orjson.loads, conn)

                    self._pool = ConnectionPool(self.dsn, min_size=1, max_size=self.max_connections,
                                                kwargs={"autocommit": True}, configure=configure, open=True,
                                                timeout=30)
        return self._pool

    def _query(self, sql: str, params: tuple[Any, ...]) -> Any:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._get_pool().connection() as conn:
                row = conn.execute(sql, params).fetchone()
                return row[0] if row else None
        except psycopg.errors.QueryCanceled:
            raise SearchTimeout(f"the search did not finish within its {SEARCH_BUDGET_S:g} s budget: retry later "
                                "or narrow it (collections, bbox, datetime)") from None
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise PgstacError(f"pgstac at {_safe_dsn(self.dsn)} is unreachable: {exc}") from exc
        except psycopg.Error as exc:
            # pgstac raises for requests it cannot run (bad sort field, bad filter): the client's fault
            message = (exc.diag.message_primary if getattr(exc, "diag", None) else None) or str(exc)
            raise InvalidSearch(f"search rejected: {message.splitlines()[0][:200]}") from None

    def collections(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT coalesce(jsonb_agg(content ORDER BY id), '[]'::jsonb) FROM collections "
                           "WHERE content->>'type' = 'Collection'", ())
        return list(rows or [])

    def collection(self, collection_id: str) -> dict[str, Any] | None:
        return self._query("SELECT content FROM collections WHERE id = %s", (collection_id,))

    def search(self, request: SearchRequest) -> SearchPage:
        unknown = self._unknown_collections(request.collections) if request.collections else []
        if unknown:
            raise UnknownCollection(f"unknown collection(s): {', '.join(unknown)}")
        body = to_pgstac(request)
        if self.hydrate_in_python:
            body["conf"] = {"nohydrate": True}
        result = self._query("SELECT search(%s::text::jsonb)", (_json(body),)) or {}
        if self.hydrate_in_python:
            from hydraters import hydrate
        items = []
        for item in result.get("features", []):
            base = item.pop("pgstac:base_item", None)
            if self.hydrate_in_python:
                if not isinstance(base, dict):
                    raise PgstacError("pgstac returned an item without its base item: the database needs pgstac "
                                      "≥ 0.10 (`pypgstac migrate`, as the deployment's migration resource runs it)")
                item = hydrate({k: v for k, v in base.items() if v is not None}, item, strip_unmatched_markers=True)
            item["links"] = []
            items.append(apply_fields(item, request.include, request.exclude))
        next_token = prev_token = None
        for link in result.get("links", []):
            href = link.get("href", "")
            if link.get("rel") == "next" and "token=" in href:
                next_token = href.split("token=", 1)[1].split("&", 1)[0]
            elif link.get("rel") == "prev" and "token=" in href:
                prev_token = href.split("token=", 1)[1].split("&", 1)[0]
        next_token = result.get("next") or next_token
        prev_token = result.get("prev") or prev_token
        return SearchPage(items, result.get("numberMatched"),
                          request.seal_token(next_token) if next_token else None,
                          request.seal_token(prev_token) if prev_token else None)

    def _unknown_collections(self, ids: list[str]) -> list[str]:
        """The ids that are not collections, from a set of ids refreshed at most every
        :data:`KNOWN_COLLECTIONS_TTL_S` unless an id is missing from it (every collection's JSON fetched per
        search was ≈ 3 ms of PostgreSQL and 118 kB)."""
        at, known = self._known_collections
        if time.monotonic() - at >= KNOWN_COLLECTIONS_TTL_S or any(c not in known for c in ids):
            rows = self._query("SELECT coalesce(array_agg(id), '{}') FROM collections "
                               "WHERE content->>'type' = 'Collection'", ())
            known = frozenset(rows or ())
            self._known_collections = (time.monotonic(), known)
        return [c for c in ids if c not in known]

    def item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        page = self.search(SearchRequest(collections=[collection_id], ids=[item_id], limit=1))
        return page.items[0] if page.items else None

    def version(self) -> str:
        return str(self._query("SELECT md5(coalesce(string_agg(id || ':' || coalesce(content->>'updated', ''), ','"
                               " ORDER BY id), '')) FROM collections", ()))

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def _json(obj: Any) -> str:
    import orjson

    return orjson.dumps(obj).decode()

