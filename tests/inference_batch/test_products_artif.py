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
    # an unknown or missing usage: the couverture decides when it can (a building is artificialised)
    artif, unknown = matrix_artif(["CS1.1.1.1", "CS2.1.1.1", "CS2.2.1", "CS1.1.1.1"],
                                  ["INDETERMINE", None, "INDETERMINE", ""])
    assert artif.tolist() == [True, False, False, True]
    assert unknown.tolist() == [False, False, True, False]


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


def test_nested_island_follows_the_outermost_outline() -> None:
    """The audit's case: in a field, a 1 600 m² island of a house (225 m²) and a yard (1 275 m²) enclosing
    a 100 m² wooded garden. The island's outline (the yard's hole filled) is below 2 500 m²: it takes the
    class of the field as a whole, the house excepted (built, ≥ 50 m²). The garden stays non-artificialised
    (it was flipped to artificialised when judged on its own, enclosed by the yard)."""
    island = shapely.box(100, 100, 140, 140)  # 40 × 40 = 1 600 m²
    house = shapely.box(100, 100, 115, 115)  # 225 m²
    garden = shapely.box(122, 122, 132, 132)  # 100 m², inside the yard
    yard = island.difference(house).difference(garden)
    assert (house.area, yard.area, garden.area) == (225, 1275, 100)
    field = shapely.box(0, 0, 300, 300).difference(island)
    out, totals = artificialisation(layer([("field", "CS2.2.1", "US1.1", field), ("house", "CS1.1.1.1", "US5", house),
                                           ("yard", "CS1.1.1.2", "US5", yard),
                                           ("garden", "CS2.1.1.1", "US5", garden)]))
    assert by_id(out) == {"field": ("non artif", False), "house": ("artif", False), "yard": ("non artif", True),
                          "garden": ("non artif", False)}
    assert (totals["islands_to_non_artif"], totals["islands_to_artif"], totals["built_kept_artif"]) == (1, 0, 1)


def test_outline_counts_the_holes_it_encloses() -> None:
    # a 2 400 m² ring of parking around a 400 m² lawn: the cluster is below 2 500 m², its outline is not
    ring_outline = shapely.box(100, 100, 160, 160)  # 3 600 m²
    lawn = shapely.box(120, 120, 140, 140)  # 400 m²
    parking = ring_outline.difference(lawn)
    field = shapely.box(0, 0, 300, 300).difference(ring_outline)
    out, _ = artificialisation(layer([("field", "CS2.2.1", "US1.1", field),
                                      ("parking", "CS1.1.1.2", "US4.1.1", parking),
                                      ("lawn", "CS2.2.1", "US6.3", lawn)]))
    # the parking is no island (outline 3 600 m²); the lawn is one, enclosed by artificial ground
    assert by_id(out) == {"field": ("non artif", False), "parking": ("artif", False), "lawn": ("artif", True)}


def corner_layout() -> list[tuple[str, str, str, shapely.Geometry]]:
    """A 900 m² gravel yard touching a 3 600 m² car park at one corner, both in a field."""
    yard = shapely.box(100, 100, 130, 130)
    park = shapely.box(130, 130, 190, 190)
    field = shapely.box(0, 0, 300, 300).difference(yard).difference(park)
    return [("field", "CS2.2.1", "US1.1", field), ("yard", "CS1.1.2.1", "US1.1", yard),
            ("park", "CS1.1.1.2", "US4.1.1", park)]


def test_a_corner_contact_is_not_adjacency_by_default() -> None:
    out, _ = artificialisation(layer(corner_layout()))
    assert by_id(out)["yard"] == ("non artif", True)  # judged alone: an enclosed 900 m² island
    out, _ = artificialisation(layer(corner_layout()), adjacency="intersects")
    assert by_id(out)["yard"] == ("artif", False)  # any contact: anchored to the car park
    with pytest.raises(ValueError, match="adjacency"):
        artificialisation(layer(corner_layout()), adjacency="touches")


