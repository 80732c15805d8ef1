"""PMTiles read by ranges from the storage (a local file or S3), with the header and directories cached.

The Python ``pmtiles.Reader`` caches nothing and re-reads the header and directories for every tile
(≈ 4 range reads per tile); keeping them per process brings that to ≈ 1 read per tile
(serving-stack §5). One :class:`PMTilesSource` per (key, size): a rewritten file gets a new source.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import OrderedDict
from functools import cached_property
from typing import Any

from pmtiles.tile import Compression, Entry, TileType, deserialize_directory, find_tile, zxy_to_tileid

from catalog.pmtiles import PMTilesHeader, parse_header
from ocsge.storage import Storage

HEADER_AND_ROOT = 16_384  # the spec puts header + root directory in the first 16 KiB
MEDIA_TYPES = {
    TileType.MVT: "application/vnd.mapbox-vector-tile",
    TileType.PNG: "image/png",
    TileType.JPEG: "image/jpeg",
    TileType.WEBP: "image/webp",
}


class PMTilesSource:
    def __init__(self, storage: Storage, key: str, max_directories: int = 256) -> None:
        self.storage = storage
        self.key = key
        self._lock = threading.Lock()
        self._dirs: OrderedDict[tuple[int, int], list[Entry]] = OrderedDict()
        self._max = max_directories
        self.reads = 0  # range reads issued, for tests and benchmarks

    def _read(self, offset: int, length: int) -> bytes:
        self.reads += 1
        return self.storage.get_range(self.key, offset, length)

    @cached_property
    def _head(self) -> bytes:
        return self._read(0, HEADER_AND_ROOT)

    @cached_property
    def header(self) -> PMTilesHeader:
        return parse_header(self._head, self.key)

    @cached_property
    def metadata(self) -> dict[str, Any]:
        h = self.header
        raw = self._read(h.metadata_offset, h.metadata_length)
        if h.internal_compression == Compression.GZIP.value:
            raw = gzip.decompress(raw)
        return json.loads(raw) if raw else {}

    def _directory(self, offset: int, length: int) -> list[Entry]:
        with self._lock:
            entries = self._dirs.get((offset, length))
            if entries is not None:
                self._dirs.move_to_end((offset, length))
                return entries
        in_head = offset + length <= len(self._head)
        entries = deserialize_directory(self._head[offset : offset + length] if in_head else self._read(offset, length))
        with self._lock:
            self._dirs[(offset, length)] = entries
            while len(self._dirs) > self._max:
                self._dirs.popitem(last=False)
        return entries

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES.get(TileType(self.header.tile_type), "application/octet-stream")

    @property
    def tile_compression(self) -> Compression:
        return Compression(self.header.tile_compression)

    @property
    def minzoom(self) -> int:
        return self.header.min_zoom

    @property
    def maxzoom(self) -> int:
        return self.header.max_zoom

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.header.bounds

    @property
    def center(self) -> tuple[float, float, int]:
        return self.header.center

    def vector_layers(self) -> list[dict[str, Any]]:
        return list(self.metadata.get("vector_layers", []))

    def get(self, z: int, x: int, y: int) -> bytes | None:
        """The tile's bytes as stored (possibly gzip-compressed, see :attr:`tile_compression`), or None."""
        if not (0 <= x < (1 << z) and 0 <= y < (1 << z)):
            return None
        tile_id = zxy_to_tileid(z, x, y)
        h = self.header
        offset, length = h.root_offset, h.root_length
        for _depth in range(4):
            entry = find_tile(self._directory(offset, length), tile_id)
            if entry is None:
                return None
            if entry.run_length == 0:
                offset, length = h.leaf_directory_offset + entry.offset, entry.length
                continue
            return self._read(h.tile_data_offset + entry.offset, entry.length)
        return None


class SourceCache:
    """Open sources per (key, size), least recently used evicted."""

    def __init__(self, storage: Storage, size: int = 64) -> None:
        self.storage = storage
        self.size = size
        self._lock = threading.Lock()
        self._sources: OrderedDict[tuple[str, int | None], PMTilesSource] = OrderedDict()

    def get(self, key: str, size: int | None) -> PMTilesSource:
        with self._lock:
            source = self._sources.get((key, size))
            if source is None:
                source = self._sources[(key, size)] = PMTilesSource(self.storage, key)
                while len(self._sources) > self.size:
                    self._sources.popitem(last=False)
            else:
                self._sources.move_to_end((key, size))
            return source
