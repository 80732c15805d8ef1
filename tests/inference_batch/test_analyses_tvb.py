"""Trame verte et bleue on a few hand-made polygons: resistance per class, reservoirs, a least-cost corridor
and the effective mesh size computed by hand."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely

from inference_batch.analyses.territories import read_csv_table
from inference_batch.analyses.tvb import (
    TvbParams,
    corridors,
    effective_mesh,
    rasterize,
    reservoirs,
    resistance,
    run_tvb,
)
from inference_batch.products.artifacts import read_vector, write_vector
from ocsge.products import product_key
from ocsge.storage import LocalStorage
from support.analyses_scene import DEP, box

# x0, y0, x1, y1 (m), code_cs, code_us: two forests separated by a 200 m field, a pond, a small wood, a road
ROWS = [
    (0, 0, 300, 400, "CS2.1.1.1", "US1.2"),  # forest A, 12 ha: reservoir
    (300, 0, 500, 400, "CS2.2.1", "US1.1"),  # field, resistance 10
    (500, 0, 800, 400, "CS2.1.1.2", "US1.2"),  # forest B, 12 ha: reservoir
    (0, 400, 800, 500, "CS1.1.1.2", "US4.1.1"),  # a road 100 m wide across: a barrier
    (0, 500, 100, 600, "CS1.2.2", "US6.3"),  # pond 1 ha: blue reservoir
    (100, 500, 200, 600, "CS2.1.1.1", "US1.2"),  # small wood 1 ha next to the pond: too small
    (200, 500, 800, 600, "CS2.2.1", "US1.1"),
]


def _layer() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"id": [f"P{i}" for i in range(len(ROWS))], "code_cs": [r[4] for r in ROWS],
                             "code_us": [r[5] for r in ROWS], "millesime": 2024, "source": "test"},
                            geometry=[box(*r[:4]) for r in ROWS], crs=2154)


def test_resistance_per_class() -> None:
    cs = pd.Series(["CS2.1.1.1", "CS2.2.1", "CS2.2.1", "CS2.2.1", "CS2.1.3", "CS1.2.2", "CS1.1.1.2", "CS1.1.1.1",
                    "CS2.2.1", "CS1.1.2.1"])
    us = pd.Series(["US1.2", "US6.3", "US1.1", "US5", "US1.1", "US6.3", "US3", "US5", "US4.1.2", "US1.3"])
    assert resistance(cs, us).tolist() == [1, 3, 10, 30, 5, 20, 100, 1000, 1000, 30]


def test_reservoirs_and_corridor_by_hand() -> None:
    layer = _layer()
    res = reservoirs(layer)
    assert sorted(zip(res.nature, res.surface_ha, strict=True)) == [
        ("reservoir_bleu", 1.0), ("reservoir_vert", 12.0), ("reservoir_vert", 12.0)]
    cost = rasterize(layer, resistance(layer.code_cs, layer.code_us), 50.0)
    assert cost.values.shape == (12, 16)  # 800 m × 600 m in 50 m cells
    green = res[res.nature == "reservoir_vert"].reset_index(drop=True)
    (link,) = corridors(cost, green).itertuples()
    # from the last forest cell of A (centre x = 275) to the first of B (x = 525) across 4 field cells:
    # (1 + 10) / 2 × 50 + 3 × 10 × 50 + (10 + 1) / 2 × 50 = 275 + 1 500 + 275 = 2 050, 250 m long
    assert (link.cout, link.longueur_m) == (2050.0, 250.0)
    assert {link.reservoir_a, link.reservoir_b} == set(green.id)


def test_effective_mesh_by_hand() -> None:
    commune = box(0, 0, 1000, 1000)  # 100 ha
    road = box(600, 0, 610, 1000)  # 10 m wide: 60 ha and 39 ha left
    meff, patches = effective_mesh(commune, road)
    assert patches == 2
    assert meff / 1e4 == pytest.approx((60**2 + 39**2) / 100)  # 51.21 ha
    assert effective_mesh(commune, None)[0] / 1e4 == pytest.approx(100.0)


def test_step_writes_map_raster_and_table(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "root")
    write_vector(store, product_key("occupation", DEP, 2024), _layer())
    communes = gpd.GeoDataFrame({"INSEE_COM": ["77001"], "NOM": ["A"]}, geometry=[box(0, 0, 800, 600)], crs=2154)
    write_vector(store, product_key("communes", DEP, 2024), communes)
    keys = run_tvb(store, DEP, [2024], params=TvbParams(cell=50.0))
    features = read_vector(store, keys["tvb_2024"])
    # three reservoirs whose cost-zones all meet: three corridors; A–B as by hand, across the field
    assert sorted(features.nature.value_counts().items()) == [("corridor", 3), ("reservoir_bleu", 1),
                                                               ("reservoir_vert", 2)]
    ids = features.set_index("nature").loc["reservoir_vert", "id"].tolist()
    links = features[features.nature == "corridor"]
    ab = links[links.reservoir_a.isin(ids) & links.reservoir_b.isin(ids)]
    assert ab.cout.tolist() == [2050.0]
    with rasterio.open(Path(store.root) / keys["tvb_resistance_2024"]) as src:
        grid = src.read(1)
        assert src.res == (50.0, 50.0) and src.crs.to_epsg() == 2154
    assert set(np.unique(grid)) == {1, 10, 20, 1000}  # forests, fields, pond, road (US4.1.1)
    table = read_csv_table(store, keys["tvb_communes_2024"]).set_index("territoire")
    # 48 ha; the road (100 m × 800 m = 8 ha) cuts it in a 32 ha and an 8 ha patch: (32² + 8²) / 48 ha
    assert table.loc["77001", "fragments"] == 2
    assert table.loc["77001", "maillage_effectif_ha"] == pytest.approx(round((32**2 + 8**2) / 48, 4))
    assert table.loc["77001", "barrieres_pct"] == pytest.approx(round(100 * 8 / 48, 2))
    assert table.loc["77001", "reservoirs_pct"] == pytest.approx(round(100 * 25 / 48, 2))
    assert shapely.equals(features[features.nature == "reservoir_bleu"].geometry.iloc[0], box(0, 500, 100, 600))
