"""Serving-ready artifacts and the whole per-département chain on a generated territory: COGs with the
official palette, PMTiles, download archives, statistics, and a rerun that redoes nothing."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely

from inference_batch.products.artifacts import write_vector
from inference_batch.products.pipeline import run_products
from inference_batch.products.render import ARTIF_PALETTE, run_render
from inference_batch.synth.partitions import partition
from ocsge.nomenclature import Kind, palette, raster_value
from ocsge.storage import LocalStorage


def test_cog_palette_overviews_and_nodata(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    occ = partition(300, (700_000, 6_600_000, 700_600, 6_600_400), millesime=2021, seed=2)
    # an L-shaped territory: the missing corner must be nodata
    hole = shapely.box(700_400, 6_600_250, 700_600, 6_600_400)
    occ = occ.set_geometry(occ.geometry.difference(hole))
    occ = occ[~occ.is_empty]
    occ.loc[occ.index[0], "code_cs"] = "CS2.1.1"  # an intermediate code still gets a colour
    write_vector(store, "occupation/D077/2021/occupation_D077_2021.parquet", occ)
    keys = run_render(store, "77", 2021, resolution=1.0, layers=("couverture", "usage", "artif"), window=256)
    with rasterio.open(store.url(keys["couverture"])) as src:
        assert src.dtypes == ("uint8",) and src.nodata == 0 and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.tags()["OVERVIEW_RESAMPLING"] == "NEAREST" and src.overviews(1)
        cmap = src.colormap(1)
        for value, rgba in palette(Kind.COUVERTURE).items():
            assert cmap[value] == rgba
        data = src.read(1)
        row, col = src.index(700_500, 6_600_300)
        assert data[row, col] == 0  # outside the territory
        row, col = src.index(700_100, 6_600_100)
        inside = occ[occ.contains(shapely.Point(700_100.5, 6_600_099.5))].code_cs.item()
        assert data[row, col] == raster_value(Kind.COUVERTURE, inside)
        classes = set(np.unique(data)) - {0}
        over = src.read(1, out_shape=(src.height // 4, src.width // 4))
        assert set(np.unique(over)) - {0} <= classes  # mode/nearest overviews invent no class
        assert (data > 0).sum() == pytest.approx(occ.area.sum(), rel=0.01)
    with rasterio.open(store.url(keys["artif"])) as src:
        assert set(np.unique(src.read(1))) <= {0, 1, 2} and src.colormap(1)[1] == ARTIF_PALETTE[1]


@pytest.fixture(scope="module")
def territory(tmp_path_factory: pytest.TempPathFactory) -> LocalStorage:
    synth = pytest.importorskip("inference_batch.synth.generate")
    from inference_batch.products.ingest import ingest

    store = LocalStorage(tmp_path_factory.mktemp("territory"))
    synth.generate(store, "S01", width_m=800, height_m=600, seed=9, millesimes=(2021, 2024), imagery=False)
    for k in sorted(o.key for o in store.list("deliveries/")):
        ingest(store.url(k), store)
    return store


def test_products_on_generated_territory(territory: LocalStorage) -> None:
    store = territory
    result = run_products(store, "S01", resolution=1.0)
    assert not [s for s in result.skipped_steps if "corrections" in s]
    for k in result.keys.values():
        assert store.exists(k), k
    # PMTiles: zooms and layers a browser needs
    from pmtiles.reader import MmapSource, Reader

    with open(store.url(result.keys["occupation_pmtiles_2024"]), "rb") as f:
        reader = Reader(MmapSource(f))
        header, meta = reader.header(), reader.metadata()
    assert (header["min_zoom"], header["max_zoom"]) == (6, 14)
    layers = {layer["id"]: layer["fields"] for layer in meta["vector_layers"]}
    assert {"code_cs", "code_us", "artif"} <= set(layers["occupation"]) and "zone_construite" in layers
    # published metadata names no build path of ours (tippecanoe records its command line)
    assert str(store.root) not in json.dumps(meta) and "/tmp" not in json.dumps(meta)
    with open(store.url(result.keys["difference_pmtiles_2021_2024"]), "rb") as f:
        meta = Reader(MmapSource(f)).metadata()
    assert {layer["id"] for layer in meta["vector_layers"]} == {"difference", "artif_difference"}
    # the raster of changes: on the grid of the later millésime's COGs, +1 flows where the manifest's new
    # housing lies (artificialisation burnt over the code changes)
    import rasterio

    from ocsge import rasters

    diff_cog, couv_cog = result.keys["difference_cog_2021_2024"], result.keys["couverture_cog_2024"]
    with rasterio.open(store.url(diff_cog)) as d, rasterio.open(store.url(couv_cog)) as c:
        assert (d.transform, d.shape) == (c.transform, c.shape)
        values = set(np.unique(d.read(1)).tolist())
        assert d.colormap(1)[rasters.value_of("difference", "artificialisation")][:3] == (0xE6, 0x00, 0x4D)
    assert rasters.value_of("difference", "artificialisation") in values and values <= {0, 1, 2, 3, 4, 5}
    # download archive: GeoPackage with IGN layer names, COGs, README, checksums that verify
    with zipfile.ZipFile(store.url(result.keys["archive_2024"])) as zf:
        names = zf.namelist()
        sums = dict(line.split("  ")[::-1] for line in zf.read("OCSGE_DS01_2024/SHA256SUMS").decode().splitlines())
        for name, digest in sums.items():
            assert hashlib.sha256(zf.read(f"OCSGE_DS01_2024/{name}")).hexdigest() == digest
        zf.extract("OCSGE_DS01_2024/OCSGE_DS01_2024.gpkg", store.path / "x")
    assert {"OCSGE_DS01_2024/README.txt", "OCSGE_DS01_2024/OCSGE_DS01_2024_COUVERTURE.tif",
            "OCSGE_DS01_2024/OCSGE_DS01_2024_CONSTRUCTION.tif"} <= set(names)
    gpkg = store.path / "x" / "OCSGE_DS01_2024" / "OCSGE_DS01_2024.gpkg"
    assert [str(n) for n, _ in pyogrio.list_layers(gpkg)] == ["OCCUPATION_SOL", "ZONE_CONSTRUITE", "ARTIFICIALISATION"]
    art = gpd.read_file(gpkg, layer="ARTIFICIALISATION")
    assert {"artif", "crit_seuil", "code_cs", "code_us"} <= set(art.columns) and art.crs.to_epsg() == 2154
    with rasterio.open(store.url(result.keys["construction_cog_2024"])) as src:
        assert set(np.unique(src.read(1))) == {1, 2}
        assert src.tags()["OCSGE_PRODUCT"] == "construction_cog"
    # statistics: département totals equal the sum of the communes
    stats = gpd.read_parquet(store.url(result.keys["stats_commune_2024"]))
    communes = stats[stats.niveau == "commune"]
    dep = stats[stats.niveau == "departement"].iloc[0]
    assert dep.artif_ha == pytest.approx(communes.artif_ha.sum(), abs=1e-3)
    report = json.loads(Path(store.url(result.keys["difference_report_2021_2024"])).read_text())
    assert report["thresholds_applied"] and report["changed_ha"] > 0
    # a rerun redoes nothing
    mtimes = {k: Path(store.url(v)).stat().st_mtime_ns for k, v in result.keys.items()}
    again = run_products(store, "S01", resolution=1.0)
    assert {k: Path(store.url(v)).stat().st_mtime_ns for k, v in again.keys.items()} == mtimes


def test_cli_verbs(territory: LocalStorage) -> None:
    from click.testing import CliRunner

    from inference_batch.products.cli import artif, diff, grid, products

    runner = CliRunner()
    res = runner.invoke(artif, ["-d", "S01", "--root", territory.root])
    assert res.exit_code == 0, res.output
    assert "artificialisation/DS01/2021/artificialisation_DS01_2021.parquet" in res.output
    res = runner.invoke(diff, ["-d", "S01", "--root", territory.root, "--no-tiles"])
    assert res.exit_code == 0 and "difference/DS01/2021-2024" in res.output
    res = runner.invoke(grid, ["-d", "S01", "--root", territory.root, "--cell", "65"])
    assert res.exit_code == 0 and "change_grid" in res.output
    res = runner.invoke(products, ["-d", "S01", "--root", territory.root, "--resolution", "1"])
    assert res.exit_code == 0, res.output


def test_steps_on_s3(s3_root: str) -> None:
    """The same steps against an S3 storage root (a moto server on loopback)."""
    from inference_batch.products.archive import run_archive
    from inference_batch.products.artif import run_artif
    from inference_batch.products.difference import run_difference
    from inference_batch.products.stats import run_stats
    from inference_batch.synth.partitions import evolve
    from ocsge.storage import open_storage

    store = open_storage(s3_root)
    bounds = (700_000, 6_600_000, 700_800, 6_600_600)
    before = partition(400, bounds, millesime=2021, seed=31)
    write_vector(store, "occupation/D077/2021/occupation_D077_2021.parquet", before)
    write_vector(store, "occupation/D077/2024/occupation_D077_2024.parquet", evolve(before, 2024, seed=32))
    communes = gpd.GeoDataFrame({"insee_com": ["77001", "77002"], "nom": ["A", "B"]},
                                geometry=[shapely.box(700_000, 6_600_000, 700_400, 6_600_600),
                                          shapely.box(700_400, 6_600_000, 700_800, 6_600_600)], crs=2154)
    write_vector(store, "ancillary/communes/D077/2024/ancillary_communes_D077_2024.parquet", communes)
    keys = {}
    for year in (2021, 2024):
        keys.update(run_artif(store, "77", year))
    keys.update(run_difference(store, "77", 2021, 2024))
    keys.update(run_stats(store, "77", [2021, 2024]))
    keys.update(run_render(store, "77", 2024, resolution=4.0, layers=("couverture", "artif")))
    keys.update(run_archive(store, "77", 2024))
    for k in keys.values():
        assert store.exists(k), k
    assert not [o.key for o in store.list("") if ".tmp" in o.key or o.key.startswith("_tmp/")]


def test_products_are_redone_when_an_input_changes(tmp_path: Path) -> None:
    """A rerun on unchanged inputs rewrites nothing; a re-delivered occupation layer redoes the products."""
    from inference_batch.products.artifacts import read_vector
    from ocsge.products import product_key

    store = LocalStorage(tmp_path)
    occ = partition(40, (700_000, 6_600_000, 701_000, 6_601_000), seed=3)
    write_vector(store, product_key("occupation", "77", 2021), occ)
    run_products(store, "77", resolution=2.0, tiles=False)
    artif_key = product_key("artificialisation", "77", 2021)
    first = (tmp_path / artif_key).stat().st_mtime_ns
    run_products(store, "77", resolution=2.0, tiles=False)
    assert (tmp_path / artif_key).stat().st_mtime_ns == first
    changed = occ.copy()
    changed.loc[changed.index[0], "code_cs"] = "CS1.1.1.1"  # re-delivered with a new building
    write_vector(store, product_key("occupation", "77", 2021), changed)
    run_products(store, "77", resolution=2.0, tiles=False)
    again = read_vector(store, artif_key)
    assert (tmp_path / artif_key).stat().st_mtime_ns != first
    assert again.set_index("id").loc[changed.id.iloc[0], "code_cs"] == "CS1.1.1.1"
