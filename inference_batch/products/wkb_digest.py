"""Digests of WKB polygons straight from an Arrow binary column: a 128-bit fingerprint and the area of
each, without building GEOS geometries.

Why: between two millésimes of OCS GE most polygons are unchanged, coordinate for coordinate. A
difference only needs, for those, to know that they are identical and how large they are; parsing
them into GEOS (``shapely.from_wkb``), writing them back to WKB to compare them and measuring them
costs more than all the real geometric work on the few polygons that changed. One numba pass over the
column's buffers does it at memory speed.

Two WKB values have the same fingerprint when they have the same type, parts, rings and coordinate bits
— i.e. the same bytes, for the little-endian 2D Polygon/MultiPolygon WKB that GeoParquet writers
produce. Anything else (big-endian, Z/M, EWKB, other types, nulls, empties) is flagged, so that the
caller handles it with GEOS. The area is GEOS's formula (``Area::ofRingSigned``: shoelace from the
first vertex; |shell| − Σ|holes|), so it matches ``shapely.area`` to the last bits or nearly.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa

OK, MISSING, OTHER = 0, 1, 2  # status of a row: digested; null or empty; not a 2D little-endian polygon

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_P1 = np.uint64(0x100000001B3)
_P2 = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0x2545F4914F6CDD1D)


@numba.njit(inline="always")
def _mix(w: np.uint64) -> np.uint64:  # splitmix64's finaliser: every input bit moves every output bit
    w = (w ^ (w >> np.uint64(30))) * _M1
    w = (w ^ (w >> np.uint64(27))) * _M2
    return w ^ (w >> np.uint64(31))


@numba.njit(inline="always")
def _u32(data: np.ndarray, p: int) -> np.uint64:
    return (
        np.uint64(data[p])
        | (np.uint64(data[p + 1]) << np.uint64(8))
        | (np.uint64(data[p + 2]) << np.uint64(16))
        | (np.uint64(data[p + 3]) << np.uint64(24))
    )


@numba.njit(inline="always")
def _u64(data: np.ndarray, p: int) -> np.uint64:
    return _u32(data, p) | (_u32(data, p + 4) << np.uint64(32))


@numba.njit(cache=True, nogil=True)
def _digest(
    data: np.ndarray,
    offsets: np.ndarray,
    valid: np.ndarray,
    h1: np.ndarray,
    h2: np.ndarray,
    area: np.ndarray,
    status: np.ndarray,
) -> None:
    bits = np.empty(2, dtype=np.uint64)
    coord = bits.view(np.float64)
    for row in range(len(offsets) - 1):
        start, end = offsets[row], offsets[row + 1]
        status[row] = OTHER
        area[row] = 0.0
        if not valid[row] or end - start < 9:
            status[row] = MISSING
            continue
        if data[start] != 1:
            continue
        kind = _u32(data, start + 1)
        if kind != 3 and kind != 6:
            continue
        a = _SEED ^ kind
        b = _P2 ^ kind
        n_polygons = 1
        p = start + 5
        if kind == 6:
            n_polygons = int(_u32(data, p))
            p += 4
        total = 0.0
        points = 0
        bad = False
        for _ in range(n_polygons):
            if kind == 6:
                if p + 9 > end or data[p] != 1 or _u32(data, p + 1) != 3:
                    bad = True
                    break
                p += 5
            n_rings = int(_u32(data, p))
            p += 4
            a = (a * _P1) ^ _mix(np.uint64(n_rings) + np.uint64(1))
            for ring in range(n_rings):
                n = int(_u32(data, p))
                p += 4
                points += n
                if p + 16 * n > end:
                    bad = True
                    break
                a = (a * _P1) ^ _mix(np.uint64(n) + _P2)
                b = (b + _mix(np.uint64(n) ^ _SEED)) * _P2
                # GEOS Area::ofRingSigned: x measured from the first vertex, y of the neighbours
                bits[0] = _u64(data, p)
                x0 = coord[0]
                s = 0.0
                for i in range(n):
                    q = p + 16 * i
                    wx = _u64(data, q)
                    wy = _u64(data, q + 8)
                    # one mix per coordinate pair, folded into two differently built sums
                    m = _mix(wx ^ ((wy << np.uint64(29)) | (wy >> np.uint64(35))) ^ _SEED)
                    a = (a * _P1) ^ m
                    b = (b + (m ^ wy)) * _P2
                    if 0 < i < n - 1:
                        bits[0] = wx
                        bits[1] = _u64(data, q + 16 + 8)
                        y1 = coord[1]
                        bits[1] = _u64(data, q - 16 + 8)
                        s += (coord[0] - x0) * (coord[1] - y1)
                ring_area = abs(s / 2.0) if n >= 3 else 0.0
                total += ring_area if ring == 0 else -ring_area
                p += 16 * n
            if bad:
                break
        if bad or p != end:
            continue
        h1[row] = a
        h2[row] = b
        area[row] = total
        status[row] = OK if points > 0 else MISSING


def digest(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(h1, h2, area, status)`` of each WKB value of a binary column (rows whose status is not
    :data:`OK` have no fingerprint: measure or compare them with GEOS)."""
    if isinstance(column, pa.ChunkedArray):
        parts = [digest(chunk) for chunk in column.chunks]
        if not parts:
            empty = np.zeros(0, np.uint64)
            return empty, empty.copy(), np.zeros(0), np.zeros(0, np.int8)
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        raise TypeError(f"expected a WKB binary column, got {column.type}")
    n = len(column)
    _validity, offsets_buf, data_buf = column.buffers()
    offset_type = np.int64 if pa.types.is_large_binary(column.type) else np.int32
    offsets = np.frombuffer(
        offsets_buf, dtype=offset_type, count=n + 1, offset=column.offset * np.dtype(offset_type).itemsize
    )
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    h1 = np.zeros(n, np.uint64)
    h2 = np.zeros(n, np.uint64)
    area = np.zeros(n)
    status = np.zeros(n, np.int8)
    _digest(data, offsets.astype(np.int64), valid, h1, h2, area, status)
    return h1, h2, area, status
