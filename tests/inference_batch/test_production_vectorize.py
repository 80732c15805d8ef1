"""Vectorisation: seams, minimum mapping units, coverage without gaps or overlaps, prediction blocks → GeoParquet."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.features import sieve

from inference_batch.production.vectorize import UMI, Mosaic, vectorize_mosaic
from ocsge import schema
from ocsge.nomenclature import raster_value

GRASS = raster_value("couverture", "CS2.2.1")
FOREST = raster_value("couverture", "CS2.1.1.1")
ROAD = raster_value("couverture", "CS1.1.1.2")
BUILT = raster_value("couverture", "CS1.1.1.1")
WATER = raster_value("couverture", "CS1.2.2")
ONE_M = Affine(1.0, 0, 700000, 0, -1.0, 6600000)  # 1 m pixels: areas in px are m²


def _run(array: np.ndarray, block: int, **kwargs):  # type: ignore[no-untyped-def]
    return vectorize_mosaic(Mosaic.from_array(array, ONE_M, "EPSG:2154", block), **kwargs)


def _speckled(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Fields, a forest and a lake, sprinkled with 1–30 px specks of other classes (a raw prediction)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    a = np.full(shape, GRASS, dtype=np.uint8)
    a[: h // 2, : w // 2] = FOREST
    a[h // 2 :, w // 2 :] = WATER
    for _ in range(h * w // 150):
        y, x = rng.integers(0, h), rng.integers(0, w)
        dy, dx = rng.integers(1, 6, 2)
        a[y : y + dy, x : x + dx] = rng.choice([GRASS, FOREST, ROAD, WATER])
    return a


def test_region_spanning_four_blocks_is_one_polygon() -> None:
    a = np.full((256, 256), GRASS, dtype=np.uint8)
    yy, xx = np.mgrid[0:256, 0:256]
    a[(yy - 128) ** 2 + (xx - 128) ** 2 < 60**2] = FOREST  # a 1.1 ha wood across the corner of 4 blocks
    whole, _, _ = _run(a, 1024, simplify=0)
    geoms, values, report = _run(a, 128, simplify=0)
    assert report.components == 2 and len(geoms) == 2
    forest = geoms[list(values).index(FOREST)]
    assert forest.geom_type == "Polygon" and forest.area == (a == FOREST).sum()
    assert len(forest.interiors) == 0
    # block edges leave no trace: same polygons whatever the block size
    for g, h in zip(sorted(whole, key=lambda g: g.area), sorted(geoms, key=lambda g: g.area), strict=True):
        assert g.equals(h)


def test_no_polygon_under_its_unit_and_no_gap_or_overlap() -> None:
    a = _speckled((400, 400))
    geoms, _, report = _run(a, 150)
    assert report.components > 500 and report.polygons == 4  # forest, lake, two grass fields
    areas = shapely.area(np.array(geoms))
    assert areas.min() >= 2500 * 0.99  # no building here: no zone construite, 2 500 m² everywhere
    assert shapely.coverage_is_valid(np.array(geoms))
    assert shapely.union_all(geoms).area == pytest.approx(400 * 400, rel=1e-6)  # no gaps (simplified, valid)
    assert sum(areas) == pytest.approx(400 * 400, rel=1e-9)  # and no overlaps


def test_class_specific_units_with_buildings_and_zone_construite() -> None:
    a = np.full((400, 400), GRASS, dtype=np.uint8)
    a[40:54, 40:54] = BUILT  # 196 m²: built from 50 m², enlarged to the 200 m² unit
    a[60:66, 200:206] = BUILT  # 36 m²: under 50 m², sieved
    a[100:115, 100:115] = BUILT  # 225 m²: kept
    a[100:115, 140:155] = BUILT  # 225 m²: kept
    a[300:330, 60:80] = FOREST  # 600 m² garden wood far from buildings (outside the zone construite)
    a[115:125, 102:152] = FOREST  # 500 m² wood along the two buildings (inside the zone construite)
    a[200:210, 300:340] = ROAD  # 400 m² (outside)
    geoms, values, _ = _run(a, 128, simplify=0)
    by_class: dict[int, list[float]] = {}
    for g, v in zip(geoms, values, strict=True):
        by_class.setdefault(int(v), []).append(g.area)
    assert sorted(by_class[BUILT]) == [200, 225, 225]
    assert shapely.coverage_is_valid(np.array(geoms)) and sum(g.area for g in geoms) == 400 * 400
    assert by_class[FOREST] == [500]  # the 600 m² wood outside was merged (2 500 m² unit), the inner one kept
    assert ROAD not in by_class
    # an explicit zone construite layer overrides the derived one
    zc = [shapely.box(700000 + 50, 6600000 - 340, 700000 + 90, 6600000 - 290)]  # around the outer wood
    geoms, values, _ = _run(a, 128, simplify=0, zone_construite=zc)
    assert sorted(g.area for g, v in zip(geoms, values, strict=True) if v == FOREST) == [600]


def test_clusters_of_small_patches_are_merged_where_one_pass_gdal_sieve_stalls() -> None:
    # a mosaic of 20 m × 20 m (400 m²) patches of alternating classes: none reaches 2 500 m²
    yy, xx = np.mgrid[0:400, 0:400]
    a = np.where(((yy // 20) + (xx // 20)) % 2 == 0, GRASS, FOREST).astype(np.uint8)
    gdal = sieve(a, size=2500, connectivity=4)
    assert np.array_equal(gdal, a)  # GDAL: no neighbour is above the threshold, nothing changes
    geoms, _, _ = _run(a, 200)
    assert 0 < len(geoms) <= 400 * 400 // 2500
    assert min(g.area for g in geoms) >= 2500 * 0.99


def test_nodata_is_never_sieved_nor_absorbing() -> None:
    a = _speckled((200, 200), seed=3)
    a[:, :50] = 0
    geoms, values, _ = _run(a, 100, simplify=0)
    assert 0 not in set(values.tolist())
    assert sum(g.area for g in geoms) == (a > 0).sum()
    assert shapely.union_all(geoms).bounds[0] == 700000 + 50


def test_prediction_blocks_to_canonical_geoparquet(tmp_path: Path) -> None:
    from inference_batch.production.checkpoint import ModelCard, save_model
    from inference_batch.production.model import ModelSpec, build_model
    from inference_batch.production.predict import PredictOptions, predict
    from ocsge.cli import main
    from ocsge.products import product_key
    from ocsge.storage import LocalStorage
    from support.tiny_scene import write_tiny_scene

    scene = write_tiny_scene(tmp_path / "scene", height=300, width=300)
    spec = ModelSpec(
        n_classes=14, encoder="t", layers=(1, 1, 1, 1), widths=(8, 8, 8, 16, 16), decoder_channels=(16, 8, 8, 8, 8)
    )
    model = save_model(tmp_path / "m.safetensors", build_model(spec), ModelCard(spec=spec, scheme="couverture"))
    storage = LocalStorage(tmp_path / "store")
    predict(
        scene.sources,
        model,
        storage=storage,
        departement="S01",
        millesime=2024,
        options=PredictOptions(block_size=128, tile=96, margin=16, precision="fp32", num_workers=0),
    )
    main(["vectorize", "-d", "S01", "-y", "2024", "--root", str(tmp_path / "store"), "--umi-outside", "500"])
    frame = gpd.read_parquet(storage.url(product_key("prediction_vector", "S01", 2024)))
    # the same layer from the map/reduce jobs of AWS Batch (array index from the environment for one of them)
    args = [
        "vectorize",
        "-d",
        "S01",
        "-y",
        "2024",
        "--root",
        str(tmp_path / "store"),
        "--umi-outside",
        "500",
        "--force",
    ]
    main([*args, "--map-block", "1/2"])
    with pytest.raises(SystemExit):  # the reduce refuses to run before every map job has
        main([*args, "--reduce"])
    main([*args, "--map-block", "0/2"])
    main([*args, "--reduce"])
    import os

    from ocsge.products import block_prefix

    blocks = sum(o.key.endswith(".tif") for o in storage.list(block_prefix("prediction", "S01", 2024)))
    assert blocks > 1
    for index in range(blocks):  # one child of the array job per block, as the state machine runs them
        os.environ["AWS_BATCH_JOB_ARRAY_INDEX"] = str(index)
        try:
            main([*args, "--polygons-block", "each"])
        finally:
            del os.environ["AWS_BATCH_JOB_ARRAY_INDEX"]
    main([*args, "--assemble"])
    staged = gpd.read_parquet(storage.url(product_key("prediction_vector", "S01", 2024)))
    assert list(staged[schema.CODE_CS]) == list(frame[schema.CODE_CS])
    assert all(a.equals(b) for a, b in zip(staged.geometry, frame.geometry, strict=True))
    assert not list(storage.list("vectorize-work/"))  # the work keys are removed by the last job
    assert list(frame.columns) == list(schema.OCCUPATION_COLUMNS)
    assert frame.crs.to_epsg() == 2154
    assert (frame[schema.SOURCE] == "auto:model").all() and frame[schema.CODE_US].isna().all()
    assert frame[schema.ID].is_unique and (frame[schema.MILLESIME] == 2024).all()
    assert frame.area.sum() == pytest.approx(300 * 300 * 0.04, rel=1e-6)
    with rasterio.open(scene.sources.rgb) as src:
        assert shapely.box(*frame.total_bounds).equals(shapely.box(*src.bounds))
    # the one GeoParquet writer: covering bbox column + metadata, and the model for the catalogue
    import json

    import pyarrow.parquet as pq

    meta = pq.read_schema(storage.url(product_key("prediction_vector", "S01", 2024))).metadata
    geo = json.loads(meta[b"geo"])
    assert (
        "covering" in geo["columns"]["geometry"]
        and "bbox" in pq.read_schema(storage.url(product_key("prediction_vector", "S01", 2024))).names
    )
    block = next(o.key for o in storage.list("prediction/") if o.key.endswith(".tif"))
    with rasterio.open(storage.url(block)) as src:
        model_id = src.tags()["OCSGE_MODEL"]
    assert json.loads(meta[b"ocsge"])["model"] == model_id


def test_real_flair_predictions_mosaic(shared_data: Path) -> None:
    from ocsge.flair import scheme

    lut = np.array(scheme("flair13").lookup_table(), dtype=np.uint8)
    paths = sorted((shared_data / "flair1-toy-baseline-preds" / "preds").glob("PRED_*.tif"))[:6]
    tiles = []
    for path in paths:
        with rasterio.open(path) as src:
            tiles.append(lut[src.read(1)])
    a = np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])])  # 1024 × 1536 px at 0.2 m
    mosaic = Mosaic.from_array(a, Affine(0.2, 0, 700000, 0, -0.2, 6600000), "EPSG:2154", 512)
    geoms, values, report = vectorize_mosaic(mosaic, UMI())
    assert report.components > 5000 and report.polygons < report.components / 100
    areas = shapely.area(np.array(geoms))
    built = values == BUILT
    assert areas[built].min() >= 200 * 0.99
    # a polygon under its unit only where an enlarged building took pixels from it
    arr = np.array(geoms)
    under = np.flatnonzero(~built & (areas < 500 * 0.99))
    assert all(shapely.intersects(arr[i], arr[built]).any() for i in under) and report.built_enlarged > 0
    assert sum(areas) == pytest.approx((a > 0).sum() * 0.04, rel=1e-6)


def test_width_thresholds() -> None:
    """Covers narrower than 10 m are not captured whatever their area (5 m for sealed surfaces: roads),
    across block edges too."""
    a = np.full((400, 400), GRASS, dtype=np.uint8)
    a[20:27, :] = FOREST  # a 7 m × 400 m hedge (2 800 m²): too narrow
    a[100:112, 50:300] = FOREST  # 12 m × 250 m (3 000 m²): kept
    a[200:207, :] = ROAD  # 7 m × 400 m road seen by the model: roads from 5 m
    for block in (128, 400):
        geoms, values, _ = _run(a, block, simplify=0)
        areas = {int(v): sorted(g.area for g, w in zip(geoms, values, strict=True) if w == v) for v in set(values)}
        assert areas[FOREST] == [3000] and areas[ROAD] == [2800]
        assert sum(areas[GRASS]) == 400 * 400 - 3000 - 2800


# --- the numba kernels: labelling, graph edges, widths, runs -------------------------------------------


def _random_rasters(seed: int = 0):  # type: ignore[no-untyped-def]
    """Small rasters of 0–3 (0 = nodata): white noise, and blocky ones (long runs, holes, nested shapes)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        if trial % 2:
            coarse = rng.integers(0, 4, (5, 5)).astype(np.uint8)
            yield np.ascontiguousarray(ndimage.zoom(coarse, (h / 5, w / 5), order=0))
        else:
            yield rng.integers(0, 4, (h, w)).astype(np.uint8)