def test_shared_edge_with_millimetre_noise_is_adjacency() -> None:
    # the yard's edge along the car park is 1 mm off (real data): still adjacent, so anchored
    yard = shapely.box(100, 100, 130.0 - 0.001, 130)
    park = shapely.box(130, 100, 190, 160)
    field = shapely.box(0, 0, 300, 300).difference(shapely.box(100, 100, 190, 160))
    out, _ = artificialisation(layer([("field", "CS2.2.1", "US1.1", field), ("yard", "CS1.1.2.1", "US1.1", yard),
                                      ("park", "CS1.1.1.2", "US4.1.1", park)]))
    assert by_id(out)["yard"] == ("artif", False)


def test_millimetre_gap_does_not_open_an_enclosure() -> None:
    # a lawn in a housing estate, its eastern edge 1 mm short of the houses: still enclosed (tolerance)
    lawn = shapely.box(50, 50, 90 - 0.001, 110)
    housing = shapely.box(0, 0, 200, 200).difference(shapely.box(50, 50, 90, 110))
    out, _ = artificialisation(layer([("housing", "CS1.1.1.1", "US5", housing), ("lawn", "CS2.2.1", "US1.1", lawn)]))
    assert by_id(out)["lawn"] == ("artif", True)


def test_qa_against_ign_delivered_layer(tmp_path: Path) -> None:
    """IGN's artificialisation layer of the nested case, as an older rule would give it (the garden
    flipped to artificialised): the QA report counts the polygon and the area classed differently, by
    crit_seuil and by commune."""
    from inference_batch.freshness import DELIVERY, mark_done
    from inference_batch.products.artifacts import key
    from inference_batch.products.ign_qa import run_artif_qa

    island = shapely.box(100, 100, 140, 140)
    house, garden = shapely.box(100, 100, 115, 115), shapely.box(122, 122, 132, 132)
    yard = island.difference(house).difference(garden)
    field = shapely.box(0, 0, 300, 300).difference(island)
    ign = layer([("field", "CS2.2.1", "US1.1", field), ("house", "CS1.1.1.1", "US5", house),
                 ("yard", "CS1.1.1.2", "US5", yard), ("garden", "CS2.1.1.1", "US5", garden)])
    ign["artif"] = ["non artif", "artif", "non artif", "artif"]
    ign["crit_seuil"] = [False, False, True, True]
    store = LocalStorage(tmp_path)
    assert run_artif_qa(store, "77", 2021) == {}  # no IGN layer: nothing to compare
    write_vector(store, key("artificialisation", "77", 2021), ign)
    mark_done(store, key("artificialisation", "77", 2021), "ingested", origin=DELIVERY)
    com = gpd.GeoDataFrame({"INSEE_COM": ["77001"], "NOM": ["Champ"]},
                           geometry=[shapely.affinity.translate(shapely.box(0, 0, 300, 300), X0, Y0)], crs=2154)
    write_vector(store, key("communes", "77", 2021), com)
    report = read_json(store, run_artif_qa(store, "77", 2021)["artif_qa"])
    assert report["confusion"]["ign artif / ours non artif"] == {"polygons": 1, "ha": 0.01}
    assert report["confusion"]["ign non artif / ours artif"]["polygons"] == 0
    assert report["agreement"]["polygons_share"] == 0.75
    assert report["agreement"]["area_share"] == pytest.approx(1 - 100 / 90_000, abs=1e-6)
    assert report["artif_ours_minus_ign_ha"] == -0.01
    crit = report["by_crit_seuil"]["ign crit_seuil true"]
    assert crit["polygons"] == 2 and crit["ours_same_class"]["polygons"] == 1
    assert crit["ours_crit_seuil"]["polygons"] == 1
    assert report["crit_seuil_confusion"]["ign true / ours false"]["polygons"] == 1
    (commune,) = report["by_commune"]
    assert commune["insee_com"] == "77001" and commune["polygons_classed_differently"] == 1
    assert commune["artif_ours_minus_ign_ha"] == -0.01
