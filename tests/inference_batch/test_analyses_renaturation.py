"""Renaturation potential on a 3-cell INSEE 200 m grid made by hand: shares, neighbourhood, scores and
priority computed by hand; INSEE cell ids; the step on a stored layer in Lambert-93."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from inference_batch.analyses.renaturation import cell_id, cell_table, parse_cell_id, run_renaturation
from inference_batch.analyses.territories import read_csv_table
from inference_batch.products.artifacts import read_vector, write_vector
from inference_batch.products.inputs import with_artif
from ocsge.products import product_key
from ocsge.storage import LocalStorage

X, Y = 3_800_000, 2_800_000  # lower-left corner of cell A (EPSG:3035); B and C to its east
A, B, C = (f"CRS3035RES200mN{Y}E{X + 200 * i}" for i in range(3))


def _layer() -> gpd.GeoDataFrame:
    rows = [
        (0, 0, 200, 200, "CS1.1.1.1", "US5"),  # A: built, 4 ha
        (200, 0, 300, 200, "CS1.1.1.2", "US4.1.1"),  # B: road, 2 ha
        (300, 0, 400, 200, "CS2.2.1", "US1.1"),  # B: meadow, 2 ha
        (400, 0, 550, 200, "CS2.1.1.1", "US1.2"),  # C: forest, 3 ha
        (550, 0, 600, 200, "CS1.2.2", "US6.3"),  # C: water, 1 ha
    ]
    frame = gpd.GeoDataFrame({"code_cs": [r[4] for r in rows], "code_us": [r[5] for r in rows]},
                             geometry=[shapely.box(X + r[0], Y + r[1], X + r[2], Y + r[3]) for r in rows], crs=3035)
    return with_artif(frame)


def test_insee_cell_ids() -> None:
    assert cell_id(3_800_200, 2_800_000) == "CRS3035RES200mN2800000E3800200"
    assert parse_cell_id("CRS3035RES200mN2800000E3800200") == (3_800_200, 2_800_000)


def test_three_cells_by_hand() -> None:
    t = cell_table([_layer()]).set_index("idcar_200m")
    assert list(t.index) == [A, B, C]
    assert list(t.artificialise_pct) == [100, 50, 0]
    assert list(t.impermeable_pct) == [100, 50, 0]
    assert list(t.vegetation_pct) == [0, 50, 75]  # water is not vegetation
    assert (t.loc[C, "arboree_pct"], t.loc[C, "eau_pct"], t.loc[B, "herbacee_pct"]) == (75, 25, 50)
    # vegetation of the 3 × 3 neighbourhood: A sees A, B: 2 ha of 8; B sees all: 2 + 3 ha of 12; C sees B, C: 5 of 8
    # (the water of C is not vegetation)
    assert list(t.vegetation_voisinage_pct) == pytest.approx([25.0, 41.67, 62.5], abs=0.01)
    # biodiversity = (vegetation around + 100 if water around) / 2; climate = sealed; health = 100 − vegetation around
    assert list(t.score_biodiversite) == pytest.approx([12.5, 70.83, 81.25], abs=0.01)
    assert list(t.score_climat) == [100, 50, 0]
    assert list(t.score_sante) == pytest.approx([75, 58.33, 37.5], abs=0.01)
    assert list(t.potentiel) == pytest.approx([62.5, 59.72, 39.58], abs=0.01)
    # artificialised cells (≥ 50 %): A and B; the 0.8 quantile of 62.5 and 59.72 is 61.94: A only
    assert list(t.prioritaire) == [True, False, False]
    assert shapely.equals(t.loc[A, "geometry"], shapely.box(X, Y, X + 200, Y + 200))


def test_population_weights_health() -> None:
    pop = pd.Series({A: 100.0, B: 50.0, C: 0.0})
    t = cell_table([_layer()], pop).set_index("idcar_200m")
    assert list(t.score_sante) == pytest.approx([75.0, 29.17, 0.0], abs=0.01)  # × 1, × 0.5, × 0
    assert list(t.population) == [100, 50, 0]


def test_step_reprojects_a_lambert93_layer(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "root")
    layer = _layer().drop(columns="artif").to_crs(2154)
    layer["id"], layer["millesime"], layer["source"] = [f"P{i}" for i in range(len(layer))], 2024, "test"
    write_vector(store, product_key("occupation", "77", 2024), layer)
    pop = tmp_path / "pop.csv"
    pop.write_text(f"idcar_200m,ind\n{A},100\n{B},50\n")
    keys = run_renaturation(store, "77", [2024], population=pop)
    cells = read_vector(store, keys["renaturation_2024"])
    assert cells.crs.to_epsg() == 3035
    table = read_csv_table(store, keys["renaturation_csv_2024"]).set_index("idcar_200m")
    # reprojection 3035 → 2154 → 3035 moves vertices by millimetres: same cells, same shares
    assert set(table.index) >= {A, B, C}
    assert table.loc[[A, B, C], "artificialise_pct"].tolist() == pytest.approx([100, 50, 0], abs=0.01)
    assert table.loc[A, "prioritaire"]


def test_demo_population_and_groupements_by_hand() -> None:
    from inference_batch.analyses.demo_inputs import demo_groupements, demo_population

    houses = gpd.GeoDataFrame({"code_cs": ["CS1.1.1.1", "CS1.1.1.1", "CS1.1.1.1"], "code_us": ["US5", "US235", "US2"]},
                              geometry=[shapely.box(X + 10, Y + 10, X + 50, Y + 110),  # 4 000 m² in A
                                        shapely.box(X + 210, Y + 10, X + 230, Y + 30),  # 400 m² in B
                                        shapely.box(X + 410, Y + 10, X + 510, Y + 110)],  # factory in C: nobody
                              crs=3035).to_crs(2154)
    pop = demo_population(houses).set_index("idcar_200m")["ind"]
    assert pop.to_dict() == {A: 100, B: 10}  # 40 m² per inhabitant
    grp = demo_groupements(pd.DataFrame({"insee_com": ["77001", "77002"]}), "77")
    assert set(grp.groupement) == {"EPCI-77"} and list(grp.insee_com) == ["77001", "77002"]


def _prediction(path: Path) -> Path:
    """A 10 m prediction raster over the 3 cells: A built; B half herbaceous, half sealed; C three quarters
    deciduous forest, the last quarter without prediction (0)."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from ocsge.nomenclature import raster_value

    data = np.zeros((20, 60), dtype="uint8")
    data[:, 0:20] = raster_value("couverture", "CS1.1.1.1")
    data[:, 20:30] = raster_value("couverture", "CS2.2.1")
    data[:, 30:40] = raster_value("couverture", "CS1.1.1.2")
    data[:, 40:55] = raster_value("couverture", "CS2.1.1.1")
    with rasterio.open(path, "w", driver="GTiff", width=60, height=20, count=1, dtype="uint8", crs="EPSG:3035",
                       transform=from_origin(X, Y + 200, 10, 10), nodata=0) as dst:
        dst.write(data, 1)
    return path


