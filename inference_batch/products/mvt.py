"""Mapbox Vector Tiles (spec 2.1) at the protobuf wire level: merge the tiles of several départements that
fall on the same tile into one, and read the attributes back (for tests and checks).

Only what a merge needs is parsed: layers by name, their key and value tables, and each feature's tags;
geometries are copied as bytes, so a merge loses nothing and costs little. Two layers of the same name
become one (the spec forbids two layers with one name in a tile) with the union of their keys and values.
``tile-join`` does the same, but the wheel's binary crashes on start, and this needs no process per tile.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

from ocsge.errors import OcsgeError

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
# Tile.layers = 3; Layer: name 1, features 2, keys 3, values 4, extent 5, version 15; Feature: tags 2
TILE_LAYERS = 3
L_NAME, L_FEATURES, L_KEYS, L_VALUES, L_EXTENT, L_VERSION = 1, 2, 3, 4, 5, 15
F_TAGS = 2


class MVTError(OcsgeError, ValueError):
    """Bytes that are not a vector tile we can merge."""


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise MVTError("truncated varint in a vector tile")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any, bytes]]:
    """(field number, wire type, value, the field's raw bytes) of a message."""
    pos = 0
    while pos < len(buf):
        start = pos
        tag, pos = _read_varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        value: Any
        if wire == VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == LENGTH:
            length, pos = _read_varint(buf, pos)
            value = buf[pos : pos + length]
            pos += length
        elif wire == FIXED64:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == FIXED32:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise MVTError(f"unsupported protobuf wire type {wire} in a vector tile")
        if pos > len(buf):
            raise MVTError("truncated vector tile")
        yield field, wire, value, buf[start:pos]


def _length_field(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | LENGTH) + _varint(len(data)) + data


def _packed(data: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(data):
        value, pos = _read_varint(data, pos)
        out.append(value)
    return out


def layer_name(layer: bytes) -> str:
    for field, _wire, value, _raw in _fields(layer):
        if field == L_NAME:
            return bytes(value).decode()
    raise MVTError("a vector tile layer without a name")


def layers(tile: bytes) -> list[bytes]:
    """The raw layers of an (uncompressed) tile, in order."""
    return [bytes(value) for field, wire, value, _raw in _fields(tile) if field == TILE_LAYERS and wire == LENGTH]


def _index_of(item: bytes, table: list[bytes], index: dict[bytes, int]) -> int:
    """The item's index in the merged table, appended on first sight."""
    found = index.get(item)
    if found is None:
        found = index[item] = len(table)
        table.append(item)
    return found


def _merge_layers(name: str, parts: Sequence[bytes]) -> bytes:
    keys: list[bytes] = []
    key_index: dict[bytes, int] = {}
    values: list[bytes] = []
    value_index: dict[bytes, int] = {}
    features: list[bytes] = []
    extent: int | None = None
    version = 2
    for part in parts:
        part_keys: list[bytes] = []
        part_values: list[bytes] = []
        part_features: list[bytes] = []
        part_extent = 4096  # the spec's default when a layer does not say
        for field, _wire, value, _raw in _fields(part):
            if field == L_KEYS:
                part_keys.append(bytes(value))
            elif field == L_VALUES:
                part_values.append(bytes(value))
            elif field == L_FEATURES:
                part_features.append(bytes(value))
            elif field == L_EXTENT:
                part_extent = value
            elif field == L_VERSION:
                version = max(version, value)
        if extent is None:
            extent = part_extent
        elif part_extent != extent:  # geometry would need rescaling: tilesets of one product share the extent
            raise MVTError(f"layer {name!r}: extents {extent} and {part_extent} differ; cannot merge")
        key_map = [_index_of(k, keys, key_index) for k in part_keys]
        value_map = [_index_of(v, values, value_index) for v in part_values]
        for feature in part_features:
            out = bytearray()
            for field, wire, value, raw in _fields(feature):
                if field == F_TAGS and wire == LENGTH:
                    tags = _packed(value)
                    if len(tags) % 2:
                        raise MVTError(f"layer {name!r}: a feature with an odd number of tags")
                    remapped = b"".join(
                        _varint(key_map[t]) if i % 2 == 0 else _varint(value_map[t]) for i, t in enumerate(tags)
                    )
                    out += _length_field(F_TAGS, remapped)
                else:
                    out += raw
            features.append(bytes(out))
    body = bytearray(_varint(L_VERSION << 3 | VARINT) + _varint(version))
    body += _length_field(L_NAME, name.encode())
    for feature in features:
        body += _length_field(L_FEATURES, feature)
    for key in keys:
        body += _length_field(L_KEYS, key)
    for value in values:
        body += _length_field(L_VALUES, value)
    body += _varint(L_EXTENT << 3 | VARINT) + _varint(extent or 4096)
    return bytes(body)


def merge_tiles(tiles: Sequence[bytes]) -> bytes:
    """One tile with the features of all ``tiles`` (uncompressed MVT bytes); layers of the same name merged,
    in the order they first appear. A layer found in one tile only is copied as it is."""
    by_name: dict[str, list[bytes]] = {}
    for tile in tiles:
        for layer in layers(tile):
            by_name.setdefault(layer_name(layer), []).append(layer)
    out = bytearray()
    for name, parts in by_name.items():
        out += _length_field(TILE_LAYERS, parts[0] if len(parts) == 1 else _merge_layers(name, parts))
    return bytes(out)


def _value(message: bytes) -> Any:
    for field, _wire, value, _raw in _fields(message):
        if field == 1:
            return bytes(value).decode()
        if field == 2:
            return struct.unpack("<f", value)[0]
        if field == 3:
            return struct.unpack("<d", value)[0]
        if field in (4, 5):
            return value if field == 5 or value < 1 << 63 else value - (1 << 64)
        if field == 6:
            return (value >> 1) ^ -(value & 1)
        if field == 7:
            return bool(value)
    return None


def feature_properties(tile: bytes) -> dict[str, list[dict[str, Any]]]:
    """Layer name → the attributes of each of its features (an uncompressed tile)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for layer in layers(tile):
        keys: list[str] = []
        values: list[Any] = []
        tags_of: list[list[int]] = []
        for field, _wire, value, _raw in _fields(layer):
            if field == L_KEYS:
                keys.append(bytes(value).decode())
            elif field == L_VALUES:
                values.append(_value(bytes(value)))
            elif field == L_FEATURES:
                tags = next((_packed(v) for f, w, v, _ in _fields(bytes(value)) if f == F_TAGS and w == LENGTH), [])
                tags_of.append(tags)
        out.setdefault(layer_name(layer), []).extend(
            {keys[t[i]]: values[t[i + 1]] for i in range(0, len(t), 2)} for t in tags_of
        )
    return out
