"""HTTP caching shared by the services: strong ETags on GET responses, ``304 Not Modified`` on
``If-None-Match``, and a ``Cache-Control`` per kind of resource (CloudFront honours both).

Implemented as a pure ASGI middleware so that it wraps titiler's routes as well as ours, without
touching their code. Bodies are buffered only for cacheable, small responses (tiles, capabilities,
JSON); streamed downloads and range responses pass through untouched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TILE_MAX_AGE = 3600
METADATA_MAX_AGE = 300
MAX_BUFFERED = 8 << 20


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = [c.strip().removeprefix("W/") for c in if_none_match.split(",")]
    return etag in candidates


def default_policy(path: str, content_type: str) -> str | None:
    """Cache-Control for a successful GET, or None to leave the response alone."""
    if content_type.startswith(("image/", "application/vnd.mapbox-vector-tile", "application/x-protobuf")):
        return f"public, max-age={TILE_MAX_AGE}"
    if content_type.startswith(("application/xml", "text/xml", "application/json", "text/plain", "text/html",
                                "application/geo+json", "text/csv", "application/vnd.ogc")):
        return f"public, max-age={METADATA_MAX_AGE}"
    return None


class ETagMiddleware:
    def __init__(self, app: ASGIApp, policy: Callable[[str, str], str | None] = default_policy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        request_headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        if "range" in request_headers:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []
        passthrough = False
        size = 0

        async def wrapped(message: Message) -> None:
            nonlocal start, passthrough, size
            if passthrough:
                await send(message)
                return
            if message["type"] == "http.response.start":
                headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
                cacheable = (
                    message["status"] == 200
                    and "etag" not in headers
                    and "content-range" not in headers
                    and self.policy(scope["path"], headers.get("content-type", "")) is not None
                )
                if not cacheable:
                    passthrough = True
                    await send(message)
                    return
                start = message
                return
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > MAX_BUFFERED:  # too big to hash in memory: send as is
                    passthrough = True
                    assert start is not None
                    await send(start)
                    await send({"type": "http.response.body", "body": b"".join(chunks),
                                "more_body": message.get("more_body", False)})
                    return
                if message.get("more_body", False):
                    return
                assert start is not None
                body = b"".join(chunks)
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                names = {k.decode().lower(): v.decode() for k, v in headers}
                etag = etag_of(body)
                headers.append((b"etag", etag.encode()))
                if "cache-control" not in names:
                    policy = self.policy(scope["path"], names.get("content-type", ""))
                    headers.append((b"cache-control", (policy or "no-cache").encode()))
                if matches(request_headers.get("if-none-match"), etag):
                    headers = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-encoding")]
                    await send({"type": "http.response.start", "status": 304, "headers": headers})
                    await send({"type": "http.response.body", "body": b""})
                    return
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, wrapped)
