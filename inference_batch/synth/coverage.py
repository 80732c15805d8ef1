"""Wiggly planar coverages: polygons of tens to hundreds of vertices sharing their boundaries exactly, some
with islands, built with numpy only (no per-polygon GEOS operation), for département-sized scale tests.

Why: real OCS GE polygons come from vectorised imagery and photo-interpretation. They have tens to
hundreds of vertices, neighbours share the very same wiggly boundary (the layer is a partition: no
gap, no overlap) and some enclose islands (a pond in a wood, a farm in a field). What an overlay costs
follows the vertex count, so 4-vertex parcels flatter it.

Construction: a jittered grid (``vector_scale``) gives the topology — corners, horizontal and vertical
edges, four edges a cell. Each interior edge is drawn **once** as a noisy polyline: a sum of
sinusoids of falling amplitude (a fractal-like profile) under a ``sin(πt)`` envelope, at most
:data:`AMPLITUDE` × its length from its chord, so that near a corner it stays inside a cone of ±14°
around its chord and never meets the other edges of the corner. A cell's ring is the concatenation of
its four edges' points, two of them reversed: neighbours share the same coordinates, bit for bit.
The territory's border edges stay straight, so the layer covers its rectangle exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

AMPLITUDE = 0.08  # largest offset of an edge from its chord, as a fraction of its length
FREQUENCIES = np.array([1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0])  # wiggles per edge, weights ∝ f^-0.8
WEIGHTS = FREQUENCIES**-0.8 / (FREQUENCIES**-0.8).sum()
BLOCK = 100_000  # cells (or edges) per vectorised block: bounds the temporaries at 10⁶ polygons


def ragged_arange(lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(n) for n in lengths])`` without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)


def draw_polylines(
    a: np.ndarray, b: np.ndarray, counts: np.ndarray, amplitude: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The interior points (``counts[i]`` of them, in order from ``a[i]`` to ``b[i]``) of noisy polylines
    between the given end points, flattened; every point is on the left or right of its chord by at most
    ``amplitude[i] × length × sin(πt)``, and the points stay ordered along the chord (no self-crossing)."""
    counts = np.asarray(counts, dtype=np.int64)
    out = np.empty((int(counts.sum()), 2))
    starts = np.cumsum(counts) - counts
    for lo in range(0, len(counts), BLOCK):
        hi = min(len(counts), lo + BLOCK)
        k = counts[lo:hi]
        if not k.sum():
            continue
        edge = np.repeat(np.arange(hi - lo), k)
        local = ragged_arange(k)
        jitter = rng.uniform(-0.35, 0.35, len(edge))
        t = (local + 1 + jitter) / (k[edge] + 1)
        phases = rng.uniform(0, 2 * np.pi, (hi - lo, len(FREQUENCIES)))
        profile = np.zeros(len(edge))
        for j, (f, w) in enumerate(zip(FREQUENCIES, WEIGHTS, strict=True)):
            profile += w * np.sin(2 * np.pi * f * t + phases[edge, j])
        pa, pb = a[lo:hi][edge], b[lo:hi][edge]
        d = pb - pa
        offset = amplitude[lo:hi][edge] * np.sin(np.pi * t) * profile  # × length through the normal below
        normal = np.column_stack([-d[:, 1], d[:, 0]])  # length = chord length
        out[starts[lo] : starts[lo] + len(edge)] = np.round(pa + t[:, None] * d + offset[:, None] * normal, 2)
    return out