def test_vegetation_from_the_prediction_by_hand(tmp_path: Path) -> None:
    from inference_batch.analyses.renaturation import prediction_shares

    shares = prediction_shares([_prediction(tmp_path / "p.tif")])
    assert shares.loc[[A, B, C], "vegetation_prediction_pct"].tolist() == [0, 50, 100]
    assert shares.loc[[A, B, C], "herbacee_prediction_pct"].tolist() == [0, 50, 0]
    assert shares.loc[[A, B, C], "arboree_prediction_pct"].tolist() == [0, 0, 100]  # nodata pixels left out


def test_step_adds_the_prediction_indicator(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "root")
    layer = _layer().drop(columns="artif")
    layer["id"], layer["millesime"], layer["source"] = [f"P{i}" for i in range(len(layer))], 2024, "test"
    write_vector(store, product_key("occupation", "77", 2024), layer)
    keys = run_renaturation(store, "77", [2024])
    assert "vegetation_prediction_pct" not in read_csv_table(store, keys["renaturation_csv_2024"])
    store.put_file(product_key("prediction", "77", 2024, block="r000c000"), _prediction(tmp_path / "p.tif"))
    keys = run_renaturation(store, "77", [2024])  # a new prediction block: redone
    table = read_csv_table(store, keys["renaturation_csv_2024"]).set_index("idcar_200m")
    assert table.loc[[A, B, C], "vegetation_prediction_pct"].tolist() == [0, 50, 100]
    assert table.loc[[A, B, C], "vegetation_pct"].tolist() == [0, 50, 75]  # the vector layer's, for comparison
