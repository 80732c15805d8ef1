"""Drop-in for Géoplateforme clients (../shared/reference/geoplateforme-rok4.md): a GetTile URL saved from
``data.geopf.fr/wmts`` for an OCS GE layer works here with only the host changed; the Géoplateforme's tile
matrix set ids are accepted or refused by one documented rule; capabilities advertise ``PM_6_16`` the way
the Géoplateforme does; legends under IGN's file names; WMS GetMap in JPEG and GeoTIFF; GetFeatureInfo on
every class layer; the model's confidence as a layer like the others; empty tiles alike on every protocol."""

from __future__ import annotations

import io
import itertools
import json
import shutil
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from morecantile import Tile
from morecantile import tms as morecantile_tms
from svc_territory import (
    DEP,
    ORIGIN,
    PIXEL,
    QUADRANTS,
    SIZE,
    USAGE_QUADRANTS,
    quadrant_centre_l93,
    quadrant_centre_lonlat,
)

from ocsge.nomenclature import COUVERTURE, USAGE

LAYER = "OCSGE.COUVERTURE.2021-2023"
WEB_MERCATOR = morecantile_tms.get("WebMercatorQuad")
NS = {"wmts": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1",
      "xlink": "http://www.w3.org/1999/xlink", "wms": "http://www.opengis.net/wms"}

# The Géoplateforme's PM (rok4/tilematrixsets PM.json, quoted in the reference): cellSize and
# scaleDenominator of a few tile matrices, and its origin.
GEOPF_PM = {0: (156543.033928041, 559082264.028718), 6: (2445.98490512564, 8735660.37544871),
            12: (38.2185141425881, 136494.693366386), 16: (2.38865713391176, 8530.91833539914),
            21: (0.0746455354347424, 266.591197981223)}
GEOPF_PM_ORIGIN = (-20037508.3427892, 20037508.3427892)
# OCS GE layers are advertised with PM_6_16: matrices 6–16 (reference §6)
GEOPF_OCSGE_MATRICES = [str(z) for z in range(6, 17)]


@pytest.fixture(scope="module")
def client(tiles_app):
    return TestClient(tiles_app, raise_server_exceptions=False)


def geopf_gettile(layer: str, tms: str, z: int, row: int, col: int, host: str = "") -> str:
    """A GetTile URL spelled as the Géoplateforme's clients save it (parameter order and values of
    data.geopf.fr/wmts), with the host replaced."""
    return (f"{host}/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={layer}&STYLE=normal"
            f"&TILEMATRIXSET={tms}&TILEMATRIX={z}&TILEROW={row}&TILECOL={col}&FORMAT=image/png")


def rgba_at(png: bytes, col: int, row: int) -> tuple[int, ...]:
    with rasterio.MemoryFile(png) as mem, mem.open() as src:
        arr = src.read()
    return tuple(int(v) for v in arr[:, row, col])


def pixel_in_tile(lon: float, lat: float, z: int) -> tuple[Tile, int, int]:
    t = WEB_MERCATOR.tile(lon, lat, z)
    x, y = WEB_MERCATOR.xy(lon, lat)
    b = WEB_MERCATOR.xy_bounds(t)
    return t, int((x - b.left) / (b.right - b.left) * 256), int((b.top - y) / (b.top - b.bottom) * 256)


# --- a saved Géoplateforme URL, host changed -------------------------------------------------------


@pytest.mark.parametrize("q", ["NW", "SE"])
def test_saved_geoplateforme_gettile_url_works_with_only_the_host_changed(client, q):
    saved = geopf_gettile(LAYER, "PM_6_16", 16, 0, 0, host="https://data.geopf.fr")
    t, col, row = pixel_in_tile(*quadrant_centre_lonlat(q), 16)
    saved = saved.replace("TILEROW=0", f"TILEROW={t.y}").replace("TILECOL=0", f"TILECOL={t.x}")
    parts = urlsplit(saved)
    assert parts.netloc == "data.geopf.fr"
    resp = client.get(f"{parts.path}?{parts.query}")  # the same path and query on our host
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    assert rgba_at(resp.content, col, row) == (*COUVERTURE[QUADRANTS[2021][q]].rgb, 255)
    # the same tile as under our PM id, byte for byte
    assert resp.content == client.get(geopf_gettile(LAYER, "PM", 16, t.y, t.x)).content