@dataclass
class EdgeNet:
    """The topology of a jittered ``ny × nx`` grid with the drawn points of its edges.

    Corners are numbered row by row, ``(ny+1) × (nx+1)``; horizontal edges ``H[r, c]`` (corner (r, c)
    to (r, c+1)) come first, ``(ny+1) × nx`` of them, then vertical edges ``V[r, c]`` (corner (r, c) to
    (r+1, c)). Edge ``e`` holds ``counts[e]`` interior points at ``points[offsets[e]:offsets[e] + counts[e]]``."""

    nx: int
    ny: int
    corners: np.ndarray  # (ny+1)*(nx+1), 2
    counts: np.ndarray  # interior points per edge
    offsets: np.ndarray  # start of each edge's points in ``points``
    points: np.ndarray  # (P, 2)

    @property
    def n_horizontal(self) -> int:
        return (self.ny + 1) * self.nx

    def corner(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return r * (self.nx + 1) + c

    def cell_corners(self, cells: np.ndarray) -> np.ndarray:
        """(n, 4) corners p0 (r, c), p1 (r, c+1), p2 (r+1, c+1), p3 (r+1, c) — counter-clockwise."""
        r, c = np.divmod(cells, self.nx)
        return np.column_stack(
            [self.corner(r, c), self.corner(r, c + 1), self.corner(r + 1, c + 1), self.corner(r + 1, c)]
        )

    def cell_edges(self, cells: np.ndarray) -> np.ndarray:
        """(n, 4) edges p0→p1 (H[r, c]), p1→p2 (V[r, c+1]), p2→p3 (H[r+1, c], reversed), p3→p0 (V[r, c], rev.)."""
        r, c = np.divmod(cells, self.nx)
        v0 = self.n_horizontal
        return np.column_stack(
            [r * self.nx + c, v0 + r * (self.nx + 1) + c + 1, (r + 1) * self.nx + c, v0 + r * (self.nx + 1) + c]
        )

    def edge_ends(self) -> tuple[np.ndarray, np.ndarray]:
        """Start and end corner of every edge."""
        rh, ch = np.divmod(np.arange(self.n_horizontal), self.nx)
        rv, cv = np.divmod(np.arange(self.ny * (self.nx + 1)), self.nx + 1)
        return (
            np.r_[self.corner(rh, ch), self.corner(rv, cv)],
            np.r_[self.corner(rh, ch + 1), self.corner(rv + 1, cv)],
        )

    def edge_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """The two cells on either side of every edge (−1 on the territory's border)."""
        rh, ch = np.divmod(np.arange(self.n_horizontal), self.nx)
        below = np.where(rh > 0, (rh - 1) * self.nx + ch, -1)
        above = np.where(rh < self.ny, rh * self.nx + ch, -1)
        rv, cv = np.divmod(np.arange(self.ny * (self.nx + 1)), self.nx + 1)
        left = np.where(cv > 0, rv * self.nx + cv - 1, -1)
        right = np.where(cv < self.nx, rv * self.nx + cv, -1)
        return np.r_[below, left], np.r_[above, right]

    def redrawn(self, edges: np.ndarray, amplitude: np.ndarray, rng: np.random.Generator) -> EdgeNet:
        """The same net with ``edges`` drawn anew (same ends, counts and ``amplitude``, new profile): the
        boundary between two neighbours moved, as between two millésimes. Only the new points are added."""
        start, end = self.edge_ends()
        new = draw_polylines(self.corners[start[edges]], self.corners[end[edges]], self.counts[edges], amplitude, rng)
        offsets = self.offsets.copy()
        offsets[edges] = len(self.points) + np.cumsum(self.counts[edges]) - self.counts[edges]
        return EdgeNet(self.nx, self.ny, self.corners, self.counts, offsets, np.concatenate([self.points, new]))

    def ring_ids(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Point ids (into ``corners`` then ``points``) of the closed rings of ``cells``, and their lengths."""
        corners = self.cell_corners(cells)
        edges = self.cell_edges(cells)
        k = self.counts[edges]  # (n, 4)
        n_corner = len(self.corners)
        first = n_corner + self.offsets[edges]
        first[:, 2:] += k[:, 2:] - 1  # the last two edges are walked backwards
        ones = np.ones(len(cells), dtype=np.int64)
        # nine parts a ring: p0, e0, p1, e1, p2, e2 (reversed), p3, e3 (reversed), p0 again
        lengths = np.column_stack([ones, k[:, 0], ones, k[:, 1], ones, k[:, 2], ones, k[:, 3], ones])
        start = np.column_stack(
            [
                corners[:, 0],
                first[:, 0],
                corners[:, 1],
                first[:, 1],
                corners[:, 2],
                first[:, 2],
                corners[:, 3],
                first[:, 3],
                corners[:, 0],
            ]
        )
        step = np.tile(np.array([1, 1, 1, 1, 1, -1, 1, -1, 1]), (len(cells), 1))
        lengths, start, step = lengths.ravel(), start.ravel(), step.ravel()
        ids = np.repeat(start, lengths) + np.repeat(step, lengths) * ragged_arange(lengths)
        return ids, lengths.reshape(-1, 9).sum(1)

    def coords(self, ids: np.ndarray) -> np.ndarray:
        n_corner = len(self.corners)
        out = np.empty((len(ids), 2))
        is_corner = ids < n_corner
        out[is_corner] = self.corners[ids[is_corner]]
        out[~is_corner] = self.points[ids[~is_corner] - n_corner]
        return out

    def rings(self, cells: np.ndarray) -> np.ndarray:
        """The cells' outer rings as shapely LinearRings, in blocks of :data:`BLOCK` cells."""
        out = np.empty(len(cells), dtype=object)
        for lo in range(0, len(cells), BLOCK):
            part = cells[lo : lo + BLOCK]
            ids, lengths = self.ring_ids(part)
            out[lo : lo + len(part)] = shapely.linearrings(
                self.coords(ids), indices=np.repeat(np.arange(len(part)), lengths)
            )
        return out

    def ring_coords(self, cell: int) -> np.ndarray:
        """One cell's closed ring as an (m, 2) array (for the few cells split or merged)."""
        ids, _ = self.ring_ids(np.array([cell]))
        return self.coords(ids)


def edge_net(
    gx: np.ndarray, gy: np.ndarray, counts_of_edge: np.ndarray, amplitude: np.ndarray, rng: np.random.Generator
) -> EdgeNet:
    """Draw every edge of the grid whose corners are ``gx``, ``gy`` (shape ``(ny+1, nx+1)``); border edges
    must have a count of 0 (they stay straight)."""
    ny, nx = gx.shape[0] - 1, gx.shape[1] - 1
    corners = np.column_stack([gx.ravel(), gy.ravel()])
    counts = np.asarray(counts_of_edge, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    net = EdgeNet(nx, ny, corners, counts, offsets, np.empty((0, 2)))
    start, end = net.edge_ends()
    net.points = draw_polylines(corners[start], corners[end], counts, amplitude, rng)
    return net


def island_rings(centres: np.ndarray, radii: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Closed star-shaped noisy rings (one per centre, ``counts`` vertices, radius within ±30 % of
    ``radii``): islands that stay within 1.3 × their radius of their centre."""
    counts = np.asarray(counts, dtype=np.int64)
    which = np.repeat(np.arange(len(counts)), counts)
    theta = 2 * np.pi * ragged_arange(counts) / counts[which]
    harmonics = np.arange(2, 7)
    phases = rng.uniform(0, 2 * np.pi, (len(counts), len(harmonics)))
    weights = harmonics**-0.8 / (harmonics**-0.8).sum()
    wobble = np.zeros(len(which))
    for j, (h, w) in enumerate(zip(harmonics, weights, strict=True)):
        wobble += w * np.sin(h * theta + phases[which, j])
    r = radii[which] * (1 + 0.3 * wobble)
    xy = np.round(centres[which] + r[:, None] * np.column_stack([np.cos(theta), np.sin(theta)]), 2)
    return shapely.linearrings(xy, indices=which)


def assemble(shells: np.ndarray, holes: dict[int, object] | None = None) -> np.ndarray:
    """Polygons from one shell each and at most one hole for the positions in ``holes``."""
    if not holes:
        return shapely.polygons(shells)
    where = np.fromiter(holes, dtype=np.int64, count=len(holes))
    order = np.argsort(where)
    where = where[order]
    rings = np.concatenate([shells, np.array(list(holes.values()), dtype=object)[order]])
    owner = np.concatenate([np.arange(len(shells)), where])
    sort = np.lexsort((np.r_[np.zeros(len(shells)), np.ones(len(where))], owner))  # shell first, then its hole
    return shapely.polygons(rings[sort], indices=owner[sort])
