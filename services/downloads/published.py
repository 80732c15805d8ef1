"""Which storage keys are published: the only ones ``/files`` and ``/downloads`` may hand out.

A storage root holds much that is not for the public: restricted inputs (fichiers fonciers, raw IGN
deliveries, ground truth, uncatalogued imagery), internal reports, temporary files. A key is served only if
the catalogue publishes it — an asset of an item, as the :class:`~services.assets.AssetFinder` returns it
(the catalogue's search behind ``ocsge serve`` and the Lambdas; the served product list of a storage root
for :class:`~services.assets.StorageAssetFinder`). Being a key that :func:`ocsge.products.product_key`
could build is not enough.

The set is kept per product, built on the first request for that product from one ``finder.find`` (the
finder already holds those assets for tiles and searches), and dropped whenever ``finder.version()``
changes (a new publication). Lookups are one dictionary access. Memory is bounded by the catalogue itself:
products come from the registry (a request cannot add an entry: a key that does not parse is refused before
any lookup), and each product's table holds exactly its published keys.

No sidecar files are declared in the catalogue today (COG overviews are internal, checksums are in
``file:checksum``); a sidecar would be served only once an item declares it as an asset.
"""

from __future__ import annotations

import threading

from ocsge.products import parse_key
from services.assets import AssetFinder, AssetRef


class PublishedKeys:
    def __init__(self, finder: AssetFinder) -> None:
        self.finder = finder
        self._lock = threading.Lock()
        self._version: str | None = None
        self._by_product: dict[str, dict[str, AssetRef]] = {}

    def _table(self, product: str) -> dict[str, AssetRef]:
        version = self.finder.version()
        with self._lock:
            if version != self._version:
                self._by_product = {}
                self._version = version
            table = self._by_product.get(product)
        if table is None:
            table = {asset.key: asset for asset in self.finder.find(product)}
            with self._lock:
                if self._version == version:
                    self._by_product[product] = table
        return table

    def lookup(self, key: str) -> AssetRef | None:
        """The published asset stored under ``key``, or None (not a product key, or not published)."""
        parsed = parse_key(key)
        if parsed is None:
            return None
        return self._table(parsed.product).get(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.lookup(key) is not None
