"""Statistics per commune: area conservation across commune boundaries, stocks = flows, real extract."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from inference_batch.products.artif import run_artif
from inference_batch.products.artifacts import read_table, write_vector
from inference_batch.products.difference import run_difference
from inference_batch.products.ingest import (
    IngestReport,
    LayerRef,
    check_crs,
    clean_geometries,
    normalise_difference,
    read_layer,
)
from inference_batch.products.stats import flows_table, run_stats, stock_table
from inference_batch.synth.partitions import evolve, partition
from ocsge.storage import LocalStorage
from ocsge.territory import departement

BOUNDS = (700_000.0, 6_600_000.0, 702_500.0, 6_602_000.0)


def communes(n: int = 7, seed: int = 2) -> gpd.GeoDataFrame:
    """Voronoi communes over the territory: boundaries cut through many polygons."""
    rng = np.random.default_rng(seed)
    pts = shapely.points(rng.uniform(BOUNDS[0], BOUNDS[2], n), rng.uniform(BOUNDS[1], BOUNDS[3], n))
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=shapely.box(*BOUNDS)))
    cells = shapely.intersection(cells, shapely.box(*BOUNDS))
    return gpd.GeoDataFrame({"INSEE_COM": [f"77{i:03d}" for i in range(len(cells))],
                             "NOM": [f"Commune {i}" for i in range(len(cells))]}, geometry=cells, crs=2154)


def test_polygons_cut_by_communes_keep_their_area() -> None:
    occ = partition(2_000, BOUNDS, millesime=2021, seed=3)
    com = communes()
    table = stock_table([occ.iloc[:700], occ.iloc[700:]], com, "77", 2021)
    rows = table[table.niveau == "commune"]
    assert rows.surface_couverte_ha.to_numpy() == pytest.approx(rows.surface_ha.to_numpy(), abs=1e-3)
    dep = table[table.niveau == "departement"].iloc[0]
    assert dep.surface_couverte_ha == pytest.approx(occ.area.sum() / 1e4, abs=1e-3)
    cs_cols = [c for c in table.columns if c.startswith("CS") and c.endswith("_ha")]
    assert rows[cs_cols].sum(axis=1).to_numpy() == pytest.approx(rows.surface_couverte_ha.to_numpy(), abs=1e-2)
    assert dep.hors_communes_ha == pytest.approx(0, abs=1e-4)
    assert (rows.artif_pct <= 100).all() and dep.nom == "Seine-et-Marne"


def test_flows_equal_change_of_stocks_per_commune(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    before = partition(3_000, BOUNDS, millesime=2021, seed=7)
    after = evolve(before, 2024, seed=8, change=0.06)
    write_vector(store, "occupation/D077/2021/occupation_D077_2021.parquet", before)
    write_vector(store, "occupation/D077/2024/occupation_D077_2024.parquet", after)
    write_vector(store, "ancillary/communes/D077/2024/ancillary_communes_D077_2024.parquet", communes())
    for year in (2021, 2024):
        run_artif(store, "77", year)
    run_difference(store, "77", 2021, 2024, target=600)
    keys = run_stats(store, "77", [2021, 2024])
    flows = read_table(store, keys["stats_flows_2021_2024"])
    assert len(flows) == len(communes()) + 2 and flows.niveau.tolist()[-2:] == ["hors_communes", "departement"]
    outside = flows[flows.niveau == "hors_communes"].iloc[0]
    assert outside.flux_artif_ha == 0 and outside.flux_desartif_ha == 0  # the communes cover the territory
    flows = flows[flows.niveau != "hors_communes"]
    assert flows.flux_artif_net_ha.to_numpy() == pytest.approx(flows.variation_stock_artif_ha.to_numpy(), abs=0.01)
    assert (flows.flux_artif_ha > 0).any() and (flows.flux_desartif_ha >= 0).all()
    dep = flows[flows.niveau == "departement"].iloc[0]
    assert dep.flux_artif_ha == pytest.approx(flows[flows.niveau == "commune"].flux_artif_ha.sum(), abs=1e-3)
    csv = pd.read_csv(store.url(keys["stats_flows_csv_2021_2024"]))
    assert list(csv.columns) == [c for c in flows.columns if c not in ("geometry", "bbox")]
    geoparquet_validator = pytest.importorskip("geoparquet_validator")
    failed = geoparquet_validator.failed(geoparquet_validator.check(store.url(keys["stats_flows_2021_2024"])))
    assert failed == []  # the hors_communes row has an empty geometry, not a null one
    stock = gpd.read_parquet(store.url(keys["stats_commune_2024"]))  # GeoParquet: communes with their stocks
    assert stock.geometry.notna().all()
    assert {"artif_ha", "impermeable_ha", "CS1.1.1.1_ha", "US5_ha"} <= set(stock.columns)


def test_real_extract_sybarval(shared_data: Path) -> None:
    """sparte's Bassin d'Arcachon extract (2015→2018) through the tolerant parser, aggregated per commune:
    our per-commune flows match the indicators sparte published with it (rounded to the hectare)."""
    folder = shared_data / "sparte-sybarval-ocsge-2015-2018"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    dep = departement("33")
    report = IngestReport(str(folder))
    frames = []
    for name, sign in (("A_B_2015_2018", 1), ("A_B_2018_2015", -1)):
        raw = read_layer(LayerRef(folder / f"{name}.shp", None, name), report, "difference")
        raw = clean_geometries(check_crs(raw, dep, report, "difference", name), report, "difference")
        frame = normalise_difference(raw, dep, (2015, 2018), report)
        frames.append(frame.assign(artificialisation=np.int8(sign)))
    counts = report.counts()
    assert counts["non_leaf_code"] >= 134 and counts["empty_code"] >= 4 and counts["invalid_geometry_repaired"] >= 1
    assert (frames[1].cs_apres == "CS2.1.1").sum() == 134  # non-leaf codes kept, reported
    com = read_layer(LayerRef(folder / "Communes_SYBARVAL.shp", None, "communes"), report, "communes")
    assert "Belin-Béliet" in com.NOM.tolist()  # UTF-8 without .cpg: re-read as UTF-8
    table = flows_table(frames, com, "33", 2015, 2018)
    rows = table[table.niveau == "commune"].merge(com[["CODE_INSEE", "A_B_2015_2", "A_B_2018_2"]],
                                                   left_on="insee_com", right_on="CODE_INSEE")
    assert len(rows) == 17
    assert rows.flux_artif_ha.to_numpy() == pytest.approx(rows.A_B_2015_2.to_numpy(), abs=0.51)
    assert rows.flux_desartif_ha.to_numpy() == pytest.approx(rows.A_B_2018_2.to_numpy(), abs=0.51)
    total = table[table.niveau == "departement"].iloc[0]
    assert total.flux_artif_ha == pytest.approx(349.7, abs=0.5)
    assert total.flux_desartif_ha == pytest.approx(123, abs=0.5)


def test_real_extract_sybarval_through_the_decree_matrix(shared_data: Path) -> None:
    """The same extract, its codes classed by the matrix of décret 2023-1096 instead of taken as flows:
    +219.1 / −52.3 ha, not the 349.7 / 123.1 ha sparte recorded with it in 2021. That derivation counted
    every CS1.1 surface as artificial and everything else as not; by the décret, vegetation under a
    residential or economic usage is artificialised already, so most of its "new artificialisation" (a
    garden or a wooded plot of a house built over, CS2.x/US5 → CS1.1.1.1/US5) changes no class here:
    130.7 ha of A_B_2015_2018 and 70.6 ha of A_B_2018_2015 keep theirs. The audit's +219.3 ha counted
    five built polygons of 2015 with usage ``INDETERMINE`` (0.2 ha) as non-artificialised; a building is
    artificialised whatever its usage, so they make no flow. The 2 500 m² thresholds are not applied:
    they need the whole millésimes, and the extract holds only the polygons that changed."""
    from inference_batch.products.difference import matrix_flows

    folder = shared_data / "sparte-sybarval-ocsge-2015-2018"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    dep = departement("33")
    report = IngestReport(str(folder))
    frames = []
    for name in ("A_B_2015_2018", "A_B_2018_2015"):
        raw = read_layer(LayerRef(folder / f"{name}.shp", None, name), report, "difference")
        raw = clean_geometries(check_crs(raw, dep, report, "difference", name), report, "difference")
        frames.append(matrix_flows(normalise_difference(raw, dep, (2015, 2018), report)))
    ab, renatured = frames
    # of 3 970 "newly artificial" polygons, 2 055 change class by the matrix; of 1 296 "renatured", 589
    assert ab.artificialisation.value_counts().to_dict() == {1: 2055}
    assert renatured.artificialisation.value_counts().to_dict() == {-1: 589}
    com = read_layer(LayerRef(folder / "Communes_SYBARVAL.shp", None, "communes"), report, "communes")
    table = flows_table(frames, com, "33", 2015, 2018).set_index("niveau")
    total = table.loc["departement"]
    assert total.flux_artif_ha == pytest.approx(219.1, abs=0.1)
    assert total.flux_desartif_ha == pytest.approx(52.3, abs=0.1)
    assert table.loc["commune", "flux_artif_ha"].sum() == pytest.approx(total.flux_artif_ha, abs=1e-3)
    assert table.loc["hors_communes", "flux_artif_ha"] < 0.05  # slivers beyond the commune outlines


def test_flows_outside_every_commune_keep_their_row() -> None:
    com = communes()
    inside = shapely.box(700_100, 6_600_100, 700_200, 6_600_200)  # 1 ha in the communes
    outside = shapely.box(703_000, 6_600_100, 703_050, 6_600_200)  # 0.5 ha east of them
    diff = gpd.GeoDataFrame({"artificialisation": np.array([1, 1], dtype="int8")}, geometry=[inside, outside],
                            crs=2154)
    table = flows_table([diff], com, "77", 2021, 2024).set_index("niveau")
    assert table.loc["hors_communes", "flux_artif_ha"] == pytest.approx(0.5)
    assert table.loc["departement", "flux_artif_ha"] == pytest.approx(1.0)  # the communes, as the stocks
    assert table.loc["commune", "flux_artif_ha"].sum() == pytest.approx(1.0)


def test_published_flows_come_from_the_corrected_previous_millesime(tmp_path: Path) -> None:
    """M2 published a 1 ha car park that was a meadow (fixed by the patch): the difference, the artif ±1
    layer and the commune flows show only the real change (a field built over); the naive flows, from
    M2 as delivered, stay in the ``*_naif_ha`` columns."""
    from inference_batch.products.artifacts import key, read_json, read_vector
    from inference_batch.products.corrections import run_corrections

    x0, y0 = 700_000.0, 6_600_000.0
    plots = [shapely.box(x0 + 100 * i, y0, x0 + 100 * (i + 1), y0 + 100) for i in range(3)]

    def frame(codes: list[tuple[str, str]], year: int) -> gpd.GeoDataFrame:
        artif = ["artif" if cs.startswith("CS1.1") else "non artif" for cs, _ in codes]
        return gpd.GeoDataFrame({"id": ["a", "b", "c"], "code_cs": [c[0] for c in codes],
                                 "code_us": [c[1] for c in codes], "millesime": year, "artif": artif,
                                 "crit_seuil": False}, geometry=plots, crs=2154)

    before = frame([("CS1.1.1.2", "US4.1.1"), ("CS2.2.1", "US1.1"), ("CS2.2.1", "US1.1")], 2021)
    after = frame([("CS2.2.1", "US1.1"), ("CS1.1.1.1", "US5"), ("CS2.2.1", "US1.1")], 2024)
    patch = before[["id", "code_cs", "code_us", "geometry"]].assign(cs_corr=["CS2.2.1", "RAS", "RAS"],
                                                                     us_corr=["US1.1", "RAS", "RAS"])
    store = LocalStorage(tmp_path)
    write_vector(store, key("artificialisation", "77", 2021), before)
    write_vector(store, key("artificialisation", "77", 2024), after)
    write_vector(store, key("patch_corr", "77", (2021, 2024)), patch)
    write_vector(store, key("communes", "77", 2024), communes())
    run_corrections(store, "77", 2021, 2024)
    keys = run_difference(store, "77", 2021, 2024)
    keys.update(run_stats(store, "77", [2021, 2024]))
    flows = read_table(store, keys["stats_flows_2021_2024"]).set_index("niveau").loc["departement"]
    assert (flows.flux_artif_ha, flows.flux_desartif_ha) == (pytest.approx(1.0), pytest.approx(0.0))
    assert (flows.flux_artif_naif_ha, flows.flux_desartif_naif_ha) == (pytest.approx(1.0), pytest.approx(1.0))
    assert flows.variation_stock_artif_ha == pytest.approx(flows.flux_artif_net_ha)  # from the corrected stock
    assert flows.artif_debut_naif_ha == pytest.approx(1.0) and flows.artif_debut_ha == pytest.approx(0.0)
    art = read_vector(store, keys["artif_difference"])
    assert art.artificialisation.tolist() == [1]
    report = read_json(store, keys["difference_report"])
    assert report["previous_corrected"] and report["desartificialisation_ha"] == 0
    assert report["naive_flows"]["column"] == "artificialisation_brute"
