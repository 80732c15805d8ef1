"""Pixel staircases of a traced coverage straightened before its simplification, the same way on both sides
of every shared boundary.

The polygons traced from a class raster (:func:`~inference_batch.production.components.trace_regions`) have a
vertex at every turn of their boundaries; on real predictions two vertices in five are corners of one-pixel
steps (both edges one pixel long), which ``shapely.coverage_simplify`` then spends most of its time
removing one by one. This pass removes them first, cheaply, where doing so keeps a valid coverage:

- a vertex may go only where exactly two polygons meet and nothing else: it is on exactly two rings, with
  the same two neighbouring vertices on both (not a junction, a pinch, a seam with nodata or the outside),
  both edges are one pixel long and perpendicular, and neither ring is a single pixel (four vertices);
  the decision is a property of the point and its shared boundary, so both neighbours drop it alike;
- a run of such vertices that is a monotone staircase (its steps alternate between the same two unit
  moves) becomes one straight edge between the vertices that end it; in any other run (one-pixel bumps
  and notches) only the vertices of even ``x + y`` go, never two in a row, so each new edge is the
  diagonal of the one pixel that vertex cornered.

Every new edge crosses only pixels that the two polygons of the boundary shared, so nothing else lies in
the area it sweeps: no new intersection, no gap, no overlap. The polygons move by less than a pixel, far
under the 0.5 m (2.5 px at 0.2 m) tolerance of the simplification that follows, which would have removed
these vertices anyway; the order in which Visvalingam–Whyatt removes the rest differs (a documented
difference of the simplified output)."""

from __future__ import annotations

import numba
import numpy as np
import shapely


@numba.njit(cache=True, nogil=True)
def _slot(key: np.ndarray, k: int) -> int:
    """The slot of ``k`` in an open-addressing table of keys ``key`` (a power of two long, −1 when free).
    Keys are row-major pixel corners and slots their low bits: the vertices of a ring, looked up in turn,
    fall in nearby slots (few cache misses)."""
    mask = len(key) - 1
    h = k & mask
    while key[h] != -1 and key[h] != k:
        h = (h + 1) & mask
    return h


