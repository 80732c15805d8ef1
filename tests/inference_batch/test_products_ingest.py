"""Ingestion of IGN-like deliveries: names, archive variants, tolerant attributes, anomalies, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import py7zr
import pyogrio
import pytest
import shapely

from inference_batch.products.ingest import IngestError, ingest, layer_role, parse_delivery_name
from inference_batch.synth.partitions import partition
from ocsge.errors import OcsgeError
from ocsge.storage import LocalStorage


def written(store: LocalStorage) -> list[Path]:
    return sorted(p for p in store.path.rglob("*") if p.is_file()) if store.path.exists() else []


BOUNDS_13 = (850_000, 6_250_000, 851_000, 6_251_000)  # Lambert-93, in the Bouches-du-Rhône


@pytest.mark.parametrize(("name", "dep", "year", "pair", "product"), [
    ("OCS-GE_2-0__GPKG_LAMB93_D013_2023-01-01.7z", "13", 2023, None, "ocsge"),
    ("OCS-GE_2-0__SHP_LAMB93_D001_2018-01-01", "01", 2018, None, "ocsge"),
    ("OCS-GE_2-0_DIFF-2020-2023_GPKG_LAMB93_D007_2025-06-30", "07", None, (2020, 2023), "difference"),
    ("OCS-GE_2-0_DIFF_SHP_LAMB93_D001_2018-2021", "01", None, (2018, 2021), "difference"),
    ("OCS-GE_2-0__SHP_LAMB93_D075_DIFF_2018-2021", "75", None, (2018, 2021), "difference"),
    ("OCS-GE_2-0_ARTIFICIALISATION_GPKG_RGAF09UTM20_D0971_2022-01-01", "971", 2022, None, "artificialisation"),
    ("OCS-GE-ARTIFICIALISATION_2-0_DIFF-2018-2021_GPKG_LAMB93_D001_2025-09-16", "01", None, (2018, 2021),
     "artif_difference"),
    ("OCS-GE_2-0_DIFF-2018-2022_GPKG_RGFG95UTM22_D973_2025-11_04", "973", None, (2018, 2022), "difference"),
    ("OCS-GE_2-0__GPKG_LAMB93_D02A_2019-01-01", "2A", 2019, None, "ocsge"),
    ("OCSGE_2-0_GPKG_LAMB93_D13-2023", "13", 2023, None, "ocsge"),
    ("deliveries_DS01_2021.7z", "S01", None, None, "ocsge"),
])
def test_delivery_names(name: str, dep: str, year: int | None, pair: tuple[int, int] | None, product: str) -> None:
    parsed = parse_delivery_name(name)
    assert (parsed.departement, parsed.millesime, parsed.pair, parsed.product) == (dep, year, pair, product)


@pytest.mark.parametrize(("name", "role"), [
    ("OCCUPATION_SOL occupation_sol", "occupation"), ("ZONE_CONSTRUITE", "zone_construite"),
    ("OCS-GE_DIIF_2018_2021", "difference"), ("DIFFERENCE", "difference"), ("ARTIFICIALISATION", "artificialisation"),
    ("ZAN_EVOL_2018_2021", "artif_difference"), ("PATCH_CORR_M2_2021", "patch_corr"), ("NomenclatureOCSGE", None),
])
def test_layer_roles(name: str, role: str | None) -> None:
    assert layer_role(name) == role


def ign_layers(year: int = 2023, *, n: int = 120, bounds: tuple[float, ...] = BOUNDS_13, crs: int | None = 2154,
               millesime_attr: str | None = None) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    occ = partition(n, bounds, millesime=year, seed=5)
    ign = gpd.GeoDataFrame({
        "id": [f"OCSGE{i:06d}" for i in range(len(occ))], "code_cs": occ.code_cs, "code_us": occ.code_us,
        "millesime": millesime_attr or str(year), "source": "IGN", "ossature": 0,
    }, geometry=occ.geometry.to_numpy(), crs=crs)
    zc = gpd.GeoDataFrame({"id": ["ZC1"], "millesime": [str(year)]},
                          geometry=[shapely.box(bounds[0] + 100, bounds[1] + 100, bounds[0] + 400, bounds[1] + 300)],
                          crs=crs)
    return ign, zc


def make_delivery(tmp: Path, *, name: str = "OCS-GE_2-0__GPKG_LAMB93_D013_2023-01-01",
                  inner: str = "OCSGE_2-0_GPKG_LAMB93_D13-2023", occ: gpd.GeoDataFrame | None = None,
                  zc: gpd.GeoDataFrame | None = None, shp: bool = False, archive: bool = True,
                  extra: dict[str, gpd.GeoDataFrame] | None = None, drop: tuple[str, ...] = ()) -> Path:
    """An IGN-like delivery: {name}/OCS-GE/1_DONNEES_LIVRAISON_x/{inner}/LAYER.gpkg, zipped as .7z."""
    if occ is None or zc is None:
        occ, zc = ign_layers() if occ is None else (occ, ign_layers()[1])
    folder = tmp / "src" / name / "OCS-GE" / "1_DONNEES_LIVRAISON_2025-05-00027" / inner
    folder.mkdir(parents=True)
    layers = {"OCCUPATION_SOL": occ, "ZONE_CONSTRUITE": zc, **(extra or {})}
    for layer, frame in layers.items():
        if layer in drop:
            continue
        if shp:
            frame.to_file(folder / f"{layer}.shp")
        else:
            pyogrio.write_dataframe(frame, folder / f"{layer}.gpkg", layer=layer, driver="GPKG",
                                    promote_to_multi=True, layer_options={"GEOMETRY_NAME": "the_geom"})
    supplements = folder.parent.parent / "3_SUPPLEMENTS_LIVRAISON_2025-05-00027"
    supplements.mkdir()
    (supplements / "NomenclatureOCSGE.csv").write_text("CODE;R;V;B\n")
    if not archive:
        return tmp / "src" / name
    out = tmp / f"{name}.7z"
    with py7zr.SevenZipFile(out, "w") as z:
        z.writeall(tmp / "src" / name, arcname=name)
    return out


def test_gpkg_archive(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "root")
    result = ingest(make_delivery(tmp_path), store)
    assert (result.departement, result.millesime) == ("13", 2023)
    occ = gpd.read_parquet(store.url(result.keys["occupation"]))
    assert list(occ.columns) == ["id", "code_cs", "code_us", "millesime", "source", "geometry"]
    assert occ.crs.to_epsg() == 2154 and (occ.millesime == 2023).all() and (occ.source == "ign").all()
    assert occ.id.str.startswith("OCSGE").all()
    assert gpd.read_parquet(store.url(result.keys["zone_construite"])).shape[0] == 1
    report = json.loads(Path(store.url(result.keys["ingest_report"])).read_text())
    assert report["anomaly_counts"] == {} and report["layers"]["occupation"]["rows_written"] == len(occ)


def test_rerun_skips(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "root")
    archive = make_delivery(tmp_path)
    first = ingest(archive, store)
    again = ingest(archive, store)
    assert again.skipped and again.keys == first.keys
    assert not ingest(archive, store, force=True).skipped


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_shapefile_variant_with_anomalies(tmp_path: Path) -> None:
    occ, zc = ign_layers(2018)
    occ = occ.rename(columns={"code_cs": "CODE_CS", "code_us": "CODE_US", "id": "ID"})
    occ.loc[0, "CODE_CS"] = "CS9.9"  # unknown
    occ.loc[1, "CODE_US"] = None  # empty
    occ.loc[2, "CODE_CS"] = "cs 2.2.1"  # reformatted
    occ.loc[3, "CODE_CS"] = "CS2.1.1"  # non-leaf
    x0, y0 = BOUNDS_13[:2]
    bowtie = shapely.Polygon([(x0, y0), (x0 + 10, y0 + 10), (x0 + 10, y0), (x0, y0 + 10), (x0, y0)])
    occ.loc[4, "geometry"] = bowtie  # self-intersecting: repaired
    occ = occ.set_crs(None, allow_override=True)  # no .prj: CRS assigned from the département
    zc = zc.set_crs(None, allow_override=True)
    name = "OCS-GE_2-0__SHP_LAMB93_D013_2018-01-01"
    archive = make_delivery(tmp_path, name=name, inner="OCSGE_2-0_SHP_LAMB93_D13-2018", occ=occ, zc=zc, shp=True)
    store = LocalStorage(tmp_path / "root")
    result = ingest(archive, store)
    counts = result.report["anomaly_counts"]
    assert counts["unknown_code"] == 1 and counts["empty_code"] == 1 and counts["non_leaf_code"] == 1
    assert counts["reformatted_code"] == 1 and counts["invalid_geometry_repaired"] == 1
    assert counts["missing_crs"] == 2  # both layers
    out = gpd.read_parquet(store.url(result.keys["occupation"]))
    assert out.is_valid.all() and out.crs.to_epsg() == 2154
    assert out.loc[out.id == occ.ID[2], "code_cs"].item() == "CS2.2.1"


def test_geometry_column_of_another_name_and_folder_input(tmp_path: Path) -> None:
    folder = make_delivery(tmp_path, archive=False)
    info = pyogrio.read_info(next(folder.rglob("OCCUPATION_SOL.gpkg")))
    assert info["geometry_name"] == "the_geom"
    result = ingest(folder, LocalStorage(tmp_path / "root"))
    assert result.millesime == 2023 and "occupation" in result.keys


def test_truncated_archive_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    archive = make_delivery(tmp_path)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    store = LocalStorage(tmp_path / "root")
    with pytest.raises(OcsgeError, match="corrupt or truncated"):
        ingest(archive, store)
    assert written(store) == []


def test_missing_layer(tmp_path: Path) -> None:
    occ, _ = ign_layers()
    archive = make_delivery(tmp_path, occ=occ, drop=("ZONE_CONSTRUITE",))
    store = LocalStorage(tmp_path / "root")
    with pytest.raises(IngestError, match="missing layer.*ZONE_CONSTRUITE"):
        ingest(archive, store)
    assert written(store) == []


def test_crs_of_another_territory(tmp_path: Path) -> None:
    occ, zc = ign_layers()
    archive = make_delivery(tmp_path, occ=occ.set_crs(32620, allow_override=True),
                            zc=zc.set_crs(32620, allow_override=True))
    with pytest.raises(IngestError, match="does not match département 13"):
        ingest(archive, LocalStorage(tmp_path / "root"))


def test_mixed_up_millesimes(tmp_path: Path) -> None:
    occ, zc = ign_layers(2021, millesime_attr="2018")
    archive = make_delivery(tmp_path, name="OCS-GE_2-0__GPKG_LAMB93_D013_2021-01-01",
                            inner="OCSGE_2-0_GPKG_LAMB93_D13-2021", occ=occ, zc=zc)
    store = LocalStorage(tmp_path / "root")
    with pytest.raises(IngestError, match="mixed-up millésimes.*2021.*2018"):
        ingest(archive, store)
    with pytest.raises(IngestError, match="mixed-up millésimes"):
        ingest(make_delivery(tmp_path / "b"), store, millesime=2020)
    assert written(store) == []


def test_clip_to_polygon(tmp_path: Path) -> None:
    x0, y0, x1, y1 = BOUNDS_13
    half = shapely.box(x0, y0, (x0 + x1) / 2, y1)
    clip_file = tmp_path / "dep.gpkg"
    gpd.GeoDataFrame(geometry=[half], crs=2154).to_file(clip_file)
    store = LocalStorage(tmp_path / "root")
    result = ingest(make_delivery(tmp_path), store, clip=clip_file)
    occ = gpd.read_parquet(store.url(result.keys["occupation"]))
    assert occ.area.sum() == pytest.approx(half.area, rel=1e-9)
    assert occ.total_bounds[2] <= (x0 + x1) / 2 + 1e-6
    assert result.report["anomaly_counts"]["clipped_outside_departement"] > 0


def test_patch_layer_and_difference_layers(tmp_path: Path) -> None:
    occ, zc = ign_layers(2024)
    patch = occ.copy()
    patch["millesime"] = "2021"
    patch["cs_corr"] = "RAS"
    patch["us_corr"] = "RAS"
    patch.loc[0, "cs_corr"] = "CS2.1.3"
    archive = make_delivery(tmp_path, name="OCS-GE_2-0__GPKG_LAMB93_D013_2024-01-01",
                            inner="OCSGE_2-0_GPKG_LAMB93_D13-2024", occ=occ, zc=zc,
                            extra={"PATCH_CORR_M2_2021": patch})
    store = LocalStorage(tmp_path / "root")
    result = ingest(archive, store)
    p = gpd.read_parquet(store.url(result.keys["patch_corr"]))
    assert result.keys["patch_corr"].endswith("_DS13_2021-2024.parquet".replace("DS13", "D013"))
    assert p.cs_corr.notna().sum() == 1 and p.cs_corr.dropna().item() == "CS2.1.3"
    assert result.report["anomaly_counts"] == {}

    diff = occ.rename(columns={"code_cs": "CS_2018", "code_us": "US_2018"})
    diff["CS_2021"] = "CS1.1.1.1"
    diff["US_2021"] = "US5"
    folder = tmp_path / "OCS-GE_2-0_DIFF_SHP_LAMB93_D013_2018-2021"
    folder.mkdir()
    diff.to_file(folder / "OCS-GE_DIIF_D013.shp")
    result = ingest(folder, store)
    d = gpd.read_parquet(store.url(result.keys["difference"]))
    assert result.pair == (2018, 2021)
    assert list(d.columns) == ["id", "cs_avant", "us_avant", "cs_apres", "us_apres", "geometry"]
    assert (d.cs_apres == "CS1.1.1.1").all()
    assert d.set_index("id").cs_avant.sort_index().tolist() == occ.set_index("id").code_cs.sort_index().tolist()


def test_generated_territory_deliveries(tmp_path: Path) -> None:
    generate = pytest.importorskip("inference_batch.synth.generate").generate
    store = LocalStorage(tmp_path)
    generate(store, "S01", width_m=600, height_m=500, seed=3, millesimes=(2021, 2024), imagery=False)
    archives = sorted(o.key for o in store.list("deliveries/"))
    assert len(archives) == 2
    first = ingest(store.url(archives[0]), store)
    second = ingest(store.url(archives[1]), store)
    assert (first.departement, first.millesime, second.millesime) == ("S01", 2021, 2024)
    assert "patch_corr" in second.keys and first.report["anomaly_counts"] == {}
    truth = gpd.read_parquet(store.url("truth/DS01/2021/truth_DS01_2021.parquet"))
    occ = gpd.read_parquet(store.url(first.keys["occupation"]))
    assert len(occ) == len(truth)
    assert occ.area.sum() == pytest.approx(truth.area.sum())
    assert np.isin(occ.code_cs.unique(), truth.code_cs.unique()).all()


def official_artif_delivery(tmp: Path, artif: gpd.GeoDataFrame) -> Path:
    """IGN's artificialisation delivery of D013 2023, as a folder."""
    folder = tmp / "artif" / "OCS-GE_2-0_ARTIFICIALISATION_GPKG_LAMB93_D013_2023-01-01"
    folder.mkdir(parents=True)
    pyogrio.write_dataframe(artif, folder / "ARTIFICIALISATION.gpkg", layer="ARTIFICIALISATION", driver="GPKG",
                            promote_to_multi=True, layer_options={"GEOMETRY_NAME": "the_geom"})
    return folder


