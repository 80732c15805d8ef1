"""Raster tiles: national mosaics over the catalogue, colours, TileJSON, legends, caching headers, and
the guarantee that only catalogue assets are ever read."""

from __future__ import annotations

import json

import pytest
import rasterio
from fastapi.testclient import TestClient
from morecantile import tms as morecantile_tms
from svc_territory import QUADRANTS, quadrant_centre_l93, quadrant_centre_lonlat

from ocsge.nomenclature import COUVERTURE

LAYER = "OCSGE.COUVERTURE.2021-2023"


@pytest.fixture(scope="module")
def client(tiles_app):
    return TestClient(tiles_app, raise_server_exceptions=False)


def pixel(data: bytes, col: int = 128, row: int = 128) -> tuple[int, ...]:
    with rasterio.MemoryFile(data) as mem, mem.open() as src:
        return tuple(int(v) for v in src.read()[:, row, col])


def centre_tile(q: str, z: int, tms: str = "WebMercatorQuad"):  # type: ignore[no-untyped-def]
    return morecantile_tms.get(tms).tile(*quadrant_centre_lonlat(q), z)


def test_layers_lists_what_the_catalogue_has(client):
    layers = {layer["id"]: layer for layer in client.get("/tiles/layers").json()}
    assert set(layers) == {
        "OCSGE.COUVERTURE.2021-2023", "OCSGE.COUVERTURE.2024-2026", "OCSGE.USAGE.2021-2023",
        "OCSGE.ARTIF.2021-2023", "OCSGE.DIFFERENCE.2021-2023_2024-2026",
    }
    assert layers[LAYER]["departements"] == ["S01"]
    assert layers[LAYER]["bounds"][0] == pytest.approx(2.318, abs=0.01)


@pytest.mark.parametrize(("layer", "year"), [(LAYER, 2021), ("OCSGE.COUVERTURE.2024-2026", 2024)])
def test_xyz_tile_colours(client, layer, year):
    for q in ("NW", "SE"):
        t = centre_tile(q, 16)
        resp = client.get(f"/tiles/{layer}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png")
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "image/png"
        # the quadrant centre is somewhere in this tile: the dominant colour is the quadrant's
        with rasterio.MemoryFile(resp.content) as mem, mem.open() as src:
            arr = src.read()
        colours = {tuple(int(v) for v in arr[:3, r, c]) for r in range(0, 256, 32) for c in range(0, 256, 32)
                   if arr[3, r, c]}
        assert COUVERTURE[QUADRANTS[year][q]].rgb in colours


def test_same_tile_in_pm_and_webmercatorquad(client):
    t = centre_tile("NE", 15)
    a = client.get(f"/wmts/1.0.0/{LAYER}/normal/PM/{t.z}/{t.y}/{t.x}.png")
    b = client.get(f"/tiles/{LAYER}/tiles/PM/{t.z}/{t.x}/{t.y}.png")
    assert a.status_code == b.status_code == 200
    assert pixel(a.content)[:3] == pixel(b.content)[:3]


def test_lambert93_and_crs84_tiles(client):
    x, y = quadrant_centre_l93("SW")
    from services.tiles.tms import LAMB93

    t = LAMB93.tile(*quadrant_centre_lonlat("SW"), 11)
    resp = client.get(f"/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={LAYER}&STYLE=normal"
                      f"&FORMAT=image/png&TILEMATRIXSET=LAMB93&TILEMATRIX=11&TILEROW={t.y}&TILECOL={t.x}")
    assert resp.status_code == 200
    left, bottom, right, top = LAMB93.xy_bounds(t)
    col = int((x - left) / (right - left) * 256)
    row = int((top - y) / (top - bottom) * 256)
    assert pixel(resp.content, col, row)[:3] == COUVERTURE["CS1.2.2"].rgb
    t = centre_tile("SW", 15, "WorldCRS84Quad")
    resp = client.get(f"/tiles/{LAYER}/tiles/WorldCRS84Quad/{t.z}/{t.x}/{t.y}.png")
    assert resp.status_code == 200


def test_empty_tile_inside_limits_is_transparent(client):
    resp = client.get(f"/wmts/1.0.0/{LAYER}/normal/PM/10/0/0.png")
    assert resp.status_code == 200
    assert pixel(resp.content, 10, 10)[3] == 0


def test_tilejson_and_legends(client):
    tj = client.get(f"/tiles/{LAYER}/WebMercatorQuad/tilejson.json").json()
    assert tj["minzoom"] == 5 and tj["maxzoom"] == 18
    assert tj["tiles"][0].startswith("http://testserver/tiles/OCSGE.COUVERTURE.2021-2023/tiles/WebMercatorQuad/")
    legend = client.get(f"/tiles/{LAYER}/legend.json").json()
    assert len(legend["classes"]) == 14
    assert legend["classes"][0] == {"value": 1, "code": "CS1.1.1.1", "label": "Zones bâties", "colour": "#FF377A"}
    png = client.get(f"/tiles/{LAYER}/legend.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    artif = client.get("/tiles/OCSGE.ARTIF.2021-2023/legend.json").json()
    assert [c["label"] for c in artif["classes"]] == ["Artificialisé", "Non artificialisé"]
    wms_legend = client.get(f"/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetLegendGraphic&LAYER={LAYER}"
                            "&FORMAT=application/json")
    assert wms_legend.json()["classes"][0]["code"] == "CS1.1.1.1"


def test_etag_and_cache_control(client):
    t = centre_tile("NW", 15)
    url = f"/wmts/1.0.0/{LAYER}/normal/PM/{t.z}/{t.y}/{t.x}.png"
    first = client.get(url)
    assert first.headers["cache-control"].startswith("public, max-age=")
    etag = first.headers["etag"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    caps = client.get("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities")
    assert client.get("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities",
                      headers={"If-None-Match": caps.headers["etag"]}).status_code == 304
    error = client.get(url.replace("normal", "fancy"))
    assert "etag" not in error.headers


def test_wmts_feature_info(client):
    t = centre_tile("NW", 16)
    from services.tiles.tms import WEB_MERCATOR

    left, bottom, right, top = WEB_MERCATOR.xy_bounds(t)
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(*quadrant_centre_lonlat("NW"))
    i = int((x - left) / (right - left) * 256)
    j = int((top - y) / (top - bottom) * 256)
    base = (f"/wmts?SERVICE=WMTS&REQUEST=GetFeatureInfo&VERSION=1.0.0&LAYER={LAYER}&STYLE=normal&FORMAT=image/png"
            f"&TILEMATRIXSET=PM&TILEMATRIX=16&TILEROW={t.y}&TILECOL={t.x}&I={i}&J={j}")
    text = client.get(base + "&INFOFORMAT=text/plain")
    assert text.status_code == 200 and "CS1.1.1.1 Zones bâties" in text.text
    data = client.get(base + "&INFOFORMAT=application/json").json()
    assert data["features"][0]["properties"]["code"] == "CS1.1.1.1"
    html = client.get(base + "&INFOFORMAT=text/html")
    assert "Zones bâties" in html.text and html.headers["content-type"].startswith("text/html")
    rest = client.get(f"/wmts/1.0.0/{LAYER}/normal/PM/16/{t.y}/{t.x}/{j}/{i}.json").json()
    assert rest == data


def test_single_cog_items_only_from_the_catalogue(client, territory):
    resp = client.get("/tiles/items/couverture_cog/couverture_DS01_2021/info")
    assert resp.status_code == 200, resp.text
    assert resp.json()["colormap"]["1"] == [255, 55, 122, 255]
    # a user-supplied url is never used: the path dependency has no url parameter
    t = centre_tile("NW", 15)
    tile = client.get(f"/tiles/items/couverture_cog/couverture_DS01_2021/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
                      "?url=/etc/passwd")
    assert tile.status_code == 200
    assert client.get("/tiles/items/couverture_cog/nope/info").status_code == 404
    assert client.get("/tiles/items/truth/anything/info").status_code == 404


def test_capabilities_list_available_layers_with_limits(client):
    import xml.etree.ElementTree as ET

    root = ET.fromstring(client.get("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities").content)
    ns = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
    ids = [e.text for e in root.findall("w:Contents/w:Layer/ows:Identifier", ns)]
    assert LAYER in ids and "OCSGE.USAGE.2024-2026" not in ids
    layer = next(e for e in root.findall("w:Contents/w:Layer", ns) if e.find("ows:Identifier", ns).text == LAYER)
    limits = layer.findall("w:TileMatrixSetLink/w:TileMatrixSetLimits/w:TileMatrixLimits", ns)
    z14 = next(e for e in limits if e.find("w:TileMatrix", ns).text == "14")
    t = centre_tile("NW", 14)
    assert int(z14.find("w:MinTileCol", ns).text) <= t.x <= int(z14.find("w:MaxTileCol", ns).text)
    assert int(z14.find("w:MinTileRow", ns).text) <= t.y <= int(z14.find("w:MaxTileRow", ns).text)
    json.dumps(ids)


@pytest.mark.parametrize("crs", ["EPSG:3857", "CRS:84", "EPSG:2154"])
def test_wms_getmap_colours_in_each_crs(client, crs):
    from pyproj import Transformer

    lon0, lat0 = quadrant_centre_lonlat("NW")
    lon1, lat1 = quadrant_centre_lonlat("SE")
    if crs == "CRS:84":
        x0, y0, x1, y1 = lon0, lat0, lon1, lat1
    else:
        t = Transformer.from_crs(4326, int(crs.split(":")[1]), always_xy=True)
        (x0, y0), (x1, y1) = t.transform(lon0, lat0), t.transform(lon1, lat1)
    dx, dy = (x1 - x0) / 2, (y0 - y1) / 2
    bbox = f"{x0 - dx},{y1 - dy},{x1 + dx},{y0 + dy}"
    resp = client.get(f"/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS={LAYER}&STYLES=normal&CRS={crs}"
                      f"&BBOX={bbox}&WIDTH=200&HEIGHT=200&FORMAT=image/png&TRANSPARENT=TRUE")
    assert resp.status_code == 200, resp.text
    assert pixel(resp.content, 50, 50)[:3] == COUVERTURE[QUADRANTS[2021]["NW"]].rgb
    assert pixel(resp.content, 150, 150)[:3] == COUVERTURE[QUADRANTS[2021]["SE"]].rgb
    jpeg = client.get(f"/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS={LAYER}&STYLES=&CRS={crs}"
                      f"&BBOX={bbox}&WIDTH=64&HEIGHT=64&FORMAT=image/jpeg")
    assert jpeg.headers["content-type"] == "image/jpeg"


def test_difference_and_overlay(client):
    t = centre_tile("NW", 15)
    diff = client.get(f"/wmts/1.0.0/OCSGE.DIFFERENCE.2021-2023_2024-2026/normal/PM/{t.z}/{t.y}/{t.x}.png")
    assert diff.status_code == 200
    with rasterio.MemoryFile(diff.content) as mem, mem.open() as src:
        arr = src.read()
    assert (255, 140, 0) in {tuple(int(v) for v in arr[:3, r, c]) for r in range(0, 256, 16)
                             for c in range(0, 256, 16) if arr[3, r, c]}
    legend = client.get("/tiles/OCSGE.DIFFERENCE.2021-2023_2024-2026/legend.json").json()
    assert legend["classes"][0]["label"] == "Changement de couverture"
    # two layers in one GetMap: the second (the change) is drawn over the first
    x, y = quadrant_centre_l93("NW")
    bbox = f"{x - 100},{y - 100},{x + 100},{y + 100}"
    both = client.get(f"/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS={LAYER},"
                      f"OCSGE.DIFFERENCE.2021-2023_2024-2026&STYLES=,&CRS=EPSG:2154&BBOX={bbox}&WIDTH=20&HEIGHT=20"
                      "&FORMAT=image/png&TRANSPARENT=TRUE")
    assert pixel(both.content, 10, 10)[:3] == (255, 140, 0)


def test_wms_1_1_1_feature_info_with_x_y(client):
    x, y = quadrant_centre_l93("SW")
    bbox = f"{x - 100},{y - 100},{x + 100},{y + 100}"
    resp = client.get(f"/wms?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetFeatureInfo&LAYERS={LAYER}&QUERY_LAYERS={LAYER}"
                      f"&STYLES=&SRS=EPSG:2154&BBOX={bbox}&WIDTH=20&HEIGHT=20&X=10&Y=10&INFO_FORMAT=text/plain"
                      "&FORMAT=image/png")
    assert resp.status_code == 200
    assert "CS1.2.2" in resp.text


def test_tiles_from_s3(s3_root, territory):
    """COGs on an S3-compatible server, read by GDAL through /vsis3/ with the serving GDAL settings."""
    from ocsge.storage import open_storage
    from services.assets import StorageAssetFinder
    from services.tiles.app import create_app

    storage = open_storage(s3_root)
    key = "couverture/DS01/2021/couverture_DS01_2021.tif"
    storage.put_file(key, territory.root / key)
    s3_client = TestClient(create_app(StorageAssetFinder(storage)))
    assert [layer["id"] for layer in s3_client.get("/tiles/layers").json()] == [LAYER]
    t = centre_tile("NW", 15)
    resp = s3_client.get(f"/wmts/1.0.0/{LAYER}/normal/PM/{t.z}/{t.y}/{t.x}.png")
    assert resp.status_code == 200
    with rasterio.MemoryFile(resp.content) as mem, mem.open() as src:
        arr = src.read()
    assert COUVERTURE["CS1.1.1.1"].rgb in {tuple(int(v) for v in arr[:3, r, c]) for r in range(0, 256, 16)
                                            for c in range(0, 256, 16) if arr[3, r, c]}
