"""The embedded backend: the published snapshot held in memory, searched in-process.

Built for one machine and for Lambdas without a database: the snapshot loads in one read, a shapely
STRtree answers bbox/intersects, numpy arrays answer datetime, and CQL2 filters run on the remaining
candidates — comparisons, ``in``, ``between``, ``like``, ``isNull`` and ``s_intersects`` on plain
property columns directly, anything else through ``cql2``'s own evaluator. Items stay as their JSON
bytes until a page is returned. The snapshot's etag is polled (one tiny read) at most every
``reload_interval_s`` and a new index is swapped in when it changes.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson

from catalog import snapshot
from catalog.search.base import SearchPage
from catalog.search.epochs import epochs as _epochs
from catalog.search.request import (
    InvalidSearch,
    SearchRequest,
    UnknownCollection,
    apply_fields,
    like_matcher,
    literal_epoch,
    parse_interval,
)
from ocsge.storage import Storage

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_SCALAR = (str, int, float, bool)


_FLIPPED = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_TOP_LEVEL = ("id", "collection")
COLUMN_CACHE_SIZE = 64  # property columns (and their inverted indexes) kept per index, least recently used out


class _AllNone:
    """The column of a property no item has: every value is None (nothing is cached for it)."""

    def __getitem__(self, i: int) -> None:
        return None


_ALL_NONE = _AllNone()


class EmbeddedIndex:
    """One loaded snapshot. Immutable once built: a reload builds a new index."""

    def __init__(self, snap: snapshot.Snapshot, asset_base: str) -> None:
        import shapely

        self.etag = snap.etag
        self.asset_base = asset_base
        self.collections: dict[str, dict[str, Any]] = {c["id"]: c for c in sorted(snap.collections,
                                                                                  key=lambda c: c["id"])}
        rows = []
        for line in snapshot.iter_items(snap.items_ndjson):
            item = orjson.loads(line)
            props = item.get("properties") or {}
            dt = props.get("datetime") or props.get("start_datetime")
            rows.append((dt or "", item["id"], item["collection"], props, item.get("geometry"), line))
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)  # pgstac's default: datetime desc, id desc
        self.n = len(rows)
        self.raw: list[bytes] = [r[5] for r in rows]
        self.ids: list[str] = [r[1] for r in rows]
        self.coll: list[str] = [r[2] for r in rows]
        self.props: list[dict[str, Any]] = [r[3] for r in rows]
        self.start = _epochs([p.get("start_datetime") or p.get("datetime") for p in self.props])
        self.end = _epochs([p.get("end_datetime") or p.get("datetime") for p in self.props])
        with_geom = [i for i, r in enumerate(rows) if r[4]]
        parsed = shapely.from_geojson([orjson.dumps(rows[i][4]) for i in with_geom]) if with_geom else []
        self.geoms: list[Any] = [None] * self.n
        for i, geom in zip(with_geom, parsed, strict=True):
            self.geoms[i] = geom
        self._tree_index = np.array(with_geom, dtype=np.int64)
        self._tree = shapely.STRtree(parsed)
        self.by_collection: dict[str, np.ndarray] = {}
        by_coll: dict[str, list[int]] = {}
        self.by_id: dict[str, list[int]] = {}
        for i in range(self.n):
            by_coll.setdefault(self.coll[i], []).append(i)
            self.by_id.setdefault(self.ids[i], []).append(i)
        self.by_collection = {k: np.array(v, dtype=np.int64) for k, v in by_coll.items()}
        # property names some item has: only those get a column (a bounded cache), so that a client
        # sorting or filtering on ever new names cannot make the index grow
        self.known: frozenset[str] = frozenset().union(*(p.keys() for p in self.props)) if self.props else frozenset()
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    # --- columns ------------------------------------------------------------------------------
    def _cached(self, key: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        value = build()
        with self._lock:
            self._cache[key] = value
            self._cache.move_to_end(key)
            while len(self._cache) > COLUMN_CACHE_SIZE:
                self._cache.popitem(last=False)
        return value

    def column(self, name: str) -> Any:
        """Values of a property by item index (``id`` and ``collection`` are the item's own)."""
        name = name.removeprefix("properties.")
        if name == "id":
            return self.ids
        if name == "collection":
            return self.coll
        if name not in self.known:
            return _ALL_NONE
        if name == "datetime":  # as pgstac indexes it: an interval item's datetime is its start
            return self._cached("c:datetime", lambda: [p.get("datetime") or p.get("start_datetime")
                                                       for p in self.props])
        return self._cached("c:" + name, lambda: [p.get(name) for p in self.props])

    def epochs(self, name: str) -> np.ndarray:
        """POSIX seconds of a timestamp property by item index (NaN where absent or not a timestamp)."""
        name = name.removeprefix("properties.")
        if name == "datetime":
            return self.start
        if name not in self.known:
            return np.full(self.n, np.nan)

        def build() -> np.ndarray:
            values = self.column(name)
            texts: list[str | None] = []
            for i in range(self.n):
                v = values[i]
                texts.append(v if isinstance(v, str) else None)
            try:
                return _epochs(texts)
            except (InvalidSearch, ValueError):  # a property that is not a timestamp everywhere: item by item
                out = np.full(self.n, np.nan)
                for i, t in enumerate(texts):
                    with contextlib.suppress(InvalidSearch, ValueError):
                        out[i] = _epochs([t])[0]
                return out

        return self._cached("e:" + name, build)  # type: ignore[no-any-return]

    def postings(self, name: str) -> dict[Any, np.ndarray]:
        """Inverted index of a property (value → sorted item indices), built on first use: equality and
        ``in`` filters on département, millésime, source… cost a dictionary lookup, not a scan."""
        name = name.removeprefix("properties.")
        if name not in self.known and name not in _TOP_LEVEL:
            return {}

        def build() -> dict[Any, np.ndarray]:
            column = self.column(name)
            lists: dict[Any, list[int]] = {}
            for i in range(self.n):
                value = column[i]
                if isinstance(value, _SCALAR):
                    lists.setdefault(value, []).append(i)
            return {v: np.array(ix, dtype=np.int64) for v, ix in lists.items()}

        return self._cached("p:" + name, build)  # type: ignore[no-any-return]

    # --- search -------------------------------------------------------------------------------
    def search(self, req: SearchRequest) -> SearchPage:
        cand = self._candidates(req)
        if req.filter is not None and cand.size:
            cand = cand[self._eval(req.filter, cand, req)]
        req.check_deadline()
        if req.sortby:
            cand = self._sorted(cand, req.sortby)
        offset = _offset(req)
        page = cand[offset: offset + req.limit]
        items = [self.render(int(i), req.include, req.exclude) for i in page]
        next_token = req.seal_token(str(offset + req.limit)) if offset + req.limit < cand.size else None
        prev_token = req.seal_token(str(max(0, offset - req.limit))) if offset > 0 else None
        return SearchPage(items, int(cand.size), next_token, prev_token)

    def _candidates(self, req: SearchRequest) -> np.ndarray:
        import shapely
        import shapely.geometry

        if req.collections:
            unknown = [c for c in req.collections if c not in self.collections]
            if unknown:
                raise UnknownCollection(f"unknown collection(s): {', '.join(unknown)}")
            parts = [self.by_collection.get(c, np.empty(0, dtype=np.int64)) for c in dict.fromkeys(req.collections)]
            cand = parts[0] if len(parts) == 1 else np.unique(np.concatenate(parts))
        else:
            cand = np.arange(self.n, dtype=np.int64)
        if req.ids:
            wanted = np.array(sorted({i for x in req.ids for i in self.by_id.get(x, ())}), dtype=np.int64)
            cand = np.intersect1d(cand, wanted, assume_unique=True)
        geom = None
        if req.bbox is not None:
            geom = shapely.box(*req.bbox)
        elif req.intersects is not None:
            geom = shapely.geometry.shape(req.intersects)
        if geom is not None and cand.size:
            hits = self._tree_index[self._tree.query(geom, predicate="intersects")]
            cand = np.intersect1d(cand, hits)
        if req.datetime is not None and cand.size:
            start, end = parse_interval(req.datetime)
            keep = np.ones(cand.size, dtype=bool)
            if start is not None:
                keep &= self.end[cand] >= start
            if end is not None:
                keep &= self.start[cand] <= end
            cand = cand[keep]
        return cand

    def _sorted(self, cand: np.ndarray, sortby: Sequence[tuple[str, str]]) -> np.ndarray:
        order = [int(i) for i in cand]
        for name, direction in reversed(sortby):
            column = self.column(name)
            present = [i for i in order if column[i] is not None]
            missing = [i for i in order if column[i] is None]
            try:
                present.sort(key=lambda i: column[i], reverse=direction == "desc")
            except TypeError:
                present.sort(key=lambda i: str(column[i]), reverse=direction == "desc")
            order = present + missing  # nulls last, as in PostgreSQL for ascending order
        return np.array(order, dtype=np.int64)

    # --- CQL2 ---------------------------------------------------------------------------------
    def _eval(self, node: Any, cand: np.ndarray, req: SearchRequest | None = None) -> np.ndarray:
        """Boolean mask over ``cand`` for a CQL2 JSON node."""
        if req is not None:
            req.check_deadline()
        if isinstance(node, bool):
            return np.full(cand.size, node)
        if not isinstance(node, dict) or "op" not in node:
            raise InvalidSearch(f"filter node {node!r} is not a boolean expression")
        op, args = str(node["op"]).lower(), node.get("args", [])
        if op == "and":
            mask = np.ones(cand.size, dtype=bool)
            for arg in args:
                idx = np.nonzero(mask)[0]
                if idx.size == 0:
                    break
                mask[idx] = self._eval(arg, cand[idx], req)
            return mask
        if op == "or":
            mask = np.zeros(cand.size, dtype=bool)
            for arg in args:
                idx = np.nonzero(~mask)[0]
                if idx.size == 0:
                    break
                mask[idx] = self._eval(arg, cand[idx], req)
            return mask
        if op == "not":
            return ~self._eval(args[0], cand, req)
        fast = self._fast(op, args, cand)
        return fast if fast is not None else self._fallback(node, cand, req)

    def _fast(self, op: str, args: list[Any], cand: np.ndarray) -> np.ndarray | None:
        if op in _FLIPPED and len(args) == 2 and not _is_property(args[0]) and _is_property(args[1]):
            op, args = _FLIPPED[op], [args[1], args[0]]  # literal op property: property flipped-op literal
        prop = args[0].get("property") if args and _is_property(args[0]) else None
        if op == "s_intersects" and prop == "geometry" and len(args) == 2 and isinstance(args[1], dict) \
                and "type" in args[1]:
            import shapely.geometry

            hits = self._tree_index[self._tree.query(shapely.geometry.shape(args[1]), predicate="intersects")]
            return np.isin(cand, hits)
        if prop is None or prop == "geometry":
            return None
        if op in _COMPARE and len(args) == 2:
            epoch = literal_epoch(args[1])
            if epoch is not None:  # a timestamp or date: compared as instants, null never matches
                values = self.epochs(prop)[cand]
                with np.errstate(invalid="ignore"):
                    mask = _COMPARE[op](values, epoch)
                return np.asarray(mask, dtype=bool) & ~np.isnan(values)
        if op == "=" and len(args) == 2 and isinstance(args[1], _SCALAR) and not isinstance(args[1], bool):
            hits = self.postings(prop).get(args[1])
            return np.isin(cand, hits, assume_unique=True) if hits is not None else np.zeros(cand.size, bool)
        if op == "in" and len(args) == 2 and isinstance(args[1], list) and args[1] and all(
                isinstance(v, _SCALAR) and not isinstance(v, bool) for v in args[1]):
            index = self.postings(prop)
            parts = [index[v] for v in args[1] if v in index]
            hits = np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
            return np.isin(cand, hits, assume_unique=True)
        column = self.column(prop)
        values = [column[i] for i in cand.tolist()]
        if op in _COMPARE and len(args) == 2 and isinstance(args[1], _SCALAR):
            fn, lit = _COMPARE[op], args[1]
            return np.fromiter((_safe(fn, v, lit) for v in values), dtype=bool, count=len(values))
        if op == "in" and len(args) == 2 and isinstance(args[1], list) and all(isinstance(v, _SCALAR)
                                                                                for v in args[1]):
            options = set(args[1])
            return np.fromiter((v in options if isinstance(v, _SCALAR) else False for v in values), dtype=bool,
                               count=len(values))
        if op == "between" and len(args) == 3 and all(isinstance(v, int | float) for v in args[1:]):
            lo, hi = args[1], args[2]
            return np.fromiter((_safe(lambda v, _: lo <= v <= hi, v, None) for v in values), dtype=bool,
                               count=len(values))
        if op == "like" and len(args) == 2 and isinstance(args[1], str):
            matches = like_matcher(args[1])
            return np.fromiter((isinstance(v, str) and matches(v) for v in values), dtype=bool, count=len(values))
        if op == "isnull" and len(args) == 1:
            return np.fromiter((v is None for v in values), dtype=bool, count=len(values))
        return None

    def _fallback(self, node: dict[str, Any], cand: np.ndarray, req: SearchRequest | None = None) -> np.ndarray:
        """Anything the fast paths do not cover, item by item through ``cql2``'s evaluator. An item on which
        the expression cannot be evaluated (a null ``datetime`` compared with a timestamp, a property of
        another type) does not match: one item never fails the whole search."""
        import cql2
        import shapely.geometry

        try:
            expr = cql2.Expr(node)
        except Exception as exc:  # checked before, so only an expression cql2 cannot represent
            raise InvalidSearch(f"filter cannot be evaluated: {str(exc).splitlines()[0][:200]}") from None
        out = np.zeros(cand.size, dtype=bool)
        for k, i in enumerate(cand):
            if req is not None and k % 256 == 0:
                req.check_deadline()
            geom = self.geoms[i]
            props = self.props[i]
            if props.get("datetime") is None and props.get("start_datetime"):
                props = {**props, "datetime": props["start_datetime"]}  # as for the fast paths and pgstac
            doc = {"type": "Feature", "id": self.ids[i], "collection": self.coll[i], "properties": props,
                   "geometry": shapely.geometry.mapping(geom) if geom is not None else None}
            try:
                out[k] = bool(expr.matches(doc))
            except Exception:  # cql2 raises for operations it cannot evaluate on this item: not a match
                out[k] = False
        return out

    # --- output -------------------------------------------------------------------------------
    def render(self, i: int, include: set[str] | None = None, exclude: set[str] | None = None) -> dict[str, Any]:
        item = orjson.loads(self.raw[i])
        for asset in item.get("assets", {}).values():
            key = snapshot.resolve_key(snapshot.PREFIX, asset.get("href", ""))
            if key is not None:
                asset["href"] = self.asset_base + key
        item["links"] = []
        return apply_fields(item, include or set(), exclude or set())

    def item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        for i in self.by_id.get(item_id, ()):
            if self.coll[i] == collection_id:
                return self.render(i)
        return None


def _safe(fn: Callable[[Any, Any], bool], value: Any, literal: Any) -> bool:
    if value is None:
        return False
    try:
        return bool(fn(value, literal))
    except TypeError:
        return False


def _is_property(node: Any) -> bool:
    return isinstance(node, dict) and isinstance(node.get("property"), str)


def _offset(req: SearchRequest) -> int:
    """The offset sealed in the request's paging token (0 without one)."""
    inner = req.open_token()
    if inner is None:
        return 0
    if not inner.isdigit():
        raise InvalidSearch(f"invalid paging token {req.token[:40]!r}")  # type: ignore[index]
    return int(inner)


class EmbeddedBackend:
    """:class:`CatalogBackend` over the snapshot under a storage root, reloaded when it changes."""

    def __init__(self, storage: Storage, *, asset_base_url: str | None = None,
                 reload_interval_s: float = 10.0) -> None:
        self.storage = storage
        self.asset_base = (asset_base_url or storage.url("x")[:-1]).rstrip("/") + "/"
        self.reload_interval_s = reload_interval_s
        self._lock = threading.Lock()
        self._index: EmbeddedIndex | None = None
        self._checked = 0.0
        self.loads = 0
        self.last_load_s = 0.0

    def index(self) -> EmbeddedIndex:
        """The current index, loading it first or after the snapshot changed (checked every interval)."""
        idx = self._index
        now = time.monotonic()
        if idx is not None and now - self._checked < self.reload_interval_s:
            return idx
        with self._lock:
            if self._index is not None and time.monotonic() - self._checked < self.reload_interval_s:
                return self._index
            etag = snapshot.read_etag(self.storage)
            if self._index is None or etag != self._index.etag:
                started = time.perf_counter()
                gc_was_enabled = gc.isenabled()
                gc.disable()  # the load allocates millions of objects: cyclic GC passes would triple its time
                try:
                    self._index = EmbeddedIndex(snapshot.read(self.storage), self.asset_base)
                finally:
                    gc.freeze()  # long-lived: later collections need not scan the index's objects again
                    if gc_was_enabled:
                        gc.enable()
                self.last_load_s = time.perf_counter() - started
                self.loads += 1
            self._checked = time.monotonic()
            return self._index

    def collections(self) -> list[dict[str, Any]]:
        return list(self.index().collections.values())

    def collection(self, collection_id: str) -> dict[str, Any] | None:
        return self.index().collections.get(collection_id)

    def search(self, request: SearchRequest) -> SearchPage:
        return self.index().search(request)

    def item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        return self.index().item(collection_id, item_id)

    def version(self) -> str:
        return self.index().etag

    def close(self) -> None:
        self._index = None
