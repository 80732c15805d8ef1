"""Security headers on every response of every app, set in one place: the outermost layer of the
all-in-one server (:mod:`services.app`) and of each Lambda (:mod:`services.handlers.runtime`).

===========================  ==========================================================================
header                       value
===========================  ==========================================================================
Content-Security-Policy      HTML pages: :data:`VIEWER_CSP` (the viewer: everything from this origin, no
                             CDN; MapLibre's module worker from ``/vendor``, ``blob:`` kept as its
                             fallback; inline *style attributes* only — the legend swatches and MapLibre
                             set them — never inline scripts); the API docs pages (Swagger UI, which
                             FastAPI loads from its CDN): :data:`DOCS_CSP`; anything else (JSON, XML,
                             images, tiles, files): :data:`API_CSP`, which lets the answer load nothing
                             and be framed by no one (a JSON or SVG opened as a page cannot run script)
X-Content-Type-Options       ``nosniff`` (a tile or a file is never reinterpreted as HTML or script)
X-Frame-Options              ``DENY`` (with ``frame-ancestors 'none'``: no clickjacking of the viewer)
Referrer-Policy              ``no-referrer`` (presigned download URLs and viewer state stay here)
===========================  ==========================================================================

A header a route sets itself is left as it is. Nothing here is cross-origin restrictive on purpose:
tiles, styles, STAC and files are meant to be used by other sites (CORS is open; no
``Cross-Origin-Resource-Policy``). HSTS belongs to the TLS front end (CloudFront), not to this server,
which speaks plain HTTP on 127.0.0.1 or behind API Gateway.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def viewer_csp(extra_connect: str = "") -> str:
    """The viewer's policy. ``extra_connect``: another origin the browser fetches from (the public URL
    when it differs from the page's origin, e.g. TileJSON and PMTiles links built from it)."""
    connect = " ".join(filter(None, ("'self'", extra_connect)))
    return "; ".join((
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        f"connect-src {connect}",
        "worker-src 'self' blob:",
        "child-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ))


VIEWER_CSP = viewer_csp()

# FastAPI's Swagger UI pages (``/tiles/docs``, ``/stac/api.html`` …): its bundle from jsDelivr and one inline
# script that starts it; it fetches the OpenAPI document from this origin.
DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_CSP = "; ".join((
    "default-src 'none'",
    f"script-src 'self' 'unsafe-inline' {DOCS_CDN}",
    f"style-src 'self' 'unsafe-inline' {DOCS_CDN}",
    f"img-src 'self' data: {DOCS_CDN} https://fastapi.tiangolo.com",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
))
DOCS_SUFFIXES = ("/docs", "/docs/oauth2-redirect", "/api.html")

COMMON: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
)


def _origin(url: str | None) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


def content_security_policy(path: str, content_type: str, public_url: str | None = None) -> str:
    kind = content_type.lower()
    if "javascript" in kind:
        # a worker script's own response headers are its policy: MapLibre's worker fetches tiles, so the
        # viewer's scripts get the viewer's policy, not the API's default-src 'none'
        return viewer_csp(_origin(public_url)) if public_url else VIEWER_CSP
    if not kind.startswith("text/html"):
        return API_CSP
    if path.rstrip("/").endswith(DOCS_SUFFIXES):
        return DOCS_CSP
    return viewer_csp(_origin(public_url)) if public_url else VIEWER_CSP


class SecurityHeadersMiddleware:
    """Pure ASGI: adds the headers to ``http.response.start`` (streamed and range responses included)."""

    def __init__(self, app: ASGIApp, public_url: str | None = None) -> None:
        self.app = app
        self.public_url = public_url  # settings.public_url of the composition root, if any

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", ()))
                headers = MutableHeaders(scope=message)
                for name, value in COMMON:
                    if name not in headers:
                        headers[name] = value
                # A 304 carries no Content-Type, and a browser merges its headers into the cached page's:
                # a policy chosen for "not HTML" would replace the viewer's and block its CSS and scripts.
                if "content-security-policy" not in headers and message.get("status") != 304:
                    headers["content-security-policy"] = content_security_policy(
                        path, headers.get("content-type", ""), self.public_url)
            await send(message)

        await self.app(scope, receive, send_with_headers)