def test_official_artificialisation_delivery_is_kept(tmp_path: Path) -> None:
    from inference_batch.products.artif import run_artif

    occ, zc = ign_layers(2023)
    artif = occ.assign(artif=np.where(occ.code_cs.str.startswith("CS1.1"), "artif", "non artif"), crit_seuil="false")
    folder = official_artif_delivery(tmp_path, artif)
    store = LocalStorage(tmp_path / "root")
    archive = make_delivery(tmp_path, occ=occ, zc=zc)
    main = ingest(archive, store)
    official = ingest(folder, store)
    assert official.keys["ingest_report"] != main.keys["ingest_report"]  # both reports kept
    assert store.exists(main.keys["ingest_report"]) and store.exists(official.keys["ingest_report"])
    layer = gpd.read_parquet(store.url(official.keys["artificialisation"]))
    assert set(layer.artif) == {"artif", "non artif"} and not layer.crit_seuil.any()
    keys = run_artif(store, "13", 2023)  # IGN's layer is kept, only its totals are computed
    totals = json.loads(Path(store.url(keys["artif_totals"])).read_text())
    assert totals["origin"] == "delivered layer"
    assert totals["artif_ha"] == pytest.approx(occ.area[occ.code_cs.str.startswith("CS1.1")].sum() / 1e4, abs=1e-3)
    assert ingest(archive, store).skipped and ingest(folder, store).skipped


