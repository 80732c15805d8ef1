"""What the catalogue reads from an artifact itself: size and SHA-256, raster grid (COG), extent and CRS
(GeoParquet ``geo`` metadata, PMTiles header), and provenance written by the producing step.

Everything is read through :class:`ocsge.storage.Storage` by ranges, so a local folder and S3 behave the
same and a large GeoParquet or archive is never downloaded whole to learn its extent.

Provenance conventions for writers (all optional; the catalogue falls back on the product's defaults):
- COG: GDAL dataset tags ``OCSGE_SOURCE`` (``official`` | ``auto``), ``OCSGE_MODEL``, ``OCSGE_CHECKPOINT``
  (name or digest of the weights), ``OCSGE_SOFTWARE_VERSION``;
- GeoParquet / Parquet: key-value metadata ``ocsge`` holding a JSON object with the same keys in lower case
  (``source``, ``model``, ``checkpoint``, ``software_version``).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

from catalog.pmtiles import PMTilesHeaderError, read_header
from ocsge.errors import OcsgeError
from ocsge.storage import Storage, sha256_of

WGS84 = "EPSG:4326"
_EDGE_POINTS = 4  # points per edge when a native bbox is turned into a WGS 84 footprint


class ArtifactReadError(OcsgeError):
    """An artifact whose metadata cannot be read (corrupt file, unexpected format)."""


@dataclass(frozen=True)
class Provenance:
    source: str | None = None
    model: str | None = None
    checkpoint: str | None = None
    software_version: str | None = None

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Provenance:
        def get(name: str) -> str | None:
            value = values.get(name)
            return str(value) if value not in (None, "") else None

        return cls(get("source"), get("model"), get("checkpoint"), get("software_version"))


@dataclass(frozen=True)
class Extent:
    """Where an artifact lies: CRS of the data, native bbox, and its WGS 84 footprint and bbox."""

    epsg: int | None
    native_bbox: tuple[float, float, float, float] | None
    geometry: dict[str, Any] | None  # GeoJSON in WGS 84
    bbox: tuple[float, float, float, float] | None  # WGS 84


@dataclass(frozen=True)
class RasterGrid:
    shape: tuple[int, int]  # rows, cols
    transform: tuple[float, float, float, float, float, float]
    dtype: str
    nodata: float | int | None
    count: int
    resolution: float
    has_colormap: bool


@dataclass(frozen=True)
class ArtifactInfo:
    key: str
    size: int
    sha256: str
    etag: str | None
    extent: Extent | None = None
    raster: RasterGrid | None = None
    provenance: Provenance = field(default_factory=Provenance)
    num_rows: int | None = None
    zooms: tuple[int, int] | None = None

    @property
    def multihash(self) -> str:
        """``file:checksum`` value: multihash of SHA2-256 (code 0x12, length 0x20) in hex."""
        return "1220" + self.sha256


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over ``Storage.get_range``: pyarrow and zipfile read only what they need."""

    def __init__(self, storage: Storage, key: str, size: int) -> None:
        self.storage, self.key, self.size, self.pos = storage, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.size - self.pos)
        if want <= 0:
            return 0
        data = self.storage.get_range(self.key, self.pos, want)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def footprint(epsg: int, bbox: tuple[float, float, float, float]) -> tuple[dict[str, Any], tuple[float, ...]]:
    """WGS 84 polygon and bbox of a native bbox, with densified edges so curved projections stay inside."""
    from rasterio.warp import transform

    xmin, ymin, xmax, ymax = bbox
    n = _EDGE_POINTS
    xs = [xmin + (xmax - xmin) * i / n for i in range(n)] + [xmax] * n
    ys = [ymin] * n + [ymin + (ymax - ymin) * i / n for i in range(n)]
    xs += [xmax - (xmax - xmin) * i / n for i in range(n)] + [xmin] * n
    ys += [ymax] * n + [ymax - (ymax - ymin) * i / n for i in range(n)]
    lons, lats = transform(f"EPSG:{epsg}", WGS84, xs, ys)
    ring = [[round(x, 7), round(y, 7)] for x, y in zip(lons, lats, strict=True)]
    ring.append(ring[0])
    wgs_bbox = (min(lons), min(lats), max(lons), max(lats))
    return {"type": "Polygon", "coordinates": [ring]}, tuple(round(v, 7) for v in wgs_bbox)


def _extent(epsg: int | None, native: tuple[float, float, float, float] | None) -> Extent:
    if epsg is None or native is None:
        return Extent(epsg, native, None, None)
    if epsg == 4326:
        w, s, e, n = native
        ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
        return Extent(epsg, native, {"type": "Polygon", "coordinates": [ring]}, native)
    geometry, bbox = footprint(epsg, native)
    return Extent(epsg, native, geometry, bbox)  # type: ignore[arg-type]


