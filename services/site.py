"""All the map services of ``services/`` as one ASGI app, each sub-app keeping its full paths.

Tiles and OGC (``/tiles``, ``/wmts``, ``/wms``), vector tiles (``/vector``), downloads and statistics
(``/downloads``, ``/stats``, ``/files``) are dispatched by path prefix without stripping it (the same paths the Lambda
handlers see behind CloudFront); anything else goes to the viewer at ``/``. The all-in-one server
(:mod:`services.app`) mounts this at the root, after the STAC API.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from services.assets import AssetFinder
from services.catalog_finder import default_finder


class PrefixDispatcher:
    """Route by path prefix (``/wms`` matches ``/wms`` and ``/wms/…``, not ``/wmsx``), else ``default``."""

    def __init__(self, routes: Sequence[tuple[Sequence[str], ASGIApp]], default: ASGIApp) -> None:
        # not ``routes``: Starlette's Mount reads that attribute as its sub-routes (url_for walks them)
        self.prefixes = [(tuple(p.rstrip("/") for p in prefixes), app) for prefixes, app in routes]
        self.default = default

    def app_for(self, path: str) -> ASGIApp:
        for prefixes, app in self.prefixes:
            if any(path == p or path.startswith(p + "/") for p in prefixes):
                return app
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return  # no sub-app has a lifespan to run
        # each sub-app resolves request.url_for in its own router, not in the enclosing app's
        scope = {k: v for k, v in scope.items() if k != "router"}
        await self.app_for(get_route_path(scope))(scope, receive, send)


def create_services_app(finder: AssetFinder | None = None) -> PrefixDispatcher:
    from services.downloads.app import create_app as downloads_app
    from services.tiles.app import create_app as tiles_app
    from services.vector.app import create_app as vector_app
    from services.viewer.app import create_app as viewer_app

    finder = finder or default_finder()
    tiles = tiles_app(finder)
    return PrefixDispatcher(
        [
            (("/tiles", "/wmts", "/wms"), tiles),
            (("/vector",), vector_app(finder)),
            (("/downloads", "/stats", "/files"), downloads_app(finder)),
        ],
        default=viewer_app(),
    )
