"""Bad OGC requests get an OGC exception with a 4xx status, never a 500."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from fastapi.testclient import TestClient

LAYER = "OCSGE.COUVERTURE.2021-2023"
TILE = (f"/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={LAYER}&STYLE=normal&FORMAT=image/png"
        "&TILEMATRIXSET=PM&TILEMATRIX=14&TILEROW=5637&TILECOL=8298")
BBOX_L93 = "650000,6860000,652560,6862560"
GETMAP = (f"/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS={LAYER}&STYLES=&CRS=EPSG:2154&BBOX={BBOX_L93}"
          "&WIDTH=256&HEIGHT=256&FORMAT=image/png")


@pytest.fixture(scope="module")
def client(tiles_app):
    return TestClient(tiles_app, raise_server_exceptions=False)


def replace(url: str, name: str, value: str) -> str:
    parts = [p for p in url.split("&") if not p.upper().startswith(name.upper() + "=")]
    return "&".join([*parts, f"{name}={value}"])


def ows_code(resp) -> str:  # type: ignore[no-untyped-def]
    root = ET.fromstring(resp.content)
    assert root.tag == "{http://www.opengis.net/ows/1.1}ExceptionReport", resp.text
    return root[0].attrib["exceptionCode"]


def wms_code(resp) -> str:  # type: ignore[no-untyped-def]
    root = ET.fromstring(resp.content)
    assert root.tag.endswith("ServiceExceptionReport"), resp.text
    return root[0].attrib["code"]


def test_valid_requests_work(client):
    assert client.get(TILE).status_code == 200
    assert client.get(GETMAP).status_code == 200


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("LAYER", "OCSGE.COUVERTURE.1999-2000", "InvalidParameterValue"),
        ("LAYER", "../../etc/passwd", "InvalidParameterValue"),
        ("LAYER", "OCSGE.USAGE.2024-2026", "InvalidParameterValue"),  # no data published
        ("STYLE", "fancy", "InvalidParameterValue"),
        ("FORMAT", "image/gif", "InvalidParameterValue"),
        ("TILEMATRIXSET", "EPSG:9999", "InvalidParameterValue"),
        ("TILEMATRIX", "25", "TileOutOfRange"),
        ("TILEMATRIX", "2", "TileOutOfRange"),
        ("TILEROW", "abc", "InvalidParameterValue"),
        ("TILEROW", "99999999", "TileOutOfRange"),
        ("TILECOL", "-1", "InvalidParameterValue"),
        ("REQUEST", "DeleteEverything", "OperationNotSupported"),
        ("VERSION", "2.0.0", "VersionNegotiationFailed"),
    ],
)
def test_wmts_kvp_bad_input(client, name, value, code):
    resp = client.get(replace(TILE, name, value))
    assert 400 <= resp.status_code < 500, resp.text
    assert ows_code(resp) == code


def test_wmts_missing_parameter(client):
    resp = client.get(TILE.replace("&TILEROW=5637", ""))
    assert resp.status_code == 400
    assert ows_code(resp) == "MissingParameterValue"


@pytest.mark.parametrize(
    "path",
    [
        f"/wmts/1.0.0/{LAYER}/normal/PM/14/abc/8298.png",
        f"/wmts/1.0.0/{LAYER}/fancy/PM/14/5637/8298.png",
        f"/wmts/1.0.0/{LAYER}/normal/XYZ/14/5637/8298.png",
        f"/wmts/1.0.0/{LAYER}/normal/PM/14/5637/8298.gif",
        f"/wmts/1.0.0/{LAYER}/normal/PM/30/5637/8298.png",
        "/wmts/1.0.0/NOPE/normal/PM/14/5637/8298.png",
    ],
)
def test_wmts_rest_bad_input(client, path):
    resp = client.get(path)
    assert 400 <= resp.status_code < 500
    ows_code(resp)


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("LAYERS", "OCSGE.NOPE.2021-2023", "LayerNotDefined"),
        ("STYLES", "fancy", "StyleNotDefined"),
        ("FORMAT", "image/gif", "InvalidFormat"),
        ("CRS", "EPSG:32631", "InvalidCRS"),
        ("BBOX", "652560,6862560,650000,6860000", "InvalidParameterValue"),  # inverted
        ("BBOX", "1,2,3", "InvalidParameterValue"),
        ("BBOX", "a,b,c,d", "InvalidParameterValue"),
        ("WIDTH", "100000", "InvalidParameterValue"),
        ("WIDTH", "0", "InvalidParameterValue"),
        ("HEIGHT", "tall", "InvalidParameterValue"),
        ("REQUEST", "GetSomething", "OperationNotSupported"),
        ("VERSION", "9.9.9", "InvalidParameterValue"),
    ],
)
def test_wms_bad_input(client, name, value, code):
    resp = client.get(replace(GETMAP, name, value))
    assert 400 <= resp.status_code < 500, resp.text
    assert wms_code(resp) == code


def test_wms_axis_order(client):
    """WMS 1.3.0 + EPSG:4326 is lat,lon: a lon,lat bbox over the territory is refused, the right one works."""
    latlon = "48.838,2.318,48.862,2.354"
    lonlat = "2.318,48.838,2.354,48.862"
    ok = client.get(replace(replace(GETMAP, "CRS", "EPSG:4326"), "BBOX", latlon))
    assert ok.status_code == 200
    wrong = client.get(replace(replace(GETMAP, "CRS", "EPSG:4326"), "BBOX", lonlat))
    assert wrong.status_code == 400
    assert wms_code(wrong) == "InvalidParameterValue"
    assert "axes swapped" in wrong.text
    # CRS:84 is lon,lat in 1.3.0; EPSG:4326 in 1.1.1 too
    assert client.get(replace(replace(GETMAP, "CRS", "CRS:84"), "BBOX", lonlat)).status_code == 200
    v111 = GETMAP.replace("VERSION=1.3.0", "VERSION=1.1.1").replace("CRS=EPSG:2154", "SRS=EPSG:4326")
    assert client.get(replace(v111, "BBOX", lonlat)).status_code == 200
    out_of_range = client.get(replace(replace(GETMAP, "CRS", "EPSG:4326"), "BBOX", "2,48,200,49"))
    assert out_of_range.status_code == 400


def test_wms_feature_info_bad_point(client):
    url = GETMAP.replace("GetMap", "GetFeatureInfo") + f"&QUERY_LAYERS={LAYER}&INFO_FORMAT=text/plain&I=999&J=10"
    resp = client.get(url)
    assert resp.status_code == 400
    assert wms_code(resp) == "InvalidPoint"
    resp = client.get(url.replace("I=999", "I=10").replace("text/plain", "image/tiff"))
    assert wms_code(resp) == "InvalidFormat"


def test_wms_1_1_1_exception_media_type(client):
    resp = client.get(GETMAP.replace("VERSION=1.3.0", "VERSION=1.1.1").replace("CRS=", "SRS=") + "&WIDTH=100000")
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/vnd.ogc.se_xml")


def test_tiles_bad_input_is_4xx(client):
    for path in [
        "/tiles/NOPE/tiles/WebMercatorQuad/14/8298/5637.png",
        f"/tiles/{LAYER}/tiles/NOPE/14/8298/5637.png",
        f"/tiles/{LAYER}/tiles/WebMercatorQuad/25/8298/5637.png",
        f"/tiles/{LAYER}/tiles/WebMercatorQuad/14/abc/5637.png",
        f"/tiles/{LAYER}/tiles/WebMercatorQuad/14/8298/5637.gif",
        "/tiles/items/couverture_cog/..%2F..%2Fetc%2Fpasswd/info",
        "/tiles/items/../../etc/passwd/info",
        "/tiles/NOPE/legend.png",
    ]:
        resp = client.get(path)
        assert 400 <= resp.status_code < 500, (path, resp.status_code, resp.text[:200])
