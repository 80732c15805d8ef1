"""The analyses in the viewer, in headless Chromium against the all-in-one server: on the hand-made
territory of the analyses tests (two communes A and B, tests/support/analyses_scene.py) where tâche urbaine,
renaturation and trame verte et bleue were run and published, the viewer lists the analysis layers, draws
one turned on (``?analyses=renaturation``) from the analyses' PMTiles through the vector tile service, shows
its legend (the style and legend of ``/stats/{dep}/{millesime}/carte.json``), and a click in commune A
(``?point=lon,lat``) offers the link to A's portrait report, which the server answers as HTML. The test
saves a screenshot (build/test-artifacts/viewer-analyses.png)."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import rasterio
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
    run_difference(store, DEP, 2021, 2024)
    run_report(store, DEP, 2021, 2024, territories=["77001", DEP])
    publish(store)
    with LiveServer(create_app(AppContext(root=str(root)))) as live:
        yield live


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run, with its own profile (an empty cache: each run loads the viewer afresh)."""
    profile = tempfile.mkdtemp(prefix="profile-", dir=tmp_path)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--window-size=1280,800", "--virtual-time-budget=60000",
           "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def until(tmp_path: Path, done: Callable[[subprocess.CompletedProcess[str]], bool], *args: str
          ) -> subprocess.CompletedProcess[str]:
    """A headless run, again (at most three times) until ``done``: virtual time does not wait for
    MapLibre's worker, which parses the tiles slowly when the machine is busy."""
    for _ in range(3):
        run = chromium(tmp_path, *args)
        if done(run):
            break
    return run


def green_pixels(shot: Path) -> int:
    """Pixels of the map (right of the side panel) in the renaturation ramp's greens over the grey
    background."""
    with rasterio.open(shot) as src:
        img = src.read()[:3, :, 320:].reshape(3, -1).T.astype(int)
    return int(((img[:, 1] > img[:, 0] + 15) & (img[:, 1] > img[:, 2] + 5)).sum())


def test_analyses_through_the_vector_tile_service(server: LiveServer) -> None:
    datasets = httpx.get(f"{server.url}/vector/datasets").json()
    (analyses,) = [d for d in datasets if d["kind"] == "analyses"]
    assert (analyses["departement"], analyses["millesime"]) == ("77", "2024")
    assert set(analyses["layers"]) == {"tache_urbaine", "renaturation", "tvb", "communes"}
    style = httpx.get(analyses["style"]).json()
    assert style["sources"]["analyses"]["url"] == analyses["tilejson"]
    carte = httpx.get(f"{server.url}/stats/77/2024/carte.json").json()
    assert style["layers"] == carte["layers"] and style["metadata"] == carte["metadata"]
    tilejson = httpx.get(analyses["tilejson"]).json()
    assert {v["id"] for v in tilejson["vector_layers"]} == set(analyses["layers"])


def test_viewer_turns_an_analysis_on_and_links_the_portrait(server: LiveServer, tmp_path: Path) -> None:
    lon, lat = _lonlat(250, 420)  # commune A, in the mixed forest strip
    url = f"{server.url}/?dep=77&analyses=renaturation&point={lon:.6f},{lat:.6f}"
    run = until(tmp_path, lambda run: "Commune : " in run.stdout, "--dump-dom", url)
    dom = run.stdout
    console = "\n".join(line[-400:] for line in run.stderr.splitlines() if "CONSOLE" in line or "ERROR" in line)
    assert 'data-clicked="1"' in dom, console[-4000:]
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

    shot = tmp_path / "viewer-analyses.png"
    until(tmp_path, lambda _: shot.is_file() and green_pixels(shot) > 20_000, f"--screenshot={shot}", url)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "viewer-analyses.png")
    # the renaturation cells (green ramp at 55 % over the grey background) cover much of the square
    assert green_pixels(shot) > 20_000
