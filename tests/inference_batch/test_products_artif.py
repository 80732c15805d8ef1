"""Artificialisation: matrix then the décret's thresholds on hand-built enclosures."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from inference_batch.products.artif import artificialisation, matrix_artif, run_artif
from inference_batch.products.artifacts import read_json, read_vector, write_vector
from inference_batch.synth.partitions import partition
from ocsge.storage import LocalStorage

X0, Y0 = 700_000.0, 6_600_000.0


def layer(rows: list[tuple[str, str, str, shapely.Geometry]]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"id": [r[0] for r in rows], "code_cs": [r[1] for r in rows],
                             "code_us": [r[2] for r in rows], "millesime": 2021},
                            geometry=[shapely.affinity.translate(r[3], X0, Y0) for r in rows], crs=2154)


def by_id(out: gpd.GeoDataFrame) -> dict[str, tuple[str, bool]]:
    return {r.id: (r.artif, bool(r.crit_seuil)) for r in out.itertuples()}


def test_meadow_enclosed_in_housing_becomes_artificial() -> None:
    meadow = shapely.box(50, 50, 90, 110)  # 40 × 60 = 2 400 m²
    assert meadow.area == 2400
    housing = shapely.box(0, 0, 200, 200).difference(meadow)
    out, totals = artificialisation(layer([("housing", "CS1.1.1.1", "US5", housing),
                                           ("meadow", "CS2.2.1", "US1.1", meadow)]))
    assert by_id(out) == {"housing": ("artif", False), "meadow": ("artif", True)}
    assert totals["artif_ha"] == pytest.approx(4.0) and totals["crit_seuil_to_artif_ha"] == pytest.approx(0.24)
    assert totals["matrix_artif_ha"] == pytest.approx(4.0 - 0.24)


def test_larger_meadow_stays_non_artificial() -> None:
    meadow = shapely.box(50, 50, 100, 110)  # 3 000 m²
    housing = shapely.box(0, 0, 200, 200).difference(meadow)
    out, _ = artificialisation(layer([("housing", "CS1.1.1.1", "US5", housing),
                                      ("meadow", "CS2.2.1", "US1.1", meadow)]))
    assert by_id(out)["meadow"] == ("non artif", False)


def test_60m2_building_in_a_field_stays_artificial() -> None:
    building = shapely.box(100, 100, 106, 110)  # 60 m²
    field = shapely.box(0, 0, 300, 300).difference(building)
    out, totals = artificialisation(layer([("field", "CS2.2.1", "US1.1", field),
                                           ("building", "CS1.1.1.1", "US1.1", building)]))
    assert by_id(out) == {"field": ("non artif", False), "building": ("artif", False)}
    assert totals["built_kept_artif"] == 1


def test_small_artificial_island_without_building_becomes_non_artificial() -> None:
    yard = shapely.box(100, 100, 130, 130)  # 900 m² of gravel in a field
    shed = shapely.box(130, 100, 136, 106)  # 36 m² of building: below the 50 m² threshold
    field = shapely.box(0, 0, 300, 300).difference(yard).difference(shed)
    out, totals = artificialisation(layer([("field", "CS2.2.1", "US1.1", field),
                                           ("yard", "CS1.1.2.1", "US1.1", yard),
                                           ("shed", "CS1.1.1.1", "US1.1", shed)]))
    assert by_id(out) == {"field": ("non artif", False), "yard": ("non artif", True), "shed": ("non artif", True)}
    assert totals["islands_to_non_artif"] == 1  # yard and shed form one cluster


def test_cluster_of_small_polygons_is_judged_as_a_whole() -> None:
    # two adjacent meadows of 1 500 m² each: the cluster (3 000 m²) is above the threshold
    a, b = shapely.box(50, 50, 80, 100), shapely.box(80, 50, 110, 100)
    housing = shapely.box(0, 0, 200, 200).difference(a).difference(b)
    out, _ = artificialisation(layer([("housing", "CS1.1.1.1", "US5", housing),
                                      ("a", "CS2.2.1", "US1.1", a), ("b", "CS2.1.2", "US6.3", b)]))
    assert by_id(out)["a"] == ("non artif", False) and by_id(out)["b"] == ("non artif", False)


def test_island_at_the_edge_of_the_territory_is_not_enclosed() -> None:
    meadow = shapely.box(0, 50, 40, 110)  # touches the western edge: what lies beyond is unknown
    housing = shapely.box(0, 0, 200, 200).difference(meadow)
    out, _ = artificialisation(layer([("housing", "CS1.1.1.1", "US5", housing),
                                      ("meadow", "CS2.2.1", "US1.1", meadow)]))
    assert by_id(out)["meadow"] == ("non artif", False)


def test_island_anchored_to_a_large_polygon_of_its_class() -> None:
    meadow = shapely.box(50, 50, 90, 110)
    forest = shapely.box(90, 0, 200, 200)  # large non-artificial neighbour: same cluster
    housing = shapely.box(0, 0, 90, 200).difference(meadow)
    out, _ = artificialisation(layer([("housing", "CS1.1.1.1", "US5", housing), ("meadow", "CS2.2.1", "US1.1", meadow),
                                      ("forest", "CS2.1.1.1", "US1.2", forest)]))
    assert by_id(out)["meadow"] == ("non artif", False)


def test_matrix_with_unknown_codes() -> None:
    artif, unknown = matrix_artif(["CS1.1.1.1", "CS2.2.1", "CS2.2.1", None, "CS9"],
                                  ["US1.1", "US5", "US1.1", "US5", "US5"])
    assert artif.tolist() == [True, True, False, False, False]
    assert unknown.tolist() == [False, False, False, True, True]


def test_run_artif_step_and_rerun(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    occ = partition(3_000, (700_000, 6_600_000, 703_000, 6_603_000), millesime=2021, seed=4)
    write_vector(store, "occupation/D077/2021/occupation_D077_2021.parquet", occ)
    keys = run_artif(store, "77", 2021)
    out = read_vector(store, keys["artificialisation"])
    assert list(out.columns) == ["id", "code_cs", "code_us", "millesime", "artif", "crit_seuil", "geometry"]
    assert set(out.artif) == {"artif", "non artif"} and out.crit_seuil.any()
    totals = read_json(store, keys["artif_totals"])
    assert totals["surface_ha"] == pytest.approx(900.0)
    assert totals["artif_ha"] == pytest.approx(out.area[out.artif == "artif"].sum() / 1e4, abs=1e-3)
    mtime = Path(store.url(keys["artificialisation"])).stat().st_mtime_ns
    run_artif(store, "77", 2021)
    assert Path(store.url(keys["artificialisation"])).stat().st_mtime_ns == mtime
