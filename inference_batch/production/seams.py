"""The pieces of a region traced in adjacent blocks, joined by their seam edges instead of a general union.

What the tracer guarantees (:func:`~inference_batch.production.components.trace_regions`): the pieces are
polygons on the pixel grid (integer corners, axis-parallel edges), one per 4-connected piece of a block,
shells and holes oriented by the piece being on one side; they form a correctly noded coverage, and along a
block's edges every pixel corner is a vertex. So where a region runs across a seam, its pieces on both
sides hold the same unit edges along it, once in each direction, and nowhere else do two pieces of a region
share an edge (in one block they would be one piece). Hence the join, per region, in numba:

1. every ring's edges, directed with the region on their left (shells counter-clockwise);
2. each edge cancelled against its reverse: what is cancelled are the seam edges inside the region;
3. the edges left chained into closed rings; where a ring meets itself at a corner (two cells of the region
   touching by that corner only), it turns left, hugging the cell it came along — the tracer's
   4-connectivity — and a loop closed at a corner visited before is cut off there, so that every ring is
   simple (a shell and the hole that touches it at a corner are two rings, as the tracer gives them);
4. rings with positive area are shells, the others holes, each hole given to the only shell whose bounding
   box holds its own, else to the smallest shell holding the midpoint of one of its edges.

Then the vertices the seams left behind: a pixel corner on a seam line (a block edge inside the mosaic,
:class:`Grid`, or any line along which edges were cancelled) where the boundary goes straight through is
a vertex only because the tracer keeps every corner along a block's edges. It is dropped — in every
polygon at once, so that neighbours keep sharing their vertices — unless a boundary turns there (a
junction: one of the polygons meeting there turns) or it lies on the edge of the mosaic: the polygons are
then those that tracing the whole raster in one block would give, vertex for vertex.

Where a region's pieces break those guarantees — a corner that is not on the grid, an edge that is not
axis-parallel, an edge held twice the same way, edges along one line that overlap without being the same
(a seam not noded), a corner with more than two edges out, a hole in no shell — it is united by GEOS's
``coverage_union_all`` instead, counted in ``Stitched.fallbacks``, and its vertices on seam lines are kept
in every neighbour. The result stays a correctly noded coverage for ``shapely.coverage_simplify``.

Why: on a 1 Gpx raster whose regions span dozens of 4 096² blocks, ``coverage_union_all`` held +171 MB of
segment tables over the traced pieces (RSS 316 → 487 MB) and took 1.8 s; the join holds each region's edges
as a few int32 arrays (316 → 384 MB, 0.9 s), the coverage simplification after it setting the peak.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numba
import numpy as np
import shapely

OK = 0
NOT_ON_GRID = 1  # a corner off the grid, an edge that is not axis-parallel, an open or empty ring
EDGE_TWICE = 2  # an edge held twice the same way, or by more than two pieces
OVERLAP = 3  # two edges along one line that overlap without being the same: a seam not noded
BRANCHING = 4  # a corner with more than two edges out
OPEN_CHAIN = 5  # the edges left do not close into rings
STRAY_HOLE = 6  # a hole in no shell, or no shell at all
SINGLE_CHUNK = 4096  # regions of one piece read at a time (memory: their rings, not the whole coverage's)


@dataclass
class Stitched:
    """One geometry per region (``ids`` ascending); how many regions were joined across seams, and how many
    of them fell back to ``coverage_union_all``."""

    ids: list[int]
    geoms: list[shapely.Geometry]
    joined: int
    fallbacks: int


@dataclass
class _Rings:
    """Polygons as open rings of pixel corners (no closing vertex): ring r is ``start[r]:start[r + 1]``;
    ``polygon`` per ring (0…, shells and holes of a polygon together), ``hole`` per ring, ``region`` per
    polygon (non-decreasing); ``turn``: whether the boundary turns at each vertex."""

    x: np.ndarray  # int32
    y: np.ndarray
    start: np.ndarray
    turn: np.ndarray
    polygon: np.ndarray
    hole: np.ndarray
    region: np.ndarray


# --- kernels ---------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _failed(
    code: int,
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    z = np.zeros(0, np.int64)
    return code, np.zeros(0, np.int32), np.zeros(0, np.int32), z, np.zeros(0, np.bool_), z.copy(), z.copy()


@numba.njit(cache=True, nogil=True)
def _direction(dx: int, dy: int) -> int:
    """0: +x, 1: +y, 2: −x, 3: −y — counter-clockwise, so that (new − old) mod 4 = 1 is a left turn."""
    if dx > 0:
        return 0
    if dy > 0:
        return 1
    if dx < 0:
        return 2
    return 3


@numba.njit(cache=True, nogil=True)
def _overlapping(
    tid: np.ndarray, hid: np.ndarray, along: np.ndarray, across: np.ndarray, sel: np.ndarray, a0: int, c0: int, n: int
) -> bool:
    """Whether two of the edges ``sel`` (all parallel) overlap — touching ends do not: ``along`` is the
    corners' coordinate that stays constant along them (their line, from ``a0``), ``across`` the other one
    (from ``c0``, under ``c0 + n``)."""
    if len(sel) < 2:
        return False
    key = np.empty(len(sel), np.int64)
    for k in range(len(sel)):
        s = sel[k]
        key[k] = (along[tid[s]] - a0) * n + min(across[tid[s]], across[hid[s]]) - c0
    last_line, reach = a0 - 1, c0 - 1
    for k in np.argsort(key):
        s = sel[k]
        line, lo, hi = along[tid[s]], min(across[tid[s]], across[hid[s]]), max(across[tid[s]], across[hid[s]])
        if line == last_line and lo < reach:
            return True
        if line != last_line:
            last_line, reach = line, hi
        else:
            reach = max(reach, hi)
    return False


@numba.njit(cache=True, nogil=True)
def _join_rings(
    x: np.ndarray, y: np.ndarray, ring_start: np.ndarray, exterior: np.ndarray
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The closed rings of a region's pieces (ring r: ``ring_start[r]:ring_start[r + 1]``, its last vertex
    the first again; ``exterior``: shells) joined by cancelling each edge against its reverse, then chained
    into simple rings (module docstring). Returns status, the vertices of the open rings (x, y), their
    starts, whether the boundary turns at each, and the lines of the seams found (x of the cancelled
    vertical edges, y of the horizontal ones)."""
    n_rings = len(ring_start) - 1
    n_seg = len(x) - n_rings
    if n_rings == 0 or n_seg <= 0:
        return _failed(NOT_ON_GRID)
    x0, y0 = x.min(), y.min()
    span = y.max() - y0 + 1
    tail = np.empty(n_seg, np.int64)
    head = np.empty(n_seg, np.int64)
    k = 0
    for r in range(n_rings):
        s, e = ring_start[r], ring_start[r + 1]
        if e - s < 5 or x[s] != x[e - 1] or y[s] != y[e - 1]:
            return _failed(NOT_ON_GRID)
        area = 0
        for i in range(s, e - 1):  # from the ring's first corner: no overflow on a large grid
            area += (x[i] - x[s]) * (y[i + 1] - y[s]) - (x[i + 1] - x[s]) * (y[i] - y[s])
        if area == 0:
            return _failed(NOT_ON_GRID)
        flip = (area > 0) != exterior[r]  # shells counter-clockwise, holes clockwise: the region on the left
        for i in range(s, e - 1):
            if (x[i + 1] == x[i]) == (y[i + 1] == y[i]):  # diagonal, or a repeated corner
                return _failed(NOT_ON_GRID)
            a = (x[i] - x0) * span + (y[i] - y0)
            b = (x[i + 1] - x0) * span + (y[i + 1] - y0)
            if flip:
                a, b = b, a
            tail[k], head[k] = a, b
            k += 1
    corners = np.unique(tail)  # every head is the tail of the ring's next edge
    nv = len(corners)
    tid = np.searchsorted(corners, tail).astype(np.int32)  # int32 from here on: corners and edges < 2³¹
    hid = np.searchsorted(corners, head).astype(np.int32)
    tail = np.zeros(0, np.int64)  # freed: the kernel's memory is a few arrays of the edges
    head = np.zeros(0, np.int64)
    cx = (corners // span + x0).astype(np.int32)
    cy = (corners % span + y0).astype(np.int32)
    corners = np.zeros(0, np.int64)
    # 2. cancel each edge against its reverse: sort the edges on their (undirected) pair of corners
    pair = np.minimum(tid, hid).astype(np.int64) * nv + np.maximum(tid, hid)
    order = np.argsort(pair)
    alive = np.ones(n_seg, np.bool_)
    i = 0
    while i < n_seg:
        j = i + 1
        while j < n_seg and pair[order[j]] == pair[order[i]]:
            j += 1
        if j - i > 2:
            return _failed(EDGE_TWICE)
        if j - i == 2:
            if tid[order[i]] == tid[order[i + 1]]:
                return _failed(EDGE_TWICE)
            alive[order[i]] = alive[order[i + 1]] = False
        i = j
    pair = np.zeros(0, np.int64)
    order = np.zeros(0, np.int64)
    # the seam lines: where edges were cancelled
    vertical = cx[tid] == cx[hid]
    seam_x = np.unique(cx[tid[~alive & vertical]]).astype(np.int64)
    seam_y = np.unique(cy[tid[~alive & ~vertical]]).astype(np.int64)
    # the edges left must not overlap along a line (they would, were a seam not noded on both sides)
    xspan = cx.max() - x0 + 1
    if _overlapping(tid, hid, cx, cy, np.flatnonzero(alive & vertical), x0, y0, span) or _overlapping(
        tid, hid, cy, cx, np.flatnonzero(alive & ~vertical), y0, x0, xspan
    ):
        return _failed(OVERLAP)
    # 3. chain: the edges out of each corner (at most two: two cells of the region touching by a corner)
    ptr = np.zeros(nv + 1, np.int64)
    n_alive = 0
    for s in range(n_seg):
        if alive[s]:
            ptr[tid[s] + 1] += 1
            n_alive += 1
    for v in range(nv):
        if ptr[v + 1] > 2:
            return _failed(BRANCHING)
        ptr[v + 1] += ptr[v]
    adj = np.empty(n_alive, np.int32)
    fill = ptr[:-1].copy()
    direction = np.empty(n_seg, np.int8)
    for s in range(n_seg):
        if alive[s]:
            adj[fill[tid[s]]] = s
            fill[tid[s]] += 1
            direction[s] = _direction(cx[hid[s]] - cx[tid[s]], cy[hid[s]] - cy[tid[s]])
    used = ~alive
    pos = np.full(nv, -1, np.int32)  # the place of a corner on the current path, −1 when not on it
    path = np.empty(n_alive + 1, np.int32)
    out_dir = np.empty(n_alive + 1, np.int8)  # the direction of the edge leaving each corner of the path
    out_v = np.empty(n_alive, np.int32)
    out_turn = np.empty(n_alive, np.bool_)
    out_start = np.empty(n_alive + 1, np.int64)
    m = rings = 0
    for s0 in range(n_seg):
        if used[s0]:
            continue
        path[0] = tid[s0]
        pos[tid[s0]] = 0
        length = 1
        cur = s0
        while True:
            used[cur] = True
            out_dir[length - 1] = direction[cur]
            w = hid[cur]
            p = pos[w]
            if p >= 0:  # back at a corner of the path: the loop from there is a ring
                out_start[rings] = m
                for q in range(p, length):
                    arrive = direction[cur] if q == p else out_dir[q - 1]
                    out_v[m] = path[q]
                    out_turn[m] = arrive != out_dir[q]
                    m += 1
                rings += 1
                for q in range(p + 1, length):
                    pos[path[q]] = -1
                length = p + 1
            else:
                pos[w] = length
                path[length] = w
                length += 1
            best, best_rank = -1, -1
            for t in range(ptr[w], ptr[w + 1]):
                s = adj[t]
                if used[s]:
                    continue
                turn = (np.int64(direction[s]) - np.int64(direction[cur]) + 4) % 4
                rank = 3 if turn == 1 else (2 if turn == 0 else (1 if turn == 3 else 0))  # left first
                if rank > best_rank:
                    best, best_rank = s, rank
            if best < 0:
                break
            cur = best
        if length != 1:
            return _failed(OPEN_CHAIN)
        pos[path[0]] = -1
    out_start[rings] = m
    return (
        OK,
        cx[out_v[:m]],
        cy[out_v[:m]],
        out_start[: rings + 1].copy(),
        out_turn[:m].copy(),
        seam_x,
        seam_y,
    )


@numba.njit(cache=True, nogil=True)
def _inside(x: np.ndarray, y: np.ndarray, s: int, e: int, px: float, py: float) -> bool:
    """Whether (px, py) is inside the open ring ``s:e`` (crossings of a ray towards +x)."""
    inside = False
    for i in range(s, e):
        j = i + 1 if i + 1 < e else s
        if (y[i] > py) != (y[j] > py):
            cross = x[i] + (py - y[i]) * (x[j] - x[i]) / (y[j] - y[i])
            if px < cross:
                inside = not inside
    return inside


@numba.njit(cache=True, nogil=True)
def _shells_and_holes(x: np.ndarray, y: np.ndarray, start: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Per open ring: its polygon (shells numbered in order) and whether it is a hole — a hole belongs to
    the only shell whose bounding box holds its own, else to the smallest that holds the midpoint of its
    first edge (not on any other ring: edges do not overlap, and a midpoint is no corner)."""
    n = len(start) - 1
    area = np.zeros(n, np.int64)
    box = np.empty((n, 4), np.int64)
    for r in range(n):
        s, e = start[r], start[r + 1]
        a = 0
        for i in range(s, e):
            j = i + 1 if i + 1 < e else s
            a += (x[i] - x[s]) * (y[j] - y[s]) - (x[j] - x[s]) * (y[i] - y[s])
        area[r] = a
        box[r, 0], box[r, 1] = x[s:e].min(), y[s:e].min()
        box[r, 2], box[r, 3] = x[s:e].max(), y[s:e].max()
    hole = area < 0
    polygon = np.full(n, -1, np.int64)
    shells = np.flatnonzero(~hole)
    if len(shells) == 0:
        return STRAY_HOLE, polygon, hole
    for k in range(len(shells)):
        polygon[shells[k]] = k
    candidates = np.empty(len(shells), np.int64)
    for h in np.flatnonzero(hole):
        n = 0  # the shells whose box holds the hole's: the hole lies in one of them (the region is around it)
        for sh in shells:
            if np.all(box[sh, :2] <= box[h, :2]) and np.all(box[sh, 2:] >= box[h, 2:]):
                candidates[n] = sh
                n += 1
        if n == 0:
            return STRAY_HOLE, polygon, hole
        best = candidates[0]
        if n > 1:  # the smallest that holds the midpoint of the hole's first edge
            s = start[h]
            px, py = (x[s] + x[s + 1]) / 2.0, (y[s] + y[s + 1]) / 2.0
            best = -1
            for sh in candidates[:n][np.argsort(area[candidates[:n]])]:
                if _inside(x, y, start[sh], start[sh + 1], px, py):
                    best = sh
                    break
            if best < 0:
                return STRAY_HOLE, polygon, hole
        polygon[h] = polygon[best]
    return OK, polygon, hole


@numba.njit(cache=True, nogil=True)
def _ring_turns(x: np.ndarray, y: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Whether each vertex of the open rings is a turn (its two edges not collinear)."""
    turn = np.empty(len(x), np.bool_)
    for r in range(len(start) - 1):
        s, e = start[r], start[r + 1]
        for i in range(s, e):
            h = i - 1 if i > s else e - 1
            j = i + 1 if i + 1 < e else s
            turn[i] = (x[i] - x[h]) * (y[j] - y[i]) != (y[i] - y[h]) * (x[j] - x[i])
    return turn


# --- rings in and out of shapely ----------------------------------------------------------------------------


def _closed_rings(
    geoms: Sequence[shapely.Geometry],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The rings of the polygons of ``geoms``: x, y (int32, with each ring's closing vertex), ring starts,
    which rings are shells, the polygon of each ring and the geometry of each polygon; None when a corner
    is off the grid."""
    parts, part_geom = shapely.get_parts(np.asarray(geoms, dtype=object), return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    del parts
    coords, vertex_ring = shapely.get_coordinates(rings, return_index=True)
    del rings
    if not (np.all(coords == np.round(coords)) and np.all(coords >= 0) and np.all(coords < 2**31)):
        return None
    x, y = coords[:, 0].astype(np.int32), coords[:, 1].astype(np.int32)
    del coords
    start = np.zeros(len(ring_part) + 1, np.int64)
    np.cumsum(np.bincount(vertex_ring, minlength=len(ring_part)), out=start[1:])
    exterior = np.ones(len(ring_part), bool)
    exterior[1:] = ring_part[1:] != ring_part[:-1]
    return x, y, start, exterior, ring_part.astype(np.int64), part_geom.astype(np.int64)


def _join(pieces: Sequence[shapely.Geometry]) -> tuple[_Rings, np.ndarray, np.ndarray] | None:
    """One region's pieces joined (its rings, and the seam lines found: x, y), or None where the join cannot
    prove its input (:func:`stitch` falls back to ``coverage_union_all``)."""
    found = _closed_rings(pieces)
    if found is None:
        return None
    x, y, start, exterior, _, _ = found
    del found
    status, x, y, ring_start, turn, seam_x, seam_y = _join_rings(x, y, start, exterior)
    if status != OK:
        return None
    status, polygon, hole = _shells_and_holes(x, y, ring_start)
    if status != OK:
        return None
    region = np.zeros(int(polygon.max()) + 1, np.int64)
    return _Rings(x, y, ring_start, turn, polygon, hole, region), seam_x, seam_y


def _open_rings(geoms: Sequence[shapely.Geometry]) -> _Rings | None:
    """The polygons of ``geoms`` (one region each) as open rings, as they are; None when off the grid."""
    found = _closed_rings(geoms)
    if found is None:
        return None
    x, y, start, exterior, ring_part, part_geom = found
    keep = np.ones(len(x), bool)
    keep[start[1:] - 1] = False  # the closing vertices
    x, y = x[keep], y[keep]
    open_start = start - np.arange(len(start))
    return _Rings(x, y, open_start, _ring_turns(x, y, open_start), ring_part, ~exterior, part_geom)


def _geometries(rings: _Rings, keep: np.ndarray, n_regions: int) -> np.ndarray:
    """The (multi)polygon of each region 0…n_regions − 1 from its rings, with the vertices ``keep`` only."""
    n = len(rings.start) - 1
    vertex_ring = np.repeat(np.arange(n), np.diff(rings.start))
    coords = np.column_stack([rings.x[keep], rings.y[keep]]).astype(np.float64)
    closed = shapely.linearrings(coords, indices=vertex_ring[keep])
    order = np.lexsort((rings.hole, rings.polygon))  # per polygon: its shell, then its holes
    polygons = shapely.polygons(closed[order], indices=rings.polygon[order])
    parts = np.bincount(rings.region, minlength=n_regions)
    out = np.empty(n_regions, dtype=object)
    one = parts[rings.region] == 1
    out[rings.region[one]] = polygons[one]
    if not one.all():
        several, index = np.unique(rings.region[~one], return_inverse=True)
        out[several] = shapely.multipolygons(polygons[~one], indices=index)
    return out


# --- the stitch -------------------------------------------------------------------------------------------------


def corner_keys(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pixel corners (non-negative integers) as one int64 each."""
    return (x.astype(np.int64) << 32) | y.astype(np.int64)


def sorted_in(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``np.isin(values, table)`` for a sorted, unique ``table`` (searched, not sorted again per call)."""
    if not len(table):
        return np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(table, values), len(table) - 1)
    return table[at] == values


def _between(lines: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Whether some value of the sorted ``lines`` lies in [lo, hi]."""
    return np.searchsorted(lines, lo, "left") < np.searchsorted(lines, hi, "right")


@dataclass(frozen=True)
class Grid:
    """Where the pieces were cut: the x of the block edges inside the mosaic (vertical seam lines), their y
    (horizontal ones), and the mosaic's width and height, all in pixels."""

    seam_x: np.ndarray
    seam_y: np.ndarray
    width: int
    height: int

    @classmethod
    def of_blocks(cls, blocks: Iterable[tuple[int, int, int, int]], width: int, height: int) -> Grid:
        """From the blocks' (row_off, col_off, height, width)."""
        xs, ys = set(), set()
        for row_off, col_off, h, w in blocks:
            xs.update((col_off, col_off + w))
            ys.update((row_off, row_off + h))
        inside = lambda values, end: np.array(sorted(v for v in values if 0 < v < end), np.int64)  # noqa: E731
        return cls(inside(xs, width), inside(ys, height), width, height)


def stitch(pieces: dict[int, list[shapely.Geometry]], grid: Grid | None = None) -> Stitched:
    """One polygon (or multipolygon) per region from the pieces traced in each block (pixel coordinates of
    the mosaic), joined across seams as the module docstring says. ``pieces`` is emptied on the way (each
    region's pieces are dropped once joined).

    ``grid``: the blocks' edges and the mosaic's extent. Without it, the seam lines are those along which
    edges were cancelled and the extent that of the pieces: a seam line along which no region runs across
    then keeps its vertices (on both sides, still noded), and so does a right or bottom edge of the mosaic
    that is nodata."""
    ids = sorted(pieces)
    if not ids:
        return Stitched([], [], 0, 0)
    if grid is None:
        bounds = shapely.bounds(np.array([g for i in ids for g in pieces[i]], dtype=object))
        grid = Grid(np.zeros(0, np.int64), np.zeros(0, np.int64), int(bounds[:, 2].max()), int(bounds[:, 3].max()))
        del bounds
    geoms: list[shapely.Geometry] = [None] * len(ids)  # type: ignore[list-item]
    joined: dict[int, _Rings] = {}  # slot → its rings, until the corners that stay are all known
    as_they_are: list[int] = []  # slots united by GEOS: their vertices on seam lines stay everywhere
    single: list[int] = []
    seam_x, seam_y = [grid.seam_x.astype(np.int64)], [grid.seam_y.astype(np.int64)]
    for k, i in enumerate(ids):
        found = pieces.pop(i)
        if len(found) == 1:
            geoms[k] = found[0]
            single.append(k)
            continue
        done = _join(found)
        if done is None:
            geoms[k] = shapely.coverage_union_all(found)
            as_they_are.append(k)
            continue
        joined[k], sx, sy = done
        seam_x.append(sx)
        seam_y.append(sy)
    n_joined, fallbacks = len(joined) + len(as_they_are), len(as_they_are)
    sx, sy = np.unique(np.concatenate(seam_x)), np.unique(np.concatenate(seam_y))
    if not len(sx) and not len(sy):
        for k, rings in joined.items():
            geoms[k] = _geometries(rings, np.ones(len(rings.x), bool), 1)[0]
        return Stitched(ids, geoms, n_joined, fallbacks)
    # the regions traced in one piece that reach a seam line: they hold vertices along it too; read in
    # chunks, twice (their corners that stay, then thinned), rather than held as rings all at once
    chunks: list[np.ndarray] = []
    if single:
        b = shapely.bounds(np.array([geoms[k] for k in single], dtype=object))
        touching = np.array(single, np.int64)[_between(sx, b[:, 0], b[:, 2]) | _between(sy, b[:, 1], b[:, 3])]
        del b
        chunks = [touching[j : j + SINGLE_CHUNK] for j in range(0, len(touching), SINGLE_CHUNK)]

    def on_seam(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return sorted_in(x, sx) | sorted_in(y, sy)

    def turns_on_seams(rings: _Rings) -> np.ndarray:
        mark = rings.turn & on_seam(rings.x, rings.y)
        return corner_keys(rings.x[mark], rings.y[mark])

    # the corners of seam lines that stay: where a boundary turns, and every vertex of a region left as it is
    stay = [np.zeros(0, np.int64), *(turns_on_seams(rings) for rings in joined.values())]
    on_grid = []
    for chunk in chunks:
        rings = _open_rings([geoms[k] for k in chunk])
        if rings is None:  # off the grid (not the tracer's): left as they are
            as_they_are.extend(chunk.tolist())
        else:
            stay.append(turns_on_seams(rings))
            on_grid.append(chunk)
        del rings
    for k in as_they_are:
        xy = shapely.get_coordinates(geoms[k])
        xy = xy[np.all(xy == np.round(xy), axis=1) & np.all(xy >= 0, axis=1)].astype(np.int64)
        mark = on_seam(xy[:, 0], xy[:, 1])
        stay.append(corner_keys(xy[mark, 0], xy[mark, 1]))
    kept = np.unique(np.concatenate(stay))
    del stay

    def thinned(rings: _Rings, n_regions: int) -> np.ndarray:
        x, y = rings.x, rings.y
        edge = (x == 0) | (y == 0) | (x == grid.width) | (y == grid.height)
        keep = rings.turn | edge | ~on_seam(x, y) | sorted_in(corner_keys(x, y), kept)
        return _geometries(rings, keep, n_regions)

    for k in list(joined):
        geoms[k] = thinned(joined.pop(k), 1)[0]
    for chunk in on_grid:
        rings = _open_rings([geoms[k] for k in chunk])
        if rings is not None:  # as above
            for k, g in zip(chunk.tolist(), thinned(rings, len(chunk)), strict=True):
                geoms[k] = g
    return Stitched(ids, geoms, n_joined, fallbacks)