def _mtimes(store: LocalStorage, keys: dict[str, str]) -> dict[str, int]:
    return {k: Path(store.url(v)).stat().st_mtime_ns for k, v in keys.items()}


def test_redelivery_then_one_standalone_step_redoes_exactly_the_stale_outputs(tmp_path: Path) -> None:
    """Re-ingesting a delivery whose zone construite changed, then `ocsge render`: the construction COG is
    redone, the couverture/usage/artif COGs and the artificialisation layer (whose inputs are unchanged)
    are left untouched; a re-delivered occupation then makes `ocsge artif` redo the layer."""
    from click.testing import CliRunner

    from inference_batch.products.artif import run_artif
    from inference_batch.products.cli import artif, render
    from inference_batch.products.render import run_render

    store = LocalStorage(tmp_path / "root")
    occ, zc = ign_layers(2023)
    first = ingest(make_delivery(tmp_path / "v1", occ=occ, zc=zc), store)
    occ_mtime = Path(store.url(first.keys["occupation"])).stat().st_mtime_ns
    art = run_artif(store, "13", 2023)
    cogs = run_render(store, "13", 2023, resolution=4.0)
    before_art, before_cogs = _mtimes(store, art), _mtimes(store, cogs)
    construction = Path(store.url(cogs["construction"])).read_bytes()

    zc2 = zc.set_geometry([shapely.box(BOUNDS_13[0] + 500, BOUNDS_13[1] + 500, BOUNDS_13[0] + 900, BOUNDS_13[1] + 900)])
    again = ingest(make_delivery(tmp_path / "v2", occ=occ, zc=zc2), store)
    assert not again.skipped
    assert Path(store.url(again.keys["occupation"])).stat().st_mtime_ns == occ_mtime  # same content: kept
    runner = CliRunner()
    res = runner.invoke(render, ["-d", "13", "-m", "2023", "--root", store.root, "--resolution", "4", "--no-tiles"])
    assert res.exit_code == 0, res.output
    after = _mtimes(store, cogs)
    assert after["construction"] != before_cogs["construction"]
    assert Path(store.url(cogs["construction"])).read_bytes() != construction
    assert {k: v for k, v in after.items() if k != "construction"} == \
        {k: v for k, v in before_cogs.items() if k != "construction"}
    res = runner.invoke(artif, ["-d", "13", "-m", "2023", "--root", store.root])
    assert res.exit_code == 0 and _mtimes(store, art) == before_art

    occ2 = occ.copy()
    occ2.loc[occ2.index[0], "code_cs"] = "CS1.1.1.1"
    ingest(make_delivery(tmp_path / "v3", occ=occ2, zc=zc2), store)
    res = runner.invoke(artif, ["-d", "13", "-m", "2023", "--root", store.root])
    assert res.exit_code == 0, res.output
    assert _mtimes(store, art)["artificialisation"] != before_art["artificialisation"]
    layer = gpd.read_parquet(store.url(art["artificialisation"]))
    assert layer.set_index("id").loc[occ2.id.iloc[0], "code_cs"] == "CS1.1.1.1"
    stale = _mtimes(store, cogs)
    run_render(store, "13", 2023, resolution=4.0)  # every COG reads the occupation: all redone
    assert all(v != stale[k] for k, v in _mtimes(store, cogs).items())
    # a rerun with nothing new redoes nothing; --force redoes
    settled = _mtimes(store, {**art, **cogs})
    run_render(store, "13", 2023, resolution=4.0)
    run_artif(store, "13", 2023)
    assert _mtimes(store, {**art, **cogs}) == settled
    run_render(store, "13", 2023, resolution=4.0, layers=("usage",), force=True)
    assert _mtimes(store, cogs)["usage"] != settled["usage"]


