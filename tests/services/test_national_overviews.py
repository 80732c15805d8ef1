"""The national path of the raster layers (catalog/raster_overviews.py, services/tiles/overviews.py) on three
synthetic départements side by side: a low-zoom tile across a border is read from the national slabs, holds
both départements and equals the per-département mosaic up to resampling; republishing one département
rebuilds only its slabs, and until then the service falls back to the per-département mosaic; the
capabilities list one national layer; a ``departement`` filter keeps per-département access."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from morecantile import tms as morecantile_tms
from PIL import Image
from pyproj import Transformer

from catalog.raster_overviews import build_national, manifest_key, read_manifest
from ocsge.nomenclature import Kind, palette, raster_value
from ocsge.products import product_key
from ocsge.storage import LocalStorage

WMQ = morecantile_tms.get("WebMercatorQuad")
LAYER = "OCSGE.COUVERTURE.2021-2023"
PIXEL = 50.0
SIDE = 600  # 30 km
X0, Y0 = 640_000.0, 6_880_000.0  # north-west corner of S01 (Lambert-93, near Paris)
CODES = {"S01": "CS1.1.1.1", "S02": "CS2.2.1", "S03": "CS1.2.2"}
TO_LL = Transformer.from_crs(2154, 4326, always_xy=True)


def write_departement(root: Path, dep: str, code: str, stripe: str = "CS2.1.1.1") -> None:
    """A 30 km square COG, west to east by département, of ``code`` with a ``stripe`` every 5 km (so that
    resampling has edges to move), official palette, nearest overviews."""
    import rasterio
    from rasterio.transform import from_origin

    i = sorted(CODES).index(dep)
    data = np.full((SIDE, SIDE), raster_value(Kind.COUVERTURE, code), dtype="uint8")
    data[:, ::100] = raster_value(Kind.COUVERTURE, stripe)
    path = root / product_key("couverture_cog", dep, 2021)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.tif")
    profile = {
        "driver": "COG",
        "dtype": "uint8",
        "count": 1,
        "width": SIDE,
        "height": SIDE,
        "crs": "EPSG:2154",
        "transform": from_origin(X0 + i * SIDE * PIXEL, Y0, PIXEL, PIXEL),
        "nodata": 0,
        "blocksize": 256,
        "overview_resampling": "NEAREST",
        "compress": "DEFLATE",
    }
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data, 1)
        dst.write_colormap(1, palette(Kind.COUVERTURE))
    tmp.replace(path)


def border_lonlat(west: str) -> tuple[float, float]:
    i = sorted(CODES).index(west)
    return TO_LL.transform(X0 + (i + 1) * SIDE * PIXEL, Y0 - SIDE * PIXEL / 2)


def colour(code: str) -> tuple[int, int, int]:
    return palette(Kind.COUVERTURE)[raster_value(Kind.COUVERTURE, code)][:3]


def rgba(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGBA"))


def has_colour(img: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    return bool(((img[..., :3] == rgb).all(-1) & (img[..., 3] > 0)).any())


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for dep, code in CODES.items():
        write_departement(root, dep, code)
    build_national(LocalStorage(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def app(root: Path, national: bool = True) -> TestClient:
    from services.assets import StorageAssetFinder
    from services.tiles.app import create_app

    application = create_app(StorageAssetFinder(str(root), ttl_s=0))
    application.state.renderer.overviews.enabled = national
    return TestClient(application)


def tile_url(z: int, lon: float, lat: float, **params: str) -> str:
    t = WMQ.tile(lon, lat, z)
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/tiles/{LAYER}/tiles/WebMercatorQuad/{z}/{t.x}/{t.y}.png" + (f"?{query}" if query else "")


def test_low_zoom_tile_across_a_border_comes_from_the_national_slabs(scene: Path) -> None:
    national, mosaic = app(scene), app(scene, national=False)
    lon, lat = border_lonlat("S01")
    for z in (7, 8, 9, 10, 11, 12):
        url = tile_url(z, lon, lat)
        info = national.app.state.renderer.resolve(LAYER)
        t = WMQ.tile(lon, lat, z)
        b = WMQ.xy_bounds(t)
        assert national.app.state.renderer.overviews.for_read(info, tuple(b), "EPSG:3857", 256), z
        a, b_ = rgba(national.get(url).content), rgba(mosaic.get(url).content)
        assert has_colour(a, colour("CS1.1.1.1")) and has_colour(a, colour("CS2.2.1")), z  # both départements
        same = (a == b_).all(-1).mean()
        assert same >= 0.97, (z, same)  # the per-département mosaic at that zoom, up to resampling
    # finer zooms never take the national path
    t = WMQ.tile(lon, lat, 13)
    b = WMQ.xy_bounds(t)
    assert national.app.state.renderer.overviews.for_read(info, tuple(b), "EPSG:3857", 256) is None


def test_wms_and_wmts_read_the_national_path_at_low_zoom(scene: Path) -> None:
    national, mosaic = app(scene), app(scene, national=False)
    lon, lat = border_lonlat("S02")
    t = WMQ.tile(lon, lat, 8)
    b = WMQ.xy_bounds(t)
    wms = (
        f"/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS={LAYER}&STYLES=&CRS=EPSG:3857"
        f"&BBOX={b.left},{b.bottom},{b.right},{b.top}&WIDTH=256&HEIGHT=256&FORMAT=image/png&TRANSPARENT=TRUE"
    )
    wmts = (
        f"/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={LAYER}&STYLE=normal&FORMAT=image/png"
        f"&TILEMATRIXSET=PM_6_16&TILEMATRIX=8&TILEROW={t.y}&TILECOL={t.x}"
    )
    for url in (wms, wmts):
        a, m = rgba(national.get(url).content), rgba(mosaic.get(url).content)
        assert has_colour(a, colour("CS2.2.1")) and has_colour(a, colour("CS1.2.2")), url
        assert (a == m).all(-1).mean() >= 0.97, url


def test_republishing_one_departement_rebuilds_only_its_slabs(scene: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the service looks at a manifest again every CHECK_EVERY_S; here at every read, so that the rebuilt
    # manifest is seen however fast the rebuild was
    monkeypatch.setattr("services.tiles.overviews.CHECK_EVERY_S", 0.0)
    storage = LocalStorage(scene)
    key = manifest_key("couverture_cog", "2021-2023")
    before = read_manifest(storage, key)
    lon, lat = TO_LL.transform(X0 + 2.5 * SIDE * PIXEL, Y0 - SIDE * PIXEL / 2)  # the middle of S03
    client = app(scene)
    assert has_colour(rgba(client.get(tile_url(8, lon, lat)).content), colour("CS1.2.2"))
    write_departement(scene, "S03", "CS1.1.2.1")  # S03 republished with another class
    # until the national path is rebuilt, it is stale: the service reads the per-département COGs
    info = client.app.state.renderer.resolve(LAYER)
    assert client.app.state.renderer.overviews.slabs_for(info) is None
    assert has_colour(rgba(client.get(tile_url(8, lon, lat)).content), colour("CS1.1.2.1"))
    results = build_national(storage, ["S03"])
    after = read_manifest(storage, key)
    rebuilt = {name for name, slab in after["slabs"].items() if before["slabs"].get(name, {}).get("key") != slab["key"]}
    s03_slabs = {
        name for name, slab in after["slabs"].items() if product_key("couverture_cog", "S03", 2021) in slab["sources"]
    }
    assert rebuilt == s03_slabs and rebuilt  # only the slabs under S03
    assert sum(r.slabs_rebuilt for r in results) == len(rebuilt)  # what `ocsge overviews` reports
    assert {r.product for r in results} == {"couverture_cog"}
    for name in set(before["slabs"]) - s03_slabs:
        assert after["slabs"][name]["key"] == before["slabs"][name]["key"]
        assert (scene / after["slabs"][name]["key"]).exists()
    for name in s03_slabs & set(before["slabs"]):  # the replaced slabs are gone once the manifest moved on
        assert not (scene / before["slabs"][name]["key"]).exists()
    info = client.app.state.renderer.resolve(LAYER)
    assert client.app.state.renderer.overviews.slabs_for(info)
    img = rgba(client.get(tile_url(8, lon, lat)).content)
    assert has_colour(img, colour("CS1.1.2.1")) and not has_colour(img, colour("CS1.2.2"))


def test_capabilities_list_one_national_layer_and_the_departement_filter_works(scene: Path) -> None:
    client = app(scene)
    caps = client.get("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities").text
    assert caps.count(f"<ows:Identifier>{LAYER}</ows:Identifier>") == 1
    layers = {layer["id"]: layer for layer in client.get("/tiles/layers").json()}
    assert layers[LAYER]["departements"] == sorted(CODES)
    assert layers[LAYER]["national_maxzoom"] == 12
    lon, lat = border_lonlat("S01")
    only = rgba(client.get(tile_url(8, lon, lat, departement="S01")).content)
    assert has_colour(only, colour("CS1.1.1.1")) and not has_colour(only, colour("CS2.2.1"))
    assert client.get(tile_url(8, lon, lat, departement="XX9")).status_code == 400
    t = WMQ.tile(lon, lat, 8)
    wmts = client.get(
        f"/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={LAYER}&STYLE=normal"
        f"&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX=8&TILEROW={t.y}&TILECOL={t.x}&DEPARTEMENT=S02"
    )
    img = rgba(wmts.content)
    assert has_colour(img, colour("CS2.2.1")) and not has_colour(img, colour("CS1.1.1.1"))
    bad = client.get(
        f"/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={LAYER}&STYLE=normal"
        f"&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX=8&TILEROW={t.y}&TILECOL={t.x}&DEPARTEMENT=99"
    )
    assert bad.status_code == 400 and "ExceptionReport" in bad.text


def test_a_rebuild_with_nothing_new_rewrites_nothing(scene: Path) -> None:
    """A rerun (the demo and publish run it every time) leaves every overview file as it was."""
    before = {p: p.stat().st_mtime_ns for p in (scene / "overviews").rglob("*") if p.is_file()}
    results = build_national(LocalStorage(scene))
    after = {p: p.stat().st_mtime_ns for p in (scene / "overviews").rglob("*") if p.is_file()}
    assert results and after == before
    assert all(r.slabs_rebuilt == 0 for r in results)  # reported as such: none redrawn
