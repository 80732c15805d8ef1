"""Downloads of the per-département archives.

    /downloads/                                  départements with something to download
    /downloads/{dep}                             a département's archives: size, SHA-256, link
    /downloads/{dep}/{filename}                  the file (local storage) or a short-lived presigned URL (S3)
    /files/{key}                                 any artifact by its product key (the STAC asset hrefs of
                                                 ``ocsge serve``), with HTTP Range for COG/PMTiles readers

A file is served only if the finder lists it for that département: a name that is not in the
listing (``../../etc/passwd`` included) is a 404, and nothing is ever opened from a request path.
Archives never pass through a Lambda on S3 (6 MB payload limit): they are handed out as presigned URLs.
"""

import threading
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from ocsge.products import parse_key, spec
from ocsge.storage import S3Storage, sha256_of
from services.assets import AssetFinder, AssetRef
from services.caching import ETagMiddleware
from services.catalog_finder import default_finder
from services.errors import add_error_handlers
from services.params import dep_code
from services.ranges import serve_object
from services.stats.app import stats_router

ARCHIVES = "archive"
CHUNK = 1 << 20


class Checksums:
    """SHA-256 of stored files, computed once per (key, size) unless the catalogue already knows it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[str, int | None], str] = {}

    def of(self, finder: AssetFinder, asset: AssetRef) -> str:
        if asset.checksum:
            return asset.checksum
        cache_key = (asset.key, asset.size)
        with self._lock:
            known = self._known.get(cache_key)
        if known is None:
            known = "sha256:" + sha256_of(finder.storage, asset.key)
            with self._lock:
                self._known[cache_key] = known
        return known


def create_app(finder: AssetFinder | None = None, with_stats: bool = True) -> FastAPI:
    """Downloads, and the commune statistics with them (one Lambda serves both)."""
    finder = finder or default_finder()
    checksums = Checksums()
    app = FastAPI(title="OCS GE downloads and statistics", docs_url="/downloads/docs",
                  openapi_url="/downloads/openapi.json")
    app.state.finder = finder

    def base(request: Request) -> str:
        from ocsge.settings import get_settings

        return (get_settings().public_url or str(request.base_url)).rstrip("/")

    def describe(request: Request, asset: AssetRef) -> dict[str, Any]:
        size = asset.size if asset.size is not None else finder.storage.stat(asset.key).size
        return {
            "departement": asset.departement,
            "millesime": asset.millesime,
            "name": asset.name,
            "size": size,
            "checksum": checksums.of(finder, asset),
            "media_type": asset.media_type or "application/zip",
            "href": f"{base(request)}/downloads/{asset.departement}/{asset.name}",
            "stac_item": asset.item_id,
        }

    @app.get("/downloads/")
    @app.get("/downloads")
    def departements() -> list[str]:
        return sorted({a.departement for a in finder.find(ARCHIVES)})

    @app.get("/downloads/{dep}")
    def listing(request: Request, dep: Annotated[str, Path()]) -> dict[str, Any]:
        code = dep_code(dep)
        assets = finder.find(ARCHIVES, departement=code)
        return {"departement": code, "archives": [describe(request, a) for a in assets]}

    @app.api_route("/downloads/{dep}/{filename:path}", methods=["GET", "HEAD"], response_class=Response)
    def download(request: Request, dep: Annotated[str, Path()], filename: Annotated[str, Path()]) -> Response:
        code = dep_code(dep)
        asset = next((a for a in finder.find(ARCHIVES, departement=code) if a.name == filename), None)
        if asset is None:
            raise HTTPException(404, f"no archive {filename!r} for département {code}")
        if isinstance(finder.storage, S3Storage):
            return RedirectResponse(finder.storage.presigned_url(asset.key), status_code=307,
                                    headers={"Cache-Control": "no-store"})
        info = finder.storage.stat(asset.key)
        headers = {"Content-Length": str(info.size), "Content-Disposition": f'attachment; filename="{asset.name}"',
                   "ETag": f'"{info.etag}"', "Digest": "sha-256=" + checksums.of(finder, asset).split(":", 1)[-1]}
        if request.method == "HEAD":
            return Response(headers=headers, media_type=asset.media_type or "application/zip")

        def chunks():  # type: ignore[no-untyped-def]
            for offset in range(0, info.size, CHUNK):
                yield finder.storage.get_range(asset.key, offset, min(CHUNK, info.size - offset))

        return StreamingResponse(chunks(), media_type=asset.media_type or "application/zip", headers=headers)

    @app.api_route("/files/{key:path}", methods=["GET", "HEAD"], response_class=Response)
    def artifact(request: Request, key: str) -> Response:
        # Only keys that ocsge.products rebuilds exactly are artifacts: never a temporary key, never a path
        # of the request's making (``../``), never the root's other files.
        parsed = parse_key(key)
        if parsed is None or not finder.storage.exists(key):
            raise HTTPException(404, f"no artifact {key!r}")
        return serve_object(request, finder.storage, key, spec(parsed.product).media_type)

    if with_stats:
        app.include_router(stats_router(finder))

    add_error_handlers(app)

    app.add_middleware(ETagMiddleware)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "HEAD"], allow_headers=["*"])
    return app
