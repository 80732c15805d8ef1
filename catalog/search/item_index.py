"""The search index of the snapshot, built at publish time and queried in place (:mod:`catalog.search.indexed`).

Two files under ``stac/snapshot/index-<etag16>/`` (content-addressed: a server still reading the previous
index is never handed a file rewritten under it):

``items.parquet``
    GeoParquet 1.1 (WKB ``geometry`` with a ``bbox`` covering struct), one row per item, sorted by collection
    then by the Hilbert index of the footprint's centre, in row groups of :data:`ROW_GROUP_ROWS` with min/max
    statistics, so that DuckDB skips the row groups a collection or bbox filter excludes. Columns: ``row``
    (its own position), ``rank`` (the default order: datetime desc, id desc, as pgstac), ``collection``, ``id``,
    ``datetime`` (datetime or start_datetime, the sort key), ``start``/``end`` (POSIX seconds), flat
    ``xmin``…``ymax`` (pushed down as plain column filters), ``geom_is_box`` (the footprint is its bbox: a bbox
    test is exact), ``blob_offset``/``blob_length``, one ``p:<name>`` column per property whose values all have
    one JSON type (string, boolean, number), and an ``e:<name>`` column (POSIX seconds) per property with
    timestamp values. Key-value metadata ``ocsge:index``: format, the snapshot etag, the typed and the
    untyped (mixed) property names.
``items.blobs``
    Each item's JSON, zlib-compressed one by one with a shared dictionary (the file starts with it): a page
    reads and inflates 50 small ranges, nothing else. From format 2 each blob is a *template* of the item as
    the API serves it (:func:`template`): ``<collection>\\0<id>\\0<JSON>``, the JSON with each asset href
    that resolves to a storage key written as the key behind :data:`ASSET_MARK` and the ``links`` value as
    :data:`LINKS_MARK` — so that a server renders a page by replacing two marks in bytes (the asset base, the
    links of the request's URL), without parsing and re-serialising every item (≈ half the CPU of a search
    page). An index whose items contain the marks' text already is written without templates
    (``templates: false``, format-1 blobs: the snapshot lines).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

FORMAT = 2
READABLE_FORMATS = (1, 2)  # format 1: blobs are the snapshot lines (no templates)
ASSET_MARK = "\x00A"  # an asset href that resolves to a storage key: this mark, then the key
LINKS_MARK = "\x00L"  # the item's links value, replaced by the API's links
ASSET_MARK_JSON = b'"\\u0000A'  # how orjson writes the start of a string that begins with ASSET_MARK
LINKS_MARK_JSON = b'"\\u0000L"'  # how orjson writes the LINKS_MARK string
PARQUET_NAME = "items.parquet"
BLOBS_NAME = "items.blobs"
ROW_GROUP_ROWS = 4096  # ≈ 120 row groups at 5·10⁵ items: fine pruning, small footers
ZDICT_BYTES = 32 * 1024  # zlib's window: a preset dictionary of typical items (one per collection)
META_KEY = b"ocsge:index"
HILBERT_ORDER = 16


def index_prefix(snapshot_prefix: str, etag: str) -> str:
    return f"{snapshot_prefix}index-{etag[:16]}/"


@dataclass(frozen=True)
class IndexMeta:
    etag: str
    count: int
    typed: dict[str, str]  # property name → "string" | "boolean" | "integer" | "number"
    epochs: frozenset[str]  # properties with an e:<name> column
    mixed: frozenset[str]  # properties some item has, without a typed column (several JSON types, lists…)
    zdict_length: int  # the blobs file starts with the zlib dictionary its items were compressed with
    templates: bool = False  # blobs are templates (see the module docstring), else the snapshot lines

    @property
    def known(self) -> frozenset[str]:
        return frozenset(self.typed) | self.mixed


def hilbert(x: np.ndarray, y: np.ndarray, order: int = HILBERT_ORDER) -> np.ndarray:
    """Hilbert curve distance of integer cells ``x``, ``y`` in ``[0, 2**order)`` (vectorised xy2d)."""
    n = 1 << order
    x, y = x.astype(np.int64).copy(), y.astype(np.int64).copy()
    d = np.zeros(x.shape, dtype=np.int64)
    s = n >> 1
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        d += s * s * ((3 * rx.astype(np.int64)) ^ ry.astype(np.int64))
        flip = ~ry & rx
        x = np.where(flip, n - 1 - x, x)
        y = np.where(flip, n - 1 - y, y)
        swap = ~ry
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        s >>= 1
    return d


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if -(1 << 63) <= value < (1 << 63) else "mixed"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "mixed"


def _column_kind(kinds: set[str]) -> str:
    if kinds == {"integer", "number"}:
        return "number"
    return next(iter(kinds)) if len(kinds) == 1 else "mixed"


def _epoch_of_strings(values: list[Any]) -> np.ndarray | None:
    """POSIX seconds of the timestamp strings in ``values`` (NaN elsewhere), as the in-memory index parses
    them; None when none is a timestamp. Each distinct string is parsed once."""
    from catalog.search.epochs import epochs as _epochs

    # an RFC 3339 (or ISO 8601) instant starts with a four-digit year: nothing else needs a parse attempt
    distinct = {v for v in values if isinstance(v, str) and v[:4].isdigit()}
    if not distinct:
        return None
    parsed: dict[str, float] = {}
    for text in distinct:
        try:
            parsed[text] = float(_epochs([text])[0])
        except (ValueError, OverflowError):
            parsed[text] = float("nan")
    if all(np.isnan(v) for v in parsed.values()):
        return None
    return np.array([parsed.get(v, np.nan) if isinstance(v, str) else np.nan for v in values], dtype=np.float64)


def template(line: bytes, snapshot_prefix: str) -> bytes | None:
    """The blob of one snapshot line (see the module docstring); None when the item's text already holds a
    mark (then the index is written without templates)."""
    from catalog.snapshot_keys import resolve_key

    if b"\\u0000" in line or b"\x00" in line:
        return None
    item = orjson.loads(line)
    assets = item.get("assets")
    if isinstance(assets, dict):
        for asset in assets.values():
            href = asset.get("href", "") if isinstance(asset, dict) else None
            key = resolve_key(snapshot_prefix, href) if isinstance(href, str) else None
            if key is not None:
                asset["href"] = ASSET_MARK + key
    item["links"] = LINKS_MARK
    head = orjson.dumps([str(item.get("collection", "")), str(item.get("id", ""))])
    return head + b"\x00" + orjson.dumps(item)


def split_template(blob: bytes) -> tuple[bytes, bytes]:
    """(``["<collection>","<id>"]`` as JSON, the item's template JSON) of a template blob."""
    head, _, body = blob.partition(b"\x00")
    return head, body


def untemplate(blob: bytes) -> bytes:
    """A template blob back to an item's JSON as the snapshot has it, for the in-memory evaluator: asset
    hrefs relative to the snapshot (``../../<key>`` resolves to the key again), links empty."""
    _, body = split_template(blob)
    return body.replace(ASSET_MARK_JSON, b'"../../').replace(LINKS_MARK_JSON, b"[]")


def build(lines: Sequence[bytes], etag: str, folder: Path) -> IndexMeta:
    """Write ``items.parquet`` and ``items.blobs`` for the snapshot items ``lines`` into ``folder``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    from catalog.search.epochs import epochs as _epochs
    from catalog.search.request import InvalidSearch

    n = len(lines)
    props: list[dict[str, Any]] = []
    ids: list[str] = []
    colls: list[str] = []
    footprints: list[bytes | None] = []
    for line in lines:  # only what the columns need is kept: assets are most of an item's bytes
        item = orjson.loads(line)
        props.append(item.get("properties") or {})
        ids.append(str(item["id"]))
        colls.append(str(item["collection"]))
        footprints.append(orjson.dumps(item["geometry"]) if item.get("geometry") else None)
    dt = [p.get("datetime") or p.get("start_datetime") or "" for p in props]
    # the default order (datetime desc, id desc), as the in-memory index and pgstac
    by_default = sorted(range(n), key=lambda i: (dt[i], ids[i]), reverse=True)
    rank = np.empty(n, dtype=np.int32)
    rank[by_default] = np.arange(n, dtype=np.int32)

    def epochs(texts: list[Any]) -> np.ndarray:
        try:
            return _epochs(texts)
        except (InvalidSearch, ValueError):
            out = np.full(len(texts), np.nan)
            for i, t in enumerate(texts):
                with contextlib.suppress(InvalidSearch, ValueError):
                    out[i] = _epochs([t])[0]
            return out

    start = epochs([p.get("start_datetime") or p.get("datetime") for p in props])
    end = epochs([p.get("end_datetime") or p.get("datetime") for p in props])

    geoms = np.array([None] * n, dtype=object)
    with_geom = [i for i, f in enumerate(footprints) if f is not None]
    if with_geom:
        geoms[with_geom] = shapely.from_geojson([footprints[i] for i in with_geom])
    del footprints
    bounds = shapely.bounds(geoms)  # NaN where there is no geometry
    has_bounds = ~np.isnan(bounds[:, 0])
    boxes = shapely.box(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3])
    is_box = np.zeros(n, dtype=bool)
    if has_bounds.any():
        is_box[has_bounds] = shapely.equals(geoms[has_bounds], boxes[has_bounds])
    wkb = shapely.to_wkb(geoms)

    # physical order: collection, then the Hilbert index of the footprint's centre over the data extent
    cx = np.where(has_bounds, (bounds[:, 0] + bounds[:, 2]) / 2, 0.0)
    cy = np.where(has_bounds, (bounds[:, 1] + bounds[:, 3]) / 2, 0.0)
    h = np.zeros(n, dtype=np.int64)
    if has_bounds.any():
        lo_x, hi_x = cx[has_bounds].min(), cx[has_bounds].max()
        lo_y, hi_y = cy[has_bounds].min(), cy[has_bounds].max()
        cells = (1 << HILBERT_ORDER) - 1
        gx = np.clip((cx - lo_x) / max(hi_x - lo_x, 1e-12) * cells, 0, cells)
        gy = np.clip((cy - lo_y) / max(hi_y - lo_y, 1e-12) * cells, 0, cells)
        h = hilbert(gx.astype(np.int64), gy.astype(np.int64))
    coll_codes = {c: k for k, c in enumerate(sorted(set(colls)))}
    order = np.lexsort((rank, h, np.array([coll_codes[c] for c in colls], dtype=np.int64)))

    # blobs in physical order, after the shared dictionary
    from catalog.snapshot_keys import PREFIX

    blobs: list[bytes] = []
    templates = True
    for line in lines:
        blob = template(line, PREFIX)
        if blob is None:  # an item holds a mark's text: no templates for this index
            blobs, templates = list(lines), False
            break
        blobs.append(blob)
    zdict = _dictionary(blobs, colls)
    offsets = np.zeros(n, dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int32)
    raw_lengths = np.zeros(n, dtype=np.int32)
    folder.mkdir(parents=True, exist_ok=True)
    blobs_tmp = folder / f".{BLOBS_NAME}.tmp"
    with blobs_tmp.open("wb") as out:
        out.write(zdict)
        pos = len(zdict)
        for k, i in enumerate(order.tolist()):
            packer = zlib.compressobj(9, zdict=zdict)
            packed = packer.compress(blobs[i]) + packer.flush()
            out.write(packed)
            offsets[k], lengths[k], raw_lengths[k] = pos, len(packed), len(blobs[i])
            pos += len(packed)

    # property columns
    names = sorted({k for p in props for k in p})
    typed: dict[str, str] = {}
    mixed: set[str] = set()
    epoch_names: set[str] = set()
    columns: dict[str, pa.Array] = {}
    take = order.tolist()
    for name in names:
        values = [p.get(name) for p in props]
        kinds = {_kind(v) for v in values if v is not None}
        kind = _column_kind(kinds) if kinds else "mixed"
        ordered = [values[i] for i in take]
        if kind == "mixed":
            mixed.add(name)
        else:
            typed[name] = kind
            pa_type = {"string": pa.string(), "boolean": pa.bool_(), "integer": pa.int64(), "number": pa.float64()}[
                kind
            ]
            if kind == "number":
                ordered = [None if v is None else float(v) for v in ordered]
            columns[f"p:{name}"] = pa.array(ordered, type=pa_type)
        column_epochs = _epoch_of_strings(values) if name != "datetime" else None
        if column_epochs is not None:
            epoch_names.add(name)
            columns[f"e:{name}"] = pa.array(column_epochs[order], type=pa.float64(), from_pandas=True)

    def f64(a: np.ndarray) -> pa.Array:
        return pa.array(a[order], type=pa.float64(), from_pandas=True)  # NaN → null

    bbox_struct = pa.StructArray.from_arrays(
        [f64(bounds[:, k]) for k in range(4)], names=["xmin", "ymin", "xmax", "ymax"]
    )
    table = pa.table(
        {
            "row": pa.array(np.arange(n, dtype=np.int32)),
            "rank": pa.array(rank[order]),
            "collection": pa.array([colls[i] for i in take], type=pa.string()).dictionary_encode(),
            "id": pa.array([ids[i] for i in take], type=pa.string()),
            "datetime": pa.array([dt[i] for i in take], type=pa.string()),
            "start": f64(start),
            "end": f64(end),
            "xmin": f64(bounds[:, 0]),
            "ymin": f64(bounds[:, 1]),
            "xmax": f64(bounds[:, 2]),
            "ymax": f64(bounds[:, 3]),
            "geom_is_box": pa.array(is_box[order]),
            "blob_offset": pa.array(offsets),
            "blob_length": pa.array(lengths),
            "raw_length": pa.array(raw_lengths),
            "geometry": pa.array([wkb[i] for i in take], type=pa.binary()),
            "bbox": bbox_struct,
            **columns,
        }
    )
    del blobs
    meta = IndexMeta(etag, n, typed, frozenset(epoch_names), frozenset(mixed), len(zdict), templates)
    extent = [float(np.nanmin(bounds[:, k])) if has_bounds.any() else 0.0 for k in range(2)] + [
        float(np.nanmax(bounds[:, k])) if has_bounds.any() else 0.0 for k in range(2, 4)
    ]
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": sorted({g.geom_type for g in geoms[has_bounds]}) if has_bounds.any() else [],
                "bbox": extent,  # no "crs": OGC:CRS84, longitude/latitude
                "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}},
            }
        },
    }
    table = table.replace_schema_metadata(
        {
            b"geo": json.dumps(geo).encode(),
            META_KEY: json.dumps(
                {
                    "format": FORMAT,
                    "etag": etag,
                    "count": n,
                    "typed": typed,
                    "epochs": sorted(epoch_names),
                    "mixed": sorted(mixed),
                    "zdict_length": len(zdict),
                    "templates": templates,
                }
            ).encode(),
        }
    )
    parquet_tmp = folder / f".{PARQUET_NAME}.tmp"
    pq.write_table(table, parquet_tmp, row_group_size=ROW_GROUP_ROWS, compression="zstd", write_statistics=True)
    os.replace(blobs_tmp, folder / BLOBS_NAME)  # blobs first: the parquet names what they hold
    os.replace(parquet_tmp, folder / PARQUET_NAME)
    return meta


def read_meta(parquet_path: str | Path, connection: Any = None) -> IndexMeta:
    """The index's own description, read with DuckDB (no pyarrow at serving time); ``ValueError`` when the
    file is not an index of this format."""
    import duckdb

    con = connection or duckdb.connect()
    try:
        rows = con.execute(
            "SELECT value FROM parquet_kv_metadata(?) WHERE key = ?", [str(parquet_path), META_KEY]
        ).fetchall()
    except duckdb.Error as exc:
        raise ValueError(f"{parquet_path} cannot be read as Parquet: {exc}") from None
    if not rows:
        raise ValueError(f"{parquet_path} is not a catalogue search index (no {META_KEY.decode()} metadata)")
    doc = json.loads(rows[0][0])
    if doc.get("format") not in READABLE_FORMATS:
        raise ValueError(f"{parquet_path} has index format {doc.get('format')}, this version reads {READABLE_FORMATS}")
    return IndexMeta(
        str(doc["etag"]),
        int(doc["count"]),
        dict(doc["typed"]),
        frozenset(doc["epochs"]),
        frozenset(doc["mixed"]),
        int(doc["zdict_length"]),
        bool(doc.get("templates", False)),
    )


def _dictionary(lines: Sequence[bytes], collections: list[str]) -> bytes:
    """A zlib preset dictionary: one item of each collection, the most numerous last (zlib favours the end),
    within :data:`ZDICT_BYTES`. Items of one collection share most of their bytes (assets, classes, links)."""
    first: dict[str, int] = {}
    counts: dict[str, int] = {}
    for i, c in enumerate(collections):
        first.setdefault(c, i)
        counts[c] = counts.get(c, 0) + 1
    out = b""
    for c in sorted(counts, key=lambda c: (-counts[c], c)):
        sample = lines[first[c]]
        if len(out) + len(sample) > ZDICT_BYTES:
            break
        out = sample + out
    return out


def build_in_temp(lines: Sequence[bytes], etag: str) -> tuple[Path, IndexMeta]:
    """Build into a fresh temporary folder (a server rebuilding a missing or stale index for itself)."""
    folder = Path(tempfile.mkdtemp(prefix=f"ocsge-index-{etag[:12]}-"))
    return folder, build(lines, etag, folder)
