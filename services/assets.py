"""Which artifacts exist and where: the one question every service asks the catalogue.

Services never take a path or URL from a request to a reader: they ask an :class:`AssetFinder` for the
assets of a product (optionally within a bbox and a time window) and read only the storage keys it
returns. The real implementation is the catalogue's search (:mod:`services.catalog_finder`); the
:class:`StorageAssetFinder` below derives the same answers from the canonical product keys of a storage
root, for tests and for a root that has not been published yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from catalog.pmtiles import read_header
from ocsge.errors import StorageUnavailable
from ocsge.gdal_env import GDAL_ENV
from ocsge.national import NATIONAL, parse_national_key
from ocsge.products import PRODUCTS, Kind, ParsedKey, millesime_token, parse_key
from ocsge.storage import LocalStorage, S3Storage, Storage, open_storage

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class AssetRef:
    """One readable artifact: its storage key plus what search needs to know about it."""

    product: str  # ocsge.products name, e.g. "couverture_cog"
    key: str  # storage key under the root (never a user string)
    departement: str  # code, e.g. "77", "S01"
    millesime: str  # "2021", or "2021-2024" for pair products
    bbox: BBox | None = None  # WGS84 lon/lat
    item_id: str | None = None  # STAC item id when it comes from the catalogue
    collection: str | None = None  # STAC collection id when it comes from the catalogue
    block: str | None = None
    size: int | None = None
    checksum: str | None = None  # "sha256:<hex>" when the catalogue knows it
    media_type: str | None = None

    @property
    def years(self) -> tuple[int, ...]:
        return tuple(int(y) for y in self.millesime.split("-"))

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


class AssetFinder(Protocol):
    """Search over the published artifacts (the catalogue's interface, seen from the services)."""

    storage: Storage

    def find(
        self,
        product: str,
        bbox: BBox | None = None,
        years: tuple[int, int] | None = None,
        departement: str | None = None,
    ) -> list[AssetRef]:
        """Assets of ``product`` intersecting ``bbox`` (WGS84) whose millésime(s) fall in ``years``
        (inclusive); for pair products ``years`` bounds the later millésime."""
        ...

    def version(self) -> str:
        """Changes whenever the set of assets changes (used in ETags and cache keys)."""
        ...


def intersects(a: BBox | None, b: BBox | None) -> bool:
    if a is None or b is None:
        return True
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def filter_assets(
    assets: Iterable[AssetRef],
    bbox: BBox | None = None,
    years: tuple[int, int] | None = None,
    departement_code: str | None = None,
) -> list[AssetRef]:
    out = []
    for asset in assets:
        if departement_code is not None and asset.departement != departement_code:
            continue
        if years is not None and not years[0] <= asset.years[-1] <= years[1]:
            continue
        if not intersects(asset.bbox, bbox):
            continue
        out.append(asset)
    # newest first: a mosaic shows the latest millésime where two overlap
    return sorted(out, key=lambda a: (a.years, a.departement, a.block or ""), reverse=True)


# --- a finder over the canonical keys of a storage root ---------------------------------------

def raster_bbox(storage: Storage, key: str) -> BBox | None:
    """WGS84 bounds of a raster artifact (read from its header); StorageUnavailable if GDAL cannot read it."""
    import rasterio
    from rasterio.errors import RasterioIOError
    from rasterio.warp import transform_bounds

    try:
        path = storage.gdal_path(key)
        with rasterio.Env(**gdal_env(path)), rasterio.open(path) as src:
            if src.crs is None:
                return None
            return tuple(transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21))  # type: ignore[return-value]
    except RasterioIOError as exc:
        storage.stat(key)  # ArtifactNotFound if it is gone, StorageUnavailable if the store does not answer
        raise StorageUnavailable(f"cannot read raster {key!r}: {exc}") from None


def pmtiles_bbox(storage: Storage, key: str) -> BBox | None:
    """WGS84 bounds from the PMTiles header (the one header reader, :mod:`catalog.pmtiles`)."""
    return read_header(storage, key).bounds


_REMOTE_ONLY = ("VSI_CACHE", "VSI_CACHE_SIZE")  # a per-handle read cache: pays for network reads only


def gdal_env(path: str | None = None) -> dict[str, object]:
    """GDAL options for reading COGs from S3 (serving-stack §2.6). The block cache size is process-wide (set
    from the environment at start), and rasterio.Env wants it as an int. A local file (``path`` not a
    ``/vsi…`` one) gets no per-handle VSI cache: 5 MB per open dataset × datasets per thread × threads
    made a soak of ``ocsge serve`` grow twice as fast (BENCHMARKS.md), for reads the OS page cache serves."""
    local = path is not None and not path.startswith("/vsi")
    return {k: v for k, v in GDAL_ENV.items() if k != "GDAL_CACHEMAX" and not (local and k in _REMOTE_ONLY)}


