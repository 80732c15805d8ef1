"""The viewer opens on France: in headless Chromium against the all-in-one server over three synthetic
départements side by side (tests/support/national_scene.py, with their couverture COGs and the national
vector tiles, published), the page opens at zoom 6 with "France entière" in the département filter, draws
the national raster layer (WMTS tiles at TILEMATRIX=7, the 256-pixel tiles of map zoom 6) and, in vector
mode, the national vector tiles (/vector/occupation/FR/2021/6/…) with the three départements' colours;
choosing S02 in the filter zooms to S02 and draws only S02's polygons. Screenshots in
build/test-artifacts/viewer-national*.png."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from headless import Browser
from svc_territory import LiveServer

from ocsge.nomenclature import COUVERTURE

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "build" / "test-artifacts"
BACKGROUND = np.array([0xE8, 0xEC, 0xEF])

pytestmark = pytest.mark.browser


class RequestLog:
    """The paths and queries the page asked the server for (an ASGI wrapper around the app)."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            self.seen.append(scope["path"] + "?" + scope.get("query_string", b"").decode())
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from catalog.publish import publish
    from inference_batch.products.national_tiles import run_national_tiles
    from services.app import AppContext, create_app
    from services.viewer.app import built
    from support.national_scene import build_scene

    if not Path(CHROMIUM).exists():
        pytest.skip("headless Chromium not installed (scripts/setup.sh installs it)")
    if not built():
        subprocess.run(["bash", str(REPO / "services/viewer/build.sh")], check=True)
    root = tmp_path_factory.mktemp("viewer-national") / "root"
    storage = build_scene(root, rasters=True)
    run_national_tiles(storage, "occupation_pmtiles", 2021)
    publish(storage)
    log = RequestLog(create_app(AppContext(root=str(root))))
    with LiveServer(log) as live:
        live.log = log  # type: ignore[attr-defined]
        yield live


def pixels(png: bytes, tmp_path: Path, name: str) -> np.ndarray:
    import rasterio

    path = tmp_path / name
    path.write_bytes(png)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    with rasterio.open(path) as src:
        return src.read()[:3, :, 320:].reshape(3, -1).T.astype(int)  # the map, right of the side panel


def count(img: np.ndarray, rgb: tuple[int, int, int], opacity: float = 1.0, tolerance: int = 6) -> int:
    """Pixels of a class colour drawn at ``opacity`` over the background."""
    expected = np.round(opacity * np.array(rgb) + (1 - opacity) * BACKGROUND)
    return int((np.abs(img - expected).max(axis=1) <= tolerance).sum())


def open_viewer(server, tmp_path: Path, query: str) -> Browser:
    server.log.seen.clear()
    browser = Browser(CHROMIUM, tmp_path / f"profile{len(query)}", f"{server.url}/{query}")
    assert browser.wait_for("document.body.dataset.ready === '1'", timeout=90), "the viewer never got ready"
    return browser


def wait_for_tiles(server, pattern: str, timeout: float = 60) -> list[str]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in server.log.seen if re.search(pattern, p)]
        if found:
            time.sleep(2)  # let the map draw what it fetched
            return found
        time.sleep(0.25)
    return []


def test_opens_on_france_with_national_raster_layer(server, tmp_path):
    with open_viewer(server, tmp_path, "") as browser:
        assert browser.evaluate("document.getElementById('dep').value") == ""
        options = browser.evaluate("[...document.getElementById('dep').options].map(o => o.textContent)")
        assert options == ["France entière", "S01", "S02", "S03"]
        # map zoom 6: MapLibre asks 256-pixel raster tiles one level up (its tiles are 512 pixels)
        tiles = wait_for_tiles(server, r"LAYER=OCSGE\.COUVERTURE\.2021-2023.*TILEMATRIX=7&")
        img = pixels(browser.screenshot(), tmp_path, "viewer-national.png")
    assert tiles, "\n".join(server.log.seen)
    assert not any("DEPARTEMENT=" in t for t in tiles)  # France: no département filter on the tiles
    for dep in ("S01", "S02", "S03"):
        from support.national_scene import CODES

        assert count(img, COUVERTURE[CODES[dep]].rgb) > 30, dep  # each département, drawn at zoom 6


def test_national_vector_tiles_then_filter_one_departement(server, tmp_path):
    from support.national_scene import CODES

    with open_viewer(server, tmp_path, "?mode=vector") as browser:
        national = wait_for_tiles(server, r"/vector/occupation/FR/2021/6/\d+/\d+\.mvt")
        france = pixels(browser.screenshot(), tmp_path, "viewer-national-vector.png")
        server.log.seen.clear()
        browser.evaluate(
            "document.body.dataset.ready = '0';"
            "const s = document.getElementById('dep'); s.value = 'S02';"
            "s.dispatchEvent(new Event('change'))"
        )
        assert browser.wait_for("document.body.dataset.ready === '1'", timeout=90)
        own = wait_for_tiles(server, r"/vector/occupation/S02/2021\.pmtiles")
        s02 = pixels(browser.screenshot(), tmp_path, "viewer-national-filtered.png")
    assert national, server.log.seen
    for dep in ("S01", "S02", "S03"):  # the national tiles hold the three départements, at 85 % opacity
        assert count(france, COUVERTURE[CODES[dep]].rgb, 0.85) > 30, dep
    assert own, server.log.seen  # the filter: S02's own tiles…
    assert not any("/vector/occupation/FR/" in p for p in server.log.seen)
    assert count(s02, COUVERTURE[CODES["S02"]].rgb, 0.85) > 100_000  # …zoomed to S02, which fills the map
    for dep in ("S01", "S03"):  # its neighbours are not drawn, although the view reaches past S02
        assert count(s02, COUVERTURE[CODES[dep]].rgb, 0.85) == 0, dep
