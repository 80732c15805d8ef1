"""Hostile and careless requests against the raster services (XYZ and titiler routes, WMTS, WMS), through
the all-in-one app as ``ocsge serve`` runs it: each answers fast (a per-case time limit), with a 4xx in the
service's own error format that names the parameter, and nothing in the body names a local path. The
requests are those the attacks of issues 13 and 18 found stalling the server, answering 500 or sizing
gigabytes of work, and their neighbours; the time budget of a render is tested at the end."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import xml.etree.ElementTree as ET

import pytest
from fastapi.testclient import TestClient
from svc_territory import quadrant_centre_l93

from services.params import InvalidParameter, check_bbox, check_point, crs_envelope
from services.tiles import limits
from services.tiles.budget import RenderBudget, RenderTimeout, check_deadline

LAYER = "OCSGE.COUVERTURE.2021-2023"
ITEM = "/tiles/items/couverture_cog/couverture_DS01_2021"
TILE = "tiles/WebMercatorQuad/14/8298/5637"
L93 = "650000,6860000,652560,6862560"
WORLD_3857 = "-20037508.34,-20037508.34,20037508.34,20037508.34"


def wms(request: str = "GetMap", crs: str = "EPSG:3857", bbox: str = L93, size: tuple[int, int] = (256, 256),
        layers: str = LAYER, version: str = "1.3.0") -> str:
    key = "CRS" if version == "1.3.0" else "SRS"
    url = (f"/wms?SERVICE=WMS&VERSION={version}&REQUEST={request}&LAYERS={layers}&STYLES=&FORMAT=image/png"
           f"&{key}={crs}&BBOX={bbox}&WIDTH={size[0]}&HEIGHT={size[1]}")
    if request == "GetFeatureInfo":
        url += f"&QUERY_LAYERS={layers}&INFO_FORMAT=text/plain&I=1&J=1"
    return url


def wmts(**params: str) -> str:
    query = {"SERVICE": "WMTS", "REQUEST": "GetTile", "VERSION": "1.0.0", "LAYER": LAYER, "STYLE": "normal",
             "FORMAT": "image/png", "TILEMATRIXSET": "PM", "TILEMATRIX": "14", "TILEROW": "5637",
             "TILECOL": "8298", **params}
    return "/wmts?" + "&".join(f"{k}={v}" for k, v in query.items())


# (id, url, status, format, what the message must name): format "wms" ServiceExceptionReport, "ows" OWS
# ExceptionReport, "json" {"detail": …}; status 200 cases are neighbours that must keep working (fast).
CASES = [
    # WMS GetMap / GetFeatureInfo: non-finite, huge and out-of-range BBOX (hung in transform_bounds, or 500)
    ("wms-inf", wms(bbox="-inf,-inf,inf,inf"), 400, "wms", "BBOX"),
    ("wms-inf-one", wms(bbox="-inf,0,0,1"), 400, "wms", "BBOX"),
    ("wms-nan", wms(bbox="nan,0,1,1"), 400, "wms", "BBOX"),
    ("wms-1e308", wms(bbox="-1e308,-1e308,1e308,1e308"), 400, "wms", "BBOX"),
    ("wms-1e10-3857", wms(bbox="-1e10,-1e10,1e10,1e10"), 400, "wms", "BBOX"),
    ("wms-1e30-2154", wms(crs="EPSG:2154", bbox="-1e30,-1e30,1e30,1e30"), 400, "wms", "BBOX"),
    ("wms-1e30-corner-2154", wms(crs="EPSG:2154", bbox="0,0,1e30,1e30"), 400, "wms", "BBOX"),
    ("wms-1e308-4326", wms(crs="EPSG:4326", bbox="-1e308,-1e308,1e308,1e308"), 400, "wms", "BBOX"),
    ("wms-inf-crs84", wms(crs="CRS:84", bbox="0,0,inf,1"), 400, "wms", "BBOX"),
    ("wms-1e308-111", wms(crs="EPSG:3857", bbox="-1e308,-1e308,1e308,1e308", version="1.1.1"), 400, "wms111",
     "BBOX"),
    ("gfi-1e308", wms("GetFeatureInfo", bbox="-1e308,-1e308,1e308,1e308"), 400, "wms", "BBOX"),
    ("gfi-inf", wms("GetFeatureInfo", bbox="-inf,-inf,inf,inf"), 400, "wms", "BBOX"),
    ("gfi-1e30-2154", wms("GetFeatureInfo", crs="EPSG:2154", bbox="-1e30,-1e30,1e30,1e30"), 400, "wms", "BBOX"),
    # WMS sizes: per side, pixels × layers, number of layers
    ("wms-world-4096", wms(bbox=WORLD_3857, size=(4096, 4096)), 400, "wms", "WIDTH"),
    ("wms-layers-x10-4096", wms(crs="EPSG:2154", size=(4096, 4096), layers=",".join([LAYER] * 10)), 400, "wms",
     "LAYERS"),
    ("wms-layers-x10-256", wms(crs="EPSG:2154", layers=",".join([LAYER] * 10)), 400, "wms", "LAYERS"),
    ("wms-layers-x4-2048", wms(crs="EPSG:2154", size=(2048, 2048), layers=",".join([LAYER] * 4)), 400, "wms",
     "LAYERS"),
    ("wms-width-0", wms(size=(0, 256)), 400, "wms", "WIDTH"),
    ("wms-width-1e3", wms(size=("1e3", 256)), 400, "wms", "WIDTH"),  # type: ignore[arg-type]
    ("wms-world-2048", wms(bbox=WORLD_3857, size=(2048, 2048)), 200, "png", None),
    ("wms-world-4326", wms(crs="EPSG:4326", bbox="-90,-180,90,180", size=(2048, 1024)), 200, "png", None),
    ("wms-europe-2154", wms(crs="EPSG:2154", bbox="-2000000,4800000,3000000,8400000"), 200, "png", None),
    ("wms-layers-x2-2048", wms(crs="EPSG:2154", size=(2048, 2048), layers=f"{LAYER},{LAYER}"), 200, "png", None),
    ("wms-tiny-bbox", wms(crs="EPSG:2154", bbox="650000,6860000,650000.000001,6860000.000001"), 200, "png", None),
    # WMTS KVP and RESTful
    ("wmts-matrix-1e308", wmts(TILEMATRIX="1e308"), 400, "ows", "TILEMATRIX"),
    ("wmts-row-huge", wmts(TILEROW="99999999999999999999"), 400, "ows", None),
    ("wmts-col-nan", wmts(TILECOL="nan"), 400, "ows", "TILECOL"),
    ("wmts-rest-huge", f"/wmts/1.0.0/{LAYER}/normal/PM/99999999999/0/0.png", 400, "ows", None),
    # XYZ
    ("xyz-tilesize-8192", f"/tiles/{LAYER}/{TILE}.png?tilesize=8192", 422, "json", "tilesize"),
    ("xyz-z-huge", f"/tiles/{LAYER}/tiles/WebMercatorQuad/99999999999/0/0.png", 404, "json", None),
    ("xyz-x-negative", f"/tiles/{LAYER}/tiles/WebMercatorQuad/14/-1/5637.png", 404, "json", None),
    # titiler mosaic routes of a layer
    ("assets-1e308", f"/tiles/{LAYER}/bbox/-1e308,-1e308,1e308,1e308/assets?coord_crs=EPSG:3857", 400, "json",
     "bbox"),
    ("assets-inf", f"/tiles/{LAYER}/bbox/-inf,-inf,inf,inf/assets", 400, "json", "bbox"),
    ("assets-nan", f"/tiles/{LAYER}/bbox/nan,0,1,1/assets", 400, "json", "bbox"),
    ("assets-1e10-3857", f"/tiles/{LAYER}/bbox/-1e10,-1e10,1e10,1e10/assets?coord_crs=EPSG:3857", 400, "json",
     "bbox"),
    ("assets-1e30-2154", f"/tiles/{LAYER}/bbox/-1e30,-1e30,1e30,1e30/assets?coord_crs=EPSG:2154", 400, "json",
     "bbox"),
    ("assets-lat-100", f"/tiles/{LAYER}/bbox/0,-100,1,1/assets", 400, "json", "bbox"),
    ("assets-unknown-crs", f"/tiles/{LAYER}/bbox/0,0,1,1/assets?coord_crs=EPSG:9999999", 400, "json",
     "coord_crs"),
    ("assets-tile-z-huge", f"/tiles/{LAYER}/tiles/WebMercatorQuad/99/0/0/assets", 404, "json", "z"),
    ("assets-ok", f"/tiles/{LAYER}/bbox/2.3,48.8,2.4,48.9/assets", 200, "json", None),
    ("point-assets-ok", f"/tiles/{LAYER}/point/2.33,48.85/assets", 200, "json", None),
    ("point-1e308-3857", f"/tiles/{LAYER}/point/1e308,1e308?coord_crs=EPSG:3857", 400, "json", "lon,lat"),
    ("point-nan", f"/tiles/{LAYER}/point/nan,nan", 400, "json", "lon,lat"),
    ("point-outside", f"/tiles/{LAYER}/point/0,0", 404, "json", None),
    ("point-bidx-99", f"/tiles/{LAYER}/point/2.33,48.85?bidx=99", 400, "json", "bidx"),
    ("point-bidx-2", f"/tiles/{LAYER}/point/2.33,48.85?bidx=2", 400, "json", "bidx"),
    ("point-expression-b99", f"/tiles/{LAYER}/point/2.33,48.85?expression=b99", 400, "json", "expression"),
    ("point-expression-syntax", f"/tiles/{LAYER}/point/2.33,48.85?expression=b1*", 400, "json", None),
    ("point-expression-long", f"/tiles/{LAYER}/point/2.33,48.85?expression={'b1%2B' * 100}b1", 400, "json",
     "expression"),
    ("tilesets-html", f"/tiles/{LAYER}/tiles?f=html", 200, "html", None),
    ("tileset-html", f"/tiles/{LAYER}/tiles/WebMercatorQuad?f=html", 200, "html", None),
    ("tilejson-tilesize-8192", f"/tiles/{LAYER}/WebMercatorQuad/tilejson.json?tilesize=8192", 400, "json",
     "tilesize"),
    ("tileset-maxzoom-1e5", f"/tiles/{LAYER}/tiles/WebMercatorQuad?minzoom=0&maxzoom=100000", 400, "json",
     "maxzoom"),  # a tileset lists limits for every zoom in the range: this one looped for ever
    ("tilejson-minzoom", f"/tiles/{LAYER}/WebMercatorQuad/tilejson.json?minzoom=-100000", 400, "json", "minzoom"),
    ("item-tileset-maxzoom-1e5", f"{ITEM}/tiles/WebMercatorQuad?maxzoom=100000", 400, "json", "maxzoom"),
    ("layer-info", f"/tiles/{LAYER}/info", 200, "json", None),
    ("layer-info-geojson", f"/tiles/{LAYER}/info.geojson", 200, "json", None),
    # titiler single-COG routes
    ("item-tilesize-8192", f"{ITEM}/{TILE}.png?tilesize=8192", 400, "json", "tilesize"),
    ("item-buffer-1000", f"{ITEM}/{TILE}.png?buffer=1000", 400, "json", "buffer"),
    ("item-padding-1000", f"{ITEM}/{TILE}.png?padding=1000", 400, "json", "padding"),
    ("item-buffer-odd", f"{ITEM}/{TILE}.png?buffer=0.3", 400, "json", "buffer"),
    ("item-bidx-99", f"{ITEM}/{TILE}.png?bidx=99", 400, "json", "bidx"),
    ("item-expression-b99", f"{ITEM}/{TILE}.png?expression=b99", 400, "json", "expression"),
    ("item-nodata-inf", f"{ITEM}/{TILE}.png?nodata=inf", 400, "json", "nodata"),
    ("item-nodata-300", f"{ITEM}/{TILE}.png?nodata=300", 400, "json", "nodata"),
    ("item-z-99", f"{ITEM}/tiles/WebMercatorQuad/99/0/0.png", 404, "json", "z"),
    ("item-tile-max", f"{ITEM}/{TILE}.png?tilesize=1024&buffer=64&padding=64", 200, "png", None),
    ("item-point-outside", f"{ITEM}/point/0,0", 404, "json", None),
    ("item-point-bidx-99", f"{ITEM}/point/2.33,48.85?bidx=99", 400, "json", "bidx"),
    ("item-preview-8192", f"{ITEM}/preview/8192x8192.png", 400, "json", "width"),
    ("item-preview-size-8192", f"{ITEM}/preview.png?width=8192&height=8192", 400, "json", "width"),
    ("item-preview-max-8192", f"{ITEM}/preview.png?max_size=8192", 400, "json", "max_size"),
    ("item-preview-one-side", f"{ITEM}/preview.png?width=2048", 200, "png", None),
    ("item-bbox-8192", f"{ITEM}/bbox/2.3,48.8,2.4,48.9/8192x8192.png", 400, "json", "width"),
    ("item-bbox-max-8192", f"{ITEM}/bbox/2.3,48.8,2.4,48.9.png?max_size=8192", 400, "json", "max_size"),
    ("item-bbox-one-side-sliver", f"{ITEM}/bbox/2.3,48.0,2.30001,48.9.png?width=2048", 400, "json", "width"),
    ("item-bbox-1e308", f"{ITEM}/bbox/-1e308,-1e308,1e308,1e308.png?coord_crs=EPSG:3857", 400, "json", "bbox"),
    ("item-bbox-inf", f"{ITEM}/bbox/-inf,-inf,inf,inf.png", 400, "json", "bbox"),
    ("item-bbox-dst-crs", f"{ITEM}/bbox/2.3,48.8,2.4,48.9.png?dst_crs=EPSG:9999999", 400, "json", "dst_crs"),
    ("item-bbox-rescale-nan", f"{ITEM}/bbox/2.3,48.8,2.4,48.9.png?rescale=0,nan", 400, "json", "rescale"),
    ("item-bbox-world-no-size", f"{ITEM}/bbox/-180,-90,180,90.png", 200, "png", None),
    ("item-bbox-world-3857", f"{ITEM}/bbox/{WORLD_3857}/2048x2048.png?coord_crs=EPSG:3857", 200, "png", None),
    ("item-bbox-elsewhere", f"{ITEM}/bbox/-5,41,-4,42/2048x2048.png", 200, "png", None),
    ("stats-bins-1e6", f"{ITEM}/statistics?histogram_bins=1000000", 400, "json", "histogram_bins"),
    ("stats-8192-bins-1e6", f"{ITEM}/statistics?max_size=8192&histogram_bins=1000000", 400, "json", None),
    ("stats-size-8192", f"{ITEM}/statistics?width=8192&height=8192", 400, "json", "width"),
    ("stats-edges", f"{ITEM}/statistics?histogram_bins={','.join(str(i) for i in range(1100))}", 400, "json",
     "histogram_bins"),
    ("stats-range-inf", f"{ITEM}/statistics?histogram_range=0,inf", 400, "json", "histogram_range"),
    ("stats-categories", f"{ITEM}/statistics?{'&'.join(f'c={i}' for i in range(300))}", 400, "json", "c"),
    ("stats-percentile", f"{ITEM}/statistics?p=101", 400, "json", "p"),
    ("stats-bins-1024", f"{ITEM}/statistics?histogram_bins=1024", 200, "json", None),
    ("item-unknown", "/tiles/items/couverture_cog/nope/info", 404, "json", None),
]

_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.\-]+/){2,}[\w.\-]+|/vsi[a-z0-9_]+/|s3://|file://")


@pytest.fixture(scope="module")
def site(territory):
    """The all-in-one app over the published territory (what ``ocsge serve`` runs)."""
    from catalog.publish import publish
    from ocsge.storage import LocalStorage
    from services.app import AppContext, create_app

    publish(LocalStorage(territory.root))
    return TestClient(create_app(AppContext(root=str(territory.root))), raise_server_exceptions=False)


def check_error_format(resp, fmt: str, names: str | None) -> str:  # type: ignore[no-untyped-def]
    """The error document of the service, its message (which names ``names`` when given)."""
    if fmt in ("wms", "wms111"):
        expected = "application/vnd.ogc.se_xml" if fmt == "wms111" else "text/xml"
        assert resp.headers["content-type"].startswith(expected), resp.headers["content-type"]
        root = ET.fromstring(resp.content)
        assert root.tag.endswith("ServiceExceptionReport"), resp.text
        exc = root[0]
        assert exc.attrib["code"] == "InvalidParameterValue", resp.text
        if names:
            assert exc.attrib.get("locator") == names, resp.text
        return exc.text or ""
    if fmt == "ows":
        root = ET.fromstring(resp.content)
        assert root.tag == "{http://www.opengis.net/ows/1.1}ExceptionReport", resp.text
        exc = root[0]
        assert exc.attrib["exceptionCode"] in ("InvalidParameterValue", "TileOutOfRange"), resp.text
        if names:
            assert exc.attrib.get("locator") == names, resp.text
        return "".join(exc.itertext())
    body = resp.json()
    assert "detail" in body, body
    message = body["detail"] if isinstance(body["detail"], str) else str(body["detail"])
    if names:
        assert names in message, message
    return message


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("url", "status", "fmt", "names"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_hostile_request(site, territory, url, status, fmt, names):
    started = time.monotonic()
    resp = site.get(url)
    elapsed = time.monotonic() - started
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert elapsed < 15, f"{elapsed:.1f} s"
    text = resp.content.decode("utf-8", "replace")
    assert str(territory.root) not in text and "Traceback" not in text
    if status >= 400:
        message = check_error_format(resp, fmt, names)
        assert not _ABSOLUTE_PATH.search(text), text[:500]
        assert message and len(text) < 5000, text[:500]  # the message, not an echo of the request
    elif fmt == "png":
        assert resp.headers["content-type"] == "image/png" and resp.content[:4] == b"\x89PNG"
    elif fmt == "html":
        assert resp.headers["content-type"].startswith("text/html")


def test_assets_answer_storage_keys(site, territory):
    """``…/assets`` lists keys relative to the storage root, never local paths or GDAL ``/vsi`` paths."""
    for url in (f"/tiles/{LAYER}/bbox/2.3,48.8,2.4,48.9/assets", f"/tiles/{LAYER}/point/2.33,48.85/assets",
                f"/tiles/{LAYER}/tiles/WebMercatorQuad/14/8298/5637/assets"):
        keys = site.get(url).json()
        assert keys == ["couverture/DS01/2021/couverture_DS01_2021.tif"], (url, keys)
    point = site.get(f"/tiles/{LAYER}/point/2.33,48.85").json()
    assert [a["name"] for a in point["assets"]] == ["couverture_DS01_2021.tif"]
    assert str(territory.root) not in site.get(f"{ITEM}/info").text


@pytest.mark.timeout(20)
def test_feature_bodies_are_bounded(site):
    ring = [[2.3 + i * 1e-7, 48.8] for i in range(60_000)] + [[2.4, 48.9], [2.3, 48.8]]
    big = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    resp = site.post(f"{ITEM}/feature.png", json=big)
    assert resp.status_code == 413 and str(limits.MAX_BODY_BYTES) in resp.json()["detail"]
    small = {"type": "Feature", "properties": {},
             "geometry": {"type": "Polygon", "coordinates": [[[2.33, 48.84], [2.35, 48.84], [2.35, 48.86],
                                                              [2.33, 48.84]]]}}
    assert site.post(f"{ITEM}/feature.png?max_size=256", json=small).status_code == 200
    resp = site.post(f"{ITEM}/feature.png?width=8192&height=8192", json=small)
    assert resp.status_code == 400 and "width" in resp.json()["detail"]


def test_wms_capabilities_advertise_the_size_limit(site):
    caps = site.get("/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetCapabilities")
    root = ET.fromstring(caps.content)
    ns = {"wms": "http://www.opengis.net/wms"}
    assert root.find("wms:Service/wms:MaxWidth", ns).text == str(limits.MAX_WMS_SIDE)
    assert root.find("wms:Service/wms:MaxHeight", ns).text == str(limits.MAX_WMS_SIDE)
    # the largest image the capabilities allow, with one layer, is within the pixel budget
    assert limits.MAX_WMS_SIDE ** 2 <= limits.MAX_WMS_PIXELS


def test_clipped_reads_give_the_same_pixels(site):
    """A WMS map read only where the data is (services.tiles.mosaic.pixel_window) has the pixels of the
    unclipped read: a map twice the data's size, and the data's own bbox, agree where they overlap."""
    import numpy as np
    import rasterio

    def read(bbox: str, size: int) -> np.ndarray:
        resp = site.get(wms(crs="EPSG:2154", bbox=bbox, size=(size, size)) + "&TRANSPARENT=TRUE")
        assert resp.status_code == 200, resp.text
        with rasterio.MemoryFile(resp.content) as mem, mem.open() as src:
            return src.read()

    inner = read(L93, 256)  # covered by data: read whole
    outer = read("647440,6857440,655120,6865120", 768)  # 3× wider, same pixel size: the data is 1/9 of it
    np.testing.assert_array_equal(outer[:, 256:512, 256:512], inner)
    assert (outer[3, :200, :200] == 0).all()


# --- the CRS envelopes behind every coordinate check -------------------------------------------------


def test_crs_envelopes():
    assert crs_envelope("EPSG:4326") == (-180, -90, 180, 90)
    assert crs_envelope("EPSG:3857") == pytest.approx((-20037508.34, -20037508.34, 20037508.34, 20037508.34))
    xmin, ymin, xmax, ymax = crs_envelope("EPSG:2154")
    assert -2.2e6 < xmin < -1.9e6 and 2.9e6 < xmax < 3.1e6 and 4.6e6 < ymin < 4.9e6 and 8.3e6 < ymax < 8.6e6
    x, y = quadrant_centre_l93("NW")
    assert check_point("p", x, y, "EPSG:2154") == (x, y)
    assert check_bbox("b", ["-5.5", "41", "10", "51.5"]) == (-5.5, 41.0, 10.0, 51.5)
    for bad in (["nan", 0, 1, 1], ["-inf", 0, 1, 1], [0, 0, "1e400", 1], [1, 0, 0, 1], [0, 0, 1], ["x", 0, 1, 1],
                [-181, 0, 1, 1]):
        with pytest.raises(InvalidParameter) as err:
            check_bbox("BBOX", bad)
        assert err.value.param == "BBOX"
    with pytest.raises(InvalidParameter):
        crs_envelope("EPSG:9999999", "coord_crs")
    with pytest.raises(InvalidParameter):
        check_point("p", 1e10, 0, "EPSG:3857")


# --- the render budget ----------------------------------------------------------------------------------


@pytest.fixture()
def budget_app(finder):
    from services.tiles.app import create_app

    app = create_app(finder, budget=RenderBudget(0.5, 2))
    return app, TestClient(app, raise_server_exceptions=False)


def cooperative_sleep(seconds: float, stopped: threading.Event):  # type: ignore[no-untyped-def]
    """A render that takes ``seconds`` and checks its deadline as the reader does before each asset."""

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            for _ in range(int(seconds / 0.02)):
                time.sleep(0.02)
                check_deadline()
        except RenderTimeout:
            stopped.set()
            raise
        return b""

    return slow


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("url", "method", "fmt"), [
    (f"/tiles/{LAYER}/{TILE}.png", "tile", "json"),
    (f"/wmts/1.0.0/{LAYER}/normal/PM/14/5637/8298.png", "tile", "ows"),
    (wmts(), "tile", "ows"),
    (wms(crs="EPSG:2154"), "map", "wms"),
])
def test_overrun_is_503_and_frees_its_worker(budget_app, url, method, fmt):
    app, client = budget_app
    stopped = threading.Event()
    setattr(app.state.renderer, method, cooperative_sleep(5, stopped))
    started = time.monotonic()
    resp = client.get(url)
    assert time.monotonic() - started < 3
    assert resp.status_code == 503
    assert resp.headers["Retry-After"]
    if fmt == "json":
        assert "budget" in resp.json()["detail"]
    else:
        root = ET.fromstring(resp.content)
        assert root.tag.endswith("ExceptionReport"), resp.text
        assert "budget" in resp.text
    assert stopped.wait(2), "the worker did not stop at its next deadline check"
    delattr(app.state.renderer, method)
    assert client.get(url).status_code == 200  # the pool has its workers back


@pytest.mark.timeout(20)
def test_titiler_routes_run_on_the_budget(budget_app, monkeypatch):
    from services.tiles.mosaic import CachedReader

    _, client = budget_app
    stopped = threading.Event()
    monkeypatch.setattr(CachedReader, "read", cooperative_sleep(5, stopped))
    resp = client.get(f"{ITEM}/preview.png")
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    assert "budget" in resp.json()["detail"]
    assert stopped.wait(2)


def test_a_request_queued_past_its_deadline_never_starts():
    budget = RenderBudget(0.2, 1)
    ran = threading.Event()

    async def scenario() -> list[object]:
        blocker = asyncio.ensure_future(budget.run(time.sleep, 0.6))  # holds the only worker, uninterruptible
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(budget.run(ran.set))
        return await asyncio.gather(blocker, queued, return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(r, RenderTimeout) for r in results)
    time.sleep(0.7)
    assert not ran.is_set()
