"""Generated territory: the truth is a seeded, complete planar partition with every couverture leaf, and
the manifest's changes and errors match the two millésimes."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from inference_batch.synth import build_scene
from ocsge import schema
from ocsge.errors import OcsgeError, UnknownDepartementError
from ocsge.nomenclature import CS_LEAVES, US_LEAVES

SIZE = (220.0, 200.0)


@pytest.fixture(scope="module")
def scene():
    return build_scene("S01", *SIZE, seed=42)


@pytest.fixture(scope="module")
def big_scene():
    return build_scene("S01", 2000.0, 1500.0, seed=42)


def test_same_seed_same_truth_other_seed_differs(scene) -> None:
    again = build_scene("S01", *SIZE, seed=42)
    other = build_scene("S01", *SIZE, seed=7)
    for year in scene.millesimes:
        a, b = scene.truth[year], again.truth[year]
        assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))
        assert list(shapely.to_wkb(a.geometry.values)) == list(shapely.to_wkb(b.geometry.values))
        assert scene.manifest() == again.manifest()
    assert not other.truth[2021].geometry.geom_equals(scene.truth[2021].geometry).all() or len(
        other.truth[2021]) != len(scene.truth[2021])


@pytest.mark.parametrize("size", [SIZE, (2000.0, 1500.0), (400.0, 900.0)])
def test_every_couverture_leaf_in_both_millesimes(size, scene, big_scene) -> None:
    s = scene if size == SIZE else big_scene if size == (2000.0, 1500.0) else build_scene("S01", *size, seed=3)
    for year, frame in s.truth.items():
        assert set(frame[schema.CODE_CS]) == set(CS_LEAVES), year
        assert set(frame[schema.CODE_US]) <= set(US_LEAVES)


def test_required_uses_and_features(big_scene) -> None:
    first, second = (big_scene.truth[y] for y in big_scene.millesimes)
    pairs = set(zip(second[schema.CODE_CS], second[schema.CODE_US], strict=True))
    for pair in [("CS1.1.1.1", "US5"), ("CS1.1.1.1", "US2"), ("CS1.1.1.2", "US4.1.1"), ("CS1.1.2.1", "US4.1.2"),
                 ("CS1.1.2.1", "US1.3"), ("CS2.2.1", "US1.1"), ("CS2.1.3", "US1.1"), ("CS1.2.2", "US6.3"),
                 ("CS1.1.2.2", "US3"), ("CS1.2.1", "US6.1"), ("CS2.1.1.2", "US1.2")]:
        assert pair in pairs, pair
    assert ("CS1.2.1", "US6.1") in set(zip(first[schema.CODE_CS], first[schema.CODE_US], strict=True))


def test_truth_is_a_partition_of_the_rectangle(scene, big_scene) -> None:
    for s in (scene, big_scene):
        rect = shapely.box(*s.bounds)
        for year, frame in s.truth.items():
            assert list(frame.columns) == list(schema.OCCUPATION_COLUMNS)
            assert frame.crs.to_epsg() == 2154
            assert frame[schema.MILLESIME].eq(year).all() and frame[schema.SOURCE].eq("synthetic").all()
            assert frame[schema.ID].is_unique
            geoms = frame.geometry.to_numpy()
            assert shapely.is_valid(geoms).all()
            assert (shapely.get_type_id(geoms) == 3).all()  # single polygons
            assert abs(shapely.area(geoms).sum() - rect.area) < 1e-3
            union = shapely.coverage_union_all(geoms)
            assert shapely.symmetric_difference(union, rect).area < 1e-3  # no gap, nothing outside
            tree = shapely.STRtree(geoms)
            i, _j = tree.query(geoms, predicate="overlaps")
            assert len(i) == 0  # no overlap


def test_manifest_changes_match_the_two_truths(scene, big_scene) -> None:
    for s in (scene, big_scene):
        first, second = (s.truth[y] for y in s.millesimes)
        manifest = s.manifest()
        assert manifest["synthetic"] is True and "SYNTHETIC" in manifest["title"]
        types = {c["type"] for c in manifest["changes"]}
        assert {"new_housing", "new_road", "clear_cut", "demolition", "quarry_extension"} <= types
        listed_before: set[str] = set()
        listed_after: set[str] = set()
        for change in manifest["changes"]:
            assert change["area_m2"] > 0 and change["transitions"]
            assert set(change["ids_before"]) <= set(first[schema.ID])
            assert set(change["ids_after"]) <= set(second[schema.ID])
            listed_before |= set(change["ids_before"])
            listed_after |= set(change["ids_after"])
            geom = shapely.from_wkt(change["geometry_wkt"])
            assert abs(geom.area - change["area_m2"]) < 1.0
            for t in change["transitions"]:
                assert (t["cs_before"], t["us_before"]) != (t["cs_after"], t["us_after"])
                point = shapely.Point(t["point"])
                assert geom.buffer(0.05).contains(point)
                before = first[first.contains(point)]
                after = second[second.contains(point)]
                assert len(before) == 1 and len(after) == 1
                assert (before[schema.CODE_CS].iloc[0], before[schema.CODE_US].iloc[0]) == (
                    t["cs_before"], t["us_before"])
                assert (after[schema.CODE_CS].iloc[0], after[schema.CODE_US].iloc[0]) == (t["cs_after"], t["us_after"])
                assert before[schema.ID].iloc[0] in change["ids_before"]
                assert after[schema.ID].iloc[0] in change["ids_after"]
        errors = manifest["errors"]
        assert len(errors) >= 2
        error_ids = {pid for e in errors for pid in e["ids"]}
        for err in errors:
            point = shapely.Point(err["point"])
            before = first[first.contains(point)].iloc[0]
            after = second[second.contains(point)].iloc[0]
            assert before[schema.ID] in err["ids"]
            assert (before[schema.CODE_CS], before[schema.CODE_US]) == (err["cs_published"], err["us_published"])
            assert (after[schema.CODE_CS], after[schema.CODE_US]) == (err["cs_corrected"], err["us_corrected"])
        # everything not listed is identical in both millésimes (same id, codes and geometry)
        a = first[~first[schema.ID].isin(listed_before | error_ids)].set_index(schema.ID)
        b = second[~second[schema.ID].isin(listed_after | error_ids)].set_index(schema.ID)
        assert set(a.index) == set(b.index)
        b = b.loc[a.index]
        assert (a[schema.CODE_CS] == b[schema.CODE_CS]).all() and (a[schema.CODE_US] == b[schema.CODE_US]).all()
        assert shapely.equals(a.geometry.to_numpy(), b.geometry.to_numpy()).all()


def test_zone_construite_and_communes(big_scene) -> None:
    for year, zc in big_scene.zone_construite.items():
        assert len(zc) >= 1 and zc.crs.to_epsg() == 2154
        built = big_scene.truth[year]
        built = built[built[schema.CODE_CS] == "CS1.1.1.1"]
        covered = shapely.intersection(shapely.union_all(built.geometry.to_numpy()),
                                       shapely.union_all(zc.geometry.to_numpy())).area
        assert covered / built.area.sum() > 0.9
    communes = big_scene.communes
    assert len(communes) >= 3
    assert communes["insee_com"].str.match(r"^S01\d{2}$").all() and communes["insee_dep"].eq("S01").all()
    assert abs(communes.area.sum() - shapely.box(*big_scene.bounds).area) < 1e-3


def test_bad_inputs() -> None:
    with pytest.raises(UnknownDepartementError, match="S1X"):
        build_scene("S1X", *SIZE)
    with pytest.raises(OcsgeError, match="'77' is a real one"):
        build_scene("77", *SIZE)
    with pytest.raises(OcsgeError, match="too small"):
        build_scene("S01", 50, 50)
    with pytest.raises(OcsgeError, match="earlier first"):
        build_scene("S01", *SIZE, millesimes=(2024, 2021))


def test_area_accounting_is_consistent(scene) -> None:
    m = scene.manifest()
    for year in scene.millesimes:
        assert sum(m["counts"][str(year)]["code_cs"].values()) == len(scene.truth[year])
    assert np.isclose(sum(c["area_m2"] for c in m["changes"]),
                      sum(t["area_m2"] for c in m["changes"] for t in c["transitions"]))
