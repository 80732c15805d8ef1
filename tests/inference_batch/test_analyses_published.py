"""The analyses are catalogued (STAC collections and items that validate, as `ocsge publish` writes them)
and their tables are served under /stats as JSON and CSV, through the catalogue as in production."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
from fastapi.testclient import TestClient

from catalog.publish import publish
from catalog.validate import errors
from inference_batch.analyses.densification import run_densification
from inference_batch.analyses.origin import run_origin
from inference_batch.analyses.portrait import run_portrait
from inference_batch.analyses.renaturation import run_renaturation
from inference_batch.analyses.report import run_report
from inference_batch.analyses.tiles import run_analyses_tiles
from inference_batch.analyses.tvb import run_tvb
from inference_batch.analyses.urban_footprint import run_footprint
from inference_batch.products.artifacts import write_vector
from inference_batch.products.difference import run_difference
from ocsge.products import product_key
from ocsge.storage import LocalStorage
from support.analyses_scene import DEP, box, write_scene

COLLECTIONS = {"ocsge-portrait-stocks": 2, "ocsge-portrait-evolution": 1, "ocsge-origine": 1,
               "ocsge-tache-urbaine": 2, "ocsge-tache-urbaine-communes": 1, "ocsge-densification": 2,
               "ocsge-renaturation": 2, "ocsge-tvb": 2, "ocsge-analyses-tiles": 2, "ocsge-portrait-report": 1}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("analyses") / "root"
    store = LocalStorage(root)
    write_scene(store)
    for year in (2021, 2024):
        write_vector(store, product_key("zone_construite", DEP, year),
                     gpd.GeoDataFrame({"id": ["ZC"], "millesime": [year]}, geometry=[box(0, 850, 1000, 1000)],
                                      crs=2154))
    run_difference(store, DEP, 2021, 2024)
    run_portrait(store, DEP, [2021, 2024])
    run_origin(store, DEP, 2021, 2024)
    run_footprint(store, DEP, [2021, 2024])
    run_densification(store, DEP, [2021, 2024])  # no economic usage in the scene: no zone, an empty layer
    run_renaturation(store, DEP, [2021, 2024])
    run_tvb(store, DEP, [2021, 2024])
    for year in (2021, 2024):
        run_analyses_tiles(store, DEP, year)
    run_report(store, DEP, 2021, 2024, territories=["77001"])
    publish(store)
    return root


def test_collections_and_items_validate(root: Path) -> None:
    stac = root / "stac"
    for coll, n in COLLECTIONS.items():
        collection = json.loads((stac / coll / "collection.json").read_text())
        assert errors(collection) == [], coll
        items = sorted((stac / coll / "items").glob("*.json"))
        assert len(items) == n, coll
        for path in items:
            item = json.loads(path.read_text())
            assert errors(item) == [], path.name
            assert item["properties"]["ocsge:departement"] == "77"
            assert item["geometry"] is not None  # tables borrow the footprint of the département's layers
    tvb = json.loads((stac / "ocsge-tvb" / "items" / "tvb_D077_2024.json").read_text())
    assert set(tvb["assets"]) == {"data", "resistance", "csv"}
    assert tvb["assets"]["resistance"]["type"].startswith("image/tiff")
    tiles = json.loads((stac / "ocsge-analyses-tiles" / "items" / "pmtiles_analyses_D077_2024.json").read_text())
    assert tiles["bbox"][0] == pytest.approx(2.7, abs=0.3)  # the hand-made square near Melun (Lambert-93 700 km)
    from ocsge.storage import LocalStorage as Store
    from services.vector.pmtiles_source import PMTilesSource

    layers = {v["id"] for v in PMTilesSource(Store(root), product_key("analyses_pmtiles", DEP, 2024)).vector_layers()}
    # no economic zone in the scene; the communes go with the analyses (the viewer's click → portrait)
    assert layers == {"tache_urbaine", "zae", "renaturation", "tvb", "communes"} - {"zae"}
    evo = json.loads((stac / "ocsge-portrait-evolution" / "items" / "portrait_evolution_D077_2021-2024.json")
                     .read_text())
    assert evo["assets"]["data"]["href"].endswith("portrait_evolution_D077_2021-2024.csv")
    assert evo["assets"]["report"]["href"].endswith("portrait_report_D077_2021-2024.json")
    assert evo["properties"]["ocsge:millesime_avant"] == 2021


@pytest.fixture(scope="module", params=["storage", "catalogue"])
def client(request: pytest.FixtureRequest, root: Path) -> TestClient:
    from services.stats.app import create_app

    if request.param == "storage":
        from services.assets import StorageAssetFinder

        finder = StorageAssetFinder(str(root), ttl_s=3600)
    else:
        from catalog.search.embedded import EmbeddedBackend
        from ocsge.storage import open_storage
        from services.catalog_finder import CatalogAssetFinder

        storage = open_storage(str(root))
        finder = CatalogAssetFinder(EmbeddedBackend(storage, asset_base_url=root.as_posix()), storage)
    return TestClient(create_app(finder), raise_server_exceptions=False)


def test_tables_as_json_and_csv(client: TestClient) -> None:
    listing = client.get("/stats/77/analyses").json()
    assert {(t["table"], t["millesime"]) for t in listing["tables"]} == {
        ("portrait", "2021"), ("portrait", "2024"), ("evolution", "2021-2024"), ("a-verifier", "2021-2024"),
        ("origine", "2021-2024"), ("tache-urbaine", "2021-2024"), ("densification", "2021"),
        ("densification", "2024"), ("renaturation", "2021"), ("renaturation", "2024"), ("fragmentation", "2021"),
        ("fragmentation", "2024")}
    (report,) = listing["rapports"]
    assert (report["territoire"], report["millesime"]) == ("77001", "2021-2024")
    assert report["html"].endswith("/files/portrait/html/D077/2021-2024/blocks/portrait_html_D077_2021-2024_77001.html")
    assert [t["millesime"] for t in listing["tuiles"]] == ["2021", "2024"]
    style = client.get("/stats/77/2024/carte.json").json()
    assert style["version"] == 8
    assert style["sources"]["analyses"]["url"].endswith("/files/" + product_key("analyses_pmtiles", DEP, 2024))
    assert style["sources"]["analyses"]["url"].startswith("pmtiles://http")
    assert {ly["id"] for ly in style["layers"]} == {legend["layer"] for legend in style["metadata"]["legend"]}
    assert client.get("/stats/77/2019/carte.json").status_code == 404
    stocks = client.get("/stats/77/2021/portrait.json?territoire=77001&niveau=commune").json()
    feuillus = next(r for r in stocks["rows"] if r["code"] == "CS2.1.1.1")
    assert (feuillus["nom"], feuillus["surface_ha"], feuillus["part_pct"]) == ("A", 15.0, 30.0)
    origin = client.get("/stats/77/2021-2024/origine.json?niveau=departement").json()["rows"]
    assert {(r["type"], r["cs_origine"], r["surface_ha"], r["part_pct"]) for r in origin} == {
        ("bati", "CS2.2.1", 0.5, 100.0), ("artificialisation", "CS2.2.1", 0.5, 100.0)}
    csv_text = client.get("/stats/77/2021-2024/evolution.csv?territoire=77")
    assert csv_text.headers["content-type"].startswith("text/csv")
    lines = csv_text.text.splitlines()
    assert lines[0].startswith("niveau,territoire,nom,millesime_debut,millesime_fin,nomenclature,code")
    assert all(line.startswith("departement,77,") for line in lines[1:])
    checks = client.get("/stats/77/2021-2024/a-verifier.json").json()
    assert {t["territoire"] for t in checks["territoires_a_verifier"]} == {"77", "77001"}
    tache = client.get("/stats/77/2021-2024/tache-urbaine.json?niveau=departement").json()["rows"][0]
    assert tache["tache_fin_ha"] > tache["tache_debut_ha"] and tache["zone_construite_fin_ha"] == 15.0
    # the 1 km square (in Lambert-93, slightly turned in EPSG:3035) touches between 5 × 5 and 7 × 7 cells
    cells = client.get("/stats/77/2024/renaturation.json").json()["rows"]
    assert 25 <= len(cells) <= 49 and all(c["idcar_200m"].startswith("CRS3035RES200mN") for c in cells)
    one = client.get(f"/stats/77/2024/renaturation.csv?territoire={cells[0]['idcar_200m']}").text.splitlines()
    assert len(one) == 2 and one[0].startswith("idcar_200m,millesime,")
    assert client.get("/stats/77/2024/densification.json").json()["rows"] == []
    frag = client.get("/stats/77/2024/fragmentation.json?niveau=departement").json()["rows"][0]
    assert frag["surface_ha"] == 100.0 and frag["fragments"] >= 1


@pytest.mark.parametrize("path, status", [
    ("/stats/77/2021-2024/nothing.json", 404), ("/stats/77/2021-2024/origine.xml", 400),
    ("/stats/77/2019-2021/origine.json", 404), ("/stats/77/2021/portrait.json?territoire=00000", 404),
    ("/stats/77/2021/portrait.json?niveau=region", 400), ("/stats/77/2024/renaturation.json?niveau=commune", 400),
])
def test_bad_requests_are_4xx(client: TestClient, path: str, status: int) -> None:
    assert client.get(path).status_code == status


def test_report_page_and_tiles_served_under_files(root: Path) -> None:
    from catalog.search.embedded import EmbeddedBackend
    from ocsge.storage import open_storage
    from services.catalog_finder import CatalogAssetFinder
    from services.downloads.app import create_app

    storage = open_storage(str(root))
    finder = CatalogAssetFinder(EmbeddedBackend(storage, asset_base_url=root.as_posix()), storage)
    client = TestClient(create_app(finder), raise_server_exceptions=False)
    page = client.get("/files/" + product_key("portrait_html", DEP, (2021, 2024), block="77001"))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Portrait de territoire — A" in page.text
    tiles = client.get("/files/" + product_key("analyses_pmtiles", DEP, 2024), headers={"Range": "bytes=0-6"})
    assert tiles.status_code == 206 and tiles.content == b"PMTiles"


def test_map_style_follows_the_maplibre_style_spec(tmp_path: Path) -> None:
    import subprocess

    from services.stats.analyses import analyses_style

    validator = Path(__file__).resolve().parents[2] / "services/viewer/node_modules/.bin/gl-style-validate"
    if not validator.exists():
        pytest.skip("MapLibre style validator not installed (services/viewer/build.sh installs it)")
    path = tmp_path / "style.json"
    path.write_text(json.dumps(analyses_style("http://h/files/pmtiles/analyses/D077/2024/pmtiles_analyses_D077_2024"
                                              ".pmtiles", "77", "2024", (2.6, 48.5, 2.7, 48.6))))
    proc = subprocess.run([str(validator), str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr
