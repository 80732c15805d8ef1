"""The embedded backend: the snapshot's search index (:mod:`catalog.search.item_index`) queried in place with
DuckDB, nothing loaded at start but the collections and the Parquet footer.

A search runs in three steps. DuckDB selects the candidates from the index's columns: collections, ids, the
bbox columns against the bbox (or the bounds of ``intersects`` and of top-level ``s_intersects``), the
datetime interval, the CQL2 filter translated to SQL (:mod:`catalog.search.cql2_sql`), in the requested
order. Footprints are then tested exactly with shapely where the bbox test is not already exact (an item
whose footprint is its bbox, or whose bbox lies inside a query bbox). Last, the page's items are read from
the blobs file (50 small ranges) and rendered as the in-memory index renders them.

The common search — collections, bbox or intersects, datetime, the default order, no filter — skips SQL
once the index's small columns are in memory (:class:`Columns`: bounds, interval, rank, blob ranges and the
WKB of footprints that are not boxes: ≈ 180 bytes an item with 5-vertex blocks; loaded by a background thread
after the open, so the first answers do not wait for it): the same predicates as the SQL, on numpy arrays.
A DuckDB query over Parquet costs 3–8 ms whatever it returns (planning, reading and decompressing row
groups); the arrays answer the same search in well under a millisecond at 10⁵ items.

When a filter or sort has a part SQL cannot express with the same meaning, the candidates that the rest of
the request leaves are loaded into an :class:`~catalog.search.embedded.EmbeddedIndex` and the request runs
there, so both backends share one semantics by construction. Paging tokens are offsets sealed by the
request, as before. The snapshot etag is polled like the in-memory backend's; a missing or stale index (a
root published before the index existed, or an index that does not belong to the snapshot) is rebuilt
into a temporary folder, with a warning that says to publish again.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from catalog import snapshot
from catalog.search import item_index
from catalog.search.base import EncodedPage, SearchPage
from catalog.search.cql2_sql import Sql, Translator
from catalog.search.embedded import EmbeddedIndex, _offset
from catalog.search.request import SearchRequest, UnknownCollection, apply_fields
from ocsge.storage import LocalStorage, Storage

log = logging.getLogger(__name__)

COLUMNS_CHUNK_ROWS = 65_536  # rows read at a time into the in-memory columns (bounded transient objects)
MAX_WKB_IN_MEMORY = 4096  # footprints larger than this (a département's outline) are read from Parquet when tested
DUCKDB_THREADS = 1  # one per query: concurrency comes from concurrent requests, each on its own cursor
RESIDUAL_CHECK_EVERY = 1024  # items loaded between deadline checks when the evaluator takes over


_LOADING: weakref.WeakSet[IndexedIndex] = weakref.WeakSet()  # indexes whose columns are being loaded


@atexit.register
def _stop_loaders() -> None:
    """At exit, before the interpreter stops its daemon threads: stop each loader at its next chunk and wait
    for it. A thread stopped inside a DuckDB call aborts the process ("exception not rethrown")."""
    for index in list(_LOADING):
        index._closing.set()
        loader = index._loader
        if loader is not None and loader is not threading.current_thread():
            loader.join(timeout=10)


class IndexUnavailable(snapshot.SnapshotError):
    """The snapshot has no usable search index and none could be built."""


class Columns:
    """The index's small columns in memory, indexed by ``row`` (the physical order), for the searches that need
    no SQL (see the module docstring). Collections are contiguous row ranges (the index is sorted by
    collection first); ``wkb_offset`` is -1 for a footprint that is a box (never tested), -2 for one larger
    than :data:`MAX_WKB_IN_MEMORY` (read from Parquet when tested), else its start in ``wkb``."""

    def __init__(self, cursor: Any, count: int, stop: threading.Event | None = None) -> None:
        ranges = cursor.execute(
            "SELECT collection, min(row), max(row), count(*) FROM items GROUP BY collection"
        ).fetchall()
        self.ranges: dict[str, tuple[int, int]] = {}
        for name, lo, hi, n in ranges:
            if hi - lo + 1 != n:
                raise ValueError(f"collection {name} is not one contiguous range of rows")
            self.ranges[str(name)] = (int(lo), int(hi) + 1)
        parts: dict[str, list[np.ndarray]] = {}
        wkb_parts: list[bytes] = []
        wkb_offsets: list[np.ndarray] = []
        position = 0
        for lo in range(0, count, COLUMNS_CHUNK_ROWS):
            if stop is not None and stop.is_set():
                raise RuntimeError("the index was closed")
            chunk = cursor.execute(
                "SELECT row, rank, coalesce(start, 'NaN'::DOUBLE) AS start, "
                "coalesce(\"end\", 'NaN'::DOUBLE) AS \"end\", "
                "coalesce(xmin, 'NaN'::DOUBLE) AS xmin, coalesce(ymin, 'NaN'::DOUBLE) AS ymin, "
                "coalesce(xmax, 'NaN'::DOUBLE) AS xmax, coalesce(ymax, 'NaN'::DOUBLE) AS ymax, "
                "coalesce(geom_is_box, true) AS geom_is_box, blob_offset, blob_length, raw_length, "
                "CASE WHEN coalesce(geom_is_box, true) THEN NULL "
                "WHEN octet_length(CAST(geometry AS BLOB)) > ? THEN ''::BLOB "
                "ELSE CAST(geometry AS BLOB) END AS wkb FROM items WHERE row >= ? AND row < ? ORDER BY row",
                [MAX_WKB_IN_MEMORY, lo, lo + COLUMNS_CHUNK_ROWS],
            ).fetchnumpy()
            if not np.array_equal(np.asarray(chunk["row"]), np.arange(lo, lo + len(chunk["row"]))):
                raise ValueError("the index's rows are not numbered 0…n-1")
            for name in ("rank", "start", "end", "xmin", "ymin", "xmax", "ymax", "geom_is_box", "blob_offset",
                         "blob_length", "raw_length"):
                parts.setdefault(name, []).append(np.asarray(chunk[name]))
            blobs = chunk["wkb"]
            starts = np.full(len(blobs), -1, dtype=np.int64)
            present = np.nonzero(~np.ma.getmaskarray(blobs))[0]
            values = [bytes(v) for v in np.ma.getdata(blobs)[present].tolist()]
            lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
            starts[present] = np.where(lengths > 0, position + np.cumsum(lengths) - lengths, -2)
            wkb_parts.append(b"".join(values))
            position += int(lengths.sum())
            wkb_offsets.append(starts)
        columns = {name: np.concatenate(arrays) for name, arrays in parts.items()}
        if any(len(a) != count for a in columns.values()):
            raise ValueError("the index's row count does not match its metadata")
        self.rank = columns["rank"].astype(np.int64)
        self.start, self.end = columns["start"].astype(np.float64), columns["end"].astype(np.float64)
        self.xmin, self.ymin = columns["xmin"].astype(np.float64), columns["ymin"].astype(np.float64)
        self.xmax, self.ymax = columns["xmax"].astype(np.float64), columns["ymax"].astype(np.float64)
        self.geom_is_box = columns["geom_is_box"].astype(bool)
        self.blob_offset = columns["blob_offset"].astype(np.int64)
        self.blob_length = columns["blob_length"].astype(np.int64)
        self.raw_length = columns["raw_length"].astype(np.int64)
        self.wkb = b"".join(wkb_parts)
        self.wkb_offset = np.concatenate(wkb_offsets) if wkb_offsets else np.zeros(0, dtype=np.int64)
        ends = np.full(self.wkb_offset.size, -1, dtype=np.int64)
        present = np.nonzero(self.wkb_offset >= 0)[0]
        if present.size:  # each in-memory footprint ends where the next one starts
            nxt = np.append(self.wkb_offset[present][1:], len(self.wkb))
            ends[present] = nxt
        self.wkb_end = ends
        self.by_rank = np.argsort(self.rank, kind="stable")  # rows in the default order

    def nbytes(self) -> int:
        arrays = (self.rank, self.start, self.end, self.xmin, self.ymin, self.xmax, self.ymax, self.geom_is_box,
                  self.blob_offset, self.blob_length, self.raw_length, self.wkb_offset, self.wkb_end, self.by_rank)
        return sum(a.nbytes for a in arrays) + len(self.wkb)


class IndexedIndex:
    """One snapshot's index, open. Immutable: a reload opens a new one."""

    def __init__(
        self,
        etag: str,
        collections: list[dict[str, Any]],
        folder: Path,
        asset_base: str,
        *,
        owned: bool = False,
        load_columns: str = "background",
    ) -> None:
        """``load_columns``: "background" (a thread loads :class:`Columns` after the open), "now" (before the
        constructor returns), or "never" (every search through SQL)."""
        import duckdb

        self.etag = etag
        self.asset_base = asset_base
        self.folder = folder
        self.owned = owned  # a temporary folder this index built itself: removed on close
        self.collections: dict[str, dict[str, Any]] = {c["id"]: c for c in sorted(collections, key=lambda c: c["id"])}
        parquet = folder / item_index.PARQUET_NAME
        self._db = duckdb.connect(":memory:", config={"threads": DUCKDB_THREADS})
        self._db.execute("SET parquet_metadata_cache = true")  # the footer is read once, not per query
        self.meta = item_index.read_meta(parquet, self._db)
        if self.meta.etag != etag:
            raise IndexUnavailable(f"search index {parquet} belongs to snapshot {self.meta.etag[:12]}, not {etag[:12]}")
        self.translator = Translator(self.meta)
        path = str(parquet).replace("'", "''")
        self._db.execute(f"CREATE VIEW items AS SELECT * FROM read_parquet('{path}')")
        self._local = threading.local()
        self._blobs = os.open(folder / item_index.BLOBS_NAME, os.O_RDONLY)
        self._zdict = os.pread(self._blobs, self.meta.zdict_length, 0)
        self.columns: Columns | None = None
        self._closing = threading.Event()
        self._loader: threading.Thread | None = None
        if load_columns == "now":
            self.load_columns()
        elif load_columns == "background":
            self._loader = threading.Thread(target=self.load_columns, name="ocsge-index-columns", daemon=True)
            _LOADING.add(self)
            self._loader.start()

    def load_columns(self) -> Columns | None:
        """Load :class:`Columns` (once); None when they cannot be (the SQL path keeps answering)."""
        if self.columns is None:
            started = time.perf_counter()
            try:
                cursor = self._db.cursor()
                try:
                    self.columns = Columns(cursor, self.meta.count, self._closing)
                finally:
                    cursor.close()
            except Exception as exc:  # a closed index, or an index this version cannot map: SQL answers
                log.info("search index columns not loaded into memory (%s): searches go through SQL", exc)
                return None
            finally:
                _LOADING.discard(self)
            log.debug("search index columns in memory: %.1f MB in %.2f s", self.columns.nbytes() / 1e6,
                      time.perf_counter() - started)
        return self.columns

    def _cursor(self) -> Any:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self._db.cursor()  # DuckDB connections are not shared across threads
        return cur

    def close(self) -> None:
        self._closing.set()  # the loader stops at its next chunk: the connection cannot close under it
        loader = self._loader
        if loader is not None and loader is not threading.current_thread():
            loader.join()
        blobs, self._blobs = self._blobs, -1
        if blobs >= 0:
            os.close(blobs)
            self._db.close()
            if self.owned:
                shutil.rmtree(self.folder, ignore_errors=True)

    def __del__(self) -> None:  # a replaced index is closed when its last in-flight search lets it go
        with contextlib.suppress(Exception):  # at interpreter shutdown there is nothing left to release
            self.close()

    # --- search -------------------------------------------------------------------------------
    def search(self, req: SearchRequest) -> SearchPage:
        found = self._locate(req)
        if isinstance(found, Sql):
            return self._with_evaluator(req, found)
        page, matched, offset = found
        req.check_deadline()
        items = [self.render(self._read(*p), req.include, req.exclude) for p in page]
        return SearchPage(items, matched, *self._tokens(req, matched, offset))

    def search_encoded(self, req: SearchRequest) -> EncodedPage | None:
        """The page as item templates (:func:`catalog.search.item_index.template`) for the API to fill in;
        None where it cannot be (an index without templates, the fields extension, a residual filter or
        sort): then :meth:`search`."""
        if not self.meta.templates or req.include or req.exclude:
            return None
        found = self._locate(req)
        if isinstance(found, Sql):
            return None
        page, matched, offset = found
        req.check_deadline()
        items = []
        for p in page:
            head, body = item_index.split_template(self._read(*p))
            collection, item_id = orjson.loads(head)
            items.append((collection, item_id, body))
        return EncodedPage(items, matched, *self._tokens(req, matched, offset), asset_base=self.asset_base)

    @staticmethod
    def _tokens(req: SearchRequest, matched: int, offset: int) -> tuple[str | None, str | None]:
        next_token = req.seal_token(str(offset + req.limit)) if offset + req.limit < matched else None
        prev_token = req.seal_token(str(max(0, offset - req.limit))) if offset > 0 else None
        return next_token, prev_token

    def _locate(self, req: SearchRequest) -> tuple[list[tuple[int, int, int]], int, int] | Sql:
        """(the page's blob ranges, the count, the offset); or, where a filter or sort remains that SQL cannot
        express, the WHERE clause of the candidates for the in-memory evaluator."""
        if req.collections:
            unknown = [c for c in req.collections if c not in self.collections]
            if unknown:
                raise UnknownCollection(f"unknown collection(s): {', '.join(unknown)}")
        where, exact, residual = self._where(req)
        order = self._order(req)
        if order is None:
            residual = True
        if residual:
            return where
        offset = _offset(req)
        columns = self.columns
        if columns is not None and order == "rank" and req.filter is None and not req.ids:
            page, matched = self._from_columns(columns, req, exact, offset)
            return page, matched, offset
        cur = self._cursor()
        columns = "row, blob_offset, blob_length, raw_length"
        if exact is None:
            rows = cur.execute(
                f"SELECT {columns}, count(*) OVER () FROM items WHERE {where.text} ORDER BY {order} "
                f"LIMIT {int(req.limit)} OFFSET {int(offset)}",
                where.params,
            ).fetchall()
            if rows:
                matched = int(rows[0][4])
            else:
                matched = int(cur.execute(f"SELECT count(*) FROM items WHERE {where.text}", where.params).fetchone()[0])
            page = [(r[1], r[2], r[3]) for r in rows]
        else:
            page, matched = self._exact(req, where, order, exact, offset)
        return page, matched, offset

    def _where(self, req: SearchRequest) -> tuple[Sql, list[tuple[Any, tuple[float, ...] | None]] | None, bool]:
        """The WHERE clause; the geometries every footprint must intersect (each with its bbox when it is a
        plain bbox, whose inner items need no test), or None; whether a residual filter or sort remains."""
        import shapely
        import shapely.geometry

        parts: list[str] = []
        params: list[Any] = []
        if req.collections:
            wanted = list(dict.fromkeys(req.collections))
            parts.append(f"collection IN ({', '.join('?' * len(wanted))})")
            params += wanted
        if req.ids:
            wanted = list(dict.fromkeys(req.ids))
            parts.append(f"id IN ({', '.join('?' * len(wanted))})")
            params += wanted
        spatial: list[tuple[Any, tuple[float, ...] | None]] = []
        if req.bbox is not None:
            spatial.append((shapely.box(*req.bbox), tuple(req.bbox)))
        elif req.intersects is not None:
            spatial.append((shapely.geometry.shape(req.intersects), None))
        if req.datetime is not None:
            from catalog.search.request import parse_interval

            start, end = parse_interval(req.datetime)
            if start is not None:
                parts.append('"end" >= ?')
                params.append(start)
            if end is not None:
                parts.append('"start" <= ?')
                params.append(end)
        residual = False
        if req.filter is not None:
            conjuncts = (
                req.filter["args"]
                if isinstance(req.filter, dict) and str(req.filter.get("op", "")).lower() == "and"
                else [req.filter]
            )
            for node in conjuncts:
                geom = _s_intersects_literal(node)
                if geom is not None:
                    spatial.append((shapely.geometry.shape(geom), None))
                    continue
                sql = self.translator.translate(node)
                if sql is None:
                    residual = True
                else:
                    parts.append(sql.text)
                    params += sql.params
        for geom, _ in spatial:
            w, s, e, n = shapely.bounds(geom).tolist()
            parts.append("xmax >= ? AND xmin <= ? AND ymax >= ? AND ymin <= ?")
            params += [w, e, s, n]
        return Sql(" AND ".join(parts) or "TRUE", params), (spatial or None), residual

    def _order(self, req: SearchRequest) -> str | None:
        terms = []
        for name, direction in req.sortby:
            term = self.translator.sort_key(name, direction)
            if term is None:
                return None
            if term is not False:
                terms.append(term)
        return ", ".join([*terms, "rank"])  # type: ignore[list-item]

    def _exact(
        self,
        req: SearchRequest,
        where: Sql,
        order: str,
        spatial: list[tuple[Any, tuple[float, ...] | None]],
        offset: int,
    ) -> tuple[list[tuple[int, int, int]], int]:
        """Candidates in order, footprints tested where the bbox test is not exact; the page and the count."""
        import shapely

        exact_terms, params = [], list(where.params)
        for _, box in spatial:
            if box is None:
                exact_terms.append("TRUE")
            else:  # a footprint that is its bbox, or whose bbox is inside the query bbox, intersects it
                exact_terms.append("NOT (geom_is_box OR (xmin >= ? AND xmax <= ? AND ymin >= ? AND ymax <= ?))")
        select_params = [v for _, box in spatial if box is not None for v in (box[0], box[2], box[1], box[3])]
        needs = " OR ".join(exact_terms)
        cur = self._cursor()
        table = cur.execute(
            f"SELECT blob_offset, blob_length, raw_length, ({needs}) AS needs, "
            f"CASE WHEN ({needs}) THEN CAST(geometry AS BLOB) ELSE ''::BLOB END AS wkb FROM items WHERE {where.text} "
            f"ORDER BY {order}",
            select_params + select_params + params,
        ).fetchnumpy()  # numpy, not Arrow: pyarrow's conversions import pandas (2 s of a cold start)
        needs_test = np.asarray(table["needs"], dtype=bool)
        keep = np.ones(needs_test.size, dtype=bool)
        if needs_test.any():
            idx = np.nonzero(needs_test)[0]
            geoms = shapely.from_wkb([bytes(table["wkb"][i]) for i in idx.tolist()])
            hit = np.ones(idx.size, dtype=bool)
            for geom, _ in spatial:
                hit &= shapely.intersects(geoms, geom)
            keep[idx] = hit
        kept = np.nonzero(keep)[0]
        chosen = kept[offset : offset + req.limit].tolist()
        offsets, lengths, raw = (np.asarray(table[c]) for c in ("blob_offset", "blob_length", "raw_length"))
        page = [(int(offsets[i]), int(lengths[i]), int(raw[i])) for i in chosen]
        return page, int(kept.size)

    def _from_columns(
        self,
        cols: Columns,
        req: SearchRequest,
        spatial: list[tuple[Any, tuple[float, ...] | None]] | None,
        offset: int,
    ) -> tuple[list[tuple[int, int, int]], int]:
        """:meth:`_exact` (or the plain SQL page) on the in-memory columns: the same predicates as the SQL of
        :meth:`_where` (NaN, like NULL there, satisfies no comparison), the same default order (rank)."""
        import shapely

        n_rows = int(cols.rank.size)
        if req.collections:
            spans = [cols.ranges[c] for c in dict.fromkeys(req.collections) if c in cols.ranges]
        else:
            spans = [(0, n_rows)]
        start = end = None
        if req.datetime is not None:
            from catalog.search.request import parse_interval

            start, end = parse_interval(req.datetime)
        bounds = [shapely.bounds(geom).tolist() for geom, _ in spatial or ()]
        if not bounds and start is None and end is None and spans == [(0, n_rows)]:
            return _ranges(cols, cols.by_rank[offset : offset + req.limit]), n_rows
        parts = []
        for lo, hi in spans:  # each collection is a contiguous range: tests on views, no gathering
            mask: np.ndarray | None = None
            for w, s, e, n in bounds:
                hit = (cols.xmax[lo:hi] >= w) & (cols.xmin[lo:hi] <= e) & (cols.ymax[lo:hi] >= s) & (
                    cols.ymin[lo:hi] <= n
                )
                mask = hit if mask is None else mask & hit
            if start is not None:
                hit = cols.end[lo:hi] >= start
                mask = hit if mask is None else mask & hit
            if end is not None:
                hit = cols.start[lo:hi] <= end
                mask = hit if mask is None else mask & hit
            parts.append(np.arange(lo, hi) if mask is None else lo + np.nonzero(mask)[0])
        rows = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if spatial and rows.size:
            needs = np.zeros(rows.size, dtype=bool)
            for _, box in spatial:
                if box is None:
                    needs[:] = True
                else:  # as in _exact: a box footprint, or one inside the query bbox, intersects it
                    bw, bs, be, bn = box
                    inside = (cols.xmin[rows] >= bw) & (cols.xmax[rows] <= be) & (cols.ymin[rows] >= bs) & (
                        cols.ymax[rows] <= bn
                    )
                    needs |= ~(cols.geom_is_box[rows] | inside)
            if needs.any():
                tested = rows[needs]
                geoms = shapely.from_wkb(self._wkb(cols, tested))
                hit = np.ones(tested.size, dtype=bool)
                for geom, _ in spatial:
                    hit &= shapely.intersects(geoms, geom)
                ok = np.ones(rows.size, dtype=bool)
                ok[np.nonzero(needs)[0][~hit]] = False
                rows = rows[ok]
        matched = int(rows.size)
        wanted = offset + req.limit
        ranks = cols.rank[rows]
        if rows.size > 4 * wanted:  # the first ``wanted`` in rank order without sorting every candidate
            first = np.argpartition(ranks, wanted - 1)[:wanted]
            ordered = rows[first[np.argsort(ranks[first], kind="stable")]]
        else:
            ordered = rows[np.argsort(ranks, kind="stable")]
        return _ranges(cols, ordered[offset:wanted]), matched

    def _wkb(self, cols: Columns, rows: np.ndarray) -> list[bytes]:
        """The footprints of ``rows`` as WKB: from memory, or from Parquet for the large ones."""
        out: list[bytes | None] = []
        missing: list[int] = []
        view = memoryview(cols.wkb)
        for k, row in enumerate(rows.tolist()):
            lo = int(cols.wkb_offset[row])
            if lo >= 0:
                out.append(bytes(view[lo : int(cols.wkb_end[row])]))
            else:
                out.append(None)
                missing.append(k)
        if missing:
            wanted = [int(rows[k]) for k in missing]
            found = dict(
                self._cursor()
                .execute(
                    f"SELECT row, CAST(geometry AS BLOB) FROM items WHERE row IN ({', '.join('?' * len(wanted))})",
                    wanted,
                )
                .fetchall()
            )
            for k, row in zip(missing, wanted, strict=True):
                out[k] = bytes(found[row])
        return out  # type: ignore[return-value]

    def _with_evaluator(self, req: SearchRequest, where: Sql) -> SearchPage:
        """The in-memory evaluator over the candidates the SQL part leaves (a superset of the answer)."""
        rows = (
            self._cursor()
            .execute(f"SELECT blob_offset, blob_length, raw_length FROM items WHERE {where.text}", where.params)
            .fetchall()
        )
        lines = []
        for k, row in enumerate(rows):
            if k % RESIDUAL_CHECK_EVERY == 0:
                req.check_deadline()
            blob = self._read(*row)
            lines.append(item_index.untemplate(blob) if self.meta.templates else blob)
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            mini = EmbeddedIndex(
                snapshot.Snapshot(self.etag, list(self.collections.values()), b"\n".join(lines)), self.asset_base
            )
        finally:
            if gc_was_enabled:
                gc.enable()
        return mini.search(req)

    # --- output -------------------------------------------------------------------------------
    def _read(self, offset: int, length: int, raw_length: int) -> bytes:
        packed = os.pread(self._blobs, int(length), int(offset))
        return zlib.decompressobj(zdict=self._zdict).decompress(packed, int(raw_length))

    def render(self, raw: bytes, include: set[str] | None = None, exclude: set[str] | None = None) -> dict[str, Any]:
        if self.meta.templates:  # the hrefs that resolve to a key are the mark and the key
            item = orjson.loads(item_index.split_template(raw)[1])
            mark, skip = item_index.ASSET_MARK, len(item_index.ASSET_MARK)
            for asset in (item.get("assets") or {}).values():
                href = asset.get("href") if isinstance(asset, dict) else None
                if isinstance(href, str) and href.startswith(mark):
                    asset["href"] = self.asset_base + href[skip:]
        else:
            item = orjson.loads(raw)
            for asset in item.get("assets", {}).values():
                key = snapshot.resolve_key(snapshot.PREFIX, asset.get("href", ""))
                if key is not None:
                    asset["href"] = self.asset_base + key
        item["links"] = []
        return apply_fields(item, include or set(), exclude or set())

    def item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        row = (
            self._cursor()
            .execute(
                "SELECT blob_offset, blob_length, raw_length FROM items WHERE collection = ? "
                "AND id = ? ORDER BY rank LIMIT 1",
                [collection_id, item_id],
            )
            .fetchone()
        )
        return self.render(self._read(*row)) if row else None


