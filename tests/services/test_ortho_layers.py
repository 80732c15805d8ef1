"""Orthophotos as served layers (services/tiles/ortho.py): IGN's real BD ORTHO sample (RGB and IRC, 0.2 m,
50 m × 50 m, ../shared/data/ign-ortho-lidar-770550_6277600) published as the 2021 photos of a département,
and a second campaign's photo beside it, read back through XYZ, WMTS (KVP and RESTful, GDAL's WMTS driver)
and WMS (OWSLib): each pixel drawn is a pixel of the photo at that place, RGB and IRC differ, both
campaigns are their own layers, and the capabilities list them."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from morecantile import tms as morecantile_tms
from pyproj import Transformer
from rasterio.shutil import copy as rio_copy
from svc_territory import LiveServer

from ocsge.products import product_key
from services.tiles.layers import UnknownLayerError, all_layers, parse_layer

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "ign-ortho-lidar-770550_6277600"
DEP = "34"  # where the sample lies (Lambert-93 770 550, 6 277 600)
RGB_2021 = "ORTHOIMAGERY.ORTHOPHOTOS.2021-2023"
IRC_2021 = "ORTHOIMAGERY.ORTHOPHOTOS.IRC.2021-2023"
RGB_2024 = "ORTHOIMAGERY.ORTHOPHOTOS.2024-2026"
CENTRE_L93 = (770575.0, 6277575.0)
Z = 20  # ≈ 0.11 m at this latitude: finer than the photo, so every drawn pixel is one photo pixel

pytestmark = pytest.mark.skipif(not SAMPLE.exists(), reason="IGN ortho sample not available")


def _cog(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    rio_copy(src, dst, driver="COG", COMPRESS="DEFLATE", OVERVIEWS="NONE")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ortho") / "root"
    _cog(SAMPLE / "test_data_rgb.tif", root / product_key("imagery_rgb", DEP, 2021))
    _cog(SAMPLE / "test_data_irc.tif", root / product_key("imagery_irc", DEP, 2021))
    # the next campaign's photo of the same place: the sample with its colours inverted (a changed landscape)
    later = root / product_key("imagery_rgb", DEP, 2024)
    tmp = root / "later.tif"
    with rasterio.open(SAMPLE / "test_data_rgb.tif") as src:
        profile = src.profile | {"nodata": None}
        data = 254 - np.minimum(src.read(), 254)
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
    _cog(tmp, later)
    tmp.unlink()
    return root


@pytest.fixture(scope="module")
def finder(root: Path):
    from services.assets import StorageAssetFinder

    return StorageAssetFinder(root, ttl_s=3600)


@pytest.fixture(scope="module")
def client(finder) -> TestClient:
    from services.tiles.app import create_app

    return TestClient(create_app(finder))


def _png(data: bytes) -> np.ndarray:
    with rasterio.MemoryFile(data) as mem, mem.open() as src:
        return src.read()


def _photo(name: str) -> tuple[np.ndarray, rasterio.Affine, float | None]:
    with rasterio.open(SAMPLE / name) as src:
        return src.read(), src.transform, src.nodata


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int, int]:
    """(x, y, col, row): the Web Mercator tile holding a point and the point's pixel in it."""
    wm = morecantile_tms.get("WebMercatorQuad")
    t = wm.tile(lon, lat, z)
    left, bottom, right, top = wm.xy_bounds(t)
    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(lon, lat)
    return t.x, t.y, int((x - left) / (right - left) * 256), int((top - y) / (top - bottom) * 256)


def _neighbourhood(photo: np.ndarray, transform: rasterio.Affine, x: float, y: float) -> set[tuple[int, ...]]:
    """The colours of the photo's 3×3 pixels around a Lambert-93 point (a resampled pixel is one of them)."""
    col, row = (int(v) for v in ~transform * (x, y))
    return {tuple(int(v) for v in photo[:, r, c]) for r in range(row - 1, row + 2) for c in range(col - 1, col + 2)}


