"""Photo-interpretation in headless Chromium against ``ocsge serve``'s app (issue 17, "Done when").

A small territory (département 77, 1 km², tests/support/analyses_scene.py: millésimes 2021 and 2024 with a
new building block) gets its 65 m change grid and an orthophoto per millésime, and is published. An admin
creates an interpreter account with the ``ocsge accounts`` verb and opens a consolidation window through the
API with its token. In the browser, the interpreter logs in on ``/consolidation.html``, opens a flagged cell
(both millésimes' photos under the swipe, whose divider is dragged), selects a polygon by clicking it on the
map, reclassifies it — once against a version another interpreter has just changed (the page says so and
reloads the cell), then for good — and marks the cell done. The API then shows the stored edit (codes,
provenance ``pi``, a new version), the task done by the interpreter and the progress; no Content Security
Policy violation happened. Chromium is driven over the DevTools protocol (tests/services/headless.py); a
screenshot is saved under build/test-artifacts/consolidation.png."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import shapely
from headless import Browser
from svc_territory import LiveServer

from ocsge.products import product_key

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "build" / "test-artifacts"
DEP, BEFORE, AFTER = "77", 2021, 2024
ADMIN, INTERPRETER, OTHER, CONTRIBUTOR = "admin", "marie", "paul", "claire"
PASSWORD = "photo-interpretation-2026"
NEW_CODES = ("CS1.1.1.2", "US5")  # what the interpreter sets: a road surface, residential use

pytestmark = pytest.mark.browser

# record CSP violations from the first script of the page on (DevTools' injected script is not subject to CSP)
CSP_PROBE = (
    "window.__csp = []; document.addEventListener('securitypolicyviolation', "
    "(e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
)


def _photo(store, year: int) -> None:  # type: ignore[no-untyped-def]
    """An RGB orthophoto of the scene (0.5 m): each polygon in a colour of its couverture, different per year."""
    import rasterio
    from rasterio.features import rasterize
    from rasterio.shutil import copy as rio_copy
    from rasterio.transform import from_origin

    from ocsge.nomenclature import COUVERTURE
    from support.analyses_scene import X0, Y0, layers

    occupation = layers()[0 if year == BEFORE else 1]
    size, res = 2000, 0.5
    transform = from_origin(X0, Y0 + 1000, res, res)
    codes = sorted(set(occupation.code_cs))
    index = rasterize(
        ((g, i + 1) for i, g in enumerate(occupation.geometry)),
        out_shape=(size, size),
        transform=transform,
        dtype="uint16",
    )
    lut = np.zeros((len(occupation) + 1, 3), dtype="uint8")
    for i, code in enumerate(occupation.code_cs):
        lut[i + 1] = np.array(COUVERTURE[code].rgb) // (1 if year == BEFORE else 2) + codes.index(code)
    data = np.moveaxis(lut[index], -1, 0)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:2154",
        "transform": transform,
        "photometric": "RGB",
    }
    with rasterio.MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data)
        with mem.open() as src, store.writer(product_key("imagery_rgb", DEP, year)) as out:
            rio_copy(src, out, driver="COG", COMPRESS="DEFLATE")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    from catalog.publish import publish
    from inference_batch.products.grid import run_grid
    from ocsge.storage import LocalStorage
    from services.app import AppContext, create_app
    from services.viewer.app import built
    from support.analyses_scene import write_scene

    if not Path(CHROMIUM).exists():
        pytest.skip("headless Chromium not installed (scripts/setup.sh installs it)")
    if not built():
        subprocess.run(["bash", str(REPO / "services/viewer/build.sh")], check=True)
    root = tmp_path_factory.mktemp("consolidation") / "root"
    store = LocalStorage(root)
    write_scene(store)  # département 77, occupation 2021 and 2024
    run_grid(store, DEP, BEFORE, AFTER)  # the 65 m change grid: the cells to review
    for year in (BEFORE, AFTER):
        _photo(store, year)
    publish(store)
    with LiveServer(create_app(AppContext(root=str(root)))) as live:
        live.root = root  # type: ignore[attr-defined]
        yield live


def _accounts(root: Path, *args: str, stdin: str | None = None) -> str:
    """``ocsge accounts …`` (the admin verb), in-process."""
    from click.testing import CliRunner

    from services.consolidation.cli import accounts

    result = CliRunner().invoke(accounts, [*args, "--root", str(root)], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def window(server) -> dict:
    """An admin account and two interpreters created with the verb; the window opened by the admin's token."""
    root = server.root
    _accounts(root, "create", ADMIN, "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    for name in (INTERPRETER, OTHER):
        _accounts(root, "create", name, "--role", "interpreter", "--password-stdin", stdin=PASSWORD + "\n")
    _accounts(root, "create", CONTRIBUTOR, "--role", "contributor", "--password-stdin", stdin=PASSWORD + "\n")
    token = _accounts(root, "token", ADMIN).strip().splitlines()[-1]
    answer = httpx.post(
        f"{server.url}/consolidation/windows",
        headers={"Authorization": f"Bearer {token}"},
        json={"departement": DEP, "millesime": AFTER, "previous_millesime": BEFORE, "closes": "2027-06-30"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    opened = answer.json()
    assert opened["tasks"] > 0
    return opened


def _bearer(server, username: str) -> dict[str, str]:
    login = httpx.post(f"{server.url}/consolidation/auth/login", json={"username": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _task_to_edit(server) -> tuple[str, dict, tuple[float, float]]:
    """A flagged cell, the polygon of it with the largest share of the cell, and a point inside both (lon, lat)."""
    cells = httpx.get(f"{server.url}/consolidation/{DEP}/{AFTER}/tasks?status=todo").json()["features"]
    cell = cells[0]
    detail = httpx.get(f"{server.url}/consolidation/{DEP}/{AFTER}/tasks/{cell['id']}").json()
    area = shapely.geometry.shape(cell["geometry"])
    best = max(
        detail["polygons"]["features"], key=lambda f: shapely.geometry.shape(f["geometry"]).intersection(area).area
    )
    inside = shapely.geometry.shape(best["geometry"]).intersection(area)
    # a point well inside (away from every edge: a click there hits this polygon only)
    core = inside.buffer(-0.2 * min(inside.bounds[2] - inside.bounds[0], inside.bounds[3] - inside.bounds[1]))
    point = (core if not core.is_empty else inside).representative_point()
    return cell["id"], best, (point.x, point.y)


def _click(browser: Browser, x: float, y: float) -> None:
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        browser.call(
            "Input.dispatchMouseEvent",
            type=kind,
            x=x,
            y=y,
            button="left",
            clickCount=1,
            buttons=1 if kind == "mousePressed" else 0,
        )


def _drag(browser: Browser, start: tuple[float, float], end: tuple[float, float]) -> None:
    browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=start[0], y=start[1])
    browser.call(
        "Input.dispatchMouseEvent", type="mousePressed", x=start[0], y=start[1], button="left", clickCount=1, buttons=1
    )
    for k in range(1, 6):
        x = start[0] + (end[0] - start[0]) * k / 5
        browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=end[1], button="left", buttons=1)
    browser.call("Input.dispatchMouseEvent", type="mouseReleased", x=end[0], y=end[1], button="left", clickCount=1)


def _body(browser: Browser, name: str) -> str:
    return browser.evaluate(f"document.body.dataset.{name} || ''")


def test_interpreter_corrects_a_polygon_and_marks_the_cell_done(server, window, tmp_path):
    task_id, polygon, (lon, lat) = _task_to_edit(server)
    assert polygon["properties"]["code_cs"] != NEW_CODES[0] or polygon["properties"]["code_us"] != NEW_CODES[1]
    page = f"{server.url}/consolidation.html?window={window['id']}"
    csp = httpx.get(page).headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]

    browser = Browser(CHROMIUM, tmp_path / "profile", "about:blank")
    try:
        browser.call("Page.enable")
        browser.call("Page.addScriptToEvaluateOnNewDocument", source=CSP_PROBE)
        browser.call("Page.navigate", url=page)
        assert browser.wait_for("document.body && document.body.dataset.ready === '1'"), "page did not start"
        assert int(_body(browser, "tasks") or 0) > 0, browser.evaluate("document.getElementById('message').textContent")
        # both millésimes' photos are on the map, under the swipe
        photos = _body(browser, "photos").split()
        assert photos == ["ORTHOIMAGERY.ORTHOPHOTOS.2021-2023", "ORTHOIMAGERY.ORTHOPHOTOS.2024-2026"], photos

        # log in as the interpreter
        browser.evaluate(
            f"document.getElementById('username').value = {INTERPRETER!r};"
            f"document.getElementById('password').value = {PASSWORD!r};"
            "document.getElementById('login').click()"
        )
        assert browser.wait_for(f"document.body.dataset.user === {INTERPRETER!r}", 30), browser.evaluate(
            "document.getElementById('message').textContent"
        )

        # open the flagged cell from the list
        browser.evaluate(f"document.querySelector('#task-list li[data-task=\"{task_id}\"]').click()")
        assert browser.wait_for(f"document.body.dataset.task === {task_id!r}", 30)
        browser.wait_for("false", 1.5)  # let the view settle on the cell

        # drag the swipe's divider to a quarter of the map
        box = browser.evaluate(
            "(() => { const r = document.getElementById('maps').getBoundingClientRect();"
            " return [r.left, r.top, r.width, r.height]; })()"
        )
        grip = (box[0] + box[2] / 2, box[1] + box[3] / 2)
        _drag(browser, grip, (box[0] + box[2] / 4, grip[1]))
        assert abs(float(_body(browser, "divider")) - 0.25) < 0.03, _body(browser, "divider")

        # select the polygon by clicking it on the map
        x, y = browser.evaluate(f"window.consolidation.pixelOf({lon}, {lat})")
        _click(browser, x, y)
        pid = polygon["properties"]["id"]
        assert browser.wait_for(f"document.body.dataset.selected === {pid!r}", 10), _body(browser, "selected")

        # another interpreter changes that polygon first: the page's version is stale → 409, said and reloaded
        other = _bearer(server, OTHER)
        concurrent = httpx.post(
            f"{server.url}/consolidation/{DEP}/{AFTER}/tasks/{task_id}/edits",
            headers=other,
            json={
                "polygon_id": pid,
                "version": polygon["properties"]["version"],
                "action": "reclassify",
                "code_cs": "CS2.2.1",
                "code_us": "US1.1",
            },
        )
        assert concurrent.status_code == 200, concurrent.text
        choose = (
            f"document.getElementById('code-cs').value = {NEW_CODES[0]!r};"
            f"document.getElementById('code-us').value = {NEW_CODES[1]!r};"
            "document.getElementById('reclassify').click()"
        )
        browser.evaluate(choose)
        assert browser.wait_for("document.body.dataset.conflict === '1'", 30), browser.evaluate(
            "document.getElementById('message').textContent"
        )
        message = browser.evaluate("document.getElementById('message').textContent")
        assert "Quelqu'un d'autre a modifié cette cellule" in message and "rechargée" in message
        assert browser.wait_for(f"document.body.dataset.selected === {pid!r}", 10)  # still selected, reloaded

        # now on the current version: reclassify, then mark the cell done
        browser.evaluate(choose)
        assert browser.wait_for("document.getElementById('message').textContent.includes('reclassé')", 30), (
            browser.evaluate("document.getElementById('message').textContent")
        )
        browser.evaluate("document.getElementById('done').click()")
        assert browser.wait_for("document.body.dataset.taskStatus === 'done'", 30), browser.evaluate(
            "document.getElementById('message').textContent"
        )
        assert browser.wait_for("(document.body.dataset.progress || '').startsWith('1/')", 30), _body(
            browser, "progress"
        )

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "consolidation.png").write_bytes(browser.screenshot())
        violations = browser.evaluate("window.__csp")
        assert violations == [], violations
    finally:
        browser.close()

    # what the API stored
    detail = httpx.get(f"{server.url}/consolidation/{DEP}/{AFTER}/tasks/{task_id}").json()
    edited = next(f for f in detail["polygons"]["features"] if f["properties"]["id"] == pid)
    assert (edited["properties"]["code_cs"], edited["properties"]["code_us"]) == NEW_CODES
    assert edited["properties"]["provenance"] == "pi"
    assert edited["properties"]["version"] >= polygon["properties"]["version"] + 2  # the other's edit, then ours
    task = detail["task"]["properties"]
    assert task["status"] == "done"
    assert task["done_by"] == INTERPRETER
    progress = httpx.get(f"{server.url}/consolidation/{DEP}/{AFTER}/progress").json()
    assert progress["by_status"]["done"] == 1
    assert progress["tasks"] == window["tasks"]


def _open_page(browser: Browser, url: str, username: str) -> None:
    browser.call("Page.enable")
    browser.call("Page.addScriptToEvaluateOnNewDocument", source=CSP_PROBE)
    browser.call("Page.navigate", url=url)
    assert browser.wait_for("document.body && document.body.dataset.ready === '1'"), "page did not start"
    browser.evaluate(
        f"document.getElementById('username').value = {username!r};"
        f"document.getElementById('password').value = {PASSWORD!r};"
        "document.getElementById('login').click()"
    )
    assert browser.wait_for(f"document.body.dataset.user === {username!r}", 30), browser.evaluate(
        "document.getElementById('message').textContent"
    )


def _thin_polygon_cell(server) -> tuple[str, dict]:
    """A todo cell and a polygon of it less than 45 m tall centred near the cell's centre: a north–south line
    drawn in the cell's view crosses it whole."""
    cells = httpx.get(f"{server.url}/consolidation/{DEP}/{AFTER}/tasks?status=todo").json()["features"]
    for cell in cells:
        area = shapely.geometry.shape(cell["geometry"])
        cy = area.centroid.y
        detail = httpx.get(f"{server.url}/consolidation/{DEP}/{AFTER}/tasks/{cell['id']}").json()
        for f in detail["polygons"]["features"]:
            g = shapely.geometry.shape(f["geometry"])
            x0, y0, x1, y1 = g.bounds
            height_m = (y1 - y0) * 111_320
            if height_m < 45 and abs((y0 + y1) / 2 - cy) * 111_320 < 12 and x0 < area.centroid.x < x1:
                return cell["id"], f
    raise AssertionError("no cell with a thin polygon across it")


def test_split_along_a_drawn_line_and_a_contribution(server, window, tmp_path):
    """An interpreter splits a polygon along a line drawn on the map (the west part gets the first codes); a
    contributor, who cannot edit, files a located report with proposed codes and a comment."""
    task_id, polygon = _thin_polygon_cell(server)
    pid = polygon["properties"]["id"]
    g = shapely.geometry.shape(polygon["geometry"])
    cell = shapely.geometry.shape(
        httpx.get(f"{server.url}/consolidation/{DEP}/{AFTER}/tasks/{task_id}").json()["task"]["geometry"]
    )
    # a quarter of the cell east of its centre: clear of the swipe's divider, which starts in the middle
    lon = cell.centroid.x + (cell.bounds[2] - cell.bounds[0]) / 4
    south, north = g.bounds[1] - 4e-5, g.bounds[3] + 4e-5  # about 4 m beyond the polygon on each side
    page = f"{server.url}/consolidation.html?window={window['id']}"
    with Browser(CHROMIUM, tmp_path / "profile", "about:blank") as browser:
        _open_page(browser, page, OTHER)
        browser.evaluate(f"document.querySelector('#task-list li[data-task=\"{task_id}\"]').click()")
        assert browser.wait_for(f"document.body.dataset.task === {task_id!r}", 30)
        browser.wait_for("false", 1.5)
        inside = shapely.Point(lon, (g.bounds[1] + g.bounds[3]) / 2)
        assert g.contains(inside)
        _click(browser, *browser.evaluate(f"window.consolidation.pixelOf({inside.x}, {inside.y})"))
        assert browser.wait_for(f"document.body.dataset.selected === {pid!r}", 10), _body(browser, "selected")
        browser.evaluate(
            "document.getElementById('code-cs').value = 'CS1.1.1.1'; document.getElementById('code-us').value = 'US5';"
            "document.getElementById('code-cs-right').value = 'CS2.2.1';"
            "document.getElementById('code-us-right').value = 'US1.1';"
            "document.getElementById('split').click()"
        )
        assert browser.wait_for("document.body.dataset.drawing === 'LineString'", 10)
        start = browser.evaluate(f"window.consolidation.pixelOf({lon}, {south})")
        end = browser.evaluate(f"window.consolidation.pixelOf({lon}, {north})")
        for point in (start, end, end):  # a second click on the last vertex ends the line
            _click(browser, *point)
            browser.wait_for("false", 0.4)
        assert browser.wait_for("document.getElementById('message').textContent.includes('découpé')", 30), (
            browser.evaluate("document.getElementById('message').textContent")
        )
        assert browser.evaluate("window.__csp") == []

    detail = httpx.get(f"{server.url}/consolidation/{DEP}/{AFTER}/tasks/{task_id}").json()
    parts = {
        f["properties"]["id"]: f for f in detail["polygons"]["features"] if f["properties"]["id"].startswith(pid + ".")
    }
    assert set(parts) == {f"{pid}.1", f"{pid}.2"}
    west, east = parts[f"{pid}.1"], parts[f"{pid}.2"]
    assert (west["properties"]["code_cs"], west["properties"]["code_us"]) == ("CS1.1.1.1", "US5")
    assert (east["properties"]["code_cs"], east["properties"]["code_us"]) == ("CS2.2.1", "US1.1")
    assert (
        shapely.geometry.shape(west["geometry"]).centroid.x < lon < shapely.geometry.shape(east["geometry"]).centroid.x
    )
    assert pid not in {f["properties"]["id"] for f in detail["polygons"]["features"]}  # the parent is retired

    # a contributor: no edit tools, a report placed on the map
    report = shapely.Point(lon, cell.centroid.y)
    with Browser(CHROMIUM, tmp_path / "profile2", "about:blank") as browser:
        _open_page(browser, page, CONTRIBUTOR)
        assert browser.evaluate("document.getElementById('reclassify').disabled") is True
        assert browser.evaluate("!document.getElementById('contribution-box').classList.contains('hidden')")
        browser.evaluate(f"document.querySelector('#task-list li[data-task=\"{task_id}\"]').click()")
        assert browser.wait_for(f"document.body.dataset.task === {task_id!r}", 30)
        browser.wait_for("false", 1.5)
        browser.evaluate("document.getElementById('contribution-draw').click()")
        assert browser.wait_for("document.body.dataset.drawing === 'Point'", 10)
        _click(browser, *browser.evaluate(f"window.consolidation.pixelOf({report.x}, {report.y})"))
        browser.evaluate(
            "document.getElementById('contribution-cs').value = 'CS2.1.1.1';"
            "document.getElementById('contribution-us').value = 'US1.2';"
            "document.getElementById('contribution-comment').value = 'Bois oublié en 2021';"
            "document.getElementById('contribution-send').click()"
        )
        assert browser.wait_for("Boolean(document.body.dataset.contribution)", 30), browser.evaluate(
            "document.getElementById('message').textContent"
        )
        assert browser.evaluate("window.__csp") == []
    filed = httpx.get(f"{server.url}/consolidation/{DEP}/{AFTER}/contributions").json()["features"]
    mine = [f for f in filed if f["properties"]["author"] == CONTRIBUTOR]
    assert len(mine) == 1
    props = mine[0]["properties"]
    assert (props["status"], props["code_cs"], props["code_us"]) == ("submitted", "CS2.1.1.1", "US1.2")
    assert props["comment"] == "Bois oublié en 2021"
    assert shapely.geometry.shape(mine[0]["geometry"]).distance(report) < 2e-5  # where it was clicked (≈ 2 m)
