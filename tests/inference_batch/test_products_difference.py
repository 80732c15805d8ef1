"""Differences by spatial chunks: same pieces as a global overlay, flows, artif ±1, corrections, grid."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from inference_batch.products.artifacts import key, read_json, read_vector, write_vector
from inference_batch.products.corrections import corrected_previous, run_corrections
from inference_batch.products.difference import run_difference
from inference_batch.products.grid import cell_areas, change_grid, run_grid
from inference_batch.products.spatial import SpatialSource, overlay_chunks
from inference_batch.synth.partitions import evolve, partition
from ocsge.storage import LocalStorage

BOUNDS = (700_000.0, 6_600_000.0, 703_000.0, 6_602_000.0)


@pytest.fixture(scope="module")
def pair() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    before = partition(4_000, BOUNDS, millesime=2021, seed=11)
    return before, evolve(before, 2024, seed=12)


@pytest.mark.parametrize("target", [250, 1_000, 100_000])
def test_chunked_overlay_equals_global_overlay(pair: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame], target: int) -> None:
    before, after = pair
    cols = ["code_cs", "code_us"]
    frames = [c.frame(cols, cols) for c in overlay_chunks(SpatialSource(before), SpatialSource(after), target=target)]
    ours = pd.concat(frames, ignore_index=True)
    ref = gpd.overlay(before[[*cols, "geometry"]], after[[*cols, "geometry"]], how="intersection", keep_geom_type=True)
    ref = ref[ref.area >= 0.01]
    assert len(ours) == len(ref)
    assert ours["area"].sum() == pytest.approx(ref.area.sum(), rel=1e-9)
    changed = (ours.code_cs_a != ours.code_cs_b) | (ours.code_us_a != ours.code_us_b)
    ref_changed = (ref.code_cs_1 != ref.code_cs_2) | (ref.code_us_1 != ref.code_us_2)
    assert ours.loc[changed, "area"].sum() == pytest.approx(ref.area[ref_changed].sum(), rel=1e-9)
    assert len(set(zip(ours.ia, ours.ib, strict=True))) == len(ours)  # each pair once: nothing to stitch twice


def test_huge_polygons_are_overlaid_window_by_window() -> None:
    cells = partition(3_000, BOUNDS, millesime=2021, seed=21)
    centre = shapely.Point(701_500, 6_601_000)
    inside = cells.centroid.within(centre.buffer(700))
    lagoon = shapely.union_all(cells.geometry[inside].to_numpy())
    before = pd.concat([cells[~inside], gpd.GeoDataFrame(
        {"id": ["lagoon"], "code_cs": ["CS1.2.2"], "code_us": ["US1.4"], "millesime": 2021},
        geometry=[lagoon], crs=2154)], ignore_index=True)
    after = evolve(cells, 2024, seed=22)  # the later millésime has no lagoon: only its small cells
    cols = ["code_cs", "code_us"]
    ours = pd.concat([c.frame(cols, cols) for c in overlay_chunks(SpatialSource(before), SpatialSource(after),
                                                                    target=30)], ignore_index=True)
    ref = gpd.overlay(before[[*cols, "geometry"]], after[[*cols, "geometry"]], how="intersection", keep_geom_type=True)
    ref = ref[ref.area >= 0.01]
    assert len(ours) == len(ref)
    lagoon_row = len(before) - 1
    assert ours.loc[ours.ia == lagoon_row, "area"].sum() == pytest.approx(lagoon.area, rel=1e-9)
    assert ours["area"].sum() == pytest.approx(before.area.sum(), rel=1e-9)


def test_chunks_read_from_geoparquet_row_groups(tmp_path: Path,
                                                pair: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    store = LocalStorage(tmp_path)
    before, after = pair
    write_vector(store, "a.parquet", before)
    write_vector(store, "b.parquet", after)
    src = SpatialSource(path=store.url("a.parquet"), columns=["code_cs"])
    assert src.n == len(before) and np.allclose(src.total_bounds, before.total_bounds)
    rows = src.take(np.array([5, 3, 3999, 0]))
    assert rows.index.tolist() == [5, 3, 3999, 0]
    total = sum(c.area.sum() for c in overlay_chunks(src, SpatialSource(path=store.url("b.parquet")), target=500))
    assert total == pytest.approx(before.area.sum(), rel=1e-9)


def test_difference_step(tmp_path: Path, pair: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    store = LocalStorage(tmp_path)
    before, after = pair
    write_vector(store, "occupation/D077/2021/occupation_D077_2021.parquet", before)
    write_vector(store, "occupation/D077/2024/occupation_D077_2024.parquet", after)
    keys = run_difference(store, "77", 2021, 2024, target=700)
    evo = read_vector(store, keys["difference"])
    assert list(evo.columns) == ["id", "cs_avant", "us_avant", "cs_apres", "us_apres", "geometry"]
    assert ((evo.cs_avant != evo.cs_apres) | (evo.us_avant != evo.us_apres)).all()
    assert evo.id.is_unique
    report = read_json(store, keys["difference_report"])
    assert report["chunks"] > 1 and report["before_not_covered_after_ha"] == pytest.approx(0, abs=1e-6)
    assert evo.area.sum() / 1e4 == pytest.approx(report["changed_ha"], abs=1e-3)
    flows_cs = pd.read_csv(store.url(keys["flows_cs"])).set_index("cs_avant")
    flows_us = pd.read_csv(store.url(keys["flows_us"])).set_index("us_avant")
    # rows sum to the stock before, columns to the stock after (the two layers cover the same area)
    stock_before = before.groupby("code_cs").geometry.apply(lambda g: g.area.sum() / 1e4)
    stock_after = after.groupby("code_us").geometry.apply(lambda g: g.area.sum() / 1e4)
    for code, ha in stock_before.items():
        assert flows_cs.loc[code].sum() == pytest.approx(ha, abs=0.01)
    for code, ha in stock_after.items():
        assert flows_us[code].sum() == pytest.approx(ha, abs=0.01)
    off_diagonal = flows_cs.to_numpy().sum() - np.trace(flows_cs.loc[flows_cs.columns].to_numpy())
    assert off_diagonal == pytest.approx(evo[evo.cs_avant != evo.cs_apres].area.sum() / 1e4, abs=0.01)
    art = read_vector(store, keys["artif_difference"])
    assert set(art.artificialisation.unique()) <= {1, -1}
    net = art.area[art.artificialisation == 1].sum() - art.area[art.artificialisation == -1].sum()
    assert net / 1e4 == pytest.approx(report["artif_after_ha"] - report["artif_before_ha"], abs=0.01)
    mtime = Path(store.url(keys["difference"])).stat().st_mtime_ns
    run_difference(store, "77", 2021, 2024)
    assert Path(store.url(keys["difference"])).stat().st_mtime_ns == mtime


def test_failed_step_leaves_no_partial_artifact(tmp_path: Path, pair: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStorage(tmp_path)
    before, after = pair
    write_vector(store, "occupation/D077/2021/occupation_D077_2021.parquet", before)
    write_vector(store, "occupation/D077/2024/occupation_D077_2024.parquet", after)
    import inference_batch.products.difference as difference

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(difference, "write_table", broken)
    with pytest.raises(RuntimeError):
        run_difference(store, "77", 2021, 2024)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert all(p.startswith("occupation/") for p in left), left


def test_corrections_separate_false_flows() -> None:
    # previous millésime: a vineyard wrongly published as broadleaf forest, and a field
    vine = shapely.box(700_000, 6_600_000, 700_100, 6_600_100)
    field = shapely.box(700_100, 6_600_000, 700_300, 6_600_100)
    prev = gpd.GeoDataFrame({"id": ["vine", "field"], "code_cs": ["CS2.1.1.1", "CS2.2.1"],
                             "code_us": ["US1.1", "US1.1"], "millesime": 2021}, geometry=[vine, field], crs=2154)
    patch = prev.assign(cs_corr=["CS2.1.3", "RAS"], us_corr=["RAS", "RAS"])
    # later millésime: the vineyard is (correctly) a vineyard; half of the field is now housing
    houses = shapely.box(700_100, 6_600_000, 700_200, 6_600_100)
    after = gpd.GeoDataFrame({"id": ["vine", "field", "houses"], "code_cs": ["CS2.1.3", "CS2.2.1", "CS1.1.1.1"],
                              "code_us": ["US1.1", "US1.1", "US5"], "millesime": 2024},
                             geometry=[vine, shapely.box(700_200, 6_600_000, 700_300, 6_600_100), houses], crs=2154)
    layer, corr = corrected_previous(prev, patch)
    assert corr.id.tolist() == ["vine"] and corr.cs_corr.item() == "CS2.1.3" and corr.code_cs.item() == "CS2.1.1.1"
    assert layer.set_index("id").loc["vine", "code_cs"] == "CS2.1.3"
    assert layer.set_index("id").loc["vine", "cs_origine"] == "CS2.1.1.1"
    from inference_batch.products.corrections import difference_nature

    with __import__("tempfile").TemporaryDirectory() as tmp:
        path = Path(tmp) / "nature.parquet"
        totals = difference_nature(SpatialSource(layer), SpatialSource(after.assign(
            artif=np.where(after.code_cs == "CS1.1.1.1", "artif", "non artif"))), path)
        nature = gpd.read_parquet(path)
    assert sorted(nature.nature) == ["correction", "evolution"]
    assert totals["correction_ha"] == pytest.approx(1.0) and totals["evolution_ha"] == pytest.approx(1.0)
    evo = nature[nature.nature == "evolution"].iloc[0]
    assert (evo.cs_avant, evo.cs_apres, evo.artificialisation) == ("CS2.2.1", "CS1.1.1.1", 1)


def test_partial_corrections_layer_splits_polygons() -> None:
    field = shapely.box(700_000, 6_600_000, 700_200, 6_600_100)
    prev = gpd.GeoDataFrame({"id": ["f"], "code_cs": ["CS2.2.1"], "code_us": ["US1.1"], "millesime": 2021},
                            geometry=[field], crs=2154)
    fix = gpd.GeoDataFrame({"cs_corr": ["CS1.1.1.2"], "us_corr": ["US4.1.1"]},
                           geometry=[shapely.box(700_000, 6_600_000, 700_050, 6_600_100)], crs=2154)
    layer, corr = corrected_previous(prev, fix)
    assert layer.area.sum() == pytest.approx(field.area)
    assert sorted(zip(layer.code_cs, layer.area.round(3), strict=True)) == [("CS1.1.1.2", 5000.0), ("CS2.2.1", 15000.0)]
    assert corr.area.sum() == pytest.approx(5000.0) and corr.code_cs.item() == "CS2.2.1"


def test_corrections_step_on_generated_territory(tmp_path: Path) -> None:
    synth = pytest.importorskip("inference_batch.synth.generate")
    from inference_batch.products.artif import run_artif
    from inference_batch.products.ingest import ingest

    store = LocalStorage(tmp_path)
    synth.generate(store, "S01", width_m=800, height_m=600, seed=5, millesimes=(2021, 2024), imagery=False)
    for k in sorted(o.key for o in store.list("deliveries/")):
        ingest(store.url(k), store)
    for year in (2021, 2024):
        run_artif(store, "S01", year)
    run_difference(store, "S01", 2021, 2024)
    keys = run_corrections(store, "S01", 2021, 2024)
    report = read_json(store, keys["corrections_report"])
    errors = read_json(store, "truth/DS01/2021/truth_DS01_2021.json")["errors"]
    expected = sum(e["area_m2"] for e in errors) / 1e4
    assert report["corrected_ha"] == pytest.approx(expected, abs=0.01)
    assert report["correction_ha"] == pytest.approx(expected, abs=0.01)


def test_cell_areas() -> None:
    square = shapely.box(10, 10, 140, 75)  # 130 × 65 over a 65 m grid from (0, 0)
    areas = cell_areas(np.array([square]), 65.0, (0.0, 0.0))
    assert areas.sum() == pytest.approx(square.area)
    assert areas.to_dict() == pytest.approx({(0, 0): 55 * 55, (1, 0): 65 * 55, (2, 0): 10 * 55,
                                             (0, 1): 55 * 10, (1, 1): 65 * 10, (2, 1): 10 * 10})


def test_change_grid(tmp_path: Path, pair: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    before, after = pair
    grid, report = change_grid(SpatialSource(before), SpatialSource(after), threshold=100.0)
    changed = ((before.set_index("id").code_cs != after.set_index("id").code_cs.reindex(before.id)).sum())
    assert changed > 0 and report["cells_changed"] == len(grid) > 0
    assert (grid.changed_area_m2 > 0).all() and (grid.changed_area_m2 <= 65 * 65 + 1e-6).all()
    assert grid.flagged.tolist() == (grid.changed_area_m2 >= 100.0).tolist()
    assert report["origin"][0] % 65 == 0 and report["origin"][1] % 65 == 0
    store = LocalStorage(tmp_path)
    write_vector(store, "occupation/D077/2021/occupation_D077_2021.parquet", before)
    prediction = after[["id", "code_cs", "geometry"]]  # a prediction has no usage
    write_vector(store, "occupation_auto/D077/2024/occupation_auto_D077_2024.parquet", prediction)
    keys = run_grid(store, "77", 2021, 2024, after_source="occupation_auto")
    out = read_vector(store, keys["change_grid_auto"])  # apart from the grid between two millésimes
    assert read_json(store, keys["change_grid_auto_report"])["compared"] == ["code_cs"] and len(out) > 0
    # a rerun on the same inputs redoes nothing; a new prediction redoes the grid
    stamp = (tmp_path / keys["change_grid_auto"]).stat().st_mtime_ns
    run_grid(store, "77", 2021, 2024, after_source="occupation_auto")
    assert (tmp_path / keys["change_grid_auto"]).stat().st_mtime_ns == stamp
    write_vector(store, "occupation_auto/D077/2024/occupation_auto_D077_2024.parquet", before[["id", "code_cs",
                                                                                              "geometry"]])
    run_grid(store, "77", 2021, 2024, after_source="occupation_auto")
    assert read_vector(store, keys["change_grid_auto"]).empty or (
        (tmp_path / keys["change_grid_auto"]).stat().st_mtime_ns != stamp)
    assert read_json(store, keys["change_grid_auto_report"])["changed_ha"] == 0


def generations() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Three 1 ha plots: housing and a garden coded US235 then US5/US3 (new generation, same usage), and
    an industrial plot US2 that really became housing US5."""
    plots = [shapely.box(700_000 + 100 * i, 6_600_000, 700_100 + 100 * i, 6_600_100) for i in range(3)]
    before = gpd.GeoDataFrame({"id": ["a", "b", "c"], "code_cs": ["CS1.1.1.1", "CS2.2.1", "CS1.1.1.1"],
                               "code_us": ["US235", "US235", "US2"], "millesime": 2021}, geometry=plots, crs=2154)
    after = before.assign(code_us=["US5", "US3", "US5"], millesime=2024)
    return before, after