def test_layer_ids_follow_the_geoplateforme_and_our_campaigns() -> None:
    rgb, irc = parse_layer(RGB_2021), parse_layer(IRC_2021)
    assert (rgb.kind, rgb.campaign, rgb.product) == ("ORTHO", "2021-2023", "imagery_rgb")
    assert (irc.kind, irc.campaign, irc.product) == ("ORTHO_IRC", "2021-2023", "imagery_irc")
    assert rgb.maxzoom >= 19  # a 0.2 m photo is worth zooming into
    ids = {layer.id for layer in all_layers()}
    assert {RGB_2021, IRC_2021, RGB_2024, "ORTHOIMAGERY.ORTHOPHOTOS.IRC.2017-2020"} <= ids
    for bad in (
        "ORTHOIMAGERY.ORTHOPHOTOS.2019-2022",
        "ORTHOIMAGERY.ORTHOPHOTOS",
        "OCSGE.ORTHO.2021-2023",
        "ORTHOIMAGERY.ORTHOPHOTOS.IRC.2021-2023_2024-2026",
    ):
        with pytest.raises(UnknownLayerError):
            parse_layer(bad)


def test_layers_list_and_capabilities_name_the_photos(client: TestClient) -> None:
    listed = {layer["id"]: layer for layer in client.get("/tiles/layers").json()}
    assert {RGB_2021, IRC_2021, RGB_2024} <= set(listed)
    assert "ORTHOIMAGERY.ORTHOPHOTOS.IRC.2024-2026" not in listed  # no IRC photo of 2024 was published
    assert listed[RGB_2021]["departements"] == [DEP]
    wmts = client.get("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities").text
    wms = client.get("/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetCapabilities").text
    for layer in (RGB_2021, IRC_2021, RGB_2024):
        assert f"<ows:Identifier>{layer}</ows:Identifier>" in wmts
        assert f"<Name>{layer}</Name>" in wms
    legend = client.get(f"/tiles/{IRC_2021}/legend.json").json()
    assert [c["code"] for c in legend["classes"]] == ["PIR", "R", "V"]
    assert client.get("/tiles/legendes/ORTHOIMAGERY.ORTHOPHOTOS.IRC-legend.png").status_code == 200


def test_xyz_and_wmts_tiles_draw_the_photo_pixels(client: TestClient) -> None:
    lon, lat = Transformer.from_crs(2154, 4326, always_xy=True).transform(*CENTRE_L93)
    x, y, col, row = _tile_of(lon, lat, Z)
    drawn = {}
    for layer, name in ((RGB_2021, "test_data_rgb.tif"), (IRC_2021, "test_data_irc.tif")):
        photo, transform, _ = _photo(name)
        xyz = client.get(f"/tiles/{layer}/tiles/WebMercatorQuad/{Z}/{x}/{y}.png")
        kvp = client.get(
            f"/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={layer}&STYLE=normal"
            f"&TILEMATRIXSET=PM&TILEMATRIX={Z}&TILEROW={y}&TILECOL={x}&FORMAT=image/png"
        )
        rest = client.get(f"/wmts/1.0.0/{layer}/normal/PM/{Z}/{y}/{x}.png")
        assert xyz.status_code == kvp.status_code == rest.status_code == 200
        assert xyz.content == kvp.content == rest.content  # one renderer behind the three protocols
        tile = _png(xyz.content)
        assert tile[3, row, col] == 255
        pixel = tuple(int(v) for v in tile[:3, row, col])
        assert pixel in _neighbourhood(photo, transform, *CENTRE_L93), (layer, pixel)
        drawn[layer] = pixel
    assert drawn[RGB_2021] != drawn[IRC_2021]
    # the photo is 50 m wide: a tile 1 km away at the same zoom is transparent, not an error
    far_lon, far_lat = Transformer.from_crs(2154, 4326, always_xy=True).transform(771600.0, 6277575.0)
    fx, fy, _, _ = _tile_of(far_lon, far_lat, Z)
    empty = client.get(f"/tiles/{RGB_2021}/tiles/WebMercatorQuad/{Z}/{fx}/{fy}.png")
    assert empty.status_code == 200 and not _png(empty.content)[3].any()


def test_each_campaign_is_its_own_photo(client: TestClient) -> None:
    lon, lat = Transformer.from_crs(2154, 4326, always_xy=True).transform(*CENTRE_L93)
    x, y, _, _ = _tile_of(lon, lat, Z)
    before = _png(client.get(f"/tiles/{RGB_2021}/tiles/WebMercatorQuad/{Z}/{x}/{y}.png").content)
    after = _png(client.get(f"/tiles/{RGB_2024}/tiles/WebMercatorQuad/{Z}/{x}/{y}.png").content)
    both = (before[3] == 255) & (after[3] == 255)
    assert both.sum() > 1000
    # the 2024 photo is the 2021 one inverted: 254 - v, pixel for pixel
    assert np.array_equal(after[:3][:, both].astype(int), 254 - np.minimum(before[:3][:, both], 254).astype(int))


