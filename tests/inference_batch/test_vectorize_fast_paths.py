"""Fast paths of the vectoriser against the ways they replace: the graph contraction of the sieve in one numba
pass (was: sorts of nodes and edges per round), on random graphs and on a small speckled raster."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine

import inference_batch.production.vectorize as vectorize
from inference_batch.production.vectorize import UMI, Graph, Mosaic, contract, sieve_graph, vectorize_mosaic
from ocsge.nomenclature import raster_value

GRASS = raster_value("couverture", "CS2.2.1")
FOREST = raster_value("couverture", "CS2.1.1.1")
ROAD = raster_value("couverture", "CS1.1.1.2")
BUILT = raster_value("couverture", "CS1.1.1.1")
WATER = raster_value("couverture", "CS1.2.2")
ONE_M = Affine(1.0, 0, 700000, 0, -1.0, 6600000)


def _contract_by_sorting(graph: Graph, mapping: np.ndarray, cls_rule: str = "largest", weight=None) -> Graph:  # type: ignore[no-untyped-def]
    """The previous ``contract``: bincounts, ``np.maximum.at``, a lexsort of the nodes, a sort of the edge keys."""
    m = int(mapping.max()) + 1 if len(mapping) else 0
    area = np.bincount(mapping, weights=graph.area, minlength=m).astype(np.int64)
    inside = np.bincount(mapping, weights=graph.zc, minlength=m)
    wide = None
    if graph.wide is not None:
        wide = np.zeros(m)
        np.maximum.at(wide, mapping, graph.wide)
    frozen = None
    if graph.frozen is not None:
        frozen = np.bincount(mapping, weights=graph.frozen, minlength=m) > 0
    cls = np.zeros(m, dtype=np.uint16)
    if cls_rule == "first":
        cls[mapping] = graph.cls
    else:
        key = graph.area if weight is None else weight
        order = np.lexsort((-np.arange(graph.n), key, mapping))
        last = np.concatenate([np.nonzero(np.diff(mapping[order]))[0], [len(order) - 1]]) if len(order) else order
        cls[mapping[order[last]]] = graph.cls[order[last]]
    u, v = mapping[graph.eu], mapping[graph.ev]
    keep = u != v
    lo, hi = np.minimum(u[keep], v[keep]), np.maximum(u[keep], v[keep])
    keys, lengths = (lo << 32) | hi, graph.elen[keep]
    if len(keys):
        order = np.argsort(keys, kind="stable")
        keys, lengths = keys[order], lengths[order]
        starts = np.concatenate([[0], np.nonzero(np.diff(keys))[0] + 1])
        eu, ev, elen = keys[starts] >> 32, keys[starts] & 0xFFFFFFFF, np.add.reduceat(lengths, starts)
    else:
        eu = ev = elen = np.zeros(0, np.int64)
    return Graph(cls, area, inside, wide, eu, ev, elen, frozen)


def _random_graph(rng: np.random.Generator, n: int, with_optional: bool) -> Graph:
    pairs = {tuple(sorted(p)) for p in rng.integers(0, n, (3 * n, 2)).tolist() if p[0] != p[1]}
    eu, ev = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2).T
    return Graph(
        rng.integers(0, 5, n).astype(np.uint16),
        rng.integers(1, 4, n).astype(np.int64),  # few values: ties between members
        rng.random(n) * rng.integers(0, 3, n),
        rng.integers(1, 6, n).astype(np.float64) if with_optional else None,
        eu,
        ev,
        rng.integers(1, 5, len(eu)).astype(np.int64),
        rng.random(n) < 0.2 if with_optional else None,
    )


def _assert_same_graph(a: Graph, b: Graph) -> None:
    for name in ("cls", "area", "zc", "eu", "ev", "elen"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    for name in ("wide", "frozen"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None) and (x is None or np.array_equal(x, y)), name


def test_contraction_in_one_pass_equals_the_sorting_one() -> None:
    rng = np.random.default_rng(11)
    for trial in range(60):
        n = int(rng.integers(1, 80))
        graph = _random_graph(rng, n, with_optional=bool(trial % 2))
        mapping = rng.integers(0, max(1, n // 3), n).astype(np.int64)
        mapping = np.unique(mapping, return_inverse=True)[1].astype(np.int64)  # groups 0…m−1, all used
        weight = rng.random(n).round(1) if trial % 3 == 0 else None  # ties in the weight too
        for rule in ("largest", "first"):
            expected = _contract_by_sorting(graph, mapping, rule, weight)
            _assert_same_graph(contract(graph, mapping, rule, weight), expected)


def test_sieve_with_the_one_pass_contraction_equals_the_sorting_one(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The whole sieve (area steps, then widths) and the polygons of a speckled raster: the same either way."""
    rng = np.random.default_rng(3)
    a = np.full((300, 300), GRASS, dtype=np.uint8)
    a[:150, :150] = FOREST
    a[150:, 150:] = WATER
    for _ in range(900):
        y, x = rng.integers(0, 300, 2)
        dy, dx = rng.integers(1, 9, 2)
        a[y : y + dy, x : x + dx] = rng.choice([GRASS, FOREST, ROAD, WATER, BUILT])
    mosaic = Mosaic.from_array(a, ONE_M, "EPSG:2154", 128)
    fast = vectorize_mosaic(mosaic, simplify=0.5)
    with monkeypatch.context() as patch:
        patch.setattr(vectorize, "contract", _contract_by_sorting)
        slow = vectorize_mosaic(mosaic, simplify=0.5)
    assert fast[2].components > 500 and len(fast[0]) == len(slow[0]) > 3
    assert np.array_equal(fast[1], slow[1])
    assert all(g.equals_exact(h, 0) for g, h in zip(fast[0], slow[0], strict=True))
    graph = Graph(np.array([3, 3, 4], np.uint16), np.array([1, 1, 500]), np.zeros(3), None)
    graph.eu, graph.ev, graph.elen = np.array([0, 1]), np.array([2, 2]), np.array([1, 1])
    sieved, mapping = sieve_graph(graph, UMI(), 1.0)
    assert sieved.n == 1 and sieved.cls[0] == 4 and sieved.area[0] == 502 and np.array_equal(mapping, [0, 0, 0])