def test_block_labels_are_scipys_per_class_4_connected_components() -> None:
    from scipy import ndimage

    from inference_batch.production.components import block_components, paint

    for a in _random_rasters():
        bc = block_components(a)
        labels = paint(bc.runs, np.arange(bc.n + 1))
        assert (labels[a == 0] == 0).all() and (labels[a > 0] > 0).all()
        for value in range(1, 4):
            theirs, count = ndimage.label(a == value)  # 4-connectivity by default
            pairs = set(zip(theirs[a == value].tolist(), labels[a == value].tolist(), strict=True))
            # the same partition: a bijection between their components and ours
            assert len(pairs) == count == len({ours for _, ours in pairs})
        assert np.array_equal(bc.area, np.bincount(labels.ravel(), minlength=bc.n + 1)[1:])
        assert all(set(np.unique(a[labels == i + 1])) == {bc.cls[i]} for i in range(bc.n))
        # borders of the block, for the seams
        assert np.array_equal(bc.top, labels[0]) and np.array_equal(bc.bottom, labels[-1])
        assert np.array_equal(bc.left, labels[:, 0]) and np.array_equal(bc.right, labels[:, -1])


def test_block_edges_are_the_brute_force_count_of_pixel_pairs() -> None:
    from inference_batch.production.components import block_components, paint

    for a in _random_rasters(seed=1):
        bc = block_components(a)
        labels = paint(bc.runs, np.arange(bc.n + 1))
        expected: dict[tuple[int, int], int] = {}
        for x, y in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
            pair = (x != y) & (x > 0) & (y > 0)
            for u, v in zip(x[pair].tolist(), y[pair].tolist(), strict=True):
                key = (min(u, v), max(u, v))
                expected[key] = expected.get(key, 0) + 1
        got: dict[tuple[int, int], int] = {}
        for u, v, n in zip(bc.eu.tolist(), bc.ev.tolist(), bc.elen.tolist(), strict=True):
            assert u < v
            got[(u, v)] = got.get((u, v), 0) + n
        assert got == expected


