"""Real OGC clients against a real server on 127.0.0.1: GDAL's WMTS and WMS drivers (through rasterio)
and OWSLib read our capabilities and fetch images whose pixels carry the official colours at known
places of the test territory."""

from __future__ import annotations

import io

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from svc_territory import QUADRANTS, USAGE_QUADRANTS, quadrant_centre_l93, quadrant_centre_lonlat

from ocsge.nomenclature import COUVERTURE, USAGE

LAYER = "OCSGE.COUVERTURE.2021-2023"


def rgb(code: str) -> tuple[int, int, int]:
    table = COUVERTURE if code.startswith("CS") else USAGE
    return table[code].rgb


def png_pixel(data: bytes, col: int, row: int) -> tuple[int, ...]:
    with rasterio.MemoryFile(data) as mem, mem.open() as src:
        arr = src.read()
    return tuple(int(v) for v in arr[:, row, col])


def test_gdal_wmts_driver_reads_a_window(tiles_server, tmp_path):
    """GDAL's WMTS driver opens GetCapabilities, and a window read from it (gdal_translate -srcwin's
    equivalent through rasterio) has the official colours at the quadrant centres."""
    url = f"WMTS:{tiles_server.url}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities,layer={LAYER},tilematrixset=PM"
    to_3857 = Transformer.from_crs(4326, 3857, always_xy=True)
    with rasterio.Env(GDAL_HTTP_TIMEOUT=30), rasterio.open(url) as ds:
        assert ds.crs.to_epsg() == 3857
        assert ds.count == 4
        for q in ("NW", "SE"):
            x, y = to_3857.transform(*quadrant_centre_lonlat(q))
            row, col = ds.index(x, y)
            window = rasterio.windows.Window(col - 8, row - 8, 16, 16)
            block = ds.read(window=window)
            # write the window like gdal_translate -srcwin would, then check the copy
            out = tmp_path / f"wmts_{q}.tif"
            profile = {"driver": "GTiff", "width": 16, "height": 16, "count": 4, "dtype": "uint8",
                       "crs": ds.crs, "transform": ds.window_transform(window)}
            with rasterio.open(out, "w", **profile) as dst:
                dst.write(block)
            with rasterio.open(out) as copy:
                pixel = copy.read()[:, 8, 8]
            assert tuple(pixel[:3]) == rgb(QUADRANTS[2021][q]), q
            assert pixel[3] == 255


def test_gdal_wmts_driver_lambert93(tiles_server):
    url = f"WMTS:{tiles_server.url}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities,layer={LAYER},tilematrixset=LAMB93"
    with rasterio.open(url) as ds:
        assert ds.crs.to_epsg() == 2154
        x, y = quadrant_centre_l93("SW")
        row, col = ds.index(x, y)
        pixel = ds.read(window=rasterio.windows.Window(col, row, 1, 1))[:, 0, 0]
        assert tuple(pixel[:3]) == rgb(QUADRANTS[2021]["SW"])


def test_gdal_wms_driver_capabilities_and_getmap(tiles_server):
    """GDAL's WMS driver lists our layers from GetCapabilities and reads a map through one of them."""
    caps = f"WMS:{tiles_server.url}/wms?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetCapabilities"
    with rasterio.open(caps) as ds:
        subdatasets = ds.subdatasets
    names = [s for s in subdatasets if f"LAYERS={LAYER}" in s]
    assert names, subdatasets
    # constrain to a small bbox in EPSG:2154 around the territory, 256 px wide
    x0, y0 = quadrant_centre_l93("NW")
    x1, y1 = quadrant_centre_l93("SE")
    url = (f"WMS:{tiles_server.url}/wms?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&LAYERS={LAYER}&SRS=EPSG:2154"
           f"&BBOX={x0 - 640},{y1 - 640},{x1 + 640},{y0 + 640}&FORMAT=image/png")
    with rasterio.open(url) as ds:
        assert ds.crs.to_epsg() == 2154
        for q in ("NW", "NE", "SW", "SE"):
            row, col = ds.index(*quadrant_centre_l93(q))
            pixel = ds.read(window=rasterio.windows.Window(col, row, 1, 1), out_shape=(ds.count, 1, 1))[:, 0, 0]
            assert tuple(pixel[:3]) == rgb(QUADRANTS[2021][q]), q