def test_nearest_pixels_looked_for_in_a_band_first_are_the_whole_windows() -> None:
    """``_take_nearest`` looks in a band around the building first: the same pixels, in the same order, as
    the distance transform of the whole window (a stable sort of the distances), whether the band holds
    enough eligible pixels or not (nodata and other buildings around: it falls back to the window)."""
    from scipy import ndimage

    rng = np.random.default_rng(5)
    calls = {"band": 0, "window": 0}
    real = vectorize._nearest

    def counting(window, own, need, takeable, within):  # type: ignore[no-untyped-def]
        calls["band" if within is not None else "window"] += 1
        return real(window, own, need, takeable, within)

    vectorize._nearest = counting
    try:
        for trial in range(40):
            window = rng.integers(0, 4, (90, 80)).astype(np.int32)
            if trial % 2:  # mostly unavailable around it: the band is not enough
                window[rng.random(window.shape) < 0.85] = 3
            y, x = (int(v) for v in rng.integers(20, 50, 2))
            window[y : y + 12, x : x + int(rng.integers(5, 20))] = 5
            takeable = np.array([False, True, True, False, False, False])  # 0 nodata, 3 built: never taken
            own = window == 5
            target = int(own.sum()) + int(rng.integers(1, 900))
            take = vectorize._take_nearest(window, 5, target, takeable)
            cand = np.flatnonzero(((window > 0) & ~own & takeable[window]).ravel())
            dist = ndimage.distance_transform_edt(~own).ravel()[cand]
            expected = np.sort(cand[np.argsort(dist, kind="stable")[: target - int(own.sum())]])
            assert np.array_equal(np.sort(take), expected)
    finally:
        vectorize._nearest = real
    assert calls["band"] > 10 and calls["window"] > 5  # both ways were taken