def test_block_widths_follow_the_euclidean_transform_within_the_chamfer_error() -> None:
    from scipy import ndimage

    from inference_batch.production.components import block_components, paint

    a = np.full((120, 120), GRASS, dtype=np.uint8)
    a[10:17, :] = FOREST  # a 7 px strip
    a[40:70, 20:100] = WATER  # 30 px wide
    yy, xx = np.mgrid[0:120, 0:120]
    a[(np.abs(yy - xx - 0) < 6) & (yy > 75)] = ROAD  # a diagonal strip, 11 px across the diagonal
    bc = block_components(a)
    labels = paint(bc.runs, np.arange(bc.n + 1))
    pad = np.pad(a, 1, mode="edge")
    boundary = np.zeros(a.shape, dtype=bool)
    for dr, dc in ((0, 1), (2, 1), (1, 0), (1, 2)):
        boundary |= pad[dr : dr + 120, dc : dc + 120] != a
    exact = np.asarray(
        ndimage.maximum(2 * ndimage.distance_transform_edt(~boundary) + 2, labels, index=np.arange(1, bc.n + 1))
    )
    assert np.all(np.abs(bc.wide - exact) <= 0.09 * exact + 1e-9)
    strip = labels[12, 60] - 1
    assert bc.wide[strip] in (7, 8)  # a strip of w px reads w or w + 1