@numba.njit(cache=True, nogil=True)
def _straighten(xy: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Which coordinates stay (closing coordinates included): rings ``starts[r]:starts[r + 1]`` of ``xy``
    (closed, integer pixel corners)."""
    n_all = len(xy)
    x = np.empty(n_all, np.int32)  # pixel corners of a mosaic: < 2³¹ (memory: a 1 Gpx coverage has millions)
    y = np.empty(n_all, np.int32)
    for i in range(n_all):
        x[i] = np.int32(xy[i, 0])
        y[i] = np.int32(xy[i, 1])
    stride = np.int64(1)
    for i in range(n_all):
        stride = max(stride, np.int64(x[i]) + 1)
    rings = len(starts) - 1
    # each occurrence: a one-pixel step corner? (then with the diagonal its two unit moves span, a code of
    # 0…8: at a given point it tells the pair of neighbours)
    step = np.zeros(n_all, np.bool_)
    pair = np.zeros(n_all, np.int8)
    steps = 0
    for r in range(rings):
        s, e = starts[r], starts[r + 1] - 1  # e: the closing coordinate
        if e - s <= 4:
            continue  # a one-pixel ring: never
        for i in range(s, e):
            p = i - 1 if i > s else e - 1
            q = i + 1 if i + 1 < e else s
            ax, ay, bx, by = x[i] - x[p], y[i] - y[p], x[q] - x[i], y[q] - y[i]
            if abs(ax) + abs(ay) == 1 and abs(bx) + abs(by) == 1 and ax * bx + ay * by == 0:
                step[i] = True
                pair[i] = (x[p] + x[q] - 2 * x[i] + 1) + 3 * (y[p] + y[q] - 2 * y[i] + 1)
                steps += 1
    # the points of the step corners in a small table (a few MB: no page faults over a large one): how
    # often each occurs and whether always as a step corner between the same neighbours
    cap = 1
    while cap < 2 * steps + 2:
        cap *= 2
    key = np.full(cap, -1, np.int64)
    count = np.zeros(cap, np.int32)
    pair_of = np.zeros(cap, np.int8)
    ok = np.zeros(cap, np.bool_)
    for i in range(n_all):
        if step[i]:
            k = y[i] * stride + x[i]
            h = _slot(key, k)
            if key[h] == -1:
                key[h], count[h], pair_of[h], ok[h] = k, 1, pair[i], True
            else:
                count[h] += 1
                ok[h] = ok[h] and pair_of[h] == pair[i]
    free = np.zeros(n_all, np.bool_)
    for r in range(rings):
        for i in range(starts[r], starts[r + 1] - 1):  # not the closing coordinates
            if steps == 0:
                break
            h = _slot(key, y[i] * stride + x[i])
            if key[h] == -1:
                continue
            if not step[i]:
                ok[h] = False  # the point is also on a ring that does not step there: a junction
            else:
                free[i] = True
    for i in range(n_all):
        if free[i]:
            h = _slot(key, y[i] * stride + x[i])
            free[i] = ok[h] and count[h] == 2
    keep = np.ones(n_all, np.bool_)
    for r in range(rings):
        s, e = starts[r], starts[r + 1] - 1
        n = e - s
        first = -1  # a vertex that stays: the runs are cut there
        for i in range(s, e):
            if not free[i]:
                first = i
                break
        if first < 0:
            continue  # a ring of steps only, no vertex that ends a run: left as it is (its neighbour too)
        j = 0
        while j < n:
            a = s + (first - s + j) % n  # a vertex that stays
            run = 0
            while run + 1 < n and free[s + (a - s + run + 1) % n]:
                run += 1
            if run > 0:
                # moves along the run: a → b1 → … → b_run → end; monotone when they alternate between two
                ux, uy = x[s + (a - s + 1) % n] - x[a], y[s + (a - s + 1) % n] - y[a]
                b1 = s + (a - s + 1) % n
                vx, vy = x[s + (a - s + 2) % n] - x[b1], y[s + (a - s + 2) % n] - y[b1]
                monotone = True
                for t in range(run + 1):
                    c0 = s + (a - s + t) % n
                    c1 = s + (a - s + t + 1) % n
                    mx, my = x[c1] - x[c0], y[c1] - y[c0]
                    wx, wy = (ux, uy) if t % 2 == 0 else (vx, vy)
                    monotone = monotone and mx == wx and my == wy
                for t in range(1, run + 1):
                    c = s + (a - s + t) % n
                    if monotone or (x[c] + y[c]) % 2 == 0:
                        keep[c] = False
            j += run + 1
        if not keep[s]:  # the closing coordinate repeats the first one kept
            keep[e] = False
    return keep


def straighten_staircases(polygons: np.ndarray, chunk: int = 4096) -> None:
    """The polygons (a noded coverage on the pixel grid, pixel coordinates) with their one-pixel staircases
    straightened (module docstring), in place; Polygon and MultiPolygon types kept. Memory: the coordinates
    are read once as a ragged array (no ring geometries copied) and the polygons replaced a chunk at a time,
    each old one freed as its new one comes."""
    if not len(polygons):
        return
    kind, xy, offsets = shapely.to_ragged_array(polygons)
    ring_start = offsets[0].astype(np.int64)
    keep = _straighten(xy, ring_start)
    xy = xy[keep]
    new_start = np.zeros(len(ring_start), np.int64)
    np.cumsum(np.add.reduceat(keep, ring_start[:-1]) if len(ring_start) > 1 else [], out=new_start[1:])
    del keep
    was_polygon = shapely.get_type_id(polygons) == shapely.GeometryType.POLYGON
    # rings of each geometry: through its parts when some are multipolygons
    geom_ring = offsets[1][offsets[2]] if kind == shapely.GeometryType.MULTIPOLYGON else offsets[1]
    for g0 in range(0, len(polygons), chunk):
        g1 = min(g0 + chunk, len(polygons))
        r0, r1 = geom_ring[g0], geom_ring[g1]
        rings = new_start[r0 : r1 + 1] - new_start[r0]
        if kind == shapely.GeometryType.MULTIPOLYGON:
            p0, p1 = offsets[2][g0], offsets[2][g1]
            parts = offsets[1][p0 : p1 + 1] - offsets[1][p0]
            local = (rings, parts, offsets[2][g0 : g1 + 1] - p0)
        else:
            local = (rings, offsets[1][g0 : g1 + 1] - r0)
        out = shapely.from_ragged_array(kind, xy[new_start[r0] : new_start[r1]], local)
        single = np.flatnonzero(was_polygon[g0:g1])
        if kind == shapely.GeometryType.MULTIPOLYGON and len(single):
            out[single] = shapely.get_geometry(out[single], 0)
        polygons[g0:g1] = out
