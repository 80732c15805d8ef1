"""Downloads of the per-département archives.

    /downloads/                                  départements with something to download
    /downloads/{dep}                             a département's archives: size, SHA-256, link
    /downloads/{dep}/{filename}                  the file (local storage) or a short-lived presigned URL (S3)
    /files/{key}                                 a published artifact by its key (the STAC asset hrefs of
                                                 ``ocsge serve``), with HTTP Range for COG/PMTiles readers

A file is served only if the catalogue publishes it (:mod:`services.downloads.published`): a name that
is not in the listing (``../../etc/passwd`` included), and any stored key that no item declares as an
asset (restricted inputs, internal reports, temporary files), is a 404; nothing is ever opened from a
request path.
Archives never pass through a Lambda on S3 (6 MB payload limit): they are handed out as presigned URLs.
"""

import threading
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from ocsge.products import spec
from ocsge.storage import S3Storage, sha256_of
from services.assets import AssetFinder, AssetRef
from services.caching import ETagMiddleware
from services.catalog_finder import default_finder
from services.downloads.published import PublishedKeys
from services.errors import add_error_handlers
from services.params import dep_code
from services.ranges import serve_object
from services.stats.app import stats_router

ARCHIVES = "archive"
CHUNK = 1 << 20
# Headers a browser client reading by ranges (COG, PMTiles) or checking a download needs to see over CORS.
EXPOSED_HEADERS = ["Accept-Ranges", "Content-Range", "Content-Length", "ETag", "Digest", "Content-Disposition"]


class Checksums:
    """SHA-256 of stored files, computed once per (key, size) unless the catalogue already knows it; the
    most recent ``max_entries`` are kept (keys come from the finder, never from a request)."""

    def __init__(self, max_entries: int = 1024) -> None:
        self._lock = threading.Lock()
        self._known: OrderedDict[tuple[str, int | None], str] = OrderedDict()
        self.max_entries = max_entries

    def of(self, finder: AssetFinder, asset: AssetRef) -> str:
        if asset.checksum:
            return asset.checksum
        cache_key = (asset.key, asset.size)
        with self._lock:
            known = self._known.get(cache_key)
            if known is not None:
                self._known.move_to_end(cache_key)
        if known is None:
            known = "sha256:" + sha256_of(finder.storage, asset.key)
            with self._lock:
                self._known[cache_key] = known
                while len(self._known) > self.max_entries:
                    self._known.popitem(last=False)
        return known


def create_app(finder: AssetFinder | None = None, with_stats: bool = True) -> FastAPI:
    """Downloads, and the commune statistics with them (one Lambda serves both)."""
    finder = finder or default_finder()
    checksums = Checksums()
    published = PublishedKeys(finder)
    app = FastAPI(title="OCS GE downloads and statistics", docs_url="/downloads/docs",
                  openapi_url="/downloads/openapi.json")
    app.state.finder = finder

    def base(request: Request) -> str:
        from services.urls import public_base_url

        return public_base_url(request)

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
        # Only published assets: a key the catalogue declares (never a temporary key, never a path of the
        # request's making such as ``../``, never a restricted input or report stored beside the products).
        asset = published.lookup(key)
        if asset is None:
            raise HTTPException(404, f"no published artifact {key!r}")
        return serve_object(request, finder.storage, asset.key, asset.media_type or spec(asset.product).media_type)

    if with_stats:
        app.include_router(stats_router(finder))

    add_error_handlers(app)

    app.add_middleware(ETagMiddleware)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "HEAD"], allow_headers=["*"],
                       expose_headers=EXPOSED_HEADERS)
    return app
