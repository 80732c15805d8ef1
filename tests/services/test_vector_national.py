"""The national vector tileset through the vector tile service: found by both finders (the storage's keys,
the published catalogue), served at /vector/occupation/FR/{millésime}/… with the same MVT endpoint, TileJSON
and style as a département's, with features of two départements in one low-zoom tile; the départements'
files stay served and downloadable."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from morecantile import tms as morecantile_tms

from inference_batch.products.mvt import feature_properties
from support.national_scene import CODES, border_lon, bounds_of, build_scene

WMQ = morecantile_tms.get("WebMercatorQuad")
BASE = "/vector/occupation/FR/2021"


@pytest.fixture(scope="module")
def national_root(tmp_path_factory) -> Path:
    from catalog.publish import publish
    from inference_batch.products.national_tiles import run_national_tiles

    root = tmp_path_factory.mktemp("vector-national") / "root"
    storage = build_scene(root)
    run_national_tiles(storage, "occupation_pmtiles", 2021)
    publish(storage)
    return root


@pytest.fixture(scope="module", params=["storage", "catalogue"])
def client(request, national_root) -> TestClient:
    from catalog.search.backends import open_backend
    from ocsge.storage import LocalStorage
    from services.assets import StorageAssetFinder
    from services.catalog_finder import CatalogAssetFinder
    from services.vector.app import create_app

    if request.param == "storage":
        finder = StorageAssetFinder(national_root, ttl_s=3600)
    else:
        finder = CatalogAssetFinder(open_backend(root=str(national_root)), LocalStorage(national_root))
    return TestClient(create_app(finder), raise_server_exceptions=False)


def test_datasets_list_the_national_tileset_and_the_departements(client):
    datasets = client.get("/vector/datasets").json()
    assert sorted((d["departement"], d["national"]) for d in datasets) == [
        ("FR", True),
        ("S01", False),
        ("S02", False),
        ("S03", False),
    ]
    national = next(d for d in datasets if d["national"])
    assert (national["minzoom"], national["maxzoom"]) == (6, 14)
    assert national["tiles"].endswith(f"{BASE}/{{z}}/{{x}}/{{y}}.mvt")


@pytest.mark.parametrize("z", [6, 8, 11, 14])
def test_one_tile_holds_two_departements(client, z):
    lat = bounds_of("S01")[1] + 0.15
    t = WMQ.tile(border_lon("S01") - 1e-4, lat, z)
    resp = client.get(f"{BASE}/{z}/{t.x}/{t.y}.mvt", headers={"Accept-Encoding": "gzip"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    features = feature_properties(resp.content)["occupation"]  # the client undid Content-Encoding
    assert {f["code_cs"] for f in features} >= {CODES["S01"], CODES["S02"]}


def test_tilejson_and_style_of_the_national_tileset(client):
    tj = client.get(f"{BASE}/tilejson.json").json()
    assert tj["tiles"] == [f"http://testserver{BASE}/{{z}}/{{x}}/{{y}}.mvt"]
    assert (tj["minzoom"], tj["maxzoom"]) == (6, 14)
    assert tj["bounds"][0] == pytest.approx(bounds_of("S01")[0], abs=1e-3)
    assert tj["bounds"][2] == pytest.approx(bounds_of("S03")[2], abs=1e-3)
    style = client.get(f"{BASE}/style.json").json()
    assert style["zoom"] == 6  # France on opening, not a département's zoom 13
    assert style["sources"]["ocsge"]["url"] == f"http://testserver{BASE}/tilejson.json"
    fill = next(layer for layer in style["layers"] if layer["type"] == "fill")
    assert fill["source-layer"] == "occupation" and ["CS2.2.1"] in fill["paint"]["fill-color"]


def test_outside_the_national_tileset(client):
    assert client.get(f"{BASE}/5/16/11.mvt").status_code == 404  # below the national minzoom
    assert client.get(f"{BASE}/14/0/0.mvt").status_code == 204  # empty
    assert client.get("/vector/occupation/FR/2019/6/32/22.mvt").status_code == 404
    assert client.get("/vector/analyses/FR/2021/6/32/22.mvt").status_code == 404
    assert client.get("/vector/occupation/XX/2021/6/32/22.mvt").status_code == 404


def test_national_and_departement_files_downloadable(client, national_root):
    from ocsge.national import national_key

    data = (national_root / national_key("occupation_pmtiles", 2021)).read_bytes()
    part = client.get(f"{BASE}.pmtiles", headers={"Range": "bytes=0-126"})
    assert part.status_code == 206 and part.content == data[:127]
    own = client.get("/vector/occupation/S02/2021.pmtiles")
    assert own.status_code == 200 and own.content[:7] == b"PMTiles"
    west, south, east, north = bounds_of("S02")
    t = WMQ.tile((west + east) / 2, (south + north) / 2, 14)
    tile = client.get(f"/vector/occupation/S02/2021/14/{t.x}/{t.y}.mvt")
    assert {f["code_cs"] for f in feature_properties(tile.content)["occupation"]} == {CODES["S02"]}


def test_stac_item_of_the_national_tileset(national_root):
    import json

    item = json.loads((national_root / "stac/ocsge-france-tiles/items/pmtiles_occupation_FR_2021.json").read_text())
    assert item["properties"]["ocsge:departement"] == "FR"
    assert item["properties"]["ocsge:departements"] == ["S01", "S02", "S03"]
    assert item["assets"]["data"]["href"].endswith("pmtiles/occupation/FR/2021/pmtiles_occupation_FR_2021.pmtiles")
