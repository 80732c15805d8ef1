"""Pieces traced per block, joined by their seam edges (``inference_batch.production.seams``): the polygons that
tracing the whole raster in one block gives, vertex for vertex; GEOS's coverage union where the join cannot
prove its input, the coverage still noded."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine

from inference_batch.production import seams
from inference_batch.production.components import block_components, relabel_runs, trace_regions
from inference_batch.production.seams import Grid, stitch
from inference_batch.production.vectorize import Mosaic, vectorize_mosaic
from ocsge.nomenclature import raster_value

GRASS = raster_value("couverture", "CS2.2.1")
FOREST = raster_value("couverture", "CS2.1.1.1")
WATER = raster_value("couverture", "CS1.2.2")


def _traced(a: np.ndarray, row_off: int = 0, col_off: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The tracer's pieces of the raster's values (one region per value, 0: none)."""
    bc = block_components(np.ascontiguousarray(a), widths=False)
    return trace_regions(relabel_runs(bc.runs, np.concatenate([[0], bc.cls]).astype(np.int32)), row_off, col_off)


def _blocks(a: np.ndarray, block: int) -> tuple[dict[int, list[shapely.Geometry]], Grid]:
    h, w = a.shape
    pieces: dict[int, list[shapely.Geometry]] = {}
    for r in range(0, h, block):
        for c in range(0, w, block):
            polygons, values = _traced(a[r : r + block, c : c + block], r, c)
            for g, v in zip(polygons, values.tolist(), strict=True):
                pieces.setdefault(v, []).append(g)
    grid = Grid.of_blocks([(r, c, block, block) for r in range(0, h, block) for c in range(0, w, block)], w, h)
    return pieces, grid


def _whole(a: np.ndarray) -> dict[int, shapely.Geometry]:
    """Each value's polygons traced in one block: a polygon per 4-connected piece."""
    found: dict[int, list[shapely.Geometry]] = {}
    for g, v in zip(*_traced(a), strict=True):
        found.setdefault(int(v), []).append(g)
    return {v: p[0] if len(p) == 1 else shapely.MultiPolygon(p) for v, p in found.items()}


def _noise(shape: tuple[int, int], classes: int, seed: int) -> np.ndarray:
    """Pixel noise: pieces touching by a corner everywhere (across seams too), holes, islands, nodata."""
    return np.random.default_rng(seed).integers(0, classes, shape).astype(np.uint8)


