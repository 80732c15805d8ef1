"""The :class:`~services.assets.AssetFinder` over the STAC catalogue (embedded index or pgstac).

Per product, the items of its collection are fetched through the catalogue's search and kept until
``backend.version()`` changes (checked at most every ``check_interval_s``): a tile request then filters
a few hundred in-memory records instead of querying the catalogue, which keeps a fan-out of tile Lambdas
from exhausting pgstac connections (serving-stack §1). Storage keys are re-derived from the item's
product, département, millésime and block with :func:`ocsge.products.product_key`, and must match the
asset href: an item cannot point a service at a file outside the product layout.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from catalog.collections import BY_PRODUCT, COLLECTIONS
from catalog.national import NATIONAL_COLLECTION
from catalog.search.backends import open_backend
from catalog.search.base import CatalogBackend
from catalog.search.request import SearchRequest
from ocsge.errors import OcsgeError
from ocsge.national import NATIONAL, NATIONAL_PRODUCTS, national_key
from ocsge.products import PRODUCTS, product_key
from ocsge.storage import Storage, open_storage
from services.assets import AssetFinder, AssetRef, BBox, filter_assets

PAGE = 1000


def _checksum(asset: dict[str, Any]) -> str | None:
    """``file:checksum`` is a multihash (``1220`` + SHA-256 hex); services show ``sha256:<hex>``."""
    value = asset.get("file:checksum")
    if isinstance(value, str) and value.startswith("1220") and len(value) == 68:
        return "sha256:" + value[4:]
    return None


def locate(product: str) -> tuple[str, str] | None:
    """(collection id, asset key) holding a product: its own collection's data asset, else the companion
    asset of another collection (e.g. the CSV of the commune statistics)."""
    spec = BY_PRODUCT.get(product)
    if spec is not None:
        return spec.id, "data"
    for spec in COLLECTIONS:
        for companion in spec.companions:
            if companion.product == product:
                return spec.id, companion.asset
    return None


def asset_ref(product: str, item: dict[str, Any], asset_key: str = "data") -> AssetRef | None:
    """An asset of an item as an :class:`AssetRef`, or None if it does not follow the product layout."""
    props = item.get("properties", {})
    asset = item.get("assets", {}).get(asset_key)
    if asset is None:
        return None
    dep = props.get("ocsge:departement")
    year = props.get("ocsge:millesime")
    before = props.get("ocsge:millesime_avant")
    block = props.get("ocsge:block")
    try:
        millesime: Any = (int(before), int(year)) if PRODUCTS[product].pair else int(year)
        national = dep == NATIONAL and item.get("collection") == NATIONAL_COLLECTION.id
        key = national_key(product, millesime) if national else product_key(product, dep, millesime, block=block)
    except (OcsgeError, TypeError, ValueError, KeyError):
        return None
    href = str(asset.get("href", ""))
    if not (href == key or href.endswith("/" + key)):
        return None
    bbox = item.get("bbox")
    return AssetRef(
        product=product,
        key=key,
        departement=str(dep),
        millesime=f"{before}-{year}" if PRODUCTS[product].pair else str(year),
        bbox=tuple(float(v) for v in bbox[:4]) if bbox else None,  # type: ignore[arg-type]
        item_id=item.get("id"),
        collection=item.get("collection"),
        block=block,
        size=asset.get("file:size"),
        checksum=_checksum(asset),
        media_type=asset.get("type"),
    )


class CatalogAssetFinder:
    def __init__(self, backend: CatalogBackend, storage: Storage, check_interval_s: float = 10.0) -> None:
        self.backend = backend
        self.storage = storage
        self.check_interval_s = check_interval_s
        self._lock = threading.Lock()
        self._version: str | None = None
        self._checked = 0.0
        self._assets: dict[str, list[AssetRef]] = {}

    @classmethod
    def from_settings(cls) -> CatalogAssetFinder:
        storage = open_storage()
        return cls(open_backend(root=storage.root), storage)

    def version(self) -> str:
        now = time.monotonic()
        with self._lock:
            if self._version is not None and now - self._checked < self.check_interval_s:
                return self._version
        version = self.backend.version()
        with self._lock:
            if version != self._version:
                self._assets.clear()
                self._version = version
            self._checked = time.monotonic()
            return version

    def _all(self, product: str) -> list[AssetRef]:
        self.version()
        with self._lock:
            cached = self._assets.get(product)
        if cached is not None:
            return cached
        where = locate(product)
        found: list[AssetRef] = []
        if where is not None and self.backend.collection(where[0]) is not None:
            collection, asset_key = where
            token = None
            while True:
                page = self.backend.search(SearchRequest(collections=[collection], limit=PAGE, token=token))
                found += [ref for item in page.items if (ref := asset_ref(product, item, asset_key)) is not None]
                token = page.next_token
                if not token or not page.items:
                    break
        if product in NATIONAL_PRODUCTS and self.backend.collection(NATIONAL_COLLECTION.id) is not None:
            found += self._national(product)
        with self._lock:
            self._assets[product] = found
        return found

    def _national(self, product: str) -> list[AssetRef]:
        """The national files of a product (catalog.national), as assets of the département ``FR``."""
        found, token = [], None
        while True:
            page = self.backend.search(SearchRequest(collections=[NATIONAL_COLLECTION.id], limit=PAGE, token=token))
            found += [ref for item in page.items if item.get("properties", {}).get("ocsge:product") == product
                      and (ref := asset_ref(product, item)) is not None]
            token = page.next_token
            if not token or not page.items:
                return found

    def find(self, product: str, bbox: BBox | None = None, years: tuple[int, int] | None = None,
             departement: str | None = None) -> list[AssetRef]:
        return filter_assets(self._all(product), bbox, years, departement)


def default_finder() -> AssetFinder:
    """The finder for this deployment: the catalogue's search over ``OCSGE_STORAGE_ROOT`` (a root that
    has not been published yet has an empty catalogue; tests pass a :class:`StorageAssetFinder`)."""
    return CatalogAssetFinder.from_settings()