def test_bad_ortho_requests_are_ogc_exceptions(client: TestClient) -> None:
    r = client.get(
        "/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=ORTHOIMAGERY.ORTHOPHOTOS.IRC.2024-2026"
        "&STYLE=normal&TILEMATRIXSET=PM&TILEMATRIX=20&TILEROW=0&TILECOL=0&FORMAT=image/png"
    )
    assert r.status_code == 400 and "InvalidParameterValue" in r.text
    r = client.get(
        f"/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={RGB_2021}&STYLE=normal"
        "&TILEMATRIXSET=PM&TILEMATRIX=22&TILEROW=0&TILECOL=0&FORMAT=image/png"
    )
    assert r.status_code in (400, 404) and "TileOutOfRange" in r.text


@pytest.fixture(scope="module")
def server(finder):
    from services.tiles.app import create_app

    with LiveServer(create_app(finder)) as live:
        yield live


def test_gdal_wmts_driver_reads_the_photo(server) -> None:
    """GDAL's WMTS driver opens our capabilities for the RGB layer in Lambert-93 and reads the photo back."""
    photo, transform, _ = _photo("test_data_rgb.tif")
    url = f"WMTS:{server.url}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities,layer={RGB_2021},tilematrixset=PM"
    to_3857 = Transformer.from_crs(2154, 3857, always_xy=True)
    with rasterio.Env(GDAL_HTTP_TIMEOUT=30), rasterio.open(url) as ds:
        assert ds.crs.to_epsg() == 3857 and ds.count == 4
        matched = 0
        for dx, dy in ((-10, -10), (0, 0), (12, 8)):
            px, py = CENTRE_L93[0] + dx, CENTRE_L93[1] + dy
            r, c = ds.index(*to_3857.transform(px, py))
            pixel = ds.read(window=rasterio.windows.Window(c, r, 1, 1))[:, 0, 0]
            assert pixel[3] == 255
            # GDAL reads the finest level it needs (about 0.2 m): the colour is the photo's near that point
            near = np.array(sorted(_neighbourhood(photo, transform, px, py)))
            assert np.abs(near - pixel[:3]).sum(axis=1).min() <= 90, (pixel, near)
            matched += 1
        assert matched == 3


def test_owslib_wms_getmap_of_the_irc_photo(server) -> None:
    """OWSLib's GetMap of the IRC layer in Lambert-93 at the photo's own resolution gives the photo back."""
    from owslib.wms import WebMapService

    wms = WebMapService(f"{server.url}/wms", version="1.3.0", timeout=30)
    assert IRC_2021 in wms.contents
    photo, transform, nodata = _photo("test_data_irc.tif")
    left, top = transform.c + 0.2, transform.f - 0.2  # the photo's grid, one pixel in
    bbox = (left, top - 40 * 0.2, left + 40 * 0.2, top)
    img = wms.getmap(
        layers=[IRC_2021],
        styles=["normal"],
        srs="EPSG:2154",
        bbox=bbox,
        size=(40, 40),
        format="image/png",
        transparent=True,
    )
    drawn = _png(io.BytesIO(img.read()).getvalue())
    expected = photo[:, 1:41, 1:41]
    valid = ~np.all(expected == nodata, axis=0)
    assert drawn[3][valid].min() == 255
    assert np.abs(drawn[:3][:, valid].astype(int) - expected[:, valid].astype(int)).max() <= 1


def test_published_catalogue_has_the_photos(root: Path, tmp_path: Path) -> None:
    """``ocsge publish`` catalogues the photos (collections ocsge-orthophotos[-irc]), and the catalogue's finder
    serves them as the same layers."""
    from catalog.publish import publish
    from ocsge.storage import LocalStorage
    from services.catalog_finder import CatalogAssetFinder
    from services.tiles.app import create_app

    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    result = publish(LocalStorage(copy))
    assert result.per_collection.get("ocsge-orthophotos") == 2
    assert result.per_collection.get("ocsge-orthophotos-irc") == 1
    from catalog.search.backends import open_backend

    finder = CatalogAssetFinder(open_backend(root=str(copy)), LocalStorage(copy))
    listed = {layer["id"] for layer in TestClient(create_app(finder)).get("/tiles/layers").json()}
    assert {RGB_2021, IRC_2021, RGB_2024} <= listed


