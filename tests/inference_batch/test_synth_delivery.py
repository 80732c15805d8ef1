"""Generated territory written to storage: keys, reproducible bytes, skipped reruns, and the IGN-like
``.7z`` deliveries read back with pyogrio."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import py7zr
import pyogrio
import pytest

from inference_batch.synth import generate
from ocsge.errors import StorageError
from ocsge.products import product_key
from ocsge.storage import LocalStorage

KW = {"width_m": 220.0, "height_m": 200.0, "seed": 5, "imagery": False}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth")
    manifest = generate(LocalStorage(root), "S01", **KW)
    return root, manifest


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_keys_and_manifest(written) -> None:
    root, manifest = written
    storage = LocalStorage(root)
    key = product_key("synth_manifest", "S01", 2021)
    assert json.loads(storage.get_bytes(key)) == json.loads(json.dumps(manifest))
    for year in (2021, 2024):
        for product in ("truth", "communes", "bdtopo_batiment", "bdtopo_route", "bdtopo_voie_ferree", "bdtopo_hydro",
                        "rpg", "bdforet", "fichiers_fonciers", "delivery"):
            assert manifest["keys"][str(year)][product] == product_key(product, "S01", year)
            assert storage.exists(product_key(product, "S01", year))
    truth = gpd.read_parquet(root / product_key("truth", "S01", 2024))
    assert list(truth.columns) == ["id", "code_cs", "code_us", "millesime", "source", "geometry"]
    assert truth.crs.to_epsg() == 2154 and str(truth["millesime"].dtype).startswith("int")


def test_same_seed_same_bytes_and_rerun_is_skipped(written, tmp_path) -> None:
    root, _ = written
    other = tmp_path / "again"
    generate(LocalStorage(other), "S01", **KW)
    assert _files(root) == _files(other)
    before = {p: p.stat().st_mtime_ns for p in other.rglob("*") if p.is_file()}
    generate(LocalStorage(other), "S01", **KW)  # same parameters: nothing rewritten
    assert before == {p: p.stat().st_mtime_ns for p in other.rglob("*") if p.is_file()}
    changed = tmp_path / "seed6"
    generate(LocalStorage(changed), "S01", **{**KW, "seed": 6})
    key = product_key("truth", "S01", 2021)
    assert (changed / key).read_bytes() != (root / key).read_bytes()


def test_delivery_archives_read_with_pyogrio(written, tmp_path) -> None:
    root, manifest = written
    for k, year in enumerate((2021, 2024)):
        out = tmp_path / str(year)
        with py7zr.SevenZipFile(root / product_key("delivery", "S01", year)) as archive:
            archive.extractall(out)
        top = out / f"OCS-GE_2-0__GPKG_LAMB93_DS01_{year}-01-01" / "OCS-GE"
        data = top / "1_DONNEES_LIVRAISON_2025-05-00027" / f"OCSGE_2-0_GPKG_LAMB93_DS01-{year}"
        occ, zc = data / "OCCUPATION_SOL.gpkg", data / "ZONE_CONSTRUITE.gpkg"
        assert pyogrio.list_layers(occ)[:, 0].tolist() == ["OCCUPATION_SOL"]
        assert pyogrio.list_layers(zc)[:, 0].tolist() == ["ZONE_CONSTRUITE"]
        info = pyogrio.read_info(occ)
        assert list(info["fields"]) == ["id", "code_cs", "code_us", "millesime", "source", "ossature", "id_origine",
                                        "code_or"]
        assert info["geometry_name"] == "the_geom" and info["geometry_type"] == "MultiPolygon"
        assert info["crs"] == "EPSG:2154"
        assert "SYNTHETIC" in json.dumps(info.get("layer_metadata") or {})
        frame = pyogrio.read_dataframe(occ)
        assert frame["millesime"].eq(str(year)).all()
        assert len(frame) == manifest["counts"][str(year)]["polygons"]
        nomenclature = (next(top.glob("3_SUPPLEMENTS_LIVRAISON_*")) / "NomenclatureOCSGE.csv").read_text()
        assert nomenclature.startswith("CODE;") and "CS2.2.2;" in nomenclature and "US235;" in nomenclature
        patches = sorted(p.name for p in data.glob("PATCH_CORR_*.gpkg"))
        assert patches == ([] if k == 0 else ["PATCH_CORR_M2_2021.gpkg"])
        if k == 1:
            patch = pyogrio.read_dataframe(data / patches[0])
            assert {"id_ocs", "code_cs", "code_us", "millesime", "cs_corr", "us_corr"} <= set(patch.columns)
            corrected = patch[(patch["cs_corr"] != "RAS") | (patch["us_corr"] != "RAS")]
            assert set(corrected["id_ocs"]) == {pid for e in manifest["errors"] for pid in e["ids"]}
            assert patch["millesime"].eq("2021").all()


def test_unwritable_root_names_it(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match=str(blocker)):
        generate(LocalStorage(blocker / "root"), "S01", **KW)
    assert not (blocker / "root").exists()


def test_generate_on_s3(s3_root) -> None:
    from ocsge.storage import open_storage

    storage = open_storage(s3_root)
    manifest = generate(storage, "S01", **KW)
    for per_year in manifest["keys"].values():
        for key in per_year.values():
            assert storage.exists(key), key
    assert storage.exists(product_key("synth_manifest", "S01", 2021))
