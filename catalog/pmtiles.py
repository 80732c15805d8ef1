"""The one PMTiles v3 header reader (127 bytes, spec §3), for the catalogue (extent and zooms of a tiles
item), the services' finder (bounds) and the vector tile server (directories, metadata, tile type).

Plain ``struct`` parsing: no PMTiles library needed where only the header is read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ocsge.errors import OcsgeError
from ocsge.storage import Storage

HEADER_LENGTH = 127
_LAYOUT = struct.Struct("<7sB11Q4B2B4iB2i")  # magic, version, 11 offsets/counts, 4 flags, zooms, bounds, centre


class PMTilesHeaderError(OcsgeError, ValueError):
    """Bytes that are not a PMTiles v3 header."""


@dataclass(frozen=True)
class PMTilesHeader:
    root_offset: int
    root_length: int
    metadata_offset: int
    metadata_length: int
    leaf_directory_offset: int
    leaf_directory_length: int
    tile_data_offset: int
    tile_data_length: int
    addressed_tiles_count: int
    tile_entries_count: int
    tile_contents_count: int
    clustered: bool
    internal_compression: int  # 1 none, 2 gzip, 3 brotli, 4 zstd
    tile_compression: int
    tile_type: int  # 1 mvt, 2 png, 3 jpeg, 4 webp, 5 avif
    min_zoom: int
    max_zoom: int
    min_lon_e7: int
    min_lat_e7: int
    max_lon_e7: int
    max_lat_e7: int
    center_zoom: int
    center_lon_e7: int
    center_lat_e7: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.min_lon_e7 / 1e7, self.min_lat_e7 / 1e7, self.max_lon_e7 / 1e7, self.max_lat_e7 / 1e7)

    @property
    def valid_bounds(self) -> bool:
        w, s, e, n = self.bounds
        return -180 <= w < e <= 180 and -90 <= s < n <= 90

    @property
    def center(self) -> tuple[float, float, int]:
        return (self.center_lon_e7 / 1e7, self.center_lat_e7 / 1e7, self.center_zoom)


def parse_header(data: bytes, name: str = "PMTiles archive") -> PMTilesHeader:
    if len(data) < HEADER_LENGTH:
        raise PMTilesHeaderError(f"{name!r} is not a PMTiles v3 archive (only {len(data)} bytes)")
    magic, version, *values = _LAYOUT.unpack_from(data, 0)
    if magic != b"PMTiles" or version != 3:
        raise PMTilesHeaderError(f"{name!r} is not a PMTiles v3 archive")
    values[11] = bool(values[11])
    return PMTilesHeader(*values)


def read_header(storage: Storage, key: str) -> PMTilesHeader:
    """The header of a stored archive (one range read)."""
    return parse_header(storage.get_range(key, 0, HEADER_LENGTH), key)