@pytest.mark.parametrize("version", ["1.3.0", "1.1.1"])
def test_owslib_wms_getmap_colours(tiles_server, version):
    from owslib.wms import WebMapService

    wms = WebMapService(f"{tiles_server.url}/wms", version=version, timeout=30)
    assert LAYER in wms.contents
    assert "OCSGE.USAGE.2021-2023" in wms.contents
    layer = wms[LAYER]
    assert "EPSG:2154" in layer.crsOptions
    assert layer.styles.get("normal")
    # a map of the four quadrants in Lambert-93, then in EPSG:4326 (axis order per version)
    x0, y0 = quadrant_centre_l93("NW")
    x1, y1 = quadrant_centre_l93("SE")
    half = 640.0
    bbox = (x0 - half, y1 - half, x1 + half, y0 + half)
    img = wms.getmap(layers=[LAYER], styles=["normal"], srs="EPSG:2154", bbox=bbox, size=(256, 256),
                     format="image/png", transparent=True)
    data = img.read()
    for q, (col, row) in {"NW": (64, 64), "NE": (192, 64), "SW": (64, 192), "SE": (192, 192)}.items():
        assert png_pixel(data, col, row)[:3] == rgb(QUADRANTS[2021][q]), q

    lon0, lat0 = quadrant_centre_lonlat("NW")
    lon1, lat1 = quadrant_centre_lonlat("SE")
    d = 0.004
    geo_bbox = (lon0 - d, lat1 - d, lon1 + d, lat0 + d)  # OWSLib puts it in lat,lon order for 1.3.0 itself
    img = wms.getmap(layers=["OCSGE.USAGE.2021-2023"], srs="EPSG:4326", bbox=geo_bbox, size=(200, 200),
                     format="image/png", transparent=True)
    data = img.read()
    with rasterio.MemoryFile(data) as mem, mem.open() as src:
        arr = src.read()
    # the NW corner of the usage map is US5, the SE US1.2 (positions from the bbox)
    fx = (lon0 - (lon0 - d)) / ((lon1 + d) - (lon0 - d))
    fy = ((lat0 + d) - lat0) / ((lat0 + d) - (lat1 - d))
    col, row = int(fx * 200), int(fy * 200)
    assert tuple(int(v) for v in arr[:3, row, col]) == rgb(USAGE_QUADRANTS["NW"])


def test_owslib_wms_feature_info(tiles_server):
    from owslib.wms import WebMapService

    wms = WebMapService(f"{tiles_server.url}/wms", version="1.3.0", timeout=30)
    x0, y0 = quadrant_centre_l93("NW")
    x1, y1 = quadrant_centre_l93("SE")
    bbox = (x0 - 640, y1 - 640, x1 + 640, y0 + 640)
    resp = wms.getfeatureinfo(layers=[LAYER], srs="EPSG:2154", bbox=bbox, size=(256, 256), format="image/png",
                              query_layers=[LAYER], info_format="application/json", xy=(64, 64))
    import json

    feature = json.load(io.BytesIO(resp.read()))["features"][0]["properties"]
    assert feature["code"] == "CS1.1.1.1"
    assert feature["label"] == "Zones bâties"


def test_owslib_wmts_gettile(tiles_server):
    from morecantile import tms
    from owslib.wmts import WebMapTileService

    wmts = WebMapTileService(f"{tiles_server.url}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities", timeout=30)
    assert LAYER in wmts.contents
    assert {"PM", "LAMB93", "WorldCRS84Quad"} <= set(wmts.tilematrixsets)
    lon, lat = quadrant_centre_lonlat("NE")
    t = tms.get("WebMercatorQuad").tile(lon, lat, 15)
    tile = wmts.gettile(layer=LAYER, tilematrixset="PM", tilematrix=str(t.z), row=t.y, column=t.x,
                        format="image/png", style="normal")
    arr = png_pixel(tile.read(), 128, 128)
    assert np.array(arr).shape == (4,)


