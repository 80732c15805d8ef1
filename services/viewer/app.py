"""The web viewer at ``/``: static files (index.html, app.js, style.css) and the MapLibre / pmtiles
bundles vendored by ``services/viewer/build.sh`` under ``static/vendor/`` (never a CDN)."""

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
VENDOR = STATIC / "vendor"

MISSING = """<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>OCS GE — visualiseur</title></head>
<body><h1>Visualiseur non construit</h1><p>Les bibliothèques du visualiseur (MapLibre GL, pmtiles) n'ont pas été
installées : lancez <code>bash services/viewer/build.sh</code> (ou <code>bash scripts/setup.sh</code>).</p>
<p>Les services fonctionnent : <a href="wmts?SERVICE=WMTS&amp;REQUEST=GetCapabilities">WMTS</a>,
<a href="wms?SERVICE=WMS&amp;REQUEST=GetCapabilities">WMS</a>, <a href="stac/">STAC</a>,
<a href="tiles/layers">couches</a>.</p></body></html>"""


class ViewerFiles(StaticFiles):
    """Static files with long caching for the versioned vendor bundles and revalidation for the rest."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")

        async def send_with_cache(message: dict) -> None:  # type: ignore[type-arg]
            if message["type"] == "http.response.start" and message["status"] == 200:
                policy = b"public, max-age=86400" if "/vendor/" in path else b"no-cache"
                message["headers"] = [*message.get("headers", []), (b"cache-control", policy)]
            await send(message)

        await super().__call__(scope, receive, send_with_cache)


def built() -> bool:
    return (VENDOR / "maplibre-gl.mjs").is_file() and (VENDOR / "pmtiles.js").is_file()


def create_app() -> FastAPI:
    app = FastAPI(title="OCS GE viewer", docs_url=None, redoc_url=None, openapi_url=None)

    if not built():
        @app.get("/", response_class=HTMLResponse, include_in_schema=False)
        def not_built() -> str:
            return MISSING

    app.mount("/", ViewerFiles(directory=STATIC, html=True), name="viewer")
    return app