def test_the_first_block_is_read_once_and_the_polygons_are_the_same() -> None:
    """The zone construite reads the blocks last to first and hands the first one's pixels to the components
    pass: one read fewer, the same zone construite and polygons as reading every block twice."""
    from dataclasses import replace

    rng = np.random.default_rng(8)
    a = np.full((200, 260), GRASS, dtype=np.uint8)
    for _ in range(300):
        y, x = rng.integers(0, 200), rng.integers(0, 260)
        a[y : y + 7, x : x + 7] = rng.choice([FOREST, BUILT, WATER])
    mosaic = Mosaic.from_array(a, ONE_M, "EPSG:2154", 128)
    reads = [0] * len(mosaic.blocks)

    def counted(i: int, read):  # type: ignore[no-untyped-def]
        def again() -> np.ndarray:
            reads[i] += 1
            return read()

        return again

    mosaic.blocks = [replace(b, read=counted(i, b.read)) for i, b in enumerate(mosaic.blocks)]
    geoms, values, report = vectorize_mosaic(mosaic, simplify=0)
    assert reads == [1] + [2] * (len(reads) - 1)
    zc_mask = vectorize.zone_construite_mask(mosaic, UMI())
    again, again_values, _ = vectorize_mosaic(mosaic, zc_mask=zc_mask, simplify=0)  # every block read in its pass
    assert np.array_equal(values, again_values) and all(g.equals_exact(h, 0) for g, h in zip(geoms, again, strict=True))
    assert len(geoms) > 3 and report.zone_construite


