"""The snapshot: every collection and item in two files that a server loads in one read, plus a small
index whose ``etag`` changes exactly when they do, so servers poll one tiny object to know when to reload.

Layout under the storage root (``stac/snapshot/``): ``collections.json`` (a JSON list), ``items.ndjson.gz``
(one item per line, gzip with a zero timestamp so identical content gives identical bytes) and
``index.json``. Asset hrefs are relative to the snapshot folder (``../../occupation/…``).

The search index the embedded backend queries in place (:mod:`catalog.search.item_index`) is built from the
same items by :func:`write`, under ``stac/snapshot/index-<etag16>/``, before ``index.json`` names it; index
folders of earlier snapshots are removed after it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from catalog.snapshot_keys import PREFIX, resolve_key
from ocsge.errors import OcsgeError
from ocsge.storage import Storage

__all__ = ["PREFIX", "resolve_key"]  # re-exported: the snapshot's readers import them from here
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
    return _encode(collections, [_dumps(item) for item in items])


def _encode(collections: list[dict[str, Any]], lines: list[bytes]) -> tuple[bytes, bytes, bytes]:
    from catalog.search import item_index

    coll_bytes = _dumps(collections)
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
        "search_index": {"prefix": item_index.index_prefix(PREFIX, etag), "format": item_index.FORMAT},
    }
    return coll_bytes, items_gz, json.dumps(index, indent=1, sort_keys=True).encode()


def write(storage: Storage, collections: list[dict[str, Any]], items: Iterable[dict[str, Any]]) -> str:
    """Write the snapshot (data and search index first, ``index.json`` last: a reader never sees an index
    without its data). Idempotent: an unchanged snapshot whose files are all there is not rewritten."""
    lines = [_dumps(item) for item in items]
    coll_bytes, items_gz, index = _encode(collections, lines)
    etag = json.loads(index)["etag"]
    search_prefix = json.loads(index)["search_index"]["prefix"]
    has_search_index = _has_search_index(storage, search_prefix, etag)
    try:
        if read_etag(storage) == etag and storage.exists(COLLECTIONS_KEY) and storage.exists(ITEMS_KEY) \
                and has_search_index and storage.get_bytes(INDEX_KEY) == index:
            return etag  # unchanged: rewriting would only make every server reload for nothing
    except SnapshotError:
        pass
    try:  # the index servers may still have open: kept until the next snapshot replaces this one
        previous = str(json.loads(storage.get_bytes(INDEX_KEY))["search_index"]["prefix"])
    except (OcsgeError, ValueError, KeyError, TypeError):
        previous = search_prefix
    storage.put_bytes(COLLECTIONS_KEY, coll_bytes, "application/json")
    storage.put_bytes(ITEMS_KEY, items_gz, "application/gzip")
    if not has_search_index:
        _write_search_index(storage, search_prefix, lines, etag)
    storage.put_bytes(INDEX_KEY, index, "application/json")
    for info in list(storage.list(PREFIX + "index-")):  # listed whole before anything is deleted
        if not info.key.startswith((search_prefix, previous)):
            storage.delete(info.key)  # older snapshots' indexes: servers reopened on the new etag long ago
    return etag


def _has_search_index(storage: Storage, prefix: str, etag: str) -> bool:
    """The index folder is content-addressed and its files are written whole (blobs, then the Parquet file):
    the Parquet file being there means the index is complete; on local storage its etag is checked too."""
    from catalog.search import item_index
    from ocsge.storage import LocalStorage

    key = prefix + item_index.PARQUET_NAME
    if not storage.exists(key) or not storage.exists(prefix + item_index.BLOBS_NAME):
        return False
    if isinstance(storage, LocalStorage):
        try:
            return item_index.read_meta(storage.url(key)).etag == etag
        except (OSError, ValueError):
            return False
    return True


def _write_search_index(storage: Storage, prefix: str, lines: list[bytes], etag: str) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    from catalog.search import item_index

    folder = Path(tempfile.mkdtemp(prefix="ocsge-index-"))
    try:
        item_index.build(lines, etag, folder)
        storage.put_file(prefix + item_index.BLOBS_NAME, folder / item_index.BLOBS_NAME, "application/octet-stream")
        storage.put_file(prefix + item_index.PARQUET_NAME, folder / item_index.PARQUET_NAME,
                         "application/vnd.apache.parquet")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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


