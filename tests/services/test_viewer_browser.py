"""The web viewer in headless Chromium against the all-in-one server: it loads MapLibre and pmtiles from
our own vendored files, shows a layer in the official colours and its legend; the test saves a
screenshot (build/test-artifacts/viewer*.png)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from svc_territory import LiveServer, build_territory

from ocsge.nomenclature import COUVERTURE

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "build" / "test-artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from catalog.publish import publish
    from ocsge.storage import LocalStorage
    from services.app import AppContext, create_app
    from services.viewer.app import built

    if not Path(CHROMIUM).exists():
        pytest.skip("headless Chromium not installed (scripts/setup.sh installs it)")
    if not built():
        subprocess.run(["bash", str(REPO / "services/viewer/build.sh")], check=True)
    root = tmp_path_factory.mktemp("viewer") / "root"
    build_territory(root)
    publish(LocalStorage(root))
    with LiveServer(create_app(AppContext(root=str(root)))) as live:
        yield live


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--window-size=1280,800", "--virtual-time-budget=15000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_viewer_shows_layer_and_legend(server, tmp_path):
    url = f"{server.url}/?dep=S01&kind=COUVERTURE&campaign=2021-2023"
    dom = chromium(tmp_path, "--dump-dom", url).stdout
    assert 'data-ready="1"' in dom, dom[-2000:]
    assert "CS1.1.1.1 — Zones bâties" in dom  # the legend, from /tiles/{layer}/legend.json
    assert "archives_DS01_2021.zip" in dom  # the download link, from /downloads/S01
    assert "stac/search?bbox=" in dom

    shot = tmp_path / "viewer.png"
    chromium(tmp_path, f"--screenshot={shot}", url)
    assert shot.is_file()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "viewer.png")
    with rasterio.open(shot) as src:
        img = src.read()
    map_area = img[:3, :, 320:]  # right of the side panel
    colours = {tuple(int(v) for v in c) for c in np.unique(map_area.reshape(3, -1).T, axis=0)}
    for code in ("CS1.1.1.1", "CS2.2.1", "CS1.2.2", "CS2.1.1.1"):  # the four quadrants, drawn by WebGL
        assert COUVERTURE[code].rgb in colours, code
    panel = img[:3, :, :300]
    panel_colours = {tuple(int(v) for v in c) for c in np.unique(panel.reshape(3, -1).T, axis=0)}
    assert COUVERTURE["CS1.1.2.2"].rgb in panel_colours  # a legend swatch


def test_viewer_vector_mode_and_swipe(server, tmp_path):
    shot = tmp_path / "viewer-vector.png"
    chromium(tmp_path, f"--screenshot={shot}", f"{server.url}/?dep=S01&mode=vector&compare=2024-2026")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "viewer-vector.png")
    with rasterio.open(shot) as src:
        img = src.read()
    # vector polygons are drawn with 85 % opacity over the background: the water quadrant is bluish
    map_area = img[:3, :, 320:].reshape(3, -1).T
    blue = (map_area[:, 2] > 200) & (map_area[:, 0] < 100)
    assert blue.sum() > 1000


def test_viewer_without_vendor_explains_the_build(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    import services.viewer.app as viewer

    monkeypatch.setattr(viewer, "VENDOR", tmp_path / "nothing")
    page = TestClient(viewer.create_app()).get("/")
    assert page.status_code == 200
    assert "services/viewer/build.sh" in page.text