def _staircase_rasters(seed: int):  # type: ignore[no-untyped-def]
    """Rasters of 0–4 (0 = nodata) with many one-pixel steps: blobs of noise smoothed into ragged shapes,
    diagonal bands, single pixels, pinches."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    for trial in range(30):
        h, w = (int(v) for v in rng.integers(8, 60, 2))
        a = rng.integers(0, 5 if trial % 3 else 4, (h, w)).astype(np.uint8) + (trial % 3 == 0)
        a = ndimage.median_filter(a, size=int(rng.integers(1, 4)))
        yy, xx = np.mgrid[0:h, 0:w]
        a[np.abs(yy - xx - int(rng.integers(-5, 5))) < int(rng.integers(1, 4))] = 4  # a diagonal staircase band
        yield np.ascontiguousarray(a)


def test_straightened_staircases_keep_a_valid_coverage_moved_by_under_a_pixel() -> None:
    """One-pixel steps removed alike on both sides of every shared boundary: the coverage stays valid (no
    gap, no overlap, same total area), every polygon moves by under a pixel, junctions and boundaries with
    nodata keep their vertices, and the result does not depend on the order of the polygons."""
    from inference_batch.production.components import block_components, relabel_runs, trace_regions
    from inference_batch.production.staircases import straighten_staircases

    removed = 0
    for a in _staircase_rasters(seed=21):
        bc = block_components(a, widths=False)
        lut = np.arange(bc.n + 1, dtype=np.int32)  # every component its own polygon: many junctions
        polygons, _ = trace_regions(relabel_runs(bc.runs, lut))
        out = polygons.copy()
        straighten_staircases(out)
        assert shapely.is_valid(out).all() and shapely.coverage_is_valid(out)
        assert (shapely.get_type_id(out) == shapely.get_type_id(polygons)).all()
        assert shapely.area(out).sum() == pytest.approx((a > 0).sum())
        assert (shapely.hausdorff_distance(out, polygons) < 1).all()
        # nodata and the raster's edge: their boundary is where it was
        assert shapely.union_all(out).equals(shapely.union_all(polygons))
        removed += int(shapely.get_num_coordinates(polygons).sum() - shapely.get_num_coordinates(out).sum())
        order = np.random.default_rng(len(polygons)).permutation(len(polygons))
        shuffled = polygons[order]
        straighten_staircases(shuffled, chunk=7)  # and a few polygons at a time
        assert all(g.equals_exact(h, 0) for g, h in zip(shuffled, out[order], strict=True))
        # regions of several pieces (MultiPolygons beside Polygons), replaced a few at a time
        pieces, values = trace_regions(relabel_runs(bc.runs, np.concatenate([[0], bc.cls]).astype(np.int32)))
        _, index = np.unique(values, return_inverse=True)
        by_region = np.argsort(index, kind="stable")
        regions = shapely.multipolygons(pieces[by_region], indices=index[by_region])
        single = shapely.get_num_geometries(regions) == 1
        regions[single] = shapely.get_geometry(regions[single], 0)
        whole, few = regions.copy(), regions.copy()
        straighten_staircases(whole)
        straighten_staircases(few, chunk=2)
        assert (shapely.get_type_id(whole) == shapely.get_type_id(regions)).all()
        assert all(g.equals_exact(h, 0) for g, h in zip(whole, few, strict=True))
        assert shapely.coverage_is_valid(whole) and shapely.area(whole).sum() == pytest.approx((a > 0).sum())
    assert removed > 500


def test_vectorised_coverage_with_straightened_staircases(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The whole chain with a simplification of at least a pixel straightens the steps first: still a valid
    coverage of every pixel, fewer vertices into the simplification; under a pixel, none straightened."""
    rng = np.random.default_rng(2)
    a = np.full((256, 256), GRASS, dtype=np.uint8)
    yy, xx = np.mgrid[0:256, 0:256]
    a[(yy - 100) ** 2 + (xx - 120) ** 2 < 70**2] = FOREST
    a[np.abs(yy - xx + 30) < 12] = WATER  # a diagonal river: staircases on both banks
    a[rng.random(a.shape) < 0.02] = ROAD  # specks, sieved
    mosaic = Mosaic.from_array(a, ONE_M, "EPSG:2154", 128)
    geoms, _, _ = vectorize_mosaic(mosaic, simplify=2.0)
    arr = np.array(geoms)
    assert shapely.coverage_is_valid(arr) and shapely.is_valid(arr).all()
    assert shapely.area(arr).sum() == pytest.approx(256 * 256)
    seen: list[int] = []
    real = vectorize.straighten_staircases

    def counting(polygons: np.ndarray) -> np.ndarray:
        seen.append(len(polygons))
        return real(polygons)

    with monkeypatch.context() as patch:
        patch.setattr(vectorize, "straighten_staircases", counting)
        vectorize_mosaic(mosaic, simplify=2.0)
        vectorize_mosaic(mosaic, simplify=0.5)  # under a pixel: the steps are left to the simplification
    assert seen == [len(geoms)]


def test_tracer_buffers_grown_between_rings_hold_every_ring() -> None:
    """The tracer grows its vertex buffers between rings (a ring that does not fit is walked again): on a
    noise raster with more vertices than the first buffer holds, every component is one polygon of its
    exact area, valid, with a vertex at every pixel corner of its boundary."""
    from inference_batch.production.components import block_components, trace_polygons

    a = np.random.default_rng(9).integers(1, 4, (260, 260)).astype(np.uint8)
    bc = block_components(a, widths=False)
    polygons, labels = trace_polygons(bc.runs, np.arange(bc.n + 1, dtype=np.int32), every_corner=True)
    assert shapely.get_num_coordinates(polygons).sum() > 1 << 16  # past the first buffer
    assert len(polygons) == bc.n and np.array_equal(np.sort(labels), np.arange(1, bc.n + 1))
    assert np.array_equal(shapely.area(polygons), bc.area[labels - 1]) and shapely.is_valid(polygons).all()


