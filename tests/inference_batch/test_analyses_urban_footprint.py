"""Tâche urbaine on a few hand-made polygons: dilation–erosion areas computed by hand, which surfaces count,
the extension per commune and the comparison with the zone construite."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

from inference_batch.analyses.territories import read_csv_table
from inference_batch.analyses.urban_footprint import FootprintParams, footprint, run_footprint, source_mask
from inference_batch.products.artifacts import read_vector, write_vector
from ocsge.products import product_key
from ocsge.storage import LocalStorage
from support.analyses_scene import DEP, box, communes

MITRE = FootprintParams(dilation=50, erosion=25, join_style="mitre")


def test_isolated_building_keeps_a_margin_of_dilation_minus_erosion() -> None:
    # a convex shape dilated by 50 m then eroded by 25 m is the shape dilated by 25 m:
    # 20 m square → 20² + 4 × 20 × 25 + π × 25² m² (within 1 %: quarter circles are drawn with 8 segments)
    (patch,) = footprint(np.array([box(100, 100, 120, 120)]))
    assert patch.area == pytest.approx(400 + 4 * 20 * 25 + math.pi * 25**2, rel=1e-2)
    # mitre joins keep it a square: (20 + 2 × 25)²
    (square,) = footprint(np.array([box(100, 100, 120, 120)]), MITRE)
    assert square.area == pytest.approx(70 * 70)


def test_buildings_closer_than_twice_the_dilation_form_one_patch() -> None:
    near = np.array([box(100, 100, 120, 120), box(180, 100, 200, 120)])  # 60 m apart < 2 × 50 m
    far = np.array([box(100, 100, 120, 120), box(240, 100, 260, 120)])  # 120 m apart
    assert len(footprint(near)) == 1 and len(footprint(far)) == 2
    # mitre: [50, 250] × [50, 170] after dilation, [75, 225] × [75, 145] after erosion = 150 m × 70 m
    (patch,) = footprint(near, MITRE)
    assert patch.area == pytest.approx(150 * 70)
    assert len(footprint(near, FootprintParams(dilation=25, erosion=25))) == 2  # 60 m > 2 × 25 m


def test_sources_are_built_and_sealed_land_but_not_transport_networks() -> None:
    import pandas as pd

    cs = pd.Series(["CS1.1.1.1", "CS1.1.1.2", "CS1.1.1.2", "CS1.1.1.2", "CS2.2.1", "CS1.1.2.1"])
    us = pd.Series(["US1.1", "US3", "US4.1.1", "US4.1.2", "US5", "US5"])
    assert source_mask(cs, us).tolist() == [True, True, False, False, False, False]


def _layer(year: int, extra: list[tuple[float, float, float, float, str, str]]) -> gpd.GeoDataFrame:
    rows = [(100, 100, 120, 120, "CS1.1.1.1", "US5"), (180, 100, 200, 120, "CS1.1.1.1", "US5"),
            (0, 300, 1000, 310, "CS1.1.1.2", "US4.1.1"),  # a road across both communes: not a source
            (0, 600, 1000, 1000, "CS2.2.1", "US1.1"), *extra]
    return gpd.GeoDataFrame({"id": [f"{year}_{i}" for i in range(len(rows))], "code_cs": [r[4] for r in rows],
                             "code_us": [r[5] for r in rows], "millesime": year, "source": "test"},
                            geometry=[box(*r[:4]) for r in rows], crs=2154)


def test_extension_per_commune_and_zone_construite(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    write_vector(store, product_key("occupation", DEP, 2021), _layer(2021, []))
    # 2024: a 20 m × 20 m car park (sealed, usage tertiaire) in commune B
    write_vector(store, product_key("occupation", DEP, 2024), _layer(2024, [(700, 100, 720, 120, "CS1.1.1.2", "US3")]))
    write_vector(store, product_key("communes", DEP, 2024), communes())
    zc = [box(100, 100, 200, 120), box(60, 60, 240, 160)]  # zone construite 2021 (0.2 ha), 2024 (1.8 ha), in A
    for year, geom in zip((2021, 2024), zc, strict=True):
        write_vector(store, product_key("zone_construite", DEP, year),
                     gpd.GeoDataFrame({"id": ["ZC"], "millesime": [year]}, geometry=[geom], crs=2154))
    keys = run_footprint(store, DEP, [2021, 2024], params=MITRE)
    tache_2024 = read_vector(store, keys["tache_urbaine_2024"])
    assert sorted(tache_2024.surface_ha) == [0.49, 1.05]  # 70 m × 70 m around the car park; 150 m × 70 m in A
    assert set(tache_2024.millesime) == {2024}
    table = read_csv_table(store, keys["tache_urbaine_communes_2021_2024"])
    row = {t: r for t, r in zip(table.territoire, table.to_dict("records"), strict=True)}
    a, b, dep = row["77001"], row["77002"], row["77"]
    assert (a["tache_debut_ha"], a["tache_fin_ha"], a["extension_nette_ha"]) == (1.05, 1.05, 0.0)
    assert (b["tache_debut_ha"], b["tache_fin_ha"], b["extension_brute_ha"], b["retrait_ha"]) == (0, 0.49, 0.49, 0)
    assert (dep["tache_debut_ha"], dep["tache_fin_ha"], dep["extension_nette_ha"]) == (1.05, 1.54, 0.49)
    assert dep["extension_pct"] == pytest.approx(round(100 * 0.49 / 1.05, 2))
    assert (a["surface_ha"], dep["surface_ha"]) == (50.0, 100.0)
    # the 2024 tâche of A lies inside the zone construite; B's is outside it; 1.8 − 1.05 ha of zone
    # construite lie outside the tâche
    assert dep["zone_construite_debut_ha"] == 0.2 and dep["zone_construite_fin_ha"] == 1.8
    assert dep["tache_fin_dans_zone_construite_ha"] == pytest.approx(1.05)
    assert dep["tache_fin_hors_zone_construite_ha"] == pytest.approx(0.49)
    assert dep["zone_construite_fin_hors_tache_ha"] == pytest.approx(0.75)
    assert dep["part_tache_fin_pct"] == pytest.approx(1.54)
    # up to date: nothing redone; other parameters: redone
    stamp = store.get_bytes(keys["tache_urbaine_2024"] + ".inputs.json")
    run_footprint(store, DEP, [2021, 2024], params=MITRE)
    assert store.get_bytes(keys["tache_urbaine_2024"] + ".inputs.json") == stamp
    run_footprint(store, DEP, [2021, 2024], params=FootprintParams(dilation=50, erosion=50, join_style="mitre"))
    # +50 / −50 m is a closing: the car park alone (20² m²), the two buildings and the gap between them
    # ([100, 200] × [100, 120] = 2 000 m²)
    assert sorted(read_vector(store, keys["tache_urbaine_2024"]).surface_ha) == [0.04, 0.2]
    assert shapely.area(shapely.union_all(read_vector(store, keys["tache_urbaine_2021"]).geometry)) == \
        pytest.approx(100 * 20)


def test_bad_parameters_are_refused() -> None:
    from inference_batch.products.artifacts import StepError

    with pytest.raises(StepError, match="erosion"):
        FootprintParams(dilation=25, erosion=50)
