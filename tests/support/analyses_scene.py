"""A hand-made territory for the analyses tests: a 1 km × 1 km square (100 ha) of horizontal strips,
two communes (A: x < 500, B: x ≥ 500, 50 ha each), two millésimes — IGN's Var example in miniature.

Strips span the whole width, so each commune holds half of every strip. Between 2021 and 2024:
feuillus 30 → 29 ha, mixte 20 → 22, eau 5 → 4, arbustive 10 → 12, herbacée 20 → 17.5, bâti 15 → 15.5
(the 0.5 ha of new bâti is a 500 m × 10 m piece of herbacée in commune B only).
"""

from __future__ import annotations

import geopandas as gpd
import shapely

from inference_batch.products.artifacts import write_vector
from ocsge.products import product_key
from ocsge.storage import Storage

DEP = "77"
X0, Y0 = 700_000.0, 6_600_000.0

# (y from, y to, code_cs, code_us), y in metres from the bottom of the square
BEFORE = [(0, 300, "CS2.1.1.1", "US1.2"), (300, 500, "CS2.1.1.3", "US1.2"), (500, 550, "CS1.2.2", "US6.3"),
          (550, 650, "CS2.1.2", "US6.3"), (650, 850, "CS2.2.1", "US1.1"), (850, 1000, "CS1.1.1.1", "US5")]
AFTER = [(0, 290, "CS2.1.1.1", "US1.2"), (290, 510, "CS2.1.1.3", "US1.2"), (510, 550, "CS1.2.2", "US6.3"),
         (550, 670, "CS2.1.2", "US6.3"), (670, 850, "CS2.2.1", "US1.1"), (850, 1000, "CS1.1.1.1", "US5")]
NEW_BUILT_B = (500, 840, 1000, 850)  # x0, y0, x1, y1: herbacée → bâti in commune B


def box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def occupation(strips: list[tuple[int, int, str, str]], year: int, extra: list[tuple] = ()) -> gpd.GeoDataFrame:
    geoms, cs, us = [], [], []
    for y0, y1, c, u in strips:
        g = box(0, y0, 1000, y1)
        for e in extra:
            g = g.difference(box(*e[:4]))
        geoms.append(g)
        cs.append(c)
        us.append(u)
    for e in extra:
        geoms.append(box(*e[:4]))
        cs.append(e[4])
        us.append(e[5])
    return gpd.GeoDataFrame({"id": [f"OCS_{year}_{i}" for i in range(len(geoms))], "code_cs": cs, "code_us": us,
                             "millesime": year, "source": "test"}, geometry=geoms, crs=2154)


def layers() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    return occupation(BEFORE, 2021), occupation(AFTER, 2024, [(*NEW_BUILT_B, "CS1.1.1.1", "US5")])


def communes() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"INSEE_COM": ["77001", "77002"], "NOM": ["A", "B"]},
                            geometry=[box(0, 0, 500, 1000), box(500, 0, 1000, 1000)], crs=2154)


def write_scene(store: Storage) -> None:
    before, after = layers()
    write_vector(store, product_key("occupation", DEP, 2021), before)
    write_vector(store, product_key("occupation", DEP, 2024), after)
    write_vector(store, product_key("communes", DEP, 2024), communes())