def test_runs_relabelled_and_painted_and_zone_construite_share() -> None:
    from inference_batch.production.components import block_components, inside_counts, paint, relabel_runs

    rng = np.random.default_rng(4)
    a = rng.integers(1, 3, (30, 50)).astype(np.uint8)
    bc = block_components(a)
    groups = rng.integers(1, 4, bc.n + 1).astype(np.int32)
    groups[0] = 0
    merged = relabel_runs(bc.runs, groups)
    assert np.array_equal(paint(merged, np.arange(4)), groups[paint(bc.runs, np.arange(bc.n + 1))])
    assert len(merged.col) < len(bc.runs.col)  # neighbouring runs of one group are one run
    zc = rng.random((8, 12)) < 0.5  # coarse cells of 5 px, the block at (3, 7) in the grid
    labels = paint(bc.runs, np.arange(bc.n + 1))
    fine = np.kron(zc, np.ones((5, 5), dtype=bool))[3:33, 7:57]
    expected = np.bincount(labels.ravel(), weights=fine.ravel(), minlength=bc.n + 1)[1:]
    assert np.array_equal(inside_counts(bc.runs, bc.n, zc, 5, 3, 7), expected)


def test_map_reduce_jobs_give_the_one_process_polygons(tmp_path: Path) -> None:
    """Components, sieve, polygons and assembly as separate jobs over parts of the blocks (through storage)
    equal the one-process run: same zone construite per block (from a margin of its neighbours), same
    graph, same polygons."""
    from inference_batch.production import vectorize_stages as stages
    from ocsge.storage import LocalStorage

    a = _speckled((260, 310), seed=5)
    for y, x in ((30, 40), (30, 75), (150, 200), (220, 20)):  # buildings: a zone construite across blocks
        a[y : y + 13, x : x + 16] = BUILT
    a[100:110, 0:310] = ROAD
    mosaic = Mosaic.from_array(a, ONE_M, "EPSG:2154", 100)
    umi = UMI()
    whole, values, report = vectorize_mosaic(mosaic, umi)
    storage = LocalStorage(tmp_path)
    prefix = stages.work_prefix("S01", 2024)
    for i in (2, 0, 1):
        stages.map_components(storage, mosaic, prefix, (i, 3), umi)
    assert stages.map_components(storage, mosaic, prefix, (0, 3), umi) == []  # a rerun skips what is there
    sieved = stages.reduce_sieve(storage, mosaic, prefix, umi)
    assert sieved.components == report.components
    for i in range(2):
        stages.map_polygons(storage, mosaic, prefix, (i, 2))
    geoms, staged_values, staged = stages.reduce_assemble(storage, mosaic, prefix, umi, 0.5)
    assert staged.polygons == report.polygons and list(staged_values) == list(values)
    assert all(g.equals(h) for g, h in zip(geoms, whole, strict=True))
    stages.clear_work(storage, prefix)
    assert not list(storage.list(prefix))


