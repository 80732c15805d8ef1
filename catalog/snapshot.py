"""The snapshot: every collection and item in two files that a server loads in one read, plus a small
index whose ``etag`` changes exactly when they do, so servers poll one tiny object to know when to reload.

Layout under the storage root (``stac/snapshot/``): ``collections.json`` (a JSON list), ``items.ndjson.gz``
(one item per line, gzip with a zero timestamp so identical content gives identical bytes) and
``index.json``. Asset hrefs are relative to the snapshot folder (``../../occupation/…``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ocsge.errors import OcsgeError
from ocsge.storage import Storage

PREFIX = "stac/snapshot/"
INDEX_KEY = PREFIX + "index.json"
COLLECTIONS_KEY = PREFIX + "collections.json"
ITEMS_KEY = PREFIX + "items.ndjson.gz"
FORMAT = 1


class SnapshotError(OcsgeError):
    """No snapshot under a root, or one that is damaged."""


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Snapshot:
    etag: str
    collections: list[dict[str, Any]]
    items_ndjson: bytes  # uncompressed, one item per line: parsed lazily by the index


def encode(collections: list[dict[str, Any]], items: Iterable[dict[str, Any]]) -> tuple[bytes, bytes, bytes]:
    """(collections.json, items.ndjson.gz, index.json) bytes for a snapshot."""
    coll_bytes = _dumps(collections)
    lines = [_dumps(item) for item in items]
    items_raw = b"\n".join(lines) + (b"\n" if lines else b"")
    items_gz = gzip.compress(items_raw, compresslevel=6, mtime=0)
    etag = hashlib.sha256(hashlib.sha256(coll_bytes).digest() + hashlib.sha256(items_raw).digest()).hexdigest()
    index = {
        "format": FORMAT,
        "etag": etag,
        "collections": {"key": COLLECTIONS_KEY, "count": len(collections),
                        "sha256": hashlib.sha256(coll_bytes).hexdigest()},
        "items": {"key": ITEMS_KEY, "count": len(lines), "sha256": hashlib.sha256(items_gz).hexdigest(),
                  "size": len(items_gz)},
    }
    return coll_bytes, items_gz, json.dumps(index, indent=1, sort_keys=True).encode()


def write(storage: Storage, collections: list[dict[str, Any]], items: Iterable[dict[str, Any]]) -> str:
    """Write the snapshot (data first, index last: a reader never sees an index without its data)."""
    coll_bytes, items_gz, index = encode(collections, items)
    etag = json.loads(index)["etag"]
    try:
        if read_etag(storage) == etag and storage.exists(COLLECTIONS_KEY) and storage.exists(ITEMS_KEY):
            return etag  # unchanged: rewriting would only make every server reload for nothing
    except SnapshotError:
        pass
    storage.put_bytes(COLLECTIONS_KEY, coll_bytes, "application/json")
    storage.put_bytes(ITEMS_KEY, items_gz, "application/gzip")
    storage.put_bytes(INDEX_KEY, index, "application/json")
    return etag


def read_etag(storage: Storage) -> str:
    try:
        return str(json.loads(storage.get_bytes(INDEX_KEY))["etag"])
    except OcsgeError as exc:
        raise SnapshotError(f"no STAC snapshot under {storage.root} ({INDEX_KEY}): run `ocsge publish` first") from exc
    except (ValueError, KeyError) as exc:
        raise SnapshotError(f"damaged snapshot index {INDEX_KEY} under {storage.root}: {exc}") from exc


def read(storage: Storage) -> Snapshot:
    """Load the snapshot; checks the items file against the index so a half-updated pair is detected."""
    try:
        index = json.loads(storage.get_bytes(INDEX_KEY))
    except OcsgeError as exc:
        raise SnapshotError(f"no STAC snapshot under {storage.root} ({INDEX_KEY}): run `ocsge publish` first") from exc
    items_gz = storage.get_bytes(index["items"]["key"])
    if hashlib.sha256(items_gz).hexdigest() != index["items"]["sha256"]:
        raise SnapshotError(f"snapshot {ITEMS_KEY} under {storage.root} does not match its index (being rewritten?)")
    collections = json.loads(storage.get_bytes(index["collections"]["key"]))
    return Snapshot(index["etag"], collections, gzip.decompress(items_gz))


def iter_items(raw: bytes) -> Iterator[bytes]:
    for line in raw.split(b"\n"):
        if line:
            yield line


def resolve_key(base: str, href: str) -> str | None:
    """Storage key of an href relative to the key prefix ``base`` (None when absolute or outside the root)."""
    if "://" in href or href.startswith("/"):
        return None
    parts = [p for p in base.split("/") if p]
    for part in href.split("/"):
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts) or None
