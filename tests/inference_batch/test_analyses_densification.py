"""Densification of economic zones on a few hand-made polygons: zones from economic usages, built and
non-built artificialised areas, CES and optimisable surface computed by hand; a user-supplied ZAE layer."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest

from inference_batch.analyses.densification import run_densification
from inference_batch.analyses.territories import read_csv_table
from inference_batch.products.artifacts import read_vector, write_vector
from ocsge.products import product_key
from ocsge.storage import LocalStorage
from support.analyses_scene import DEP, box, communes

# x0, y0, x1, y1 (m), code_cs, code_us
ROWS = [
    (0, 0, 100, 100, "CS1.1.1.1", "US2"),  # factory 1 ha
    (100, 0, 200, 100, "CS1.1.1.2", "US2"),  # its car park 1 ha
    (0, 100, 200, 150, "CS2.2.1", "US2"),  # its lawn 1 ha
    (200, 0, 250, 100, "CS1.1.2.1", "US4.2"),  # a storage yard next to it, 0.5 ha: same zone
    (250, 0, 400, 100, "CS1.1.1.1", "US5"),  # houses next to it: not economic
    (600, 600, 620, 620, "CS1.1.1.1", "US3"),  # a lone office of 400 m² < 5 000 m²: not a zone
    (700, 0, 800, 100, "CS1.1.1.1", "US235"),  # 1 ha built in commune B, a zone of its own
]


def _layer() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"id": [f"P{i}" for i in range(len(ROWS))], "code_cs": [r[4] for r in ROWS],
                             "code_us": [r[5] for r in ROWS], "millesime": 2024, "source": "test"},
                            geometry=[box(*r[:4]) for r in ROWS], crs=2154)


@pytest.fixture()
def store(tmp_path: Path) -> LocalStorage:
    store = LocalStorage(tmp_path / "root")
    write_vector(store, product_key("occupation", DEP, 2024), _layer())
    write_vector(store, product_key("communes", DEP, 2024), communes())
    return store


def test_zones_from_usage_by_hand(store: LocalStorage) -> None:
    keys = run_densification(store, DEP, [2024])
    table = read_csv_table(store, keys["densification_csv_2024"])
    assert len(table) == 2  # the lone office is too small
    zone = table[table.insee_com == "77001"].iloc[0]
    # 1 + 1 + 1 + 0.5 ha; built 1 ha; car park + storage yard 1.5 ha; lawn 1 ha
    assert (zone.surface_ha, zone.bati_ha, zone.artificialise_non_bati_ha, zone.vegetalise_ha, zone.autre_ha) == \
        pytest.approx((3.5, 1.0, 1.5, 1.0, 0.0))
    assert zone.ces_pct == pytest.approx(round(100 * 1 / 3.5, 2))  # 28.57 %
    assert zone.surface_optimisable_ha == pytest.approx(1.5)
    assert zone.ces_potentiel_pct == pytest.approx(round(100 * 2.5 / 3.5, 2))  # 71.43 %
    other = table[table.insee_com == "77002"].iloc[0]
    assert (other.surface_ha, other.ces_pct, other.surface_optimisable_ha) == pytest.approx((1.0, 100.0, 0.0))
    zones = read_vector(store, keys["densification_2024"])  # the map: one polygon per zone
    assert sorted(zones.area.round(1)) == [10_000.0, 35_000.0]
    assert set(zones.origine_zone) == {"usage"}


def test_user_supplied_zae_layer(store: LocalStorage, tmp_path: Path) -> None:
    path = tmp_path / "zae.gpkg"
    # one zone over the factory and half of its car park: 1 ha built + 0.5 ha car park
    gpd.GeoDataFrame({"id": ["Z1"], "nom": ["ZA des Prés"]}, geometry=[box(0, 0, 150, 100)], crs=2154) \
        .to_crs(4326).to_file(path)
    keys = run_densification(store, DEP, [2024], zae=path)
    (zone,) = read_csv_table(store, keys["densification_csv_2024"]).itertuples()
    assert (zone.zae_id, zone.nom, zone.origine_zone) == ("Z1", "ZA des Prés", "fichier")
    assert (zone.surface_ha, zone.bati_ha, zone.artificialise_non_bati_ha) == pytest.approx((1.5, 1.0, 0.5), abs=1e-3)
    assert zone.ces_pct == pytest.approx(66.67, abs=0.01)