def test_a_block_zone_construite_from_its_margin_equals_the_whole_one() -> None:
    from inference_batch.production.vectorize import coarse_window, zone_construite_mask, zone_construite_window

    rng = np.random.default_rng(2)
    a = np.full((600, 700), GRASS, dtype=np.uint8)
    for _ in range(40):
        y, x = rng.integers(0, 590), rng.integers(0, 690)
        a[y : y + 10, x : x + 10] = BUILT
    mosaic = Mosaic.from_array(a, Affine(0.5, 0, 700000, 0, -0.5, 6600000), "EPSG:2154", 150)
    whole, k = zone_construite_mask(mosaic, UMI())
    assert whole.any() and not whole.all()
    for b in mosaic.blocks:
        part, k2 = zone_construite_window(mosaic, b, UMI())
        r0, c0, rows, cols = coarse_window(b.row_off, b.col_off, b.height, b.width, k)
        assert k2 == k and np.array_equal(part, whole[r0 : r0 + rows, c0 : c0 + cols])


def test_parts_of_the_blocks() -> None:
    from inference_batch.production.vectorize_stages import blocks_of_part, parse_part
    from ocsge.errors import OcsgeError

    mosaic = Mosaic.from_array(np.ones((50, 50), np.uint8), ONE_M, "EPSG:2154", 20)  # 9 blocks
    parts = [blocks_of_part(mosaic, parse_part(f"{i}/4")) for i in range(4)]
    assert sorted(j for p in parts for j in p) == list(range(9)) and parts[0] == [0, 4, 8]
    for bad in ("4/4", "1", "a/b", "0/0"):
        with pytest.raises(OcsgeError):
            parse_part(bad)


