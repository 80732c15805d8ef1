"""One renderer behind XYZ, WMTS (KVP and RESTful) and WMS: the same tile gives the same pixels on every
protocol, an empty tile is the same transparent 200 PNG everywhere, and capabilities stay well-formed XML
whatever Host a client sends."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from morecantile import Tile
from svc_territory import quadrant_centre_lonlat

from services.tiles.tms import WEB_MERCATOR

LAYER = "OCSGE.COUVERTURE.2021-2023"


@pytest.fixture(scope="module")
def client(tiles_app):
    return TestClient(tiles_app, raise_server_exceptions=False)


def decode(data: bytes) -> np.ndarray:
    with rasterio.MemoryFile(data) as mem, mem.open() as src:
        arr = src.read()
    if arr.shape[0] == 3:  # a PNG without alpha: opaque
        arr = np.concatenate([arr, np.full((1, *arr.shape[1:]), 255, dtype=arr.dtype)])
    return arr


def four_protocols(t: Tile) -> dict[str, str]:
    left, bottom, right, top = WEB_MERCATOR.xy_bounds(t)
    return {
        "xyz": f"/tiles/{LAYER}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png",
        "wmts-kvp": (f"/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={LAYER}&STYLE=normal"
                     f"&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX={t.z}&TILEROW={t.y}&TILECOL={t.x}"),
        "wmts-rest": f"/wmts/1.0.0/{LAYER}/normal/PM/{t.z}/{t.y}/{t.x}.png",
        "wms": (f"/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS={LAYER}&STYLES=&CRS=EPSG:3857"
                f"&BBOX={left!r},{bottom!r},{right!r},{top!r}&WIDTH=256&HEIGHT=256&FORMAT=image/png"
                "&TRANSPARENT=TRUE"),
    }


@pytest.mark.parametrize("z", [14, 16])
def test_same_tile_same_pixels_on_every_protocol(client, z):
    t = WEB_MERCATOR.tile(*quadrant_centre_lonlat("NE"), z)
    arrays = {}
    for name, url in four_protocols(t).items():
        resp = client.get(url)
        assert resp.status_code == 200, (name, resp.text[:300])
        assert resp.headers["content-type"] == "image/png", name
        arrays[name] = decode(resp.content)
    assert arrays["xyz"].shape == (4, 256, 256)
    assert (arrays["xyz"][3] > 0).any()  # the tile has data: comparing blank tiles would prove nothing
    for name, arr in arrays.items():
        np.testing.assert_array_equal(arr, arrays["xyz"], err_msg=name)


def test_same_empty_tile_on_every_protocol(client):
    t = Tile(0, 0, 10)  # inside the zoom levels and the matrix, far from the data
    bodies = {}
    for name, url in four_protocols(t).items():
        resp = client.get(url)
        assert resp.status_code == 200, (name, resp.status_code, resp.text[:300])
        assert resp.headers["content-type"] == "image/png", name
        arr = decode(resp.content)
        assert arr.shape == (4, 256, 256), name
        assert (arr[3] == 0).all(), name
        bodies[name] = arr
    for name, arr in bodies.items():
        np.testing.assert_array_equal(arr, bodies["xyz"], err_msg=name)


def test_out_of_range_tile_is_an_error_not_an_empty_tile(client):
    t = WEB_MERCATOR.tile(*quadrant_centre_lonlat("NE"), 25)
    assert client.get(f"/tiles/{LAYER}/tiles/WebMercatorQuad/25/{t.x}/{t.y}.png").status_code == 404


def test_tilejson_points_at_the_shared_tile_route(client):
    tj = client.get(f"/tiles/{LAYER}/WebMercatorQuad/tilejson.json").json()
    t = WEB_MERCATOR.tile(*quadrant_centre_lonlat("NE"), 15)
    url = tj["tiles"][0].replace("http://testserver", "").split("?")[0]
    url = url.replace("{z}", str(t.z)).replace("{x}", str(t.x)).replace("{y}", str(t.y))
    resp = client.get(url)
    assert resp.status_code == 200
    assert resp.content == client.get(four_protocols(t)["wmts-rest"]).content


HOSTILE_HOSTS = ['a"b<c>&d', "x'><y/>&amp", 'evil.example"><!--']


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
@pytest.mark.parametrize(
    "path",
    ["/wmts?SERVICE=WMTS&REQUEST=GetCapabilities", "/wmts/1.0.0/WMTSCapabilities.xml",
     "/wms?SERVICE=WMS&REQUEST=GetCapabilities", "/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1"],
)
def test_capabilities_with_a_hostile_host_are_well_formed(client, host, path):
    resp = client.get(path, headers={"Host": host})
    assert resp.status_code == 200, resp.text[:300]
    root = ET.fromstring(resp.content)  # raises on malformed XML
    hrefs = [v for el in root.iter() for k, v in el.attrib.items() if k.endswith("}href") or k == "template"]
    assert hrefs


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_exception_report_with_a_hostile_host_is_well_formed(client, host):
    resp = client.get("/wmts?SERVICE=WMTS&REQUEST=GetTile&LAYER=<x>&TILEMATRIXSET=PM&TILEMATRIX=1"
                      "&TILEROW=0&TILECOL=0", headers={"Host": host})
    assert resp.status_code == 400
    root = ET.fromstring(resp.content)
    assert "<x>" in "".join(root.itertext())