def test_gdal_wmts_driver_geoplateforme_pm_6_16(tiles_server):
    """The connection a Géoplateforme user has for OCS GE (``tilematrixset=PM_6_16``) opens here: GDAL reads
    the PM_6_16 set (tile matrices 6–16, as data.geopf.fr advertises) and its limits from our capabilities,
    and the full resolution is matrix 16 of Web Mercator."""
    url = f"WMTS:{tiles_server.url}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities,layer={LAYER},tilematrixset=PM_6_16"
    to_3857 = Transformer.from_crs(4326, 3857, always_xy=True)
    with rasterio.Env(GDAL_HTTP_TIMEOUT=30), rasterio.open(url) as ds:
        assert ds.crs.to_epsg() == 3857
        assert ds.res[0] == pytest.approx(2.388657133911758)  # PM matrix 16, the last of PM_6_16
        for q in ("NW", "NE", "SW", "SE"):
            row, col = ds.index(*to_3857.transform(*quadrant_centre_lonlat(q)))
            pixel = ds.read(window=rasterio.windows.Window(col, row, 1, 1))[:, 0, 0]
            assert tuple(pixel[:3]) == rgb(QUADRANTS[2021][q]), q
            assert pixel[3] == 255
        # an overview is a coarser tile matrix of the same set, no coarser than matrix 6
        assert ds.overviews(1) and max(ds.overviews(1)) <= 2 ** 10


def test_owslib_wmts_geoplateforme_ids(tiles_server):
    from morecantile import tms
    from owslib.wmts import WebMapTileService

    wmts = WebMapTileService(f"{tiles_server.url}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities", timeout=30)
    assert list(wmts.tilematrixsets["PM_6_16"].tilematrix) == [str(z) for z in range(6, 17)]
    link = wmts[LAYER].tilematrixsetlinks["PM_6_16"]
    assert sorted(int(z) for z in link.tilematrixlimits) == list(range(6, 17))
    t = tms.get("WebMercatorQuad").tile(*quadrant_centre_lonlat("SE"), 16)
    limits = link.tilematrixlimits["16"]
    assert limits.mintilerow <= t.y <= limits.maxtilerow and limits.mintilecol <= t.x <= limits.maxtilecol
    tile = wmts.gettile(layer=LAYER, tilematrixset="PM_6_16", tilematrix="16", row=t.y, column=t.x,
                        format="image/png", style="normal")
    data = tile.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with rasterio.MemoryFile(data) as mem, mem.open() as src:
        colours = {tuple(int(v) for v in c[:3]) for c in src.read().reshape(src.count, -1).T}
    assert rgb(QUADRANTS[2021]["SE"]) in colours


@pytest.mark.parametrize("fmt", ["image/geotiff", "image/tiff", "image/jpeg"])
def test_owslib_wms_getmap_geoplateforme_formats(tiles_server, fmt):
    """The formats the Géoplateforme's WMS-R offers for OCS GE besides PNG, through OWSLib; GeoTIFF is
    georeferenced on the requested bbox."""
    from owslib.wms import WebMapService

    wms = WebMapService(f"{tiles_server.url}/wms", version="1.3.0", timeout=30)
    assert fmt in wms.getOperationByName("GetMap").formatOptions
    x0, y0 = quadrant_centre_l93("NW")
    x1, y1 = quadrant_centre_l93("SE")
    bbox = (x0 - 640, y1 - 640, x1 + 640, y0 + 640)
    data = wms.getmap(layers=[LAYER], styles=["normal"], srs="EPSG:2154", bbox=bbox, size=(256, 256),
                      format=fmt).read()
    with rasterio.MemoryFile(data) as mem, mem.open() as src:
        if fmt != "image/jpeg":
            assert src.crs.to_epsg() == 2154
            assert src.bounds == pytest.approx(bbox)
        arr = src.read()
    for q, (col, row) in {"NW": (64, 64), "SE": (192, 192)}.items():
        got = np.array([int(v) for v in arr[:3, row, col]])
        assert np.abs(got - np.array(rgb(QUADRANTS[2021][q]))).max() <= (12 if fmt == "image/jpeg" else 0), q