def test_traced_polygons_are_gdals_polygons_noded_with_the_fewest_vertices() -> None:
    """The boundary tracer gives the pieces ``rasterio.features.shapes`` gives (4-connectivity), valid
    (a ring through a corner twice is cut into a shell and the hole touching it), offset to the block;
    by default with a vertex only where a ring turns, at junctions and along the block's edges — still a
    correctly noded coverage (shared edges have the same vertices on both sides), which dropping the
    collinear vertices everywhere is not — or with one at every pixel corner."""
    from rasterio.features import shapes

    from inference_batch.production.components import block_components, trace_polygons

    pinched = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 1]], dtype=np.uint8)
    naive_breaks = 0
    for a in [pinched, *_random_rasters(seed=2)]:
        bc = block_components(a)
        lut = np.concatenate([[0], bc.cls]).astype(np.int32)
        polygons, values = trace_polygons(bc.runs, lut, 3, 5)
        dense, dense_values = trace_polygons(bc.runs, lut, 3, 5, every_corner=True)
        assert shapely.is_valid(polygons).all() and shapely.coverage_is_valid(polygons)
        theirs = [
            (shapely.affinity.translate(shapely.geometry.shape(g), 5, 3), int(v))
            for g, v in shapes(a, mask=a > 0, connectivity=4)
        ]
        assert len(theirs) == len(polygons) == len(dense)
        key = lambda t: (t[1], t[0].area, t[0].bounds)  # noqa: E731
        for (g, v), (h, w), (d, _) in zip(
            sorted(zip(polygons, values, strict=True), key=key),
            sorted(theirs, key=key),
            sorted(zip(dense, dense_values, strict=True), key=key),
            strict=True,
        ):
            assert v == w and g.equals(h) and d.equals(h)
            assert shapely.get_num_coordinates(d) == shapely.get_num_coordinates(shapely.segmentize(h, 1.0))
            assert shapely.get_num_coordinates(g) <= shapely.get_num_coordinates(d)
        naive_breaks += not shapely.coverage_is_valid(shapely.simplify(dense, 0))
    assert naive_breaks > 0  # the junction vertices matter: coverage_is_valid sees them


def test_buildings_enlarged_in_a_block_and_across_seams_take_the_same_pixels() -> None:
    """A small building whose window lies in one block is enlarged on the block's raster by the polygons
    step, one near a seam by the assembly on the polygons (then renoded): the same pixels either way, and
    the coverage stays noded (valid) for the simplification."""
    a = _speckled((240, 240), seed=7)
    a[30:42, 30:44] = BUILT  # 168 m², far from any edge of 120 px blocks
    a[100:112, 110:124] = BUILT  # 168 m², across the seam at x = 120
    a[180:189, 60:71] = BUILT  # 99 m²
    results = {}
    for block in (120, 240):  # two blocks and seams, or one block: everything enlarged in the block
        geoms, values, report = _run(a, block, simplify=0)
        assert shapely.coverage_is_valid(np.array(geoms)) and report.built_enlarged == 3
        assert sum(g.area for g in geoms) == 240 * 240
        results[block] = sorted((g for g, v in zip(geoms, values, strict=True) if v == BUILT), key=lambda g: g.bounds)
    assert [g.area for g in results[120]] == [200] * 3
    for g, h in zip(results[120], results[240], strict=True):
        assert g.equals(h)


def test_chosen_neighbours_are_a_stable_sort_of_the_edges_on_the_sieve_keys() -> None:
    """The one-pass kernel picks, per small node, the edge a stable lexicographic sort would put first:
    (not small,) not a network, longest shared boundary, largest neighbour; ties to the first edge."""
    from inference_batch.production.components import choose_neighbours

    rng = np.random.default_rng(4)
    for trial in range(40):
        n = int(rng.integers(2, 60))
        pairs = {tuple(sorted(p)) for p in rng.integers(0, n, (3 * n, 2)).tolist() if p[0] != p[1]}
        if not pairs:
            continue
        eu, ev = (np.array(v, dtype=np.int64) for v in zip(*sorted(pairs), strict=True))
        elen = rng.integers(1, 4, len(eu)).astype(np.int64)  # few values: many ties
        small = rng.random(n) < 0.6
        cls = rng.integers(0, 4, n).astype(np.uint16)
        area = rng.integers(1, 5, n).astype(np.int64)
        avoid_small = bool(trial % 2)
        best = choose_neighbours(eu, ev, elen, small, cls, area, (3,), avoid_small)
        src, dst = np.concatenate([eu, ev]), np.concatenate([ev, eu])
        length = np.concatenate([elen, elen])
        ok = small[src] & (cls[dst] != 0)
        src, dst, length = src[ok], dst[ok], length[ok]
        network = cls[dst] == 3
        keys = [-area[dst], -length, network, *([small[dst]] if avoid_small else []), src]
        order = np.lexsort(keys)
        expected = np.full(n, -1)
        for s_, d_ in zip(src[order][::-1], dst[order][::-1], strict=True):  # the first of each source wins
            expected[s_] = d_
        assert np.array_equal(best, expected)