def _blobs(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Nearest of a few random seeds, ragged by a pixel of noise: long boundaries across many seams."""
    rng = np.random.default_rng(seed)
    h, w = shape
    centres = rng.uniform(0, [h, w], (12, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    d = (yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2
    a = (np.argmin(d, axis=2) % 5 + 1).astype(np.uint8)
    flip = rng.random(shape) < 0.03
    a[flip] = rng.integers(0, 6, flip.sum())
    return a


def _nested() -> np.ndarray:
    """A frame of 1 around 2 around an island of 1 around 3: region 1 has two shells, and the hole of the
    island lies in the boxes of both (the smallest that holds it is its shell)."""
    a = np.full((12, 12), 1, np.uint8)
    a[2:10, 2:10] = 2
    a[4:8, 4:8] = 1
    a[5:7, 5:7] = 3
    return a


def _same(g: shapely.Geometry, h: shapely.Geometry) -> bool:
    """The same rings with the same vertices (in any order and from any start)."""
    return bool(shapely.equals_exact(shapely.normalize(g), shapely.normalize(h), 0.0))


@pytest.mark.parametrize(
    ("raster", "block"),
    [
        (_noise((23, 31), 3, seed=1), 4),
        (_noise((23, 31), 5, seed=2), 7),
        (_noise((40, 40), 2, seed=3), 8),  # two values and nodata: dense corner contacts
        (_blobs((90, 70), seed=4), 16),
        (_blobs((90, 70), seed=5), 9),
        (_nested(), 5),
    ],
)
def test_joined_pieces_are_the_whole_raster_traced_in_one_block(
    raster: np.ndarray, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(seams, "SINGLE_CHUNK", 3)  # the regions of one piece read a few at a time
    pieces, grid = _blocks(raster, block)
    copies = {v: list(p) for v, p in pieces.items()}
    cut = sum(len(p) > 1 for p in pieces.values())
    stitched = stitch(pieces, grid)
    assert not pieces  # emptied on the way
    assert stitched.fallbacks == 0 and stitched.joined == cut > 0
    whole = _whole(raster)
    assert stitched.ids == sorted(whole)
    for v, g in zip(stitched.ids, stitched.geoms, strict=True):
        assert g.is_valid and _same(g, whole[v]), v
        assert g.equals(shapely.coverage_union_all(copies[v]))
    assert shapely.coverage_is_valid(np.array(stitched.geoms))


def test_seam_vertices_go_where_no_boundary_turns_and_stay_at_junctions_and_on_the_mosaic_edge() -> None:
    a = np.full((6, 8), 1, np.uint8)
    a[3:, :] = 2  # a boundary across the seam at x = 4: no vertex left at (4, 3)
    a[3:, 6:] = 3  # a junction on the mosaic's right edge and a boundary along y = 3
    a[:2, 3:5] = 4  # a 2 × 2 square across the seam, on the mosaic's top edge
    pieces, grid = _blocks(a, 4)
    union = {v: shapely.coverage_union_all(p) for v, p in pieces.items()}
    got = dict(zip(*(lambda s: (s.ids, s.geoms))(stitch(pieces, grid)), strict=True))
    corners = {v: set(map(tuple, shapely.get_coordinates(g).tolist())) for v, g in got.items()}
    assert (4.0, 3.0) not in corners[1] | corners[2] and (4.0, 3.0) in set(
        map(tuple, shapely.get_coordinates(union[1]).tolist())
    )  # what GEOS's union keeps
    assert (6.0, 3.0) in corners[1] & corners[2] & corners[3]  # junction
    assert corners[4] == {(3.0, 0.0), (4.0, 0.0), (5.0, 0.0), (5.0, 2.0), (3.0, 2.0)}  # (4, 0): top edge
    assert (4.0, 2.0) not in corners[1] and (4.0, 6.0) in corners[2]  # bottom edge of the mosaic
    for v, g in got.items():
        assert g.equals(union[v])
    assert shapely.coverage_is_valid(np.array(list(got.values())))


def test_without_the_grid_the_seams_come_from_the_cancelled_edges_and_the_coverage_stays_noded() -> None:
    a = _noise((23, 31), 5, seed=14)  # a seam (x = 12) that no region runs across: its vertices stay
    pieces, _ = _blocks(a, 3)
    copies = {v: list(p) for v, p in pieces.items()}
    stitched = stitch(pieces)
    whole = _whole(a)
    assert stitched.fallbacks == 0
    assert shapely.coverage_is_valid(np.array(stitched.geoms))
    more = 0
    for v, g in zip(stitched.ids, stitched.geoms, strict=True):
        assert g.is_valid and g.equals(whole[v]) and g.equals(shapely.coverage_union_all(copies[v]))
        more += shapely.get_num_coordinates(g) - shapely.get_num_coordinates(whole[v])
    assert more > 0  # those of x = 12, kept on both sides


def test_pieces_the_join_cannot_prove_are_united_by_geos_and_their_seam_vertices_stay_in_the_neighbours() -> None:
    a = np.full((4, 8), 1, np.uint8)
    a[2:, :] = 2
    pieces, grid = _blocks(a, 4)
    left = min(pieces[1], key=lambda g: g.bounds[0])
    # region 1's left piece loses its corner (4, 1) on the seam: its seam edge no longer matches the right
    # piece's two edges there (they overlap without being the same)
    ring = [xy for xy in shapely.get_coordinates(left.exterior).tolist() if xy != [4.0, 1.0]]
    pieces[1] = [shapely.Polygon(ring) if g is left else g for g in pieces[1]]
    copies = {v: list(p) for v, p in pieces.items()}
    stitched = stitch(pieces, grid)
    assert stitched.joined == 2 and stitched.fallbacks == 1
    one, two = stitched.geoms
    assert one.equals(shapely.coverage_union_all(copies[1])) and two.equals(shapely.box(0, 2, 8, 4))
    assert (4.0, 2.0) in set(map(tuple, shapely.get_coordinates(one).tolist()))
    # region 2 keeps the corner region 1 kept, though no boundary turns there: still a noded coverage
    assert (4.0, 2.0) in set(map(tuple, shapely.get_coordinates(two).tolist()))
    assert shapely.coverage_is_valid(np.array(stitched.geoms))
    # a region of one piece off the grid is left as it is, and its corners on seam lines stay in the others
    pieces, grid = _blocks(a, 4)
    off_grid = shapely.Polygon([(0, 2), (4, 2), (8, 2), (8, 4), (4, 4), (0, 4), (0, 3.5)])
    pieces[2] = [off_grid]
    stitched = stitch(pieces, grid)
    assert stitched.fallbacks == 0 and stitched.geoms[1] is off_grid
    assert (4.0, 2.0) in set(map(tuple, shapely.get_coordinates(stitched.geoms[0]).tolist()))
    assert shapely.coverage_is_valid(np.array(stitched.geoms))
    # off the grid (not the tracer's pieces): united by GEOS too
    off = {1: [shapely.box(0, 0, 1.5, 1), shapely.box(1.5, 0, 3, 1)]}
    stitched = stitch(off)
    assert stitched.fallbacks == 1 and stitched.geoms[0].equals(shapely.box(0, 0, 3, 1))


def test_vectorised_blocks_give_the_polygons_of_one_block_vertex_for_vertex() -> None:
    """Large regions only (nothing to sieve, no building): the block size changes nothing, not even a
    vertex — the pieces are joined, not united, and the coverage simplifies."""
    rng = np.random.default_rng(11)
    h = w = 240
    centres = rng.uniform(0, [h, w], (9, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    nearest = np.argmin((yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2, axis=2)
    a = np.array([GRASS, FOREST, WATER], np.uint8)[nearest % 3]
    transform = Affine(1.0, 0, 700000, 0, -1.0, 6600000)
    results = {}
    for block in (48, 1024):
        geoms, values, report = vectorize_mosaic(Mosaic.from_array(a, transform, "EPSG:2154", block), simplify=0)
        assert report.seam_fallbacks == 0
        results[block] = sorted(zip(values.tolist(), geoms, strict=True), key=lambda t: (t[0], t[1].bounds))
    assert len(results[48]) == len(results[1024]) > 3
    for (v, g), (u, h_) in zip(results[48], results[1024], strict=True):
        assert v == u and _same(g, h_)
    geoms, _, report = vectorize_mosaic(Mosaic.from_array(a, transform, "EPSG:2154", 48), simplify=0.5)
    assert report.seam_fallbacks == 0 and shapely.coverage_is_valid(np.array(geoms))
    assert sum(g.area for g in geoms) == pytest.approx(h * w, rel=1e-9)