def test_geoportail_sdk_spelling_and_restful_template(client):
    """Géoportail SDKs write the keys in mixed case and the format URL-encoded; the RESTful template takes
    the Géoplateforme ids too, and GetFeatureInfo as well."""
    t, col, row = pixel_in_tile(*quadrant_centre_lonlat("SW"), 15)
    sdk = (f"/wmts?layer={LAYER}&style=normal&tilematrixset=PM_6_16&Service=WMTS&Request=GetTile&Version=1.0.0"
           f"&Format=image%2Fpng&TileMatrix=15&TileCol={t.x}&TileRow={t.y}")
    resp = client.get(sdk)
    assert resp.status_code == 200, resp.text
    assert rgba_at(resp.content, col, row)[:3] == COUVERTURE[QUADRANTS[2021]["SW"]].rgb
    rest = client.get(f"/wmts/1.0.0/{LAYER}/normal/PM_6_16/15/{t.y}/{t.x}.png")
    assert rest.status_code == 200 and rest.content == resp.content
    info = client.get(f"/wmts?SERVICE=WMTS&REQUEST=GetFeatureInfo&VERSION=1.0.0&LAYER={LAYER}&STYLE=normal"
                      f"&TILEMATRIXSET=PM_6_16&TILEMATRIX=15&TILEROW={t.y}&TILECOL={t.x}&FORMAT=image/png"
                      f"&INFOFORMAT=application/json&I={col}&J={row}")
    assert info.status_code == 200, info.text
    assert info.json()["features"][0]["properties"]["code"] == QUADRANTS[2021]["SW"]
    rest_info = client.get(f"/wmts/1.0.0/{LAYER}/normal/PM_6_16/15/{t.y}/{t.x}/{row}/{col}.json")
    assert rest_info.json()["features"][0]["properties"]["code"] == QUADRANTS[2021]["SW"]


# --- which tile matrix set ids we accept ----------------------------------------------------------


def exception_of(resp) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    root = ET.fromstring(resp.content)
    exc = root.find("ows:Exception", NS)
    assert exc is not None, resp.text
    return exc.get("exceptionCode") or "", exc.findtext("ows:ExceptionText", "", NS)


@pytest.mark.parametrize(("tms", "z", "expected"), [
    ("PM", 16, 200), ("PM_6_16", 6, 200), ("PM_6_16", 16, 200), ("PM_0_19", 16, 200), ("PM_16_16", 16, 200),
    ("WebMercatorQuad", 16, 200),
    ("PM_6_16", 17, "TileOutOfRange"),  # outside the alias: as on the Géoplateforme
    ("PM_6_16", 5, "TileOutOfRange"),
    ("PM_0_19", 19, "TileOutOfRange"),  # accepted id, but we serve PM 5–18 (the intersection)
    ("PM_0_19", 4, "TileOutOfRange"),
    ("PM_3_24", 16, "InvalidParameterValue"),  # beyond the Géoplateforme's PM (0–21)
    ("PM_16_6", 16, "InvalidParameterValue"),
    ("2154_5cm_6_22", 16, "InvalidParameterValue"),  # Géoplateforme Lambert-93 grids are not ours
    ("2154_10cm", 16, "InvalidParameterValue"),
    ("LAMB93_10cm", 16, "InvalidParameterValue"),
    ("LAMB93_50cm_6_18", 16, "InvalidParameterValue"),
    ("pm_6_16", 16, "InvalidParameterValue"),  # ids are case-sensitive, as in ROK4
])
def test_tile_matrix_set_ids(client, tms, z, expected):
    t = WEB_MERCATOR.tile(*quadrant_centre_lonlat("NE"), z)
    resp = client.get(geopf_gettile(LAYER, tms, z, t.y, t.x))
    if expected == 200:
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "image/png"
        return
    assert 400 <= resp.status_code < 500
    code, text = exception_of(resp)
    assert code == expected, text
    if tms.startswith(("2154", "LAMB93_")):
        assert "Lambert-93" in text and "LAMB93" in text and "PM_6_16" in text
    elif expected == "InvalidParameterValue" and tms.startswith("PM_"):
        assert "0 <= min <= max <= 21" in text