def parse_served_key(key: str) -> ParsedKey | None:
    """A per-département artifact's key, or a national file's (département ``FR``, :mod:`ocsge.national`)."""
    parsed = parse_key(key)
    if parsed is None and (national := parse_national_key(key)) is not None:
        return ParsedKey(national.product, NATIONAL, national.millesime)
    return parsed


@dataclass
class _Listing:
    at: float
    assets: dict[str, list[AssetRef]] = field(default_factory=dict)
    version: str = ""


class StorageAssetFinder:
    """Assets found by listing the canonical product keys of a storage root.

    Listings are cached for ``ttl_s`` seconds; bounds are read once per (key, etag).
    """

    PRODUCTS_SERVED: Sequence[str] = (
        "couverture_cog", "usage_cog", "artif_cog", "construction_cog", "prediction", "confidence", "difference_cog",
        "occupation_pmtiles", "difference_pmtiles", "archive", "stats_commune_csv", "stats_commune",
        # analyses for planners, served under /stats (services/stats/analyses.py)
        "portrait_stocks", "portrait_evolution", "portrait_report", "origine", "tache_urbaine_communes",
        "densification_csv", "renaturation_csv", "tvb_communes", "portrait_html", "analyses_pmtiles",
        "tache_urbaine_cog", "renaturation_cog",  # and their WMTS/WMS layers (services/tiles/layers.py)
        "imagery_rgb", "imagery_irc",  # orthophotos, served as ORTHOIMAGERY.ORTHOPHOTOS[.IRC] layers (tiles/ortho.py)
    )

    def __init__(self, storage: Storage | str | None = None, ttl_s: float = 30.0) -> None:
        self.storage: LocalStorage | S3Storage = (
            storage if isinstance(storage, LocalStorage | S3Storage) else open_storage(storage)  # type: ignore[arg-type]
        )
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._listing: _Listing | None = None
        self._bbox_cache: dict[tuple[str, str | None], BBox | None] = {}

    def _bbox(self, product: str, key: str, etag: str | None) -> BBox | None:
        """Bounds from the artifact's header. An asset that cannot be read is an error (StorageUnavailable,
        ArtifactNotFound if it vanished since the listing), never a bbox of None that would put it in every
        tile; only a raster without a CRS or a table has no bbox."""
        cache_key = (key, etag)
        if cache_key not in self._bbox_cache:
            kind = PRODUCTS[product].kind
            if kind is Kind.RASTER:
                box = raster_bbox(self.storage, key)
            elif kind is Kind.TILES:
                box = pmtiles_bbox(self.storage, key)
            else:
                box = None
            self._bbox_cache[cache_key] = box
        return self._bbox_cache[cache_key]

    def _scan(self) -> _Listing:
        listing = _Listing(at=time.monotonic())
        parts: list[str] = []
        for product in self.PRODUCTS_SERVED:
            ps = PRODUCTS.get(product)
            if ps is None:
                continue
            found: list[AssetRef] = []
            for info in self.storage.list(ps.folder + "/"):
                parsed = parse_served_key(info.key)  # only keys the product registry rebuilds exactly
                if parsed is None or parsed.product != product:
                    continue
                found.append(
                    AssetRef(
                        product=product,
                        key=info.key,
                        departement=parsed.departement,
                        millesime=millesime_token(parsed.millesime),
                        bbox=self._bbox(product, info.key, info.etag),
                        block=parsed.block,
                        size=info.size,
                        media_type=ps.media_type,
                    )
                )
                parts.append(f"{info.key}:{info.etag}")
            listing.assets[product] = found
        import hashlib

        listing.version = hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]
        return listing

    def _current(self) -> _Listing:
        with self._lock:
            if self._listing is None or time.monotonic() - self._listing.at > self.ttl_s:
                self._listing = self._scan()
            return self._listing

    def refresh(self) -> None:
        with self._lock:
            self._listing = None

    def find(
        self,
        product: str,
        bbox: BBox | None = None,
        years: tuple[int, int] | None = None,
        departement: str | None = None,
    ) -> list[AssetRef]:
        return filter_assets(self._current().assets.get(product, []), bbox, years, departement)

    def version(self) -> str:
        return self._current().version


