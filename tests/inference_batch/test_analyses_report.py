"""The portrait report: one self-contained HTML page per territory with the hand-computed figures of the
hand-made territory, rendered in headless Chromium with its charts drawn (screenshot checked)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio

from inference_batch.analyses.report import run_report
from inference_batch.products.difference import run_difference
from ocsge.nomenclature import COUVERTURE
from ocsge.storage import LocalStorage
from support.analyses_scene import DEP, write_scene

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "build" / "test-artifacts"


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStorage, dict[str, str]]:
    store = LocalStorage(tmp_path_factory.mktemp("report") / "root")
    write_scene(store)
    run_difference(store, DEP, 2021, 2024)
    return store, run_report(store, DEP, 2021, 2024)


def test_one_page_per_territory_with_the_figures(pages: tuple[LocalStorage, dict[str, str]]) -> None:
    store, keys = pages
    assert set(keys) == {f"portrait_html_2021_2024_{t}" for t in ("77001", "77002", "77")}
    assert keys["portrait_html_2021_2024_77002"] == \
        "portrait/html/D077/2021-2024/blocks/portrait_html_D077_2021-2024_77002.html"
    b = store.get_bytes(keys["portrait_html_2021_2024_77002"]).decode()
    assert "<title>Portrait de territoire — B (77002), 2021–2024</title>" in b
    # commune B: 50 ha; artificialised 7.5 → 8 ha; herbacée 10 → 8.5 ha = 20 → 17 % (−3 points); 0.5 ha new bâti
    assert '<div class="figure">Surface couverte<b>50.00 ha</b></div>' in b
    assert "Artificialisé 2021<b>7.50 ha</b>" in b and "Variation nette<b>+0.50 ha</b>" in b
    assert ("<td>CS2.2.1</td><td>Formations herbacées (pelouses et prairies, terres arables, roselières…)</td>"
            "<td>10.00</td><td>8.50</td><td>-1.50</td><td>20.00</td><td>17.00</td><td>-3.00</td>") in b \
        or "<td>10.00</td><td>8.50</td><td>-1.50</td><td>20.00</td><td>17.00</td><td>-3.00</td>" in b
    assert "Aucune évolution à vérifier" in b  # B's changes are explained by its new bâti
    assert "Origine du nouveau bâti (CS1.1.1.1) — 0.50 ha" in b
    a = store.get_bytes(keys["portrait_html_2021_2024_77001"]).decode()
    assert 'class="alert">perte de 1.0 pt de Surfaces d' in a and "à vérifier localement" in a
    # self-contained: no script, no external resource
    for page in (a, b):
        assert "<script" not in page and "<link" not in page
        assert not any(f'{attr}="{scheme}' in page for attr in ("src", "href") for scheme in ("http", "//"))
        assert page.count("<svg") >= 3 and "data:image/png;base64," in page


@pytest.mark.browser
def test_report_renders_in_headless_chromium(pages: tuple[LocalStorage, dict[str, str]], tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("headless Chromium not installed (scripts/setup.sh installs it)")
    store, keys = pages
    page = Path(store.root) / keys["portrait_html_2021_2024_77001"]
    shot = tmp_path / "portrait.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
           "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'p'}",
           "--window-size=1100,1400", "--hide-scrollbars", f"--screenshot={shot}", page.as_uri()]
    subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "portrait_77001.png")
    with rasterio.open(shot) as src:
        img = src.read()[:3]
    colours = {tuple(int(v) for v in c) for c in np.unique(img.reshape(3, -1).T, axis=0)}
    # the stacked bars of the couverture are drawn, in the official colours of A's couvertures
    for code in ("CS2.1.1.1", "CS2.1.1.3", "CS1.2.2", "CS2.1.2", "CS2.2.1", "CS1.1.1.1"):
        assert COUVERTURE[code].rgb in colours, code
    assert len(colours) > 50  # text, charts, not a blank page