def _chamfer_widths(a: np.ndarray, far: int) -> np.ndarray:
    """The 3-4 chamfer widths the kernel computes, pixel by pixel in Python: per component (label order),
    2·d + 2, d its largest distance (thirds of a pixel, saturating at ``far``) to a pixel with a 4-neighbour
    of another value (block edges are no boundary)."""
    from inference_batch.production.components import block_components, paint

    h, w = a.shape
    pad = np.pad(a, 1, mode="edge")
    edge = (pad[:-2, 1:-1] != a) | (pad[2:, 1:-1] != a) | (pad[1:-1, :-2] != a) | (pad[1:-1, 2:] != a)
    d = np.full((h + 2, w + 2), far, np.int64)
    for r in range(1, h + 1):
        for c in range(1, w + 1):
            near = min(far, d[r - 1, c] + 3, d[r - 1, c - 1] + 4, d[r - 1, c + 1] + 4, d[r, c - 1] + 3)
            d[r, c] = 0 if edge[r - 1, c - 1] else near
    for r in range(h, 0, -1):
        for c in range(w, 0, -1):
            d[r, c] = min(d[r, c], d[r + 1, c] + 3, d[r + 1, c - 1] + 4, d[r + 1, c + 1] + 4, d[r, c + 1] + 3)
    bc = block_components(a, widths=False)
    labels = paint(bc.runs, np.arange(bc.n + 1))
    best = np.zeros(bc.n + 1, np.int64)
    np.maximum.at(best, labels.ravel(), d[1:-1, 1:-1].ravel())
    return 2.0 * best[1:] / 3 + 2.0


def test_widths_kernel_is_the_chamfer_transform_pixel_by_pixel() -> None:
    """The width kernel (int32 sums, row boundaries marked first, runs read as rows become final) gives the
    3-4 chamfer widths computed pixel by pixel, saturating or not, on noise, blocks and thin rasters."""
    from scipy import ndimage

    from inference_batch.production.components import block_components

    rng = np.random.default_rng(12)
    for trial in range(40):
        h, w = (int(v) for v in rng.integers(1, 45, 2))
        a = rng.integers(0, 3, (h, w)).astype(np.uint8)
        if trial % 2:
            a = np.ascontiguousarray(ndimage.zoom(rng.integers(0, 3, (4, 4)).astype(np.uint8), (h / 4, w / 4), order=0))
        for cap, far in ((None, 60000), (20.0, 255)):
            if trial % 4 == 3:  # a wide block: distances past what one byte holds
                a = np.zeros((300, 300), np.uint8)
                a[5:295, 10:290] = 1
            got = block_components(a, width_cap_px=cap).wide
            assert np.array_equal(got, _chamfer_widths(a, far)), (trial, cap)


def test_built_cells_marked_cell_by_cell_are_numpys() -> None:
    """``mark_built`` walks each row cell by cell (no division per pixel, marked cells skipped): the cells
    holding a built pixel, whatever the block's offset in the coarse grid, uint8 or uint16 values."""
    from inference_batch.production.components import mark_built

    rng = np.random.default_rng(13)
    for trial in range(30):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        k = int(rng.integers(1, 9))
        row_off, col_off = (int(v) for v in rng.integers(0, 30, 2))
        a = (rng.random((h, w)) < 0.02).astype(np.uint16 if trial % 2 else np.uint8) * np.uint8(BUILT)
        a[rng.random((h, w)) < 0.1] = 300 if trial % 2 else 200  # values beyond the built table
        out = np.zeros(((row_off + h) // k + 2, (col_off + w) // k + 2), bool)
        mark_built(a, (BUILT,), row_off, col_off, k, out, 0, 0)
        expected = np.zeros_like(out)
        ys, xs = np.nonzero(a == BUILT)
        expected[(ys + row_off) // k, (xs + col_off) // k] = True
        assert np.array_equal(out, expected)
