"""Security headers on every answer of the all-in-one server (viewer, STAC, tiles, OGC, vector, downloads,
files; errors and ranges too), a CSP the viewer really runs under in Chromium, and CORS that lets a
browser read what range readers need (issue 18 item 6, issue 12 item 5)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ocsge.products import product_key
from services.security import API_CSP, DOCS_CSP, VIEWER_CSP, SecurityHeadersMiddleware, content_security_policy

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def client(territory) -> TestClient:
    from catalog.publish import publish
    from ocsge.storage import LocalStorage
    from services.app import AppContext, create_app

    publish(LocalStorage(territory.root))
    return TestClient(create_app(AppContext(root=str(territory.root))), raise_server_exceptions=False)


COG = product_key("couverture_cog", "S01", 2021)
PATHS = [
    ("/", "text/html"),
    ("/vendor/maplibre-gl.css", "text/css"),
    ("/app.js", None),
    ("/healthz", "application/json"),
    ("/stac/", "application/json"),
    ("/stac/search?limit=1", "application/geo+json"),
    ("/stac/collections/nothing", None),  # 404
    ("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities", None),
    ("/wms?SERVICE=WMS&REQUEST=GetCapabilities", None),
    ("/wms?SERVICE=WMS&REQUEST=GetMap&BBOX=x", None),  # an OGC exception
    ("/tiles/layers", "application/json"),
    ("/tiles/OCSGE.COUVERTURE.2021-2023/WebMercatorQuad/14/8299/5639.png", None),
    ("/vector/datasets", "application/json"),
    ("/downloads", "application/json"),
    ("/downloads/S01/archives_DS01_2021.zip", "application/zip"),
    (f"/files/{COG}", "image/tiff"),
    ("/files/truth/DS01/2021/truth_DS01_2021.parquet", None),  # 404
    ("/stats/S01/2021/communes.csv", "text/csv"),
]


@pytest.mark.parametrize(("path", "content_type"), PATHS)
def test_every_answer_carries_the_headers(client: TestClient, path: str, content_type: str | None) -> None:
    resp = client.get(path)
    assert resp.status_code < 500, (path, resp.status_code, resp.text[:300])
    if content_type:
        assert resp.headers["content-type"].startswith(content_type), resp.headers["content-type"]
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["referrer-policy"] == "no-referrer"
    csp = resp.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    kind = resp.headers["content-type"]
    viewer = kind.startswith("text/html") or "javascript" in kind  # scripts: their workers' policy
    assert csp == (VIEWER_CSP if viewer else API_CSP), (path, csp)


def test_range_head_and_304_answers_carry_them_too(client: TestClient) -> None:
    part = client.get(f"/files/{COG}", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206
    head = client.head(f"/files/{COG}")
    etag = client.get("/tiles/layers").headers["etag"]
    not_modified = client.get("/tiles/layers", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    for resp in (part, head, not_modified):
        assert resp.headers["x-content-type-options"] == "nosniff"
    for resp in (part, head):
        assert resp.headers["content-security-policy"] == API_CSP
    # a 304 has no Content-Type to choose a policy by, and the browser merges its headers into the cached
    # page's: no policy there, or the viewer page revalidated with a 304 would lose its own
    assert "content-security-policy" not in not_modified.headers
    page = client.get("/")
    again = client.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304 and "content-security-policy" not in again.headers
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_viewer_policy_names_no_other_origin() -> None:
    """No CDN: scripts and styles from this origin only; no inline script; the worker from /vendor."""
    directives = dict(d.strip().split(" ", 1) for d in VIEWER_CSP.split(";"))
    assert directives["script-src"] == "'self'"
    assert "unsafe-eval" not in VIEWER_CSP and "http" not in VIEWER_CSP
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "'self'" in directives["worker-src"]


def test_public_url_on_another_origin_may_be_fetched_by_the_viewer() -> None:
    csp = content_security_policy("/", "text/html; charset=utf-8", "https://ocsge.example.org/base")
    assert "connect-src 'self' https://ocsge.example.org;" in csp
    assert content_security_policy("/tiles/docs", "text/html", None) == DOCS_CSP
    assert content_security_policy("/stac/api.html", "text/html", None) == DOCS_CSP
    assert content_security_policy("/stac/api", "application/vnd.oai.openapi+json", None) == API_CSP


def test_a_header_the_route_sets_is_kept() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    def page(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("x", headers={"Content-Security-Policy": "sandbox", "X-Frame-Options": "SAMEORIGIN"})

    app = SecurityHeadersMiddleware(Starlette(routes=[Route("/", page)]))
    resp = TestClient(app).get("/")
    assert resp.headers["content-security-policy"] == "sandbox"
    assert resp.headers["x-frame-options"] == "SAMEORIGIN"
    assert resp.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", [f"/files/{COG}", "/vector/occupation/S01/2021.pmtiles"])
def test_cors_exposes_what_range_readers_need(client: TestClient, path: str) -> None:
    """A COG or PMTiles reader in a browser on another site reads Content-Range to learn the file size."""
    resp = client.get(path, headers={"Range": "bytes=0-15", "Origin": "https://elsewhere.example"})
    assert resp.status_code == 206
    assert resp.headers["access-control-allow-origin"] == "*"
    exposed = {h.strip().lower() for h in resp.headers["access-control-expose-headers"].split(",")}
    assert {"content-range", "accept-ranges", "etag", "content-length"} <= exposed
    preflight = client.options(path, headers={"Origin": "https://elsewhere.example",
                                              "Access-Control-Request-Method": "GET",
                                              "Access-Control-Request-Headers": "range"})
    assert preflight.status_code == 200
    assert "range" in preflight.headers["access-control-allow-headers"].lower()


@pytest.mark.browser
def test_viewer_runs_under_its_policy_in_chromium(tiles_server, tmp_path: Path) -> None:
    """Chromium logs every CSP refusal on the console: the viewer loads, draws and logs none."""
    from services.viewer.app import built

    if not Path(CHROMIUM).exists():
        pytest.skip("headless Chromium not installed (scripts/setup.sh installs it)")
    if not built():
        pytest.skip("viewer not built (services/viewer/build.sh)")
    for query in ("?dep=S01&kind=COUVERTURE&campaign=2021-2023", "?dep=S01&mode=vector&compare=2024-2026"):
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
               "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'p'}",
               "--enable-logging=stderr", "--v=0", "--window-size=1280,800", "--virtual-time-budget=15000",
               "--dump-dom", f"{tiles_server.url}/{query}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert 'data-ready="1"' in proc.stdout, proc.stdout[-1000:]
        refusals = [line for line in proc.stderr.splitlines() if "Content Security Policy" in line]
        assert refusals == [], refusals[:3]
        worker_errors = [line for line in proc.stderr.splitlines() if "Worker failed" in line]
        assert worker_errors == [], worker_errors[:3]


def test_scripts_carry_the_viewer_policy_for_their_workers() -> None:
    """MapLibre's worker runs under its script's own policy: it must be allowed to fetch tiles."""
    assert content_security_policy("/vendor/maplibre-gl.js", "text/javascript; charset=utf-8") == VIEWER_CSP
    assert content_security_policy("/tiles/layers", "application/json") == API_CSP
