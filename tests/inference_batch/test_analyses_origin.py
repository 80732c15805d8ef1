"""Origin of new built land and new artificialisation, on hand-made difference pieces (IGN's example in
miniature) and on the hand-made territory through `ocsge diff`."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest

from inference_batch.analyses.origin import new_land, origin_table, run_origin
from inference_batch.analyses.territories import read_csv_table
from inference_batch.products.difference import run_difference
from ocsge.storage import LocalStorage
from support.analyses_scene import DEP, box, communes, write_scene


def _pieces(rows: list[tuple[float, float, float, float, str, str]], extra: dict | None = None) -> gpd.GeoDataFrame:
    """Pieces (x0, y0, x1, y1, cs_avant, cs_apres) in metres of the hand-made square."""
    data = {"cs_avant": [r[4] for r in rows], "us_avant": "US1.1", "cs_apres": [r[5] for r in rows],
            "us_apres": "US5", **(extra or {})}
    return gpd.GeoDataFrame(data, geometry=[box(*r[:4]) for r in rows], crs=2154)


def test_origin_shares_by_hand() -> None:
    # 1 ha newly built in commune A (x < 500), from: herbacée 0.67 ha (100 m × 67 m), minéral 0.17 ha,
    # feuillus 0.08 ha, vignes 0.01 ha, non bâti imperméable 0.07 ha; plus 0.2 ha in commune B from herbacée.
    # A built piece that stays built (bâti → bâti, usage change only) is not new built land.
    diff = _pieces([
        (0, 0, 100, 67, "CS2.2.1", "CS1.1.1.1"),
        (100, 0, 200, 17, "CS1.1.2.1", "CS1.1.1.1"),
        (200, 0, 300, 8, "CS2.1.1.1", "CS1.1.1.1"),
        (300, 0, 400, 1, "CS2.1.3", "CS1.1.1.1"),
        (400, 0, 500, 7, "CS1.1.1.2", "CS1.1.1.1"),
        (600, 0, 700, 20, "CS2.2.1", "CS1.1.1.1"),
        (0, 500, 100, 600, "CS1.1.1.1", "CS1.1.1.1"),
        (0, 700, 100, 800, "CS2.2.1", "CS2.1.2"),
    ])
    # artificialisation +1: 0.67 + 0.17 + 0.08 + 0.01 ha in A (the CS1.1.1.2 piece was artificial already),
    # 0.2 ha in B; a −1 piece (désartificialisation) does not count
    artif = _pieces([
        (0, 0, 100, 67, "CS2.2.1", "CS1.1.1.1"),
        (100, 0, 200, 17, "CS1.1.2.1", "CS1.1.1.1"),  # minéral of a quarry (US1.3) became built: +1
        (200, 0, 300, 8, "CS2.1.1.1", "CS1.1.1.1"),
        (300, 0, 400, 1, "CS2.1.3", "CS1.1.1.1"),
        (600, 0, 700, 20, "CS2.2.1", "CS1.1.1.1"),
        (0, 900, 100, 950, "CS1.1.1.2", "CS2.2.1"),
    ], {"artificialisation": [1, 1, 1, 1, 1, -1]})
    table = origin_table([new_land(diff, artif)], communes(), None, DEP, 2021, 2024)

    def rows(territoire: str, kind: str) -> dict[str, tuple[float, float]]:
        sel = table[(table.territoire == territoire) & (table.type == kind)]
        return {c: (ha, pct) for c, ha, pct in sel[["cs_origine", "surface_ha", "part_pct"]].itertuples(index=False)}

    built_a = rows("77001", "bati")
    assert built_a == {"CS2.2.1": (0.67, 67.0), "CS1.1.2.1": (0.17, 17.0), "CS2.1.1.1": (0.08, 8.0),
                       "CS1.1.1.2": (0.07, 7.0), "CS2.1.3": (0.01, 1.0)}
    # largest origin first, as IGN's table reads
    a = table[(table.territoire == "77001") & (table.type == "bati")]
    assert list(a.cs_origine) == ["CS2.2.1", "CS1.1.2.1", "CS2.1.1.1", "CS1.1.1.2", "CS2.1.3"]
    assert set(a.total_ha) == {1.0}
    # département: 1.2 ha built, herbacée 0.67 + 0.2 = 0.87 ha = 72.5 %
    assert rows("77", "bati")["CS2.2.1"] == pytest.approx((0.87, 72.5))
    # artificialisation +1 in A: 0.93 ha, herbacée 0.67 / 0.93 = 72.04 %
    art_a = rows("77001", "artificialisation")
    assert sum(ha for ha, _ in art_a.values()) == pytest.approx(0.93)
    assert art_a["CS2.2.1"] == pytest.approx((0.67, 72.04))
    assert "CS1.1.1.2" not in art_a
    assert rows("77002", "artificialisation") == {"CS2.2.1": (0.2, 100.0)}
    assert table.loc[table.cs_origine == "CS2.1.3", "libelle"].iloc[0].startswith("Autres formations ligneuses")


def test_run_origin_on_the_scene(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    write_scene(store)
    run_difference(store, DEP, 2021, 2024)
    keys = run_origin(store, DEP, 2021, 2024)
    table = read_csv_table(store, keys["origine_2021_2024"])
    # the only new built land: 500 m × 10 m of herbacée in commune B = 0.5 ha, 100 %; it is artificialised too
    for kind in ("bati", "artificialisation"):
        sel = table[table.type == kind]
        assert set(zip(sel.niveau, sel.territoire, sel.cs_origine, sel.surface_ha, sel.part_pct, strict=True)) == {
            ("commune", "77002", "CS2.2.1", 0.5, 100.0), ("departement", "77", "CS2.2.1", 0.5, 100.0)}
    stamp = store.get_bytes(keys["origine_2021_2024"] + ".inputs.json")
    run_origin(store, DEP, 2021, 2024)
    assert store.get_bytes(keys["origine_2021_2024"] + ".inputs.json") == stamp