def _ranges(cols: Columns, rows: np.ndarray) -> list[tuple[int, int, int]]:
    return list(
        zip(
            cols.blob_offset[rows].tolist(),
            cols.blob_length[rows].tolist(),
            cols.raw_length[rows].tolist(),
            strict=True,
        )
    )


def _s_intersects_literal(node: Any) -> dict[str, Any] | None:
    """The GeoJSON literal of ``s_intersects(geometry, <literal>)`` (either order), else None."""
    if not isinstance(node, dict) or str(node.get("op", "")).lower() != "s_intersects":
        return None
    args = node.get("args") or []
    if len(args) != 2:
        return None
    for a, b in (args, args[::-1]):
        if (
            isinstance(a, dict)
            and a.get("property") in ("geometry", "properties.geometry")
            and isinstance(b, dict)
            and "type" in b
        ):
            return b
    return None


class IndexedBackend:
    """:class:`CatalogBackend` over the snapshot's search index under a storage root, reopened when the
    snapshot changes (its etag is polled every ``reload_interval_s``)."""

    def __init__(
        self,
        storage: Storage,
        *,
        asset_base_url: str | None = None,
        reload_interval_s: float = 10.0,
        load_columns: str = "background",
    ) -> None:
        self.storage = storage
        self.load_columns = load_columns  # see IndexedIndex
        self.asset_base = (asset_base_url or storage.url("x")[:-1]).rstrip("/") + "/"
        self.reload_interval_s = reload_interval_s
        self._lock = threading.Lock()
        self._index: IndexedIndex | None = None
        self._checked = 0.0
        self.loads = 0
        self.rebuilds = 0
        self.last_load_s = 0.0

    def index(self) -> IndexedIndex:
        idx = self._index
        if idx is not None and time.monotonic() - self._checked < self.reload_interval_s:
            return idx
        with self._lock:
            if self._index is not None and time.monotonic() - self._checked < self.reload_interval_s:
                return self._index
            etag = snapshot.read_etag(self.storage)
            if self._index is None or etag != self._index.etag:
                started = time.perf_counter()
                # the previous index is not closed here: searches in flight on it finish, then it is collected
                self._index = self._open()
                self.last_load_s = time.perf_counter() - started
                self.loads += 1
            self._checked = time.monotonic()
            return self._index

    def _open(self) -> IndexedIndex:
        try:
            doc = json.loads(self.storage.get_bytes(snapshot.INDEX_KEY))
            etag = str(doc["etag"])
        except Exception as exc:  # read_etag just succeeded: a concurrent rewrite, or a damaged index
            raise snapshot.SnapshotError(f"cannot read {snapshot.INDEX_KEY} under {self.storage.root}: {exc}") from exc
        collections = json.loads(self.storage.get_bytes(doc["collections"]["key"]))
        entry = doc.get("search_index") or {}
        prefix = entry.get("prefix")
        if prefix and entry.get("format") in item_index.READABLE_FORMATS:
            try:
                folder, owned = self._local_folder(prefix)
                return IndexedIndex(
                    etag, collections, folder, self.asset_base, owned=owned, load_columns=self.load_columns
                )
            except (OSError, ValueError, snapshot.SnapshotError) as exc:
                reason = f"the search index {prefix} is unusable ({exc})"
        else:
            reason = "the snapshot has no search index (published by an older version)"
        # rebuilt for this process from the snapshot's items: correct, but slow at a national size
        started = time.perf_counter()
        snap = snapshot.read(self.storage)
        folder, _ = item_index.build_in_temp(list(snapshot.iter_items(snap.items_ndjson)), snap.etag)
        log.warning(
            "%s under %s: rebuilt in %.1f s into %s; run `ocsge publish` to build it once for every server",
            reason,
            self.storage.root,
            time.perf_counter() - started,
            folder,
        )
        self.rebuilds += 1
        return IndexedIndex(
            snap.etag, snap.collections, folder, self.asset_base, owned=True, load_columns=self.load_columns
        )

    def _local_folder(self, prefix: str) -> tuple[Path, bool]:
        """The index folder on this machine: in place on local storage, else downloaded once."""
        if isinstance(self.storage, LocalStorage):
            folder = Path(self.storage.url(prefix + item_index.PARQUET_NAME)).parent
            if not (folder / item_index.PARQUET_NAME).is_file() or not (folder / item_index.BLOBS_NAME).is_file():
                raise snapshot.SnapshotError(f"missing {prefix}{item_index.PARQUET_NAME} or {item_index.BLOBS_NAME}")
            return folder, False
        folder = Path(tempfile.mkdtemp(prefix="ocsge-index-"))
        try:
            for name in (item_index.BLOBS_NAME, item_index.PARQUET_NAME):
                (folder / name).write_bytes(self.storage.get_bytes(prefix + name))
        except Exception as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise snapshot.SnapshotError(f"cannot download {prefix}: {exc}") from exc
        return folder, True

    def collections(self) -> list[dict[str, Any]]:
        return list(self.index().collections.values())

    def collection(self, collection_id: str) -> dict[str, Any] | None:
        return self.index().collections.get(collection_id)

    def search(self, request: SearchRequest) -> SearchPage:
        return self.index().search(request)

    def search_encoded(self, request: SearchRequest) -> EncodedPage | None:
        return self.index().search_encoded(request)

    def item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        return self.index().item(collection_id, item_id)

    def version(self) -> str:
        return self.index().etag

    def close(self) -> None:
        with self._lock:
            if self._index is not None:
                self._index.close()
                self._index = None


__all__ = ["IndexUnavailable", "IndexedBackend", "IndexedIndex"]