def test_feature_info_gives_the_band_values(client: TestClient) -> None:
    """GetFeatureInfo on a photo answers the bands' raw values there (as the Géoplateforme does for its image
    pyramids), not a class."""
    photo, transform, _ = _photo("test_data_irc.tif")
    lon, lat = Transformer.from_crs(2154, 4326, always_xy=True).transform(*CENTRE_L93)
    d = 1e-6
    r = client.get(
        f"/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetFeatureInfo&LAYERS={IRC_2021}&QUERY_LAYERS={IRC_2021}"
        f"&STYLES=&CRS=CRS:84&BBOX={lon - d},{lat - d},{lon + d},{lat + d}&WIDTH=3&HEIGHT=3&I=1&J=1"
        "&FORMAT=image/png&INFO_FORMAT=application/json"
    )
    assert r.status_code == 200, r.text
    props = r.json()["features"][0]["properties"]
    assert props["code"] == "PIR-R-V"
    values = tuple(int(part.split()[1]) for part in props["label"].split(", "))
    assert values in _neighbourhood(photo, transform, *CENTRE_L93)
    assert props["departement"] == DEP and props["millesime"] == "2021"


@pytest.mark.browser
def test_viewer_swipes_between_the_two_millesimes_photos(root: Path, tmp_path: Path) -> None:
    """The web viewer (headless Chromium) on the published photos: 'Orthophotographie' with a comparison draws
    both campaigns' photos (their WMTS tiles are fetched) and the swipe's vertical divider, dragged, moves the
    cut between the two maps."""
    import subprocess

    from headless import Browser

    from catalog.publish import publish
    from ocsge.storage import LocalStorage
    from services.app import AppContext, create_app
    from services.viewer.app import built

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("headless Chromium not installed (scripts/setup.sh installs it)")
    if not built():
        subprocess.run(["bash", str(Path(__file__).resolve().parents[2] / "services/viewer/build.sh")], check=True)
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    publish(LocalStorage(copy))
    with LiveServer(create_app(AppContext(root=str(copy)))) as live:
        url = f"{live.url}/?dep={DEP}&kind=ORTHO&campaign=2021-2023&compare=2024-2026"
        with Browser(chromium, tmp_path / "profile", url) as browser:
            assert browser.wait_for("document.body && document.body.dataset.ready === '1'", 60)
            fetched = (
                "performance.getEntriesByType('resource').map((e) => decodeURIComponent(e.name))"
                ".filter((n) => n.includes('REQUEST=GetTile')).join(' ')"
            )
            assert browser.wait_for(
                f"(({fetched}).includes('LAYER={RGB_2021}') && ({fetched}).includes('LAYER={RGB_2024}'))", 60
            ), browser.evaluate(fetched)
            # ?compare= turns the swipe on after the first layout: its divider shows then
            assert browser.wait_for("!document.getElementById('swipe-divider').classList.contains('hidden')", 30)
            box = browser.evaluate(
                "(() => { const r = document.getElementById('maps').getBoundingClientRect();"
                " return [r.left, r.top, r.width, r.height]; })()"
            )
            start = (box[0] + box[2] / 2, box[1] + box[3] / 2)  # the divider starts in the middle
            end = (box[0] + box[2] / 4, start[1])
            browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=start[0], y=start[1])
            browser.call(
                "Input.dispatchMouseEvent",
                type="mousePressed",
                x=start[0],
                y=start[1],
                button="left",
                clickCount=1,
                buttons=1,
            )
            for k in range(1, 6):
                x = start[0] + (end[0] - start[0]) * k / 5
                browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=start[1], button="left", buttons=1)
            browser.call(
                "Input.dispatchMouseEvent", type="mouseReleased", x=end[0], y=end[1], button="left", clickCount=1
            )
            assert abs(float(browser.evaluate("document.getElementById('slider').value")) - 25) < 2
            clip = browser.evaluate("document.getElementById('map2').style.clipPath")
            assert clip.startswith("inset(0px 0px 0px 2"), clip