def test_us235_against_its_split_is_no_change(tmp_path: Path) -> None:
    before, after = generations()
    store = LocalStorage(tmp_path)
    write_vector(store, "occupation/D077/2021/occupation_D077_2021.parquet", before)
    write_vector(store, "occupation/D077/2024/occupation_D077_2024.parquet", after)
    keys = run_difference(store, "77", 2021, 2024)
    evo = read_vector(store, keys["difference"])
    assert (evo.us_avant.tolist(), evo.us_apres.tolist()) == (["US2"], ["US5"])
    report = read_json(store, keys["difference_report"])
    assert report["changed_ha"] == pytest.approx(1.0) and report["usage_generation_only_ha"] == pytest.approx(2.0)
    grid, grid_report = change_grid(SpatialSource(before), SpatialSource(after), threshold=1.0)
    assert grid_report["changed_ha"] == pytest.approx(1.0)
    assert grid.geometry.union_all().within(before.geometry[2].buffer(65))  # only around plot c


def test_corrections_compare_usages_across_generations(tmp_path: Path) -> None:
    before, after = generations()
    from inference_batch.products.corrections import difference_nature

    patch = before.assign(cs_corr="RAS", us_corr=["US5", "RAS", "RAS"])  # a re-coding, not a correction
    layer, corr = corrected_previous(before, patch)
    assert corr.empty
    totals = difference_nature(SpatialSource(layer), SpatialSource(after.assign(artif="artif")),
                               tmp_path / "nature.parquet")
    assert totals["evolution_ha"] == pytest.approx(1.0) and totals["correction_ha"] == pytest.approx(0.0)


