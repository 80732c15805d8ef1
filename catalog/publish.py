"""``ocsge publish``: discover every artifact under a storage root, describe it in STAC, validate offline,
then write a static self-contained catalogue, the snapshot servers load, and optionally load pgstac.

Re-publishing unchanged artifacts rewrites nothing (same bytes, same snapshot etag); items whose files
disappeared leave the catalogue. Before anything is written every item is checked against the storage:
an asset that is missing, or whose size or SHA-256 differs from what its item declares, stops the
publication with a message naming the item, the asset and the key. Every file is also checked to be
complete (``catalog.fileinfo.check_complete``: a COG cut short keeps a readable header and its own
checksum), so that a truncated COG, PMTiles archive or zip is refused with its key named, before
anything is written; ``ocsge publish --verify`` re-hashes and re-checks the published files the same way.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from catalog import snapshot, stac
from catalog.collections import BY_ID, COLLECTIONS, CollectionSpec
from catalog.discover import Artifact, discover
from catalog.fileinfo import ArtifactInfo, ArtifactReadError, Extent, check_complete, read_artifact
from catalog.items import build_collection, build_item
from catalog.national import national_catalogue
from catalog.validate import validate
from ocsge.errors import OcsgeError
from ocsge.national import NATIONAL_PRODUCTS
from ocsge.products import PRODUCTS
from ocsge.storage import LocalStorage, Storage, sha256_of

STAC_PREFIX = "stac/"
CATALOG_KEY = STAC_PREFIX + "catalog.json"
STATE_KEY = STAC_PREFIX + "publish-state.json"  # digests of published files, reused while unchanged
CATALOG_ID = "ocsge"


class PublishError(OcsgeError):
    """An item that cannot be published as it stands (missing asset, checksum mismatch, invalid STAC)."""


@dataclass
class PublishResult:
    collections: int = 0
    items: int = 0
    written: int = 0  # static catalogue files whose content changed
    removed: int = 0  # static files of items that are gone
    snapshot_etag: str = ""
    pgstac_loaded: bool = False
    per_collection: dict[str, int] = field(default_factory=dict)


def _companion_products() -> set[str]:
    return {comp.product for spec in COLLECTIONS for comp in spec.companions}


def _load_state(storage: Storage) -> dict[str, Any]:
    try:
        return json.loads(storage.get_bytes(STATE_KEY))
    except (OcsgeError, ValueError):
        return {}


def build(
    storage: Storage,
    *,
    collections: Iterable[CollectionSpec] = COLLECTIONS,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Collections and items (asset hrefs relative to the root) for everything found; plus the new state."""
    specs = list(collections)
    state = _load_state(storage)
    known = {(k, v["size"], v["etag"]): v["sha256"] for k, v in state.get("files", {}).items()}
    wanted = {s.product for s in specs} | _companion_products()
    artifacts = list(discover(storage, sorted(wanted)))
    infos: dict[str, ArtifactInfo] = {}
    for artifact in artifacts:
        kind = PRODUCTS[artifact.product].kind.value
        try:
            infos[artifact.key] = read_artifact(storage, artifact.key, kind, known_sha256=known)
        except ArtifactReadError as exc:  # cut short or corrupt: nothing is written, the key is named
            raise PublishError(f"{exc}; refusing to publish (nothing was written)") from exc
        if progress:
            progress(1)

    by_slot: dict[tuple[str, Any], dict[str, Artifact]] = defaultdict(dict)
    for artifact in artifacts:
        if artifact.block is None:
            by_slot[artifact.slot][artifact.product] = artifact
    # Where a file has no geometry (CSV), borrow the footprint of another layer of the same département.
    dep_extent: dict[str, Extent] = {}
    for artifact in artifacts:
        ext = infos[artifact.key].extent
        if ext is not None and ext.geometry and ext.epsg not in (None, 4326):
            dep_extent.setdefault(artifact.departement.code, ext)
    for artifact in artifacts:
        ext = infos[artifact.key].extent
        if ext is not None and ext.geometry:
            dep_extent.setdefault(artifact.departement.code, ext)

    out_collections: list[dict[str, Any]] = []
    out_items: list[dict[str, Any]] = []
    for spec in specs:
        items = []
        for artifact in artifacts:
            if artifact.product != spec.product:
                continue
            companions = {}
            for comp in spec.companions:
                found = by_slot[artifact.slot].get(comp.product)
                if found is not None:
                    companions[comp.asset] = (found, infos[found.key])
            items.append(build_item(spec, artifact, infos[artifact.key], companions,
                                    dep_extent.get(artifact.departement.code)))
        if items:
            items.sort(key=lambda it: it["id"])
            out_collections.append(build_collection(spec, items))
            out_items.extend(items)
    if any(spec.product in NATIONAL_PRODUCTS for spec in specs):  # the national files, their own collection
        national, national_items, national_infos = national_catalogue(storage, known)
        infos.update(national_infos)
        if national is not None:
            out_collections.append(national)
            out_items.extend(national_items)
    new_state = {"files": {key: {"size": info.size, "etag": info.etag, "sha256": info.sha256}
                           for key, info in sorted(infos.items())}}
    return out_collections, out_items, new_state


