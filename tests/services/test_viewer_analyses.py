"""The analyses in the viewer, in headless Chromium against the all-in-one server: on the hand-made
territory of the analyses tests (two communes A and B, tests/support/analyses_scene.py) where tâche urbaine,
renaturation and trame verte et bleue were run and published, the viewer lists the analysis layers, draws
one turned on (``?analyses=renaturation``) from the analyses' PMTiles through the vector tile service, shows
its legend (the style and legend of ``/stats/{dep}/{millesime}/carte.json``), and a click in commune A
(``?point=lon,lat``) offers the link to A's portrait report, which the server answers as HTML. The test
saves a screenshot (build/test-artifacts/viewer-analyses.png). Chromium is driven over the DevTools
protocol (tests/services/headless.py) to wait for the click in real time."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import rasterio
from headless import Browser
from svc_territory import LiveServer

from ocsge.products import product_key

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "build" / "test-artifacts"

pytestmark = pytest.mark.browser


def _lonlat(x: float, y: float) -> tuple[float, float]:
    """A point of the scene (metres from its lower-left corner) in longitude, latitude."""
    from pyproj import Transformer

    from support.analyses_scene import X0, Y0

    return Transformer.from_crs(2154, 4326, always_xy=True).transform(X0 + x, Y0 + y)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    from catalog.publish import publish
    from inference_batch.analyses.rasters import run_analyses_rasters
    from inference_batch.analyses.renaturation import run_renaturation
    from inference_batch.analyses.report import run_report
    from inference_batch.analyses.tiles import run_analyses_tiles
    from inference_batch.analyses.tvb import run_tvb
    from inference_batch.analyses.urban_footprint import run_footprint
    from inference_batch.products.difference import run_difference
    from ocsge.storage import LocalStorage
    from services.app import AppContext, create_app
    from services.viewer.app import built
    from support.analyses_scene import DEP, write_scene

    if not Path(CHROMIUM).exists():
        pytest.skip("headless Chromium not installed (scripts/setup.sh installs it)")
    if not built():
        subprocess.run(["bash", str(REPO / "services/viewer/build.sh")], check=True)
    root = tmp_path_factory.mktemp("viewer-analyses") / "root"
    store = LocalStorage(root)
    write_scene(store)  # département 77, millésimes 2021 and 2024, communes 77001 (A) and 77002 (B)
    run_footprint(store, DEP, [2024])
    run_renaturation(store, DEP, [2024])
    run_tvb(store, DEP, [2024])
    run_analyses_tiles(store, DEP, 2024)
    run_analyses_rasters(store, DEP, [2024])  # the WMTS/WMS layers OCSGE.{TACHE_URBAINE,RENATURATION}.2024-2026
    run_difference(store, DEP, 2021, 2024)
    run_report(store, DEP, 2021, 2024, territories=["77001", DEP])
    publish(store)
    with LiveServer(create_app(AppContext(root=str(root)))) as live:
        yield live


def green_pixels(png: Path) -> int:
    """Pixels of the map (right of the side panel) in the renaturation ramp's greens over the grey
    background."""
    with rasterio.open(png) as src:
        img = src.read()[:3, :, 320:].reshape(3, -1).T.astype(int)
    return int(((img[:, 1] > img[:, 0] + 15) & (img[:, 1] > img[:, 2] + 5)).sum())


def test_viewer_turns_an_analysis_on_and_links_the_portrait(server: LiveServer, tmp_path: Path) -> None:
    lon, lat = _lonlat(250, 420)  # commune A, in the mixed forest strip
    url = f"{server.url}/?dep=77&analyses=renaturation&point={lon:.6f},{lat:.6f}"
    with Browser(CHROMIUM, tmp_path / "profile", url) as browser:  # waits in real time, not virtual time
        clicked = browser.wait_for("document.body.dataset.clicked === '1'", timeout=90)
        dom = browser.evaluate("document.documentElement.outerHTML")
        shot = tmp_path / "viewer-analyses.png"
        shot.write_bytes(browser.screenshot())
    assert clicked, re.findall(r'id="(?:status|analysis-list)"[^\n]{0,400}', dom)
    # the analysis layers of the millésime, renaturation on
    boxes = dict(re.findall(r'<input type="checkbox" data-layer="(\w+)"( checked="")?>', dom))
    assert boxes == {"tache_urbaine": "", "renaturation": ' checked=""', "tvb": ""}
    # its legend, from the style the stats service serves; the layers turned off have none
    legend = dom[dom.index('id="analysis-legend"'):dom.index('id="info"')]
    assert "Potentiel de renaturation (carreaux INSEE 200 m)" in legend
    assert 'data-layer="renaturation-prioritaire"' in legend and 'data-layer="communes"' in legend
    assert 'data-layer="tache-urbaine"' not in legend and "Réservoirs de biodiversité" not in legend
    assert "#74c476" in legend  # the ramp's middle colour
    # the click: the renaturation cell under it and commune A with its portrait report
    info = html.unescape(dom[dom.index('id="info-analyses"'):dom.index('id="links"')])
    assert "CRS3035RES200mN" in info and "Commune : A (77001)" in info
    links = dict((text, href) for href, text in re.findall(r'<a class="report" href="([^"]+)"[^>]*>([^<]+)</a>', info))
    report = links["Portrait de territoire de A (2021 → 2024)"]
    assert report.endswith("/files/" + product_key("portrait_html", "77", (2021, 2024), block="77001"))
    page = httpx.get(report)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Portrait de territoire — A" in page.text
    dep_report = links["Portrait du département 77 (2021 → 2024)"]
    assert httpx.get(dep_report).status_code == 200
    assert dep_report in html.unescape(dom[dom.index('id="link-list"'):])  # also among the links

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "viewer-analyses.png")
    # the renaturation cells (green ramp at 55 % over the grey background) cover much of the square
    assert green_pixels(shot) > 20_000


def test_viewer_shows_the_analyses_raster_layers(server: LiveServer, tmp_path: Path) -> None:
    url = f"{server.url}/?dep=77&kind=RENATURATION"
    with Browser(CHROMIUM, tmp_path / "profile", url) as browser:
        assert browser.wait_for("document.body.dataset.ready === '1'", timeout=90)
        kinds = browser.evaluate("[...document.getElementById('kind').options].map((o) => o.value)")
        legend = browser.evaluate("document.getElementById('legend-items').textContent")
        title = browser.evaluate("document.getElementById('legend-title').textContent")
    assert kinds == ["TACHE_URBAINE", "RENATURATION"]
    assert title == "OCS GE — Potentiel de renaturation 2024-2026"
    assert "Secteur prioritaire de renaturation" in legend and "Potentiel de renaturation 40–60" in legend