def delivered_pair(meadow_before: tuple[str, bool], meadow_after: tuple[str, bool]
                   ) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """IGN's artificialisation layers of two millésimes: housing, a 0.1 ha meadow on the western edge of
    the territory (IGN's ``artif``/``crit_seuil`` as given: not what our thresholds would say there), and a
    2 ha field of which half becomes scrubland (a real, non-artificialising change)."""
    x0, y0 = 700_000.0, 6_600_000.0
    meadow = shapely.box(x0, y0 + 40, x0 + 25, y0 + 80)  # 1 000 m², touching the edge
    housing = shapely.box(x0, y0, x0 + 200, y0 + 100).difference(meadow)
    field = shapely.box(x0 + 200, y0, x0 + 400, y0 + 100)

    def frame(rows: list[tuple[str, str, str, str, bool, shapely.Geometry]], year: int) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame({"id": [r[0] for r in rows], "code_cs": [r[1] for r in rows],
                                 "code_us": [r[2] for r in rows], "millesime": year,
                                 "artif": [r[3] for r in rows], "crit_seuil": [r[4] for r in rows]},
                                geometry=[r[5] for r in rows], crs=2154)

    before = frame([("housing", "CS1.1.1.1", "US5", "artif", False, housing),
                    ("meadow", "CS2.2.1", "US1.1", *meadow_before, meadow),
                    ("field", "CS2.2.1", "US1.1", "non artif", False, field)], 2021)
    after = frame([("housing", "CS1.1.1.1", "US5", "artif", False, housing),
                   ("meadow", "CS2.2.1", "US1.1", *meadow_after, meadow),
                   ("field", "CS2.2.1", "US1.1", "non artif", False, shapely.box(x0 + 200, y0, x0 + 300, y0 + 100)),
                   ("scrub", "CS2.1.2", "US1.1", "non artif", False, shapely.box(x0 + 300, y0, x0 + 400, y0 + 100))],
                  2024)
    return before, after


def run_with_patch(tmp_path: Path, before: gpd.GeoDataFrame, after: gpd.GeoDataFrame, patch: gpd.GeoDataFrame,
                   target: int = 20_000) -> dict[str, float]:
    store = LocalStorage(tmp_path)
    write_vector(store, key("artificialisation", "77", 2021), before)
    write_vector(store, key("artificialisation", "77", 2024), after)
    write_vector(store, key("patch_corr", "77", (2021, 2024)), patch)
    keys = run_corrections(store, "77", 2021, 2024, force=True, target=target)
    return read_json(store, keys["corrections_report"])


def test_a_patch_that_corrects_nothing_creates_no_flow(tmp_path: Path) -> None:
    """The audit's case: PATCH_CORR all ``RAS`` and one real non-artificialising change elsewhere. The
    delivered ``artif``/``crit_seuil`` are kept (our thresholds would de-artificialise the meadow, which
    touches the edge of the territory): no artificialisation flow, no false flow."""
    before, after = delivered_pair(("artif", True), ("artif", True))
    patch = before[["id", "code_cs", "code_us", "geometry"]].assign(cs_corr="RAS", us_corr="RAS")
    report = run_with_patch(tmp_path, before, after, patch)
    assert report["artif_net_ha"] == 0 and report["false_artif_flows_ha"] == 0
    assert report["corrected_polygons"] == 0 and report["thresholds_recomputed_polygons"] == 0
    assert report["evolution_ha"] == pytest.approx(1.0) and report["correction_ha"] == 0
    layer = read_vector(LocalStorage(tmp_path), key("corrected_previous", "77", (2021, 2024)))
    assert layer.set_index("id").loc["meadow", ["artif", "crit_seuil"]].tolist() == ["artif", True]


@pytest.mark.parametrize("target", [1, 100_000])
def test_corrections_totals_do_not_depend_on_chunking(tmp_path: Path, target: int) -> None:
    # IGN judges the meadow artificialised by threshold in the later millésime only: +0.1 ha without any
    # change of code there, in a chunk of its own when chunks are small
    before, after = delivered_pair(("non artif", False), ("artif", True))
    patch = before[["id", "code_cs", "code_us", "geometry"]].assign(cs_corr="RAS", us_corr="RAS")
    report = run_with_patch(tmp_path, before, after, patch, target=target)
    assert report["artif_net_ha"] == pytest.approx(0.1) and report["artif_net_brut_ha"] == pytest.approx(0.1)
    assert report["false_artif_flows_ha"] == 0


def test_corrections_recompute_thresholds_only_around_corrected_polygons() -> None:
    # the meadow keeps IGN's class; a 900 m² yard in the field, corrected into a lawn, is judged anew
    before, _ = delivered_pair(("artif", True), ("artif", True))
    yard = shapely.box(700_250, 6_600_030, 700_280, 6_600_060)
    field = before.geometry[2].difference(yard)
    before = pd.concat([before.iloc[:2], gpd.GeoDataFrame(
        {"id": ["field", "yard"], "code_cs": ["CS2.2.1", "CS1.1.2.1"], "code_us": ["US1.1", "US1.1"],
         "millesime": 2021, "artif": ["non artif", "non artif"], "crit_seuil": [False, True]},
        geometry=[field, yard], crs=2154)], ignore_index=True)
    patch = gpd.GeoDataFrame({"cs_corr": ["CS1.1.1.1"], "us_corr": ["US1.1"]},
                             geometry=[shapely.box(700_250, 6_600_030, 700_260, 6_600_040)], crs=2154)  # 100 m² shed
    layer, corr = corrected_previous(before, patch)
    out = layer.set_index("id")
    assert corr.code_cs.tolist() == ["CS1.1.2.1"] and corr.cs_corr.tolist() == ["CS1.1.1.1"]
    assert out.loc["meadow", "artif"] == "artif" and not out.loc["meadow", "seuils_recalcules"]
    shed = out[out.code_cs == "CS1.1.1.1"].drop(index="housing")
    assert shed.artif.tolist() == ["artif"] and not shed.crit_seuil.any()  # built ≥ 50 m²: stays artificial
    rest = out[(out.index.str.startswith("yard")) & (out.code_cs == "CS1.1.2.1")]
    assert rest.artif.tolist() == ["non artif"] and rest.crit_seuil.all() and rest.seuils_recalcules.all()


def test_artif_difference_carries_ign_columns(tmp_path: Path, pair: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]
                                              ) -> None:
    """IGN's artificialisation différentiel names its columns by millésime (cs_2021… artif_2021, artif_2024,
    as sparte's loader reads them): ours carries them too, so that a reader of IGN's layer reads ours."""
    from inference_batch.products.ingest import IngestReport, normalise_difference
    from ocsge.territory import departement

    store = LocalStorage(tmp_path)
    before, after = pair
    write_vector(store, "occupation/D077/2021/occupation_D077_2021.parquet", before)
    write_vector(store, "occupation/D077/2024/occupation_D077_2024.parquet", after)
    keys = run_difference(store, "77", 2021, 2024)
    art = read_vector(store, keys["artif_difference"])
    ign = ["cs_2021", "us_2021", "cs_2024", "us_2024", "artif_2021", "artif_2024"]
    assert set(ign) <= set(art.columns) and len(art) > 0
    assert (art.cs_2021 == art.cs_avant).all() and (art.us_2024 == art.us_apres).all()
    assert ((art.artif_2024 == "artif") == (art.artificialisation == 1)).all()
    assert ((art.artif_2021 == "artif") == (art.artificialisation == -1)).all()
    as_ign = art[["artificialisation", *ign, "geometry"]]
    read_back = normalise_difference(as_ign, departement("77"), None, IngestReport("ours"), role="artif_difference")
    assert read_back.cs_avant.tolist() == art.cs_avant.tolist()
    assert read_back.artificialisation.tolist() == art.artificialisation.tolist()


def test_qa_against_ign_artif_difference(tmp_path: Path) -> None:
    from inference_batch.products.ign_qa import run_difference_qa

    x0, y0 = 700_000.0, 6_600_000.0

    def diff(rows: list[tuple[int, float, float]]) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame({"artificialisation": np.array([r[0] for r in rows], dtype="int8")},
                                geometry=[shapely.box(x0 + r[1], y0, x0 + r[2], y0 + 100) for r in rows], crs=2154)

    store = LocalStorage(tmp_path)
    write_vector(store, key("artif_difference", "77", (2021, 2024)), diff([(1, 0, 100), (-1, 200, 250)]))
    assert run_difference_qa(store, "77", 2021, 2024) == {}  # no IGN différentiel
    write_vector(store, key("delivered_artif_difference", "77", (2021, 2024)), diff([(1, 50, 150), (1, 200, 250)]))
    report = read_json(store, run_difference_qa(store, "77", 2021, 2024)["artif_difference_qa"])
    assert report["ours"]["artif_net_ha"] == pytest.approx(0.5) and report["ign"]["artif_net_ha"] == pytest.approx(1.5)
    assert (report["plus_both_ha"], report["opposite_sign_ha"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert (report["only_ours_ha"], report["only_ign_ha"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert report["agreement"]["artificialisation_iou"] == pytest.approx(0.25)
    assert report["agreement"]["desartificialisation_iou"] == 0


# --- identical polygons first (overlay_identical_first, wkb_digest) ---------------------------------------


def wiggly_scene() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Two millésimes of a 3 × 2 block of 100 m plots sharing wiggly boundaries: a field holding a pond
    (a hole and its island), a wood, houses… Later: the houses' neighbour changes class only, the
    boundary between the wood and the meadow moves, the pond is filled (the hole goes), and a plot is
    split in two, half of it built."""
    x0, y0 = 700_000.0, 6_600_000.0
    wiggle = [(x0 + 100 + 6 * np.sin(t / 3), y0 + t) for t in np.linspace(0, 100, 30)][1:-1]
    moved = [(x0 + 100 - 9 * np.sin(t / 5), y0 + t) for t in np.linspace(0, 100, 30)][1:-1]

    def left_right(edge: list[tuple[float, float]]) -> tuple[shapely.Polygon, shapely.Polygon]:
        wood = shapely.Polygon([(x0, y0), (x0 + 100, y0), *edge, (x0 + 100, y0 + 100), (x0, y0 + 100)])
        meadow = shapely.Polygon([(x0 + 100, y0), (x0 + 200, y0), (x0 + 200, y0 + 100), (x0 + 100, y0 + 100),
                                  *edge[::-1]])
        return wood, meadow

    wood, meadow = left_right(wiggle)
    wood2, meadow2 = left_right(moved)
    pond = shapely.Point(x0 + 250, y0 + 50).buffer(20, 8)
    field = shapely.box(x0 + 200, y0, x0 + 300, y0 + 100)
    houses = shapely.box(x0, y0 + 100, x0 + 100, y0 + 200)
    garden = shapely.box(x0 + 100, y0 + 100, x0 + 200, y0 + 200)
    plot = shapely.box(x0 + 200, y0 + 100, x0 + 300, y0 + 200)
    half_a, half_b = shapely.box(x0 + 200, y0 + 100, x0 + 250, y0 + 200), shapely.box(x0 + 250, y0 + 100, x0 + 300,
                                                                                      y0 + 200)

    def frame(rows: list[tuple[str, str, str, shapely.Geometry]], year: int) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame({"id": [r[0] for r in rows], "code_cs": [r[1] for r in rows],
                                 "code_us": [r[2] for r in rows], "millesime": year},
                                geometry=[r[3] for r in rows], crs=2154)

    before = frame([("wood", "CS2.1.1.1", "US1.2", wood), ("meadow", "CS2.2.1", "US1.1", meadow),
                    ("field", "CS2.2.1", "US1.1", field.difference(pond)), ("pond", "CS1.2.2", "US6.3", pond),
                    ("houses", "CS1.1.1.1", "US5", houses), ("garden", "CS2.2.1", "US5", garden),
                    ("plot", "CS2.2.1", "US1.1", plot)], 2021)
    after = frame([("wood", "CS2.1.1.1", "US1.2", wood2), ("meadow", "CS2.2.1", "US1.1", meadow2),
                   ("field", "CS2.2.1", "US1.1", field), ("houses", "CS1.1.1.1", "US5", houses),
                   ("garden", "CS1.1.1.1", "US5", garden), ("plot_a", "CS2.2.1", "US1.1", half_a),
                   ("plot_b", "CS1.1.1.1", "US5", half_b)], 2024)
    return before, after


def brute_force(before: gpd.GeoDataFrame, after: gpd.GeoDataFrame) -> pd.DataFrame:
    """geopandas.overlay of the two layers: area of the pieces by the four codes."""
    cols = ["code_cs", "code_us"]
    ref = gpd.overlay(before[[*cols, "geometry"]], after[[*cols, "geometry"]], how="intersection", keep_geom_type=True)
    ref = ref[ref.area >= 0.01]
    return ref.assign(area=ref.area).groupby(["code_cs_1", "code_us_1", "code_cs_2", "code_us_2"])["area"].sum()


def by_codes(frames: list[pd.DataFrame]) -> pd.Series:
    pieces = pd.concat(frames, ignore_index=True)
    return pieces.groupby(["code_cs_a", "code_us_a", "code_cs_b", "code_us_b"])["area"].sum()


@pytest.fixture(scope="module")
def realistic_pair() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    from inference_batch.synth.vector_scale import build_vector_pair

    pair = build_vector_pair(1_500, seed=5, departement="S02", vertices=(20, 120))
    return pair["truth"][2021], pair["truth"][2024]


@pytest.mark.parametrize("scene", ["wiggly", "realistic"])
def test_identical_first_equals_brute_force_overlay(scene: str, realistic_pair: tuple[gpd.GeoDataFrame,
                                                                                      gpd.GeoDataFrame]) -> None:
    from inference_batch.products.spatial import overlay_identical_first

    before, after = wiggly_scene() if scene == "wiggly" else realistic_pair
    cols = ["code_cs", "code_us"]
    matched = overlay_identical_first(SpatialSource(before, columns=cols), SpatialSource(after, columns=cols),
                                      target=200)
    assert matched is not None
    frames = list(matched.frames)
    ours, ref = by_codes(frames), brute_force(before, after)
    assert ours.index.tolist() == ref.index.tolist()
    assert ours.to_numpy() == pytest.approx(ref.to_numpy(), rel=1e-9)
    assert matched.area_a == pytest.approx(before.area.sum(), rel=1e-12)
    assert matched.area_b == pytest.approx(after.area.sum(), rel=1e-12)
    # only what is not identical went through GEOS: identical polygons are paired by fingerprint
    same = set(shapely.to_wkb(before.geometry.to_numpy())) & set(shapely.to_wkb(after.geometry.to_numpy()))
    assert matched.identical == len(same) and matched.unmatched_a == len(before) - len(same)
    if scene == "wiggly":  # houses, garden (class only), field's pond filled: its hole and island differ
        assert matched.identical == 2 and matched.unmatched_b == len(after) - 2


def test_difference_of_wiggly_scene_writes_what_changed(tmp_path: Path) -> None:
    before, after = wiggly_scene()
    store = LocalStorage(tmp_path)
    write_vector(store, "occupation/D077/2021/occupation_D077_2021.parquet", before)
    write_vector(store, "occupation/D077/2024/occupation_D077_2024.parquet", after)
    keys = run_difference(store, "77", 2021, 2024)
    evo = read_vector(store, keys["difference"])
    report = read_json(store, keys["difference_report"])
    assert report["identical_pairs"] == 2
    ref = brute_force(before, after).reset_index()
    ref = ref[(ref.code_cs_1 != ref.code_cs_2) | (ref.code_us_1 != ref.code_us_2)]
    got = evo.assign(area=evo.area).groupby(["cs_avant", "us_avant", "cs_apres", "us_apres"])["area"].sum()
    assert got.to_numpy() == pytest.approx(ref["area"].to_numpy(), rel=1e-9)
    # the garden changed class only: its piece is the polygon itself, untouched by any intersection
    garden = evo[(evo.cs_avant == "CS2.2.1") & (evo.us_avant == "US5")]
    assert len(garden) == 1 and garden.geometry.iloc[0].equals_exact(before.geometry[5], 0)
    pond = evo[evo.cs_avant == "CS1.2.2"]  # the filled pond: its island became field
    assert pond.area.sum() == pytest.approx(before.geometry[3].area, rel=1e-9)
    assert report["changed_ha"] == pytest.approx(got.sum() / 1e4, abs=1e-4)


def test_too_different_layers_take_the_chunked_overlay(pair: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    from inference_batch.products.difference import compute_difference
    from inference_batch.products.spatial import overlay_identical_first

    before = pair[0]
    other = partition(3_000, BOUNDS, millesime=2024, seed=99)  # nothing in common with ``before``
    cols = ["code_cs", "code_us", "artif"]
    a = SpatialSource(before.assign(artif="non artif"), columns=cols)
    b = SpatialSource(other.assign(artif="artif"), columns=cols)
    assert overlay_identical_first(a, b, target=100) is None
    result = compute_difference(a, b, None, None, target=500, quiet=True)
    assert result.report["identical_pairs"] is None
    assert result.report["artificialisation_ha"] == pytest.approx(before.area.sum() / 1e4, rel=1e-9)


def test_wkb_digest_fingerprints_and_areas() -> None:
    import pyarrow as pa

    from inference_batch.products.wkb_digest import MISSING, OK, OTHER, digest

    before, after = wiggly_scene()
    geoms = np.concatenate([before.geometry.to_numpy(), after.geometry.to_numpy(),
                            [shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 0, 3, 2)]),
                             shapely.Polygon(), None, shapely.Point(1, 2),
                             shapely.Polygon([(0, 0, 1), (1, 0, 1), (1, 1, 1)])]])
    wkb = shapely.to_wkb(geoms)
    h1, h2, area, status = digest(pa.array(wkb, type=pa.binary()).slice(0))
    assert status.tolist() == [OK] * (len(geoms) - 4) + [MISSING, MISSING, OTHER, OTHER]
    ok = status == OK
    assert area[ok] == pytest.approx(shapely.area(geoms[ok]), rel=1e-12)
    same_bytes = np.array([[x == y for y in wkb[ok]] for x in wkb[ok]])
    same_print = (h1[ok][:, None] == h1[ok][None, :]) & (h2[ok][:, None] == h2[ok][None, :])
    assert (same_bytes == same_print).all() and same_bytes.sum() > ok.sum()  # some geometries repeat
    sliced = digest(pa.array(wkb, type=pa.large_binary()).slice(3, 4))
    assert sliced[0].tolist() == h1[3:7].tolist()


def test_intersections_on_several_cores_keep_the_order(pair: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from inference_batch.products import spatial

    before, after = pair
    a, b = shapely.STRtree(after.geometry.to_numpy()).query(before.geometry.to_numpy(), predicate="intersects")
    ga, gb = before.geometry.to_numpy()[a], after.geometry.to_numpy()[b]
    monkeypatch.setattr(spatial, "PARALLEL_PAIRS", 10)
    monkeypatch.setattr(spatial.os, "cpu_count", lambda: 3)
    parallel = spatial.safe_intersection(ga, gb)
    assert len(parallel) == len(ga) > 30
    assert shapely.equals_exact(parallel, shapely.intersection(ga, gb), 0).all()
