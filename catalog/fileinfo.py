"""What the catalogue reads from an artifact itself: size and SHA-256, raster grid (COG), extent and CRS
(GeoParquet ``geo`` metadata, PMTiles header), and provenance written by the producing step; and whether
the file is complete (:func:`check_complete`: every tile of a COG, the directories and tile data of a
PMTiles archive, the members of a zip lie inside the file), so that a file cut short is never catalogued.

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


# --- completeness: a file is catalogued only when every byte its structure points at is there -------

_TIFF_OFFSETS = {324: 325, 273: 279}  # TileOffsets → TileByteCounts, StripOffsets → StripByteCounts
_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}  # SHORT, LONG, LONG8
_MAX_IFDS = 4096


class _Reader:
    """Ranges of a stored object, refusing any that ends past the object's size."""

    def __init__(self, storage: Storage, key: str, size: int) -> None:
        self.storage, self.key, self.size = storage, key, size

    def read(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ArtifactReadError(f"{self.key!r} is truncated or corrupt: its {what} (bytes {offset}–"
                                    f"{offset + length}) lies beyond its {self.size} bytes")
        data = self.storage.get_range(self.key, offset, length) if length else b""
        if len(data) != length:
            raise ArtifactReadError(f"{self.key!r} is truncated: {len(data)} of {length} bytes of its {what} read")
        return data


def check_tiff(storage: Storage, key: str, size: int) -> int:
    """Every tile (or strip) of every image of a TIFF or BigTIFF — a COG's overviews and masks included —
    lies inside the file; the number of images. A COG cut short keeps a readable header (GDAL opens it,
    and a tile server answers 500 on the missing tiles): this reads the image directories, not the pixels."""
    import struct

    r = _Reader(storage, key, size)
    head = r.read(0, 16 if size >= 16 else 8, "header")
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None:
        raise ArtifactReadError(f"{key!r} is not a TIFF file")
    version = struct.unpack(order + "H", head[2:4])[0]
    if version == 42:
        big, first = False, struct.unpack(order + "I", head[4:8])[0]
    elif version == 43 and len(head) == 16:
        big, first = True, struct.unpack(order + "Q", head[8:16])[0]
    else:
        raise ArtifactReadError(f"{key!r} is not a TIFF file (version {version})")
    count_fmt, entry_size, value_size, next_fmt = ("Q", 20, 8, "Q") if big else ("H", 12, 4, "I")
    count_size = struct.calcsize(count_fmt)
    seen: set[int] = set()
    offset, images = first, 0
    while offset:
        if offset in seen or len(seen) >= _MAX_IFDS:
            raise ArtifactReadError(f"{key!r} is corrupt: its image directories loop")
        seen.add(offset)
        images += 1
        n = struct.unpack(order + count_fmt, r.read(offset, count_size, f"image directory {images}"))[0]
        table = r.read(offset + count_size, n * entry_size + value_size, f"image directory {images}")
        arrays: dict[int, tuple[int, ...]] = {}
        for i in range(n):
            entry = table[i * entry_size:(i + 1) * entry_size]
            tag, typ = struct.unpack(order + "HH", entry[:4])
            if tag not in (*_TIFF_OFFSETS, *_TIFF_OFFSETS.values()) or typ not in _TIFF_TYPES:
                continue
            fmt, width = _TIFF_TYPES[typ]
            count = struct.unpack(order + ("Q" if big else "I"), entry[4:4 + value_size])[0]
            raw = entry[4 + value_size:]
            if count * width > value_size:  # the values are elsewhere in the file, at this offset
                at = struct.unpack(order + ("Q" if big else "I"), raw)[0]
                raw = r.read(at, count * width, f"tile index of image {images}")
            arrays[tag] = struct.unpack(order + fmt * count, raw[:count * width])
        for offsets_tag, counts_tag in _TIFF_OFFSETS.items():
            offsets, counts = arrays.get(offsets_tag), arrays.get(counts_tag)
            if offsets is None:
                continue
            if counts is None or len(counts) != len(offsets):
                raise ArtifactReadError(f"{key!r} is corrupt: image {images} has no byte count for its tiles")
            for t, (at, length) in enumerate(zip(offsets, counts, strict=True)):
                if length and at + length > size:
                    raise ArtifactReadError(
                        f"{key!r} is truncated: tile {t} of image {images} ends at byte {at + length}, the file "
                        f"has {size} bytes")
        offset = struct.unpack(order + next_fmt, table[n * entry_size:])[0]
    if not images:
        raise ArtifactReadError(f"{key!r} has no image")
    return images


def check_pmtiles(storage: Storage, key: str, size: int) -> None:
    """The directories, metadata and tile data a PMTiles header points at lie inside the file."""
    try:
        header = read_header(storage, key)
    except PMTilesHeaderError as exc:
        raise ArtifactReadError(str(exc)) from None
    for what, offset, length in (("root directory", header.root_offset, header.root_length),
                                 ("metadata", header.metadata_offset, header.metadata_length),
                                 ("leaf directories", header.leaf_directory_offset, header.leaf_directory_length),
                                 ("tile data", header.tile_data_offset, header.tile_data_length)):
        if length and offset + length > size:
            raise ArtifactReadError(f"{key!r} is truncated: its {what} ends at byte {offset + length}, the file "
                                    f"has {size} bytes")


def check_zip(storage: Storage, key: str, size: int) -> None:
    """The central directory is there and every member lies inside the file."""
    import zipfile

    try:
        with RangeFile(storage, key, size) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 16)) as zf:
            for info in zf.infolist():
                if info.header_offset + info.compress_size > size:
                    raise ArtifactReadError(f"{key!r} is truncated: member {info.filename!r} ends past its "
                                            f"{size} bytes")
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArtifactReadError(f"{key!r} is not a complete zip archive: {exc}") from None


def check_complete(storage: Storage, key: str, size: int | None = None) -> None:
    """Refuse (:class:`ArtifactReadError` naming the key) a COG, PMTiles archive or zip that is cut short or
    whose structure points outside it; other formats are checked by reading their metadata."""
    size = storage.stat(key).size if size is None else size
    name = key.lower()
    if name.endswith((".tif", ".tiff")):
        check_tiff(storage, key, size)
    elif name.endswith(".pmtiles"):
        check_pmtiles(storage, key, size)
    elif name.endswith(".zip"):
        check_zip(storage, key, size)


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
    check_complete(storage, key, stat.size)  # a file cut short is refused, whatever its checksum
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
