"""OCS GE auto: the vectorised prediction crossed with hand-built ancillary layers, rule by rule."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, Point, box

from inference_batch.production.rules import (
    decode,
    encode,
    enlarge_small_buildings,
    occupation_auto,
)
from ocsge import schema

X0, Y0 = 700000.0, 6600000.0
CRS = "EPSG:2154"


def B(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def P(x: float, y: float) -> Point:
    return Point(X0 + x, Y0 + y)


def _prediction() -> gpd.GeoDataFrame:
    """200 m × 200 m: grass (west), deciduous trees (north-east), bare soil (south-east)."""
    rows = [("CS2.2.1", B(0, 0, 100, 200)), ("CS2.1.1.1", B(100, 100, 200, 200)), ("CS1.2.1", B(100, 0, 200, 100))]
    return gpd.GeoDataFrame({schema.ID: [f"p{i}" for i in range(3)], schema.CODE_CS: [r[0] for r in rows],
                             schema.CODE_US: None, schema.MILLESIME: 2024, schema.SOURCE: "auto:model"},
                            geometry=[r[1] for r in rows], crs=CRS)


def _ancillary() -> dict[str, gpd.GeoDataFrame]:
    return {
        "bdtopo_batiment": gpd.GeoDataFrame(
            {"cleabs": ["B1", "B2"], "usage_1": ["Résidentiel", "Résidentiel"], "hauteur": [6.0, 3.0]},
            geometry=[B(20, 150, 30, 160), B(60, 20, 66, 26)], crs=CRS),  # 100 m² (→ 200 m²), 36 m² (dropped)
        "bdtopo_route": gpd.GeoDataFrame(
            {"cleabs": ["R1", "R2"], "largeur_de_chaussee": [8.0, 3.0], "nature": ["Route", "Chemin"]},
            geometry=[LineString([(X0, Y0 + 120), (X0 + 200, Y0 + 120)]),
                      LineString([(X0 + 50, Y0), (X0 + 50, Y0 + 100)])], crs=CRS),
        "rpg": gpd.GeoDataFrame({"id_parcel": ["F1"], "code_group": ["1"]}, geometry=[B(0, 0, 45, 100)], crs=CRS),
        "bdforet": gpd.GeoDataFrame(
            {"id": ["S1", "S2"], "essence": ["Conifères", "Feuillus"], "code_tfv": ["FF2-00-00", "FF1-00-00"]},
            geometry=[B(100, 160, 200, 200), B(150, 0, 200, 60)], crs=CRS),  # S2 over bare soil: a clear-cut
        "fichiers_fonciers": gpd.GeoDataFrame(
            {"idpar": ["A1", "A2", "A3"], "nlogh": [1, 0, 2], "nlocact": [0, 0, 0]},
            geometry=[B(5, 135, 45, 175), B(0, 0, 100, 100), B(50, 20, 100, 80)], crs=CRS),
        "bdtopo_hydro": gpd.GeoDataFrame({"cleabs": ["H1"], "nature": ["Plan d'eau"]},
                                         geometry=[B(100, 40, 150, 100)], crs=CRS),
    }


def _at(frame: gpd.GeoDataFrame, x: float, y: float) -> tuple[str, str, str]:
    hits = frame[frame.contains(P(x, y))]
    assert len(hits) == 1, f"{len(hits)} polygons at ({x}, {y})"
    row = hits.iloc[0]
    return row[schema.CODE_CS], row[schema.CODE_US], row[schema.SOURCE]


@pytest.fixture(scope="module")
def auto() -> gpd.GeoDataFrame:
    frame, report = occupation_auto(_prediction(), _ancillary(), 2024, "S01", res=0.5, block_size=150)
    assert report.layers_missing == ["bdtopo_voie_ferree"]
    return frame


def test_canonical_schema_and_planar_partition(auto: gpd.GeoDataFrame) -> None:
    assert list(auto.columns) == list(schema.OCCUPATION_COLUMNS)
    assert auto.crs.to_epsg() == 2154 and (auto[schema.MILLESIME] == 2024).all()
    assert auto[schema.CODE_CS].notna().all() and auto[schema.CODE_US].notna().all()
    assert auto.area.sum() == pytest.approx(200 * 200, rel=1e-6)
    assert shapely.union_all(auto.geometry.to_numpy()).area == pytest.approx(200 * 200, rel=1e-6)
    assert set(auto[schema.SOURCE]) <= {"auto:model", "auto:bdtopo", "auto:rpg", "auto:bdforet", "auto:ff"}


def test_buildings_from_bdtopo(auto: gpd.GeoDataFrame) -> None:
    assert _at(auto, 25, 155) == ("CS1.1.1.1", "US5", "auto:bdtopo")
    built = auto[auto[schema.CODE_CS] == "CS1.1.1.1"]
    assert len(built) == 1 and 200 <= built.area.iloc[0] <= 240  # 100 m² enlarged to 200 m² (+ pixel edges)
    assert _at(auto, 63, 23)[0] != "CS1.1.1.1"  # 36 m²: not represented


def test_roads_at_least_5_m_wide(auto: gpd.GeoDataFrame) -> None:
    assert _at(auto, 80, 120) == ("CS1.1.1.2", "US4.1.1", "auto:bdtopo")
    road = auto[auto[schema.CODE_US] == "US4.1.1"]
    assert road.area.sum() == pytest.approx(8 * 200, rel=0.05)  # 8 m wide, kept although under 2 500 m²
    assert _at(auto, 50, 10)[0] == "CS2.2.1"  # the 3 m track is not represented


def test_rpg_gives_agriculture(auto: gpd.GeoDataFrame) -> None:
    assert _at(auto, 20, 50) == ("CS2.2.1", "US1.1", "auto:rpg")


def test_bdforet_gives_species_and_sylviculture(auto: gpd.GeoDataFrame) -> None:
    assert _at(auto, 150, 180) == ("CS2.1.1.2", "US1.2", "auto:bdforet")  # model saw trees, BD Forêt says conifers
    assert _at(auto, 175, 30) == ("CS1.2.1", "US1.2", "auto:bdforet")  # clear-cut: couverture stays the model's


def test_fichiers_fonciers_and_building_neighbourhood_give_residential_use(auto: gpd.GeoDataFrame) -> None:
    assert _at(auto, 75, 50) == ("CS2.2.1", "US5", "auto:ff")  # a parcel with dwellings, no building nearby
    assert _at(auto, 10, 140)[:2] == ("CS2.2.1", "US5")  # the garden around the house (parcel or neighbourhood)
    assert _at(auto, 25, 185) == ("CS2.2.1", "US5", "auto:bdtopo")  # within 25 m of the house, outside its parcel


def test_hydrography_and_fallbacks(auto: gpd.GeoDataFrame) -> None:
    assert _at(auto, 125, 70) == ("CS1.2.2", "US6.3", "auto:bdtopo")
    assert _at(auto, 125, 140) == ("CS2.1.1.1", "US6.3", "auto:model")  # trees outside BD Forêt: no usage data
    assert _at(auto, 80, 180)[1:] == ("US1.1", "auto:model")  # grass without any ancillary: agricultural


def test_codes_round_trip_and_small_building_growth() -> None:
    c, u, s = np.array([1, 13, 0]), np.array([7, 20, 3]), np.array([2, 1, 4])
    code = encode(c, u, s)
    assert code[2] == 0
    dc, du, ds = decode(code)
    assert dc.tolist()[:2] == [1, 13] and du.tolist()[:2] == [7, 20] and ds.tolist()[:2] == [2, 1]
    grown = enlarge_small_buildings(np.array([box(0, 0, 5, 12), box(0, 0, 20, 20), box(0, 0, 5, 5)]))
    assert 200 <= grown[0].area < 202 and grown[1].area == 400 and grown[2].area == 25


def test_rules_from_storage_via_cli(tmp_path: Path) -> None:
    from inference_batch.products.artifacts import write_vector
    from ocsge.cli import main
    from ocsge.products import product_key
    from ocsge.storage import LocalStorage

    storage = LocalStorage(tmp_path)
    write_vector(storage, product_key("prediction_vector", "S01", 2024), _prediction(),
                 provenance={"source": "auto", "model": "m-1234"})
    for name, frame in _ancillary().items():
        with storage.writer(product_key(name, "S01", 2024)) as tmp:
            frame.to_parquet(tmp)
    main(["rules", "-d", "S01", "-y", "2024", "--root", str(tmp_path), "--res", "1.0"])
    frame = gpd.read_parquet(storage.url(product_key("occupation_auto", "S01", 2024)))
    assert (frame[schema.SOURCE] == "auto:bdtopo").any() and frame.area.sum() == pytest.approx(40000, rel=1e-6)
    import json

    import pyarrow.parquet as pq

    meta = pq.read_schema(storage.url(product_key("occupation_auto", "S01", 2024))).metadata
    assert json.loads(meta[b"ocsge"])["model"] == "m-1234"  # the catalogue names the model, not "unknown"


def test_buildings_rasterised_by_pixel_centre() -> None:
    """A 200 m² building off the 0.5 m grid keeps its area when rasterised (by pixel centre); touching
    pixels would add a half-pixel ring, ≈ +8 %."""
    from inference_batch.production.rules import prepare_layers

    house = box(X0 + 10.2, Y0 + 10.2, X0 + 20.2, Y0 + 30.2)  # 10 m × 20 m
    layers = prepare_layers({"bdtopo_batiment": gpd.GeoDataFrame({"usage_1": ["Résidentiel"]}, geometry=[house],
                                                                 crs=CRS)}, CRS)
    from affine import Affine

    t = Affine(0.5, 0, X0, 0, -0.5, Y0 + 50)
    idx = layers["bdtopo_batiment"].index((X0, Y0, X0 + 50, Y0 + 50), (100, 100), t)
    assert (idx > 0).sum() * 0.25 == pytest.approx(200, rel=0.02)


def test_road_width_from_lanes_when_not_recorded() -> None:
    from inference_batch.production.rules import prepare_layers, road_width

    roads = gpd.GeoDataFrame({"largeur_de_chaussee": [None, None, 6.0, 0.0], "nombre_de_voies": [2, 1, 1, None]},
                             geometry=[LineString([(X0, Y0 + 20 * i), (X0 + 100, Y0 + 20 * i)]) for i in range(4)],
                             crs=CRS)
    assert road_width(roads).tolist() == [7.0, 3.5, 6.0, 0.0]
    layer = prepare_layers({"bdtopo_route": roads}, CRS)["bdtopo_route"]
    assert sorted(shapely.area(layer.geoms).round(1).tolist()) == [600.0, 700.0]  # 2 lanes (7 m) and 6 m kept


def test_sylviculture_width_is_20_m() -> None:
    """A 15 m wide wood is kept as a cover (10 m) but not under sylviculture usage (20 m)."""
    rows = [("CS2.2.1", B(0, 0, 200, 200)), ("CS2.1.1.1", B(0, 20, 200, 35)), ("CS2.1.1.1", B(0, 120, 200, 135))]
    pred = gpd.GeoDataFrame({schema.ID: ["g", "w1", "w2"], schema.CODE_CS: [r[0] for r in rows],
                             schema.CODE_US: None, schema.MILLESIME: 2024, schema.SOURCE: "auto:model"},
                            geometry=[rows[0][1].difference(rows[1][1]).difference(rows[2][1]), rows[1][1], rows[2][1]],
                            crs=CRS)
    foret = gpd.GeoDataFrame({"essence": ["Feuillus"], "code_tfv": ["FF1-00-00"]}, geometry=[B(0, 0, 200, 60)],
                             crs=CRS)
    frame, _ = occupation_auto(pred, {"bdforet": foret}, 2024, "S01", res=0.5, block_size=256)
    assert _at(frame, 100, 127)[:2] == ("CS2.1.1.1", "US6.3")  # 15 m of trees without usage data: kept
    assert _at(frame, 100, 27)[0] == "CS2.2.1"  # 15 m of sylviculture: under its 20 m width


def test_one_built_up_envelope_written_as_zone_construite(tmp_path: Path) -> None:
    """The envelope that sets the UMI and lends the buildings' use is written as the auto millésime's
    zone construite, compared with IGN's when one was ingested."""
    from inference_batch.production.rules import rules
    from inference_batch.products.artifacts import write_vector
    from ocsge.products import product_key
    from ocsge.storage import LocalStorage

    storage = LocalStorage(tmp_path)
    write_vector(storage, product_key("prediction_vector", "S01", 2024), _prediction())
    for name, frame in _ancillary().items():
        write_vector(storage, product_key(name, "S01", 2024), frame, sort=False)
    house = B(20, 150, 30, 160)  # the one building kept (enlarged to 200 m²), grown by the 10 m buffer
    ign = gpd.GeoDataFrame({"id": ["ZC1"], "millesime": [2024]}, geometry=[house.buffer(10, join_style="mitre")],
                           crs=CRS)
    write_vector(storage, product_key("zone_construite", "S01", 2024), ign)
    _, frame, report = rules(storage, "S01", 2024, res=0.5)
    zc = gpd.read_parquet(storage.url(product_key("zone_construite_auto", "S01", 2024)))
    assert len(zc) == 1 and zc.contains(P(25, 155)).all() and not zc.contains(P(63, 23)).any()
    assert 30 * 30 <= zc.area.sum() <= 45 * 45  # 10 × 10 m (grown to 200 m²) + 10 m around, on a 5 m grid
    assert 0.5 < report.zone_construite_iou <= 1.0
    # the garden next to the house, inside the envelope, takes the house's use
    inside = frame[frame.intersects(zc.geometry.iloc[0]) & (frame[schema.CODE_CS] == "CS2.2.1")]
    assert (inside[schema.CODE_US] == "US5").all()