def test_official_artificialisation_survives_products_after_a_redelivery(tmp_path: Path) -> None:
    """`ocsge products` after a re-ingest (and with --force) never replaces IGN's artificialisation layer."""
    from inference_batch.products.pipeline import run_products

    occ, zc = ign_layers(2023)
    folder = official_artif_delivery(tmp_path, occ.assign(artif="non artif", crit_seuil="false"))  # unlike ours
    store = LocalStorage(tmp_path / "root")
    ingest(make_delivery(tmp_path / "v1", occ=occ, zc=zc), store)
    art_key = ingest(folder, store).keys["artificialisation"]
    original = Path(store.url(art_key)).read_bytes()
    run_products(store, "13", resolution=8.0, tiles=False)
    occ2 = occ.copy()
    occ2.loc[occ2.index[0], "code_cs"] = "CS1.1.1.1"
    ingest(make_delivery(tmp_path / "v2", occ=occ2, zc=zc), store)  # re-delivered occupation
    run_products(store, "13", resolution=8.0, tiles=False)
    assert Path(store.url(art_key)).read_bytes() == original
    run_products(store, "13", resolution=8.0, tiles=False, force=True)
    assert Path(store.url(art_key)).read_bytes() == original
    assert set(gpd.read_parquet(store.url(art_key)).artif) == {"non artif"}


