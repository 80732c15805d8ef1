"""Vector tiles from PMTiles: the tiles we serve are the bytes of the file, directories are cached, the
TileJSON and MapLibre style carry the official colours, and the raw file answers HTTP Range requests."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from morecantile import tms as morecantile_tms
from svc_territory import quadrant_centre_lonlat

from ocsge.nomenclature import COUVERTURE


@pytest.fixture(scope="module")
def vector_app(finder):
    from services.vector.app import create_app

    return create_app(finder)


@pytest.fixture(scope="module")
def client(vector_app):
    return TestClient(vector_app, raise_server_exceptions=False)


BASE = "/vector/occupation/S01/2021"


def reference_tile(territory, z: int, x: int, y: int) -> bytes | None:
    """The same tile read with the pmtiles package's own reader, straight from the file."""
    from pmtiles.reader import MmapSource, Reader

    with open(territory.root / territory.pmtiles_key, "rb") as f:
        return Reader(MmapSource(f)).get(z, x, y)


def test_datasets_and_tilejson(client):
    datasets = client.get("/vector/datasets").json()
    assert [(d["kind"], d["departement"], d["millesime"]) for d in datasets] == [("occupation", "S01", "2021")]
    assert datasets[0]["layers"] == ["occupation"]
    tj = client.get(f"{BASE}/tilejson.json").json()
    assert tj["tilejson"] == "3.0.0"
    assert tj["tiles"] == ["http://testserver/vector/occupation/S01/2021/{z}/{x}/{y}.mvt"]
    assert tj["minzoom"] == 8 and tj["maxzoom"] == 15
    assert {f for layer in tj["vector_layers"] for f in layer["fields"]} >= {"code_cs", "code_us"}


def test_tile_bytes_match_the_file(client, territory):
    t = morecantile_tms.get("WebMercatorQuad").tile(*quadrant_centre_lonlat("NW"), 14)
    resp = client.get(f"{BASE}/{t.z}/{t.x}/{t.y}.mvt", headers={"Accept-Encoding": "gzip"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert resp.headers["etag"] and resp.headers["cache-control"].startswith("public")
    expected = reference_tile(territory, t.z, t.x, t.y)
    assert expected is not None
    assert resp.content == gzip.decompress(expected)  # the client undid Content-Encoding: gzip
    # an MVT keeps its layer name and attribute values as plain protobuf strings
    assert b"occupation" in resp.content and b"CS1.1.1.1" in resp.content and b"code_cs" in resp.content


def test_directory_cache_limits_range_reads(vector_app, client):
    src = next(iter(vector_app.state.sources._sources.values()))
    before = src.reads
    tiles = list(morecantile_tms.get("WebMercatorQuad").tiles(2.318, 48.838, 2.354, 48.862, [15]))
    for t in tiles:
        client.get(f"{BASE}/{t.z}/{t.x}/{t.y}.mvt")
    assert src.reads - before <= len(tiles)  # one read per tile: header and directories come from the cache


def test_empty_and_out_of_range_tiles(client):
    assert client.get(f"{BASE}/14/0/0.mvt").status_code == 204
    assert client.get(f"{BASE}/3/0/0.mvt").status_code == 404
    assert client.get(f"{BASE}/14/99999/0.mvt").status_code == 400
    assert client.get(f"{BASE}/14/abc/0.mvt").status_code == 422
    assert client.get(f"{BASE}/14/0/0.png").status_code == 400
    assert client.get("/vector/occupation/S01/2019/14/0/0.mvt").status_code == 404
    assert client.get("/vector/nope/S01/2021/14/0/0.mvt").status_code == 404
    assert client.get("/vector/occupation/..%2F..%2Fetc/2021/14/0/0.mvt").status_code == 404


def test_maplibre_style_uses_official_colours(client):
    style = client.get(f"{BASE}/style.json").json()
    assert style["version"] == 8
    assert style["sources"]["ocsge"]["url"].endswith("/vector/occupation/S01/2021/tilejson.json")
    fill = next(layer for layer in style["layers"] if layer["type"] == "fill")
    assert fill["source-layer"] == "occupation"
    expr = fill["paint"]["fill-color"]
    assert expr[expr.index(["CS1.1.1.1"]) + 1] == COUVERTURE["CS1.1.1.1"].colour
    # QGIS 3.22's converter reads only array labels: every label of the match is a one-element array
    labels = expr[2:-1:2]
    assert labels and all(isinstance(label, list) and len(label) == 1 for label in labels)
    usage = client.get(f"{BASE}/style.json?attribute=code_us").json()
    assert ["US1.1"] in next(la for la in usage["layers"] if la["type"] == "fill")["paint"]["fill-color"]
    assert client.get(f"{BASE}/style.json?attribute=nope").status_code == 400


@pytest.mark.parametrize("attribute", ["code_cs", "code_us"])
def test_maplibre_style_passes_maplibre_validator(client, tmp_path, attribute):
    """MapLibre's own style validator (gl-style-validate of @maplibre/maplibre-gl-style-spec, which the viewer
    build installs with maplibre-gl) accepts the style, match labels included."""
    validate = Path(__file__).resolve().parents[2] / "services/viewer/node_modules/.bin/gl-style-validate"
    if not validate.exists() or not shutil.which("node"):
        pytest.skip("MapLibre's style validator not installed (services/viewer/build.sh installs it)")
    path = tmp_path / "style.json"
    path.write_bytes(client.get(f"{BASE}/style.json?attribute={attribute}").content)
    proc = subprocess.run([str(validate), str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_raw_pmtiles_with_range_requests(client, territory):
    data = (territory.root / territory.pmtiles_key).read_bytes()
    head = client.head(f"{BASE}.pmtiles")
    assert head.headers["accept-ranges"] == "bytes"
    assert int(head.headers["content-length"]) == len(data)
    part = client.get(f"{BASE}.pmtiles", headers={"Range": "bytes=0-126"})
    assert part.status_code == 206
    assert part.content == data[:127]
    assert part.headers["content-range"] == f"bytes 0-126/{len(data)}"
    tail = client.get(f"{BASE}.pmtiles", headers={"Range": "bytes=-10"})
    assert tail.content == data[-10:]
    assert client.get(f"{BASE}.pmtiles").content == data
    assert client.get(f"{BASE}.pmtiles", headers={"Range": f"bytes={len(data) + 5}-"}).status_code == 416
    assert client.get(f"{BASE}.pmtiles", headers={"Range": "lines=1-2"}).status_code == 416


def test_pmtiles_from_s3(s3_root, territory):
    """The same file on an S3-compatible server: tiles by range reads through ocsge.storage."""
    from ocsge.storage import open_storage
    from services.assets import StorageAssetFinder
    from services.vector.app import create_app

    storage = open_storage(s3_root)
    storage.put_file(territory.pmtiles_key, territory.root / territory.pmtiles_key)
    client = TestClient(create_app(StorageAssetFinder(storage)))
    t = morecantile_tms.get("WebMercatorQuad").tile(*quadrant_centre_lonlat("SE"), 13)
    resp = client.get(f"{BASE}/{t.z}/{t.x}/{t.y}.mvt")
    assert resp.status_code == 200
    assert resp.content == gzip.decompress(reference_tile(territory, t.z, t.x, t.y))
    part = client.get(f"{BASE}.pmtiles", headers={"Range": "bytes=0-6"})
    assert part.content == b"PMTiles"