def read_raster(storage: Storage, key: str) -> tuple[Extent, RasterGrid, Provenance]:
    import rasterio

    try:
        with rasterio.open(storage.gdal_path(key)) as src:
            epsg = src.crs.to_epsg() if src.crs else None
            b = src.bounds
            try:
                has_colormap = bool(src.colormap(1))
            except ValueError:
                has_colormap = False
            grid = RasterGrid(
                shape=(src.height, src.width),
                transform=tuple(src.transform)[:6],  # type: ignore[arg-type]
                dtype=src.dtypes[0],
                nodata=src.nodata,
                count=src.count,
                resolution=abs(src.transform.a),
                has_colormap=has_colormap,
            )
            tags = src.tags()
    except rasterio.errors.RasterioError as exc:
        raise ArtifactReadError(f"cannot read raster {key!r}: {exc}") from exc
    prov = Provenance.from_mapping({k.removeprefix("OCSGE_").lower(): v for k, v in tags.items()
                                    if k.startswith("OCSGE_")})
    return _extent(epsg, (b.left, b.bottom, b.right, b.top)), grid, prov


def _epsg_of_projjson(crs: Any) -> int | None:
    if crs is None:
        return 4326  # GeoParquet: a missing crs means OGC:CRS84
    if isinstance(crs, dict):
        ident = crs.get("id") or {}
        if str(ident.get("authority", "")).upper() == "EPSG":
            return int(ident["code"])
        if str(ident.get("authority", "")).upper() == "OGC" and str(ident.get("code")) == "CRS84":
            return 4326
    return None


def read_parquet(storage: Storage, key: str, size: int) -> tuple[Extent | None, int, Provenance]:
    """Extent from GeoParquet ``geo`` metadata (bbox, or the geometry column's bounds when absent)."""
    import pyarrow.parquet as pq

    try:
        with RangeFile(storage, key, size) as raw:
            pf = pq.ParquetFile(io.BufferedReader(raw, buffer_size=1 << 20))
            meta = pf.metadata
            kv = pf.schema_arrow.metadata or {}
            prov = Provenance.from_mapping(json.loads(kv[b"ocsge"])) if b"ocsge" in kv else Provenance()
            if b"geo" not in kv:
                return None, meta.num_rows, prov
            geo = json.loads(kv[b"geo"])
            column = geo.get("primary_column", "geometry")
            col_meta = geo.get("columns", {}).get(column, {})
            epsg = _epsg_of_projjson(col_meta.get("crs"))
            bbox = col_meta.get("bbox")
            if not bbox and meta.num_rows:
                import shapely

                table = pf.read(columns=[column])
                geoms = shapely.from_wkb(table.column(column).to_numpy(zero_copy_only=False))
                bbox = list(shapely.total_bounds(geoms))
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactReadError(f"cannot read GeoParquet metadata of {key!r}: {exc}") from exc
    native = tuple(float(v) for v in bbox[:4]) if bbox and len(bbox) in (4, 6) else None
    if bbox and len(bbox) == 6:
        native = (float(bbox[0]), float(bbox[1]), float(bbox[3]), float(bbox[4]))
    return _extent(epsg, native), meta.num_rows, prov  # type: ignore[arg-type]


def read_pmtiles(storage: Storage, key: str) -> tuple[Extent | None, tuple[int, int] | None]:
    """Bounds and zooms from the PMTiles v3 header (:func:`catalog.pmtiles.read_header`)."""
    try:
        header = read_header(storage, key)
    except PMTilesHeaderError as exc:
        raise ArtifactReadError(str(exc)) from None
    zooms = (header.min_zoom, header.max_zoom)
    if not header.valid_bounds:
        return None, zooms
    return _extent(4326, header.bounds), zooms


def read_artifact(
    storage: Storage, key: str, kind: str, *, known_sha256: dict[tuple[str, int, str | None], str] | None = None
) -> ArtifactInfo:
    """Size, checksum and what the format tells of an artifact. ``known_sha256`` maps (key, size, etag) to a
    digest computed by an earlier publish, so re-publishing unchanged national files does not re-hash them."""
    stat = storage.stat(key)
    cache_key = (key, stat.size, stat.etag)
    digest = (known_sha256 or {}).get(cache_key) if stat.etag else None
    if digest is None:
        digest = sha256_of(storage, key)
    info: dict[str, Any] = {}
    if kind == "raster":
        extent, grid, prov = read_raster(storage, key)
        info.update(extent=extent, raster=grid, provenance=prov)
    elif kind in ("vector", "table") and key.endswith(".parquet"):
        extent, rows, prov = read_parquet(storage, key, stat.size)
        info.update(extent=extent, num_rows=rows, provenance=prov)
    elif kind == "tiles":
        extent, zooms = read_pmtiles(storage, key)
        info.update(extent=extent, zooms=zooms)
    return ArtifactInfo(key=key, size=stat.size, sha256=digest, etag=stat.etag, **info)