# --- coordinates that cannot be, deliveries of elsewhere, and what errors look like ------------------------

def _report_text(store: LocalStorage, result: object) -> str:
    return Path(store.url(result.keys["ingest_report"])).read_text()  # type: ignore[attr-defined]


def test_nan_inf_and_far_away_coordinates_are_counted_anomalies(tmp_path: Path) -> None:
    """A NaN or infinite coordinate (GEOS cannot even validate such a polygon) and a polygon 10 000 km away
    are dropped and counted; the report names the delivery by its file name, never by a local path."""
    occ, _ = ign_layers()
    geoms = occ.geometry.to_numpy().copy()
    x0, y0 = BOUNDS_13[:2]
    with np.errstate(invalid="ignore"):
        geoms[0] = shapely.Polygon([(x0, y0), (np.nan, y0 + 10), (x0 + 10, y0 + 10), (x0, y0)])
        geoms[1] = shapely.Polygon([(x0, y0), (np.inf, y0 + 10), (x0 + 10, y0 + 10), (x0, y0)])
    geoms[2] = shapely.box(x0 + 1e7, y0, x0 + 1e7 + 50, y0 + 50)  # 10 000 km east
    archive = make_delivery(tmp_path, occ=occ.set_geometry(geoms))
    store = LocalStorage(tmp_path / "root")
    result = ingest(archive, store)
    counts = result.report["anomaly_counts"]
    assert counts == {"non_finite_coordinates_dropped": 2, "outside_departement_extent_dropped": 1}
    out = gpd.read_parquet(store.url(result.keys["occupation"]))
    assert len(out) == len(occ) - 3 and np.isfinite(out.total_bounds).all()
    outside = next(a for a in result.report["anomalies"] if a["issue"] == "outside_departement_extent_dropped")
    assert "area of use of EPSG:2154" in outside["extent"] and outside["bbox_of_dropped"][0] == x0 + 1e7
    text = _report_text(store, result)
    assert str(tmp_path) not in text and "/tmp" not in text
    assert json.loads(text)["source"] == archive.name


