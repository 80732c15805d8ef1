"""Vector-only mode: a département-sized pair of truths with the requested polygon count, a partition,
every couverture leaf, and a realistic share of changes."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from inference_batch.synth.vector_scale import build_vector_pair, generate_vector_pair
from ocsge import schema
from ocsge.errors import OcsgeError
from ocsge.nomenclature import CS_LEAVES
from ocsge.products import product_key
from ocsge.storage import LocalStorage


@pytest.fixture(scope="module")
def pair():
    return build_vector_pair(20_000, seed=3, departement="S02")


def test_requested_count_partition_and_leaves(pair) -> None:
    first, second = pair["truth"][2021], pair["truth"][2024]
    assert len(first) == 20_000
    assert len(second) == 20_000 + pair["summary"]["split_cells"]
    rect = shapely.box(*pair["summary"]["bounds"])
    for frame in (first, second):
        assert list(frame.columns) == list(schema.OCCUPATION_COLUMNS)
        assert frame[schema.ID].is_unique and frame.crs.to_epsg() == 2154
        geoms = frame.geometry.to_numpy()
        assert shapely.is_valid(geoms).all()
        assert abs(shapely.area(geoms).sum() / rect.area - 1) < 1e-9
        i, _ = shapely.STRtree(geoms).query(geoms, predicate="overlaps")
        assert len(i) == 0
        assert set(frame[schema.CODE_CS]) == set(CS_LEAVES)
    assert pair["communes"]["insee_com"].str.startswith("S02").all()


def test_changes_are_a_realistic_share_and_listed(pair) -> None:
    first, second = pair["truth"][2021], pair["truth"][2024]
    summary = pair["summary"]
    assert 0.01 <= summary["changed_fraction"] <= 0.05
    changed = set(summary["changed_ids_before"])
    a = first[~first[schema.ID].isin(changed)].set_index(schema.ID)
    b = second.set_index(schema.ID).loc[a.index]
    assert (a[schema.CODE_CS] == b[schema.CODE_CS]).all() and (a[schema.CODE_US] == b[schema.CODE_US]).all()
    assert shapely.equals(a.geometry.to_numpy(), b.geometry.to_numpy()).all()
    assert sum(t["polygons"] for t in summary["transitions"]) == len(changed)
    artif = [t for t in summary["transitions"] if t["cs_before"] == "CS2.2.1" and t["cs_after"] == "CS1.1.1.1"]
    assert artif and artif[0]["area_m2"] > 0


def test_same_seed_same_pair() -> None:
    a = build_vector_pair(2_000, seed=9)
    b = build_vector_pair(2_000, seed=9)
    c = build_vector_pair(2_000, seed=10)
    for year in (2021, 2024):
        assert a["truth"][year].to_wkb().equals(b["truth"][year].to_wkb())
    assert not np.array_equal(a["truth"][2021][schema.CODE_CS].to_numpy(), c["truth"][2021][schema.CODE_CS].to_numpy())


def test_generate_writes_truth_and_communes(tmp_path) -> None:
    storage = LocalStorage(tmp_path)
    manifest = generate_vector_pair(storage, "S03", n_polygons=3_000, seed=1)
    for year in (2021, 2024):
        truth = gpd.read_parquet(tmp_path / product_key("truth", "S03", year))
        assert manifest["keys"][str(year)]["truth"] == product_key("truth", "S03", year)
        assert storage.exists(product_key("communes", "S03", year))
        assert len(truth) == manifest["polygons"][str(year)]
    assert manifest["mode"] == "vector_pair" and manifest["synthetic"] is True
    with pytest.raises(OcsgeError, match="1 000"):
        build_vector_pair(10)


@pytest.fixture(scope="module")
def realistic():
    return build_vector_pair(4_000, seed=3, departement="S02", vertices="20-200")


def test_realistic_geometry_is_a_wiggly_partition_with_islands(realistic) -> None:
    summary = realistic["summary"]
    rect = shapely.box(*summary["bounds"])
    for year, frame in realistic["truth"].items():
        geoms = frame.geometry.to_numpy()
        assert shapely.is_valid(geoms).all() and (shapely.get_type_id(geoms) == 3).all()
        assert abs(shapely.area(geoms).sum() / rect.area - 1) < 1e-9
        i, _ = shapely.STRtree(geoms).query(geoms, predicate="overlaps")
        assert len(i) == 0, year
        assert frame[schema.ID].is_unique and set(frame[schema.CODE_CS]) == set(CS_LEAVES)
        holes = shapely.get_num_interior_rings(geoms) > 0
        assert 0.01 < holes.mean() < 0.06  # hosts of islands
    first = realistic["truth"][2021]
    assert len(first) == 4_000
    vertices = shapely.get_num_coordinates(first.geometry.to_numpy()) - 1
    assert vertices.min() >= 20 and np.median(vertices) > 40 and np.percentile(vertices, 90) > 100
    # neighbours share their boundaries exactly, vertex for vertex: every boundary but the territory's is
    # the common line of two polygons (were they only close, their boundaries would cross at points)
    geoms = first.geometry.to_numpy()
    a, b = shapely.STRtree(geoms).query(geoms, predicate="touches")
    shared = shapely.intersection(shapely.boundary(geoms[a]), shapely.boundary(geoms[b]))
    inner = shapely.length(shapely.boundary(geoms)).sum() - rect.length
    assert shapely.length(shared).sum() == pytest.approx(inner, rel=1e-9)
    lines = shared[shapely.length(shared) > 1]
    assert np.median(shapely.get_num_coordinates(lines)) > 5  # wiggly, not straight


def test_realistic_update_keeps_most_polygons_identical(realistic) -> None:
    first, second = realistic["truth"][2021], realistic["truth"][2024]
    summary = realistic["summary"]
    changed = set(summary["changed_ids_before"])
    kept = first[~first[schema.ID].isin(changed)].set_index(schema.ID)
    later = second.set_index(schema.ID).loc[kept.index]
    assert shapely.equals_exact(kept.geometry.to_numpy(), later.geometry.to_numpy(), 0).all()  # same coordinates
    assert (kept[schema.CODE_CS] == later[schema.CODE_CS]).all()
    assert 0.9 < len(kept) / len(first) < 0.99
    for what in ("split_cells", "merged_pairs", "moved_boundaries", "islands_removed", "islands_added"):
        assert summary[what] > 0, what
    assert len(second) == len(first) + summary["split_cells"] - summary["merged_pairs"] - summary[
        "islands_removed"] + summary["islands_added"]
    same = set(shapely.to_wkb(first.geometry.to_numpy())) & set(shapely.to_wkb(second.geometry.to_numpy()))
    recoded = summary["changed_cells"] - summary["split_cells"]  # same shape, new codes (unless also reshaped)
    assert len(kept) + 0.9 * recoded <= len(same) <= len(kept) + recoded


def test_realistic_option_of_the_cli(tmp_path) -> None:
    from click.testing import CliRunner

    from inference_batch.synth.cli import synth

    result = CliRunner().invoke(synth, ["--root", str(tmp_path), "--vector-only", "--realistic", "--polygons", "2000"])
    assert result.exit_code == 0, result.output
    truth = gpd.read_parquet(tmp_path / product_key("truth", "S02", 2021))
    assert len(truth) == 2_000 and np.median(shapely.get_num_coordinates(truth.geometry.to_numpy())) > 40
    bad = CliRunner().invoke(synth, ["--root", str(tmp_path), "--vector-only", "--vertices", "200-20"])
    assert bad.exit_code != 0 and "--vertices" in str(bad.exception or bad.output)