def test_our_pm_is_the_geoplateforme_pm():
    """Every tile matrix of the Géoplateforme's PM is ours: same origin, same cell size, same scale."""
    from services.tiles import tms as registry

    pm = registry.get("PM")
    for z, (cell, scale) in GEOPF_PM.items():
        m = pm.matrix(z)
        assert m.cellSize == pytest.approx(cell, rel=1e-12)
        assert m.scaleDenominator == pytest.approx(scale, rel=1e-12)
        assert m.pointOfOrigin == pytest.approx(GEOPF_PM_ORIGIN, abs=1e-6)
        assert (m.tileWidth, m.tileHeight, m.matrixWidth, m.matrixHeight) == (256, 256, 2**z, 2**z)
    alias = registry.get("PM_6_16")
    assert [m.id for m in alias.tileMatrices] == GEOPF_OCSGE_MATRICES
    assert all(m == pm.matrix(int(m.id)) for m in alias.tileMatrices)


def test_capabilities_advertise_pm_6_16_like_the_geoplateforme(client):
    caps = ET.fromstring(client.get("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities").content)
    sets = {s.findtext("ows:Identifier", "", NS): s for s in caps.iterfind("wmts:Contents/wmts:TileMatrixSet", NS)}
    assert {"PM", "PM_6_16", "LAMB93", "WorldCRS84Quad"} <= set(sets)
    matrices = sets["PM_6_16"].findall("wmts:TileMatrix", NS)
    assert [m.findtext("ows:Identifier", "", NS) for m in matrices] == GEOPF_OCSGE_MATRICES
    for m in matrices:
        z = int(m.findtext("ows:Identifier", "", NS))
        if z in GEOPF_PM:
            assert float(m.findtext("wmts:ScaleDenominator", "", NS)) == pytest.approx(GEOPF_PM[z][1], rel=1e-12)
        corner = [float(v) for v in m.findtext("wmts:TopLeftCorner", "", NS).split()]
        assert corner == pytest.approx(GEOPF_PM_ORIGIN, abs=1e-6)
        assert int(m.findtext("wmts:MatrixWidth", "", NS)) == 2**z
    layers = caps.findall("wmts:Contents/wmts:Layer", NS)
    assert layers
    for layer in layers:
        links = {link.findtext("wmts:TileMatrixSet", "", NS): link
                 for link in layer.findall("wmts:TileMatrixSetLink", NS)}
        assert "PM_6_16" in links, layer.findtext("ows:Identifier", "", NS)
        limits = links["PM_6_16"].findall("wmts:TileMatrixSetLimits/wmts:TileMatrixLimits", NS)
        assert [lim.findtext("wmts:TileMatrix", "", NS) for lim in limits] == GEOPF_OCSGE_MATRICES
        # the limits of PM_6_16 are those of PM at the same matrices
        pm = {lim.findtext("wmts:TileMatrix", "", NS): [e.text for e in lim][1:]
              for lim in links["PM"].findall("wmts:TileMatrixSetLimits/wmts:TileMatrixLimits", NS)}
        assert all(pm[lim.findtext("wmts:TileMatrix", "", NS)] == [e.text for e in lim][1:] for lim in limits)
        styles = layer.findall("wmts:Style", NS)
        assert [s.findtext("ows:Identifier", "", NS) for s in styles] == ["normal"]
        assert next(f.text for f in layer.findall("wmts:Format", NS)) == "image/png"  # as the Géoplateforme