def test_a_delivery_mostly_outside_the_departement_is_refused(tmp_path: Path) -> None:
    """With the département's communes in the storage, its extent is theirs (+ 10 km): a polygon 50 km away
    is an anomaly, and a layer mostly outside is refused with the file and layer named, nothing written."""
    from inference_batch.products.artifacts import write_vector
    from inference_batch.products.ingest import EXTENT_MARGIN_M, OUTSIDE_REFUSE_FRACTION
    from ocsge.products import product_key

    store = LocalStorage(tmp_path / "root")
    communes = gpd.GeoDataFrame({"insee_com": ["13001"], "nom": ["A"]}, geometry=[shapely.box(*BOUNDS_13)], crs=2154)
    write_vector(store, product_key("communes", "13", 2023), communes)
    before = written(store)
    occ, _ = ign_layers()
    near = occ.geometry.to_numpy().copy()
    near[0] = shapely.affinity.translate(near[0], xoff=50_000)
    result = ingest(make_delivery(tmp_path / "a", occ=occ.set_geometry(near)), store)
    assert result.report["anomaly_counts"] == {"outside_departement_extent_dropped": 1}
    assert EXTENT_MARGIN_M < 50_000 and OUTSIDE_REFUSE_FRACTION == 0.5

    store2 = LocalStorage(tmp_path / "root2")
    write_vector(store2, product_key("communes", "13", 2023), communes)
    far = occ.geometry.translate(xoff=0, yoff=-200_000)  # a delivery of another département
    with pytest.raises(IngestError, match=r"OCS-GE_2-0__GPKG_LAMB93_D013_2023-01-01\.7z \(.*OCCUPATION_SOL\.gpkg:"
                                          r"OCCUPATION_SOL\): 120 of 120 polygons \(100%\) lie outside département 13"):
        ingest(make_delivery(tmp_path / "b", occ=occ.set_geometry(far)), store2)
    assert written(store2) == [store2.path / product_key("communes", "13", 2023)]
    assert written(store) == sorted([*before, *(store.path / k for k in (
        *result.keys.values(), *(f"{v}.inputs.json" for v in result.keys.values())))])


def test_errors_name_the_step_and_input_without_a_traceback_unless_debug(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from inference_batch.products import ingest as ingest_module
    from ocsge.cli import main

    archive = make_delivery(tmp_path)
    root = tmp_path / "root"

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("unexpected value in a column (injected)")

    monkeypatch.setattr(ingest_module, "normalise_zone_construite", broken)
    with pytest.raises(SystemExit) as exit_:
        main(["ingest", str(archive), "--root", str(root)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert ("error: ingest OCS-GE_2-0__GPKG_LAMB93_D013_2023-01-01.7z: ValueError: unexpected value in a column "
            "(injected)") in " ".join(err.split())
    for argv in (["--debug", "ingest", str(archive), "--root", str(root)],
                 ["ingest", str(archive), "--root", str(root), "--debug"]):
        with pytest.raises(SystemExit):
            main(argv)
        err = capsys.readouterr().err
        assert "Traceback" in err and "normalise_zone_construite" in err and "ValueError" in err
    assert written(LocalStorage(root)) == []
