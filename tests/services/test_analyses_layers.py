"""The map analyses as WMTS/WMS/XYZ class layers (``OCSGE.TACHE_URBAINE.{campaign}``,
``OCSGE.RENATURATION.{campaign}``): on the hand-made analyses scene (tests/support/analyses_scene.py), the
class COGs that ``ocsge analyse`` writes are catalogued, listed among the layers, and a WMTS GetTile draws
the tâche urbaine, a priority renaturation cell and an ordinary cell in their classes' colours. The
analyses' PMTiles go through the vector tile service with the stats service's style."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ocsge import rasters
from ocsge.products import product_key

CAMPAIGN = "2024-2026"
ZOOM = 16


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    from catalog.publish import publish
    from inference_batch.analyses.rasters import run_analyses_rasters
    from inference_batch.analyses.renaturation import run_renaturation
    from inference_batch.analyses.tiles import run_analyses_tiles
    from inference_batch.analyses.urban_footprint import run_footprint
    from ocsge.storage import LocalStorage
    from support.analyses_scene import DEP, write_scene

    root = tmp_path_factory.mktemp("analyses-layers") / "root"
    store = LocalStorage(root)
    write_scene(store)
    run_footprint(store, DEP, [2024])
    run_renaturation(store, DEP, [2024])
    keys = run_analyses_rasters(store, DEP, [2024])
    run_analyses_tiles(store, DEP, 2024)
    publish(store)
    return root, keys


@pytest.fixture(scope="module")
def client(scene: tuple[Path, dict[str, str]]) -> TestClient:
    from services.app import AppContext, create_app

    return TestClient(create_app(AppContext(root=str(scene[0]))), raise_server_exceptions=False)


def _pixel(client: TestClient, layer: str, lon: float, lat: float) -> tuple[int, int, int, int]:
    """The RGBA a WMTS GetTile (PM, KVP) draws at a point."""
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    tile = tms.tile(lon, lat, ZOOM)
    b = tms.xy_bounds(tile)
    x, y = tms.xy(lon, lat)
    i = int((x - b.left) / (b.right - b.left) * 256)
    j = int((b.top - y) / (b.top - b.bottom) * 256)
    resp = client.get("/wmts", params={
        "SERVICE": "WMTS", "REQUEST": "GetTile", "VERSION": "1.0.0", "LAYER": layer, "STYLE": "normal",
        "FORMAT": "image/png", "TILEMATRIXSET": "PM", "TILEMATRIX": str(ZOOM), "TILEROW": str(tile.y),
        "TILECOL": str(tile.x)})
    assert resp.status_code == 200, resp.text[:500]
    assert resp.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(resp.content)).convert("RGBA").getpixel((i, j))


def _lonlat(geom) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    import geopandas as gpd

    p = gpd.GeoSeries([geom.representative_point()], crs=2154).to_crs(4326).iloc[0]
    return p.x, p.y


def _rgba(encoding: str, code: str) -> tuple[int, int, int, int]:
    return next(c.rgba for c in rasters.ENCODINGS[encoding] if c.code == code)


def test_class_cogs_written_and_catalogued(scene: tuple[Path, dict[str, str]]) -> None:
    import json

    import rasterio

    root, keys = scene
    assert keys == {"tache_urbaine_cog_2024": product_key("tache_urbaine_cog", "77", 2024),
                    "renaturation_cog_2024": product_key("renaturation_cog", "77", 2024)}
    with rasterio.open(root / keys["renaturation_cog_2024"]) as src:
        assert src.crs.to_epsg() == 2154 and src.res == (10.0, 10.0) and src.nodata == 0
        assert src.colormap(1)[6] == _rgba("renaturation", "prioritaire")
        assert src.tags(1)["CLASS_6"] == "Secteur prioritaire de renaturation"
    for coll in ("ocsge-tache-urbaine-raster", "ocsge-renaturation-raster"):
        items = list((root / "stac" / coll / "items").glob("*.json"))
        assert len(items) == 1, coll
        assert json.loads(items[0].read_text())["assets"]["data"]["type"].startswith("image/tiff")


def test_layers_listed_with_their_legends(client: TestClient) -> None:
    layers = {layer["id"]: layer for layer in client.get("/tiles/layers").json()}
    for name in ("TACHE_URBAINE", "RENATURATION"):
        layer = layers[f"OCSGE.{name}.{CAMPAIGN}"]
        assert layer["departements"] == ["77"]
    legend = client.get(f"/tiles/OCSGE.TACHE_URBAINE.{CAMPAIGN}/legend.json").json()
    assert [(c["label"], c["colour"].upper()) for c in legend["classes"]] == [("Tâche urbaine", "#7A0177")]
    legend = client.get(f"/tiles/OCSGE.RENATURATION.{CAMPAIGN}/legend.json").json()
    assert len(legend["classes"]) == 6
    caps = client.get("/wmts", params={"SERVICE": "WMTS", "REQUEST": "GetCapabilities"}).text
    assert f"<ows:Identifier>OCSGE.RENATURATION.{CAMPAIGN}</ows:Identifier>" in caps
    wms = client.get("/wms", params={"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": "1.3.0"}).text
    assert f"<Name>OCSGE.TACHE_URBAINE.{CAMPAIGN}</Name>" in wms


def test_wmts_tiles_in_the_classes_colours(client: TestClient, scene: tuple[Path, dict[str, str]]) -> None:
    from inference_batch.products.artifacts import read_vector
    from ocsge.storage import LocalStorage
    from support.analyses_scene import box

    store = LocalStorage(scene[0])
    # the bâti strip (y 850–1000 m of the square) is inside the tâche urbaine; the forest at y 150 m is not
    tache = f"OCSGE.TACHE_URBAINE.{CAMPAIGN}"
    assert _pixel(client, tache, *_lonlat(box(400, 920, 410, 930))) == _rgba("tache_urbaine", "tache urbaine")
    assert _pixel(client, tache, *_lonlat(box(400, 140, 410, 150)))[3] == 0
    cells = read_vector(store, product_key("renaturation", "77", 2024)).to_crs(2154)
    priority = cells[cells["prioritaire"].astype(bool)]  # cells are burnt whole, beyond the scene's square too
    ordinary = cells[~cells["prioritaire"].astype(bool)]
    assert len(priority) and len(ordinary)
    layer = f"OCSGE.RENATURATION.{CAMPAIGN}"
    centre = priority.geometry.iloc[0].centroid.buffer(1)
    assert _pixel(client, layer, *_lonlat(centre)) == _rgba("renaturation", "prioritaire")
    classes = np.clip(ordinary["potentiel"].to_numpy() // 20, 0, 4).astype(int)  # 0–20 … 80–100
    seen = {}
    for k, (_, cell) in zip(classes, ordinary.iterrows(), strict=True):
        if k not in seen:  # one cell of each potential class present
            seen[k] = _pixel(client, layer, *_lonlat(cell.geometry.centroid.buffer(1)))
    assert len(seen) >= 2
    assert seen == {k: rasters.ENCODINGS["renaturation"][k].rgba for k in seen}


def test_analyses_through_the_vector_tile_service(client: TestClient) -> None:
    (analyses,) = [d for d in client.get("/vector/datasets").json() if d["kind"] == "analyses"]
    assert (analyses["departement"], analyses["millesime"]) == ("77", "2024")
    assert set(analyses["layers"]) == {"tache_urbaine", "renaturation", "communes"}
    style = client.get("/vector/analyses/77/2024/style.json").json()
    assert style["sources"]["analyses"]["url"] == analyses["tilejson"]
    carte = client.get("/stats/77/2024/carte.json").json()
    assert style["layers"] == carte["layers"] and style["metadata"] == carte["metadata"]
    tilejson = client.get("/vector/analyses/77/2024/tilejson.json").json()
    assert {v["id"] for v in tilejson["vector_layers"]} == set(analyses["layers"])
    raw = client.get("/vector/analyses/77/2024.pmtiles", headers={"Range": "bytes=0-6"})
    assert raw.status_code == 206 and raw.content == b"PMTiles"