# --- empty tiles alike on every protocol ------------------------------------------------------------


def test_empty_tiles_are_transparent_pngs_on_every_raster_protocol(client):
    """A tile inside the limits without data: 200 and a transparent 256×256 PNG on XYZ, WMTS KVP (PM and
    PM_6_16) and WMTS RESTful alike (services.tiles.render)."""
    t = WEB_MERCATOR.tile(*quadrant_centre_lonlat("NW"), 14)
    x, y = t.x + 3, t.y + 3  # well off the 2.56 km territory
    urls = [f"/tiles/{LAYER}/tiles/WebMercatorQuad/14/{x}/{y}.png", f"/tiles/{LAYER}/tiles/PM/14/{x}/{y}.png",
            geopf_gettile(LAYER, "PM", 14, y, x), geopf_gettile(LAYER, "PM_6_16", 14, y, x),
            f"/wmts/1.0.0/{LAYER}/normal/PM_6_16/14/{y}/{x}.png"]
    bodies = set()
    for url in urls:
        resp = client.get(url)
        assert resp.status_code == 200, (url, resp.status_code)
        assert resp.headers["content-type"] == "image/png", url
        with rasterio.MemoryFile(resp.content) as mem, mem.open() as src:
            arr = src.read()
        assert arr.shape == (4, 256, 256) and not arr[3].any(), url
        bodies.add(resp.content)
    assert len(bodies) == 1


# --- legends under IGN's names ----------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "OCSGE.COUVERTURE-legend.png", "ocsge/OCSGE_USAGE.png", "OCSGE.CONSTRUCTIONS-legend.png",  # IGN's names
    "OCSGE-ARTIFICIALISATION-legend.png",
    "OCSGE.USAGE-legend.png", "OCSGE.PREDICTION.CONFIANCE-legend.png", "OCSGE.PREDICTION-legend.png",  # ours
    "OCSGE.DIFFERENCE-legend.png",
])
def test_legends_under_ign_file_names(client, name):
    resp = client.get(f"/tiles/legendes/{name}")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    with rasterio.MemoryFile(resp.content) as mem, mem.open() as src:
        assert src.width > 100 and src.height > 40