def verify_item(storage: Storage, item: dict[str, Any], *, deep: bool = True,
                base: str = "") -> None:
    """Check every asset of an item against the storage: present, same size, same SHA-256 (``deep``).
    ``base`` is the key prefix the hrefs are relative to ('' for root-relative hrefs)."""
    for name, asset in item.get("assets", {}).items():
        href = asset.get("href", "")
        key = snapshot.resolve_key(base, href)
        where = f"item {item.get('id')!r} ({item.get('collection')}), asset {name!r}"
        if key is None:
            raise PublishError(f"{where}: href {href!r} is not under the storage root {storage.root}")
        try:
            size = storage.stat(key).size
        except OcsgeError:
            raise PublishError(f"{where}: no object {key!r} under {storage.root}; refusing to publish") from None
        if "file:size" in asset and asset["file:size"] != size:
            raise PublishError(f"{where}: {key!r} is {size} bytes, the item says {asset['file:size']}; "
                               "refusing to publish")
        if deep and "file:checksum" in asset:
            actual = "1220" + sha256_of(storage, key)
            if actual != asset["file:checksum"]:
                raise PublishError(f"{where}: checksum of {key!r} is {actual}, the item says "
                                   f"{asset['file:checksum']}; refusing to publish")
        if deep:  # a file catalogued while cut short has the checksum of its truncated bytes: read its structure
            try:
                check_complete(storage, key, size)
            except ArtifactReadError as exc:
                raise PublishError(f"{where}: {exc}; refusing to publish") from None


