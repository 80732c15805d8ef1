"""The map services behind the all-in-one server, finding their data through the published catalogue:
pystac-client and the tiles agree on which départements exist, and every service answers on one port."""

from __future__ import annotations

import shutil

import httpx
import pytest
from svc_territory import LiveServer, build_territory, quadrant_centre_lonlat

from ocsge.nomenclature import COUVERTURE


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    from catalog.publish import publish
    from ocsge.storage import LocalStorage

    root = tmp_path_factory.mktemp("published") / "root"
    build_territory(root)
    publish(LocalStorage(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(published):
    from services.app import AppContext, create_app

    with LiveServer(create_app(AppContext(root=str(published)))) as live:
        yield live


def test_pystac_client_and_tiles_agree_on_departements(server):
    from pystac_client import Client

    client = Client.open(f"{server.url}/stac/")
    for kind, collection in (("COUVERTURE", "ocsge-couverture"), ("USAGE", "ocsge-usage"),
                             ("ARTIF", "ocsge-artificialisation-raster")):
        items = list(client.search(collections=[collection], max_items=500).items())
        stac_deps = {(i.properties["ocsge:departement"], i.properties["ocsge:campaign"]) for i in items}
        layers = httpx.get(f"{server.url}/tiles/layers").json()
        tile_deps = {(d, layer["campaign"]) for layer in layers if layer["kind"] == kind
                     for d in layer["departements"]}
        assert stac_deps == tile_deps, kind
        assert stac_deps  # the territory is there
    # the raster asset the mosaic reads is the STAC item's data asset
    item = next(client.search(collections=["ocsge-couverture"], max_items=1).items())
    assert item.assets["data"].href.endswith(".tif")


def test_every_service_on_one_port(server):
    from morecantile import tms

    t = tms.get("WebMercatorQuad").tile(*quadrant_centre_lonlat("NW"), 15)
    base = server.url
    tile = httpx.get(f"{base}/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=OCSGE.COUVERTURE.2021-2023"
                     f"&STYLE=normal&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX=15&TILEROW={t.y}&TILECOL={t.x}")
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    import rasterio

    with rasterio.MemoryFile(tile.content) as mem, mem.open() as src:
        arr = src.read()
    colours = {tuple(int(v) for v in arr[:3, r, c]) for r in range(0, 256, 16) for c in range(0, 256, 16)
               if arr[3, r, c]}
    assert COUVERTURE["CS1.1.1.1"].rgb in colours
    assert httpx.get(f"{base}/wms?SERVICE=WMS&REQUEST=GetCapabilities").status_code == 200
    assert httpx.get(f"{base}/vector/datasets").json()[0]["departement"] == "S01"
    assert httpx.get(f"{base}/downloads/S01").json()["archives"][0]["checksum"].startswith("sha256:")
    assert httpx.get(f"{base}/stac/").status_code == 200
    assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
    assert "<title>OCS GE" in httpx.get(f"{base}/").text
    # the catalogue knows checksums: the downloads listing uses them instead of re-reading the file
    listing = httpx.get(f"{base}/downloads/S01").json()["archives"][0]
    assert listing["stac_item"] == "archives_DS01_2021"