def test_enlargement_takes_the_nearest_pixels_ties_in_raster_order() -> None:
    from scipy import ndimage

    from inference_batch.production.vectorize import _take_nearest

    rng = np.random.default_rng(1)
    for _ in range(30):
        window = rng.integers(0, 4, (25, 30)).astype(np.int32)
        window[10:14, 12:16] = 5  # the building (label 5)
        takeable = np.array([False, True, True, False, False, False])  # 0 nodata, 3 built: never taken
        target = int(rng.integers(17, 60))
        take = _take_nearest(window, 5, target, takeable)
        own = window == 5
        cand = np.flatnonzero(((window > 0) & ~own & takeable[window]).ravel())
        dist = ndimage.distance_transform_edt(~own).ravel()[cand]
        expected = cand[np.argsort(dist, kind="stable")[: target - 16]]
        assert sorted(take.tolist()) == sorted(expected.tolist())
    assert _take_nearest(np.full((5, 5), 5, np.int32), 5, 10, takeable) is None  # already large enough


def test_numba_graph_components_and_distance_transform_equal_scipys() -> None:
    """The vectoriser's process imports no scipy.ndimage/sparse (memory): its connected components and
    Euclidean distance transform are numba kernels that must number and measure exactly as scipy does."""
    from scipy import ndimage
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from inference_batch.production.components import connected_labels, edt_squared

    rng = np.random.default_rng(9)
    for _ in range(20):
        n = int(rng.integers(1, 80))
        u, v = rng.integers(0, n, (2, int(rng.integers(0, 2 * n))))
        _, theirs = connected_components(coo_matrix((np.ones(len(u)), (u, v)), shape=(n, n)), directed=False)
        assert np.array_equal(connected_labels(n, u, v), theirs)
        grid = rng.random(tuple(int(s) for s in rng.integers(1, 40, 2))) < rng.choice([0.02, 0.3, 0.9])
        if grid.any():
            assert np.array_equal(np.sqrt(edt_squared(grid)), ndimage.distance_transform_edt(~grid))


def test_stage_timings_add_up_and_the_vectoriser_imports_no_scipy_submodule() -> None:
    """Stages are timed in wall and CPU seconds, a stage inside another taken out of the outer one (the
    enlargement inside the polygons step); and the vectoriser's process loads neither scipy.ndimage nor
    scipy.sparse (tens of MB of resident memory that the benchmark's RSS comparison counts)."""
    import subprocess
    import sys
    import time

    from inference_batch.production.vectorize import VectorizeReport

    report = VectorizeReport()
    t0 = time.perf_counter()
    with report.stage("outer"):
        time.sleep(0.02)
        with report.stage("inner"):
            sum(range(200_000))
    total = time.perf_counter() - t0
    assert sum(report.seconds.values()) == pytest.approx(total, abs=0.005)
    assert report.seconds["outer"] >= 0.02 and report.cpu_seconds["inner"] > 0
    assert report.cpu_seconds["outer"] < report.seconds["outer"]  # asleep: wall time, no CPU time
    code = (
        "import sys, inference_batch.production.vectorize, inference_batch.production.vectorize_stages;"
        "print(sorted(m for m in sys.modules if m.startswith(('scipy.ndimage', 'scipy.sparse'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_widths_with_a_cap_are_the_exact_ones_up_to_the_cap() -> None:
    """With a width cap (the largest width rule) the chamfer distances use a byte per pixel: every width
    below the cap is the exact one, every other reads as the cap or more — what the width rules see is
    unchanged."""
    from inference_batch.production.components import block_components

    rng = np.random.default_rng(3)
    a = np.full((600, 500), 1, np.uint8)  # patches on the left, a 600 × 260 px field on the right: wider than the cap
    for _ in range(300):
        y, x = rng.integers(0, 590), rng.integers(0, 180)
        a[y : y + rng.integers(1, 60), x : x + rng.integers(1, 60)] = rng.integers(1, 4)
    exact = block_components(a).wide
    capped = block_components(a, width_cap_px=100).wide
    cap = 2 * 255 / 3 + 2
    assert exact.max() > cap
    assert np.array_equal(capped, np.minimum(exact, cap))
    assert np.array_equal(block_components(a, width_cap_px=500).wide, exact)  # a cap beyond the byte: exact