def with_hrefs(item: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A copy of an item whose root-relative asset hrefs get ``prefix`` (``../../`` or an absolute URL/)."""
    out = copy.deepcopy(item)
    for asset in out["assets"].values():
        asset["href"] = prefix + asset["href"]
    return out


def _static(collections: list[dict[str, Any]], items: list[dict[str, Any]],
            public_base: str | None = None) -> dict[str, dict[str, Any]]:
    """The static catalogue, with relative links (it can be copied anywhere). When the public URL of the
    storage root is known (an absolute ``asset_base_url``), it is a *relative published* catalogue in STAC's
    best practices: the root catalogue carries its absolute ``self`` link, everything else stays relative
    (pystac's ``CatalogType.RELATIVE_PUBLISHED``); otherwise it is self-contained, without ``self`` links."""
    files: dict[str, dict[str, Any]] = {}
    by_collection: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_collection[item["collection"]].append(item)
    root = {
        "type": "Catalog", "stac_version": stac.STAC_VERSION, "id": CATALOG_ID,
        "title": "OCS GE cloud",
        "description": "Occupation du sol à grande échelle (OCS GE) et produits dérivés, par département et "
                       "millésime.",
        "links": [{"rel": "root", "href": "./catalog.json", "type": stac.MEDIA_JSON}]
        + [{"rel": "child", "href": f"./{c['id']}/collection.json", "type": stac.MEDIA_JSON, "title": c["title"]}
           for c in collections],
    }
    if public_base:
        root["links"].insert(0, {"rel": "self", "href": f"{public_base.rstrip('/')}/{CATALOG_KEY}",
                                 "type": stac.MEDIA_JSON})
    files[CATALOG_KEY] = root
    for coll in collections:
        doc = copy.deepcopy(coll)
        doc["links"] = [
            {"rel": "root", "href": "../catalog.json", "type": stac.MEDIA_JSON},
            {"rel": "parent", "href": "../catalog.json", "type": stac.MEDIA_JSON},
            *doc["links"],
        ] + [{"rel": "item", "href": f"./items/{it['id']}.json", "type": stac.MEDIA_GEOJSON}
             for it in by_collection[coll["id"]]]
        files[f"{STAC_PREFIX}{coll['id']}/collection.json"] = doc
        for item in by_collection[coll["id"]]:
            doc_item = with_hrefs(item, "../../../")
            doc_item["links"] = [
                {"rel": "root", "href": "../../catalog.json", "type": stac.MEDIA_JSON},
                {"rel": "parent", "href": "../collection.json", "type": stac.MEDIA_JSON},
                {"rel": "collection", "href": "../collection.json", "type": stac.MEDIA_JSON},
            ]
            files[f"{STAC_PREFIX}{coll['id']}/items/{item['id']}.json"] = doc_item
    return files


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def publish(
    storage: Storage,
    *,
    pgstac_dsn: str | None = None,
    asset_base_url: str | None = None,
    extra_items: Iterable[dict[str, Any]] = (),
    progress: Callable[[int], None] | None = None,
) -> PublishResult:
    """Publish everything under ``storage``. ``extra_items`` (root-relative hrefs, collections among ours)
    are items built elsewhere, e.g. by a batch job; they are checked deeply against the storage.
    ``asset_base_url`` is the public base of the root for the hrefs loaded into pgstac (default: the
    storage's own URLs)."""
    with _exclusive(storage):
        return _publish(storage, pgstac_dsn=pgstac_dsn, asset_base_url=asset_base_url, extra_items=extra_items,
                        progress=progress)


@contextlib.contextmanager
def _exclusive(storage: Storage) -> Iterator[None]:
    """One publication at a time per local root: an advisory lock on the root folder itself (no lock file to
    leave behind; the kernel releases it even after a kill -9). Under it, the temporary files that a killed
    publication left beside the catalogue documents (``stac/…/.{name}.tmp-…``) are removed. On S3, the
    temporary keys of a killed write are under ``_tmp/``, which the bucket's lifecycle rule expires."""
    if not isinstance(storage, LocalStorage) or not storage.path.is_dir():
        yield
        return
    import fcntl

    fd = os.open(storage.path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PublishError(f"another publication is running on {storage.root}; try again when it is done") \
                from None
        for stray in (storage.path / STAC_PREFIX).rglob(".*.tmp-*"):
            if stray.is_file() and not stray.is_symlink():
                stray.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)  # releases the lock


def _publish(storage: Storage, *, pgstac_dsn: str | None, asset_base_url: str | None,
             extra_items: Iterable[dict[str, Any]], progress: Callable[[int], None] | None) -> PublishResult:
    collections, items, state = build(storage, progress=progress)
    extras = list(extra_items)
    for item in extras:
        if item.get("collection") not in BY_ID:
            raise PublishError(f"item {item.get('id')!r}: unknown collection {item.get('collection')!r}")
        verify_item(storage, item, deep=True)
    if extras:
        ids = {(it["collection"], it["id"]) for it in extras}
        items = [it for it in items if (it["collection"], it["id"]) not in ids] + extras
        present = {c["id"] for c in collections}
        for coll_id in sorted({it["collection"] for it in extras} - present):
            collections.append(build_collection(BY_ID[coll_id], [it for it in extras if it["collection"] == coll_id]))
    for item in items:
        verify_item(storage, item, deep=False)  # files hashed in this run: existence and size suffice
    public_base = asset_base_url if asset_base_url and asset_base_url.startswith(("https://", "http://")) else None
    static_docs = _static(collections, items, public_base)
    for obj in static_docs.values():  # the documents as written: with their links, as a reader gets them
        try:
            validate(obj)
        except OcsgeError as exc:
            raise PublishError(str(exc)) from exc

    result = PublishResult(collections=len(collections), items=len(items))
    for item in items:
        result.per_collection[item["collection"]] = result.per_collection.get(item["collection"], 0) + 1

    static = {key: _dump(doc) for key, doc in static_docs.items()}
    old = _load_state(storage).get("static", {})
    new_static_state: dict[str, str] = {}
    for key, data in static.items():
        digest = hashlib.sha256(data).hexdigest()
        new_static_state[key] = digest
        if old.get(key) != digest or not storage.exists(key):
            storage.put_bytes(key, data, stac.MEDIA_JSON)
            result.written += 1
    for key in old:
        if key not in static:
            storage.delete(key)
            result.removed += 1

    result.snapshot_etag = snapshot.write(
        storage, collections, (with_hrefs(it, "../../") for it in items)
    )
    state["static"] = new_static_state
    state_bytes = json.dumps(state, indent=0, sort_keys=True).encode()
    if _load_state(storage) != json.loads(state_bytes):
        storage.put_bytes(STATE_KEY, state_bytes, stac.MEDIA_JSON)

    if pgstac_dsn:
        from catalog.search import pgstac

        base = (asset_base_url or storage.url("x")[:-1]).rstrip("/") + "/"
        pgstac.load(pgstac_dsn, collections, [with_hrefs(it, base) for it in items])
        result.pgstac_loaded = True
    return result


def verify_published(storage: Storage) -> list[str]:
    """Deep check of the published snapshot against the files (for ``ocsge publish --verify``)."""
    snap = snapshot.read(storage)
    problems = []
    for line in snapshot.iter_items(snap.items_ndjson):
        item = json.loads(line)
        try:
            verify_item(storage, item, deep=True, base=snapshot.PREFIX)
        except PublishError as exc:
            problems.append(str(exc))
    return problems