def test_couverture_legend_under_ign_name_is_ours(client):
    ign = client.get("/tiles/legendes/OCSGE.COUVERTURE-legend.png").content
    with rasterio.MemoryFile(ign) as mem, mem.open() as src:
        colours = {tuple(int(v) for v in c) for c in src.read()[:3].reshape(3, -1).T}
    assert COUVERTURE["CS1.1.1.1"].rgb in colours and COUVERTURE["CS2.2.1"].rgb in colours
    assert client.get("/tiles/legendes/OCSGE.NOPE-legend.png").status_code == 404
    assert client.get("/tiles/legendes/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_capabilities_link_both_legends(client):
    wmts = ET.fromstring(client.get("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities").content)
    layer = next(la for la in wmts.iterfind("wmts:Contents/wmts:Layer", NS)
                 if la.findtext("ows:Identifier", "", NS) == LAYER)
    hrefs = [u.get(f"{{{NS['xlink']}}}href") for u in layer.iterfind("wmts:Style/wmts:LegendURL", NS)]
    assert hrefs == ["http://testserver/tiles/OCSGE.COUVERTURE.2021-2023/legend.png",
                     "http://testserver/tiles/legendes/OCSGE.COUVERTURE-legend.png"]
    wms = ET.fromstring(client.get("/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetCapabilities").content)
    usage = next(la for la in wms.iter(f"{{{NS['wms']}}}Layer")
                 if la.findtext("wms:Name", "", NS) == "OCSGE.USAGE.2021-2023")
    hrefs = [r.get(f"{{{NS['xlink']}}}href") for r in usage.iterfind("wms:Style/wms:LegendURL/wms:OnlineResource", NS)]
    assert hrefs[1] == "http://testserver/tiles/legendes/ocsge/OCSGE_USAGE.png"
    for href in hrefs:
        assert client.get(href.removeprefix("http://testserver")).headers["content-type"] == "image/png"


# --- WMS formats and GetFeatureInfo ------------------------------------------------------------------


def getmap(fmt: str, layer: str = LAYER, transparent: bool = False) -> str:
    x0, y0 = ORIGIN
    side = SIZE * PIXEL
    return (f"/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS={layer}&STYLES=normal&CRS=EPSG:2154"
            f"&BBOX={x0},{y0 - side},{x0 + side},{y0}&WIDTH=256&HEIGHT=256&FORMAT={fmt}"
            f"&TRANSPARENT={'TRUE' if transparent else 'FALSE'}")


def test_wms_capabilities_list_the_geoplateforme_formats(client):
    wms = ET.fromstring(client.get("/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetCapabilities").content)
    formats = [f.text for f in wms.iterfind("wms:Capability/wms:Request/wms:GetMap/wms:Format", NS)]
    assert {"image/png", "image/jpeg", "image/tiff", "image/geotiff"} <= set(formats)


@pytest.mark.parametrize("fmt", ["image/tiff", "image/geotiff"])
@pytest.mark.parametrize("transparent", [False, True])
def test_wms_getmap_geotiff_is_georeferenced(client, fmt, transparent):
    resp = client.get(getmap(fmt, transparent=transparent))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == fmt
    with rasterio.MemoryFile(resp.content) as mem, mem.open() as src:
        assert src.driver == "GTiff"
        assert src.crs.to_epsg() == 2154
        assert src.count == (4 if transparent else 3)
        assert src.transform.a == pytest.approx(SIZE * PIXEL / 256)
        for q in ("NW", "NE", "SW", "SE"):
            row, col = src.index(*quadrant_centre_l93(q))
            assert tuple(int(v) for v in src.read(window=((row, row + 1), (col, col + 1)))[:3, 0, 0]) == \
                COUVERTURE[QUADRANTS[2021][q]].rgb, q
        if transparent:
            assert src.read(4)[0, 0] == 0  # the nodata rim of the territory is transparent


def test_wms_getmap_jpeg(client):
    resp = client.get(getmap("image/jpeg"))
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
    assert resp.content[:2] == b"\xff\xd8"
    with rasterio.MemoryFile(resp.content) as mem, mem.open() as src:
        arr = src.read()
    got = np.array([int(v) for v in arr[:, 64, 64]])
    assert np.abs(got - np.array(COUVERTURE[QUADRANTS[2021]["NW"]].rgb)).max() <= 12  # JPEG is lossy


@pytest.mark.parametrize(("layer", "expected"), [
    ("OCSGE.COUVERTURE.2021-2023", QUADRANTS[2021]["NW"]),
    ("OCSGE.COUVERTURE.2024-2026", QUADRANTS[2024]["NW"]),
    ("OCSGE.USAGE.2021-2023", USAGE_QUADRANTS["NW"]),
    ("OCSGE.ARTIF.2021-2023", "Artificialisé"),
    ("OCSGE.DIFFERENCE.2021-2023_2024-2026", "Changement de couverture"),
])
def test_wms_feature_info_on_every_class_layer(client, layer, expected):
    caps = ET.fromstring(client.get("/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetCapabilities").content)
    entry = next(la for la in caps.iter(f"{{{NS['wms']}}}Layer") if la.findtext("wms:Name", "", NS) == layer)
    assert entry.get("queryable") == "1"
    url = getmap("image/png", layer).replace("GetMap", "GetFeatureInfo") + \
        f"&QUERY_LAYERS={layer}&INFO_FORMAT=application/json&I=64&J=64"
    resp = client.get(url)
    assert resp.status_code == 200, resp.text
    props = resp.json()["features"][0]["properties"]
    assert expected in (props["code"], props["label"]), props
    assert props["departement"] == DEP


# --- the model's confidence, a layer like the others --------------------------------------------------

CONFIDENCE = {"NW": 240, "NE": 128, "SW": 30, "SE": 200}  # p × 255
VIRIDIS = {"NW": "#FDE725", "NE": "#1F9E89", "SW": "#482878", "SE": "#6DCD59"}  # their 10 % classes
CONF_LAYER = "OCSGE.PREDICTION.CONFIANCE.2024-2026"


def write_confidence_cog(path, values: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    """A confidence block as the batch writes it: uint8, nodata 0, no colour table, averaged overviews."""
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    data = np.zeros((SIZE, SIZE), dtype="uint8")
    h = SIZE // 2
    data[:h, :h], data[:h, h:], data[h:, :h], data[h:, h:] = values["NW"], values["NE"], values["SW"], values["SE"]
    data[:4, :] = 0  # a nodata rim, as in the class COGs of the territory
    profile = {"driver": "GTiff", "dtype": "uint8", "count": 1, "height": SIZE, "width": SIZE, "crs": "EPSG:2154",
               "transform": from_origin(ORIGIN[0], ORIGIN[1], PIXEL, PIXEL), "nodata": 0}
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data, 1)
        with mem.open() as src:
            cog_translate(src, str(path), cog_profiles.get("deflate"), overview_resampling="average",
                          overview_level=2, quiet=True, in_memory=True)


@pytest.fixture(scope="module")
def conf_root(territory, tmp_path_factory):
    """The service territory plus a confidence block of 2024 (a copy: the shared territory stays as is)."""
    from ocsge.products import product_key
    from ocsge.storage import LocalStorage

    root = tmp_path_factory.mktemp("confidence") / "root"
    shutil.copytree(territory.root, root)
    with LocalStorage(root).writer(product_key("confidence", DEP, 2024, block="r000c000")) as tmp:
        write_confidence_cog(tmp, CONFIDENCE)
    return root


@pytest.fixture(scope="module")
def conf_client(conf_root):
    from services.assets import StorageAssetFinder
    from services.tiles.app import create_app

    return TestClient(create_app(StorageAssetFinder(conf_root, ttl_s=3600)), raise_server_exceptions=False)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def test_confidence_layer_is_listed_with_a_sequential_legend(conf_client):
    layers = {la["id"]: la for la in conf_client.get("/tiles/layers").json()}
    assert CONF_LAYER in layers and layers[CONF_LAYER]["departements"] == [DEP]
    legend = conf_client.get(f"/tiles/{CONF_LAYER}/legend.json").json()
    classes = legend["classes"]
    assert [c["code"] for c in classes][:2] == ["0–10 %", "10–20 %"] and len(classes) == 10
    assert classes[0]["value"] == 1 and classes[-1]["last"] == 255  # every value 1…255 in one class
    assert all(a["last"] + 1 == b["value"] for a, b in itertools.pairwise(classes))
    # sequential: luminance grows with confidence (viridis)
    lum = [0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b in (hex_rgb(c["colour"]) for c in classes)]
    assert lum == sorted(lum)
    assert conf_client.get(f"/tiles/{CONF_LAYER}/legend.png").headers["content-type"] == "image/png"
    wms_legend = conf_client.get(f"/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetLegendGraphic&LAYER={CONF_LAYER}"
                                 "&FORMAT=image/png")
    assert wms_legend.status_code == 200


def test_confidence_layer_on_wmts_xyz_and_wms(conf_client):
    caps = conf_client.get("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities").text
    assert f"<ows:Identifier>{CONF_LAYER}</ows:Identifier>" in caps
    assert CONF_LAYER in conf_client.get("/wms?SERVICE=WMS&REQUEST=GetCapabilities").text
    for q in ("NW", "NE", "SW", "SE"):
        t, col, row = pixel_in_tile(*quadrant_centre_lonlat(q), 16)
        for url in (geopf_gettile(CONF_LAYER, "PM_6_16", 16, t.y, t.x),
                    f"/tiles/{CONF_LAYER}/tiles/WebMercatorQuad/16/{t.x}/{t.y}.png"):
            resp = conf_client.get(url)
            assert resp.status_code == 200, resp.text
            assert rgba_at(resp.content, col, row) == (*hex_rgb(VIRIDIS[q]), 255), (q, url)
    x0, y0 = ORIGIN
    side = SIZE * PIXEL
    resp = conf_client.get(f"/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS={CONF_LAYER}&STYLES=&CRS=EPSG:2154"
                           f"&BBOX={x0},{y0 - side},{x0 + side},{y0}&WIDTH=256&HEIGHT=256&FORMAT=image/png"
                           "&TRANSPARENT=TRUE")
    assert rgba_at(resp.content, 64, 64) == (*hex_rgb(VIRIDIS["NW"]), 255)
    assert rgba_at(resp.content, 192, 192) == (*hex_rgb(VIRIDIS["SE"]), 255)
    assert rgba_at(resp.content, 10, 0)[3] == 0  # nodata rim: transparent


def test_confidence_layer_from_the_published_catalogue(conf_root):
    """Published (the confidence blocks are catalogued in ``ocsge-confidence``), the layer is served by
    ``ocsge serve``'s app, which finds assets through the catalogue."""
    from catalog.publish import publish
    from ocsge.storage import LocalStorage
    from services.app import AppContext, create_app

    publish(LocalStorage(conf_root))
    client = TestClient(create_app(AppContext(root=str(conf_root))), raise_server_exceptions=False)
    collection = client.get("/stac/collections/ocsge-confidence/items").json()
    assert [f["properties"].get("ocsge:departement") for f in collection["features"]] == [DEP]
    assert CONF_LAYER in {la["id"] for la in client.get("/tiles/layers").json()}
    t, col, row = pixel_in_tile(*quadrant_centre_lonlat("SE"), 16)
    resp = client.get(geopf_gettile(CONF_LAYER, "PM_6_16", 16, t.y, t.x))
    assert rgba_at(resp.content, col, row) == (*hex_rgb(VIRIDIS["SE"]), 255)


def test_confidence_feature_info_says_the_class_and_value(conf_client):
    x0, y0 = ORIGIN
    side = SIZE * PIXEL
    resp = conf_client.get(
        f"/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetFeatureInfo&LAYERS={CONF_LAYER}&QUERY_LAYERS={CONF_LAYER}"
        f"&STYLES=&CRS=EPSG:2154&BBOX={x0},{y0 - side},{x0 + side},{y0}&WIDTH=256&HEIGHT=256&FORMAT=image/png"
        "&INFO_FORMAT=application/json&I=192&J=64")
    props = json.load(io.BytesIO(resp.content))["features"][0]["properties"]
    assert props["value"] == CONFIDENCE["NE"] and props["code"] == "50–60 %"
    assert props["colour"] == VIRIDIS["NE"]


def test_usage_colours_are_official(client):
    """(sanity) the usage layer keeps its official colours next to the new layers."""
    t, col, row = pixel_in_tile(*quadrant_centre_lonlat("NE"), 16)
    resp = client.get(geopf_gettile("OCSGE.USAGE.2021-2023", "PM_6_16", 16, t.y, t.x))
    assert rgba_at(resp.content, col, row)[:3] == USAGE[USAGE_QUADRANTS["NE"]].rgb
