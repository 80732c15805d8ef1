"""The public base URL of a request: the one place every service builds the absolute links it writes.

In order of precedence:

1. ``OCSGE_PUBLIC_URL`` (settings ``public_url``), when configured: the canonical public origin (the
   CloudFront or custom domain);
2. ``X-Forwarded-Host`` (and ``X-Forwarded-Proto``), **only** when ``OCSGE_TRUST_FORWARDED_HEADERS`` is set
   (settings ``trust_forwarded_headers``): behind a proxy that writes the header itself, as CloudFront's
   viewer-request functions do (``infra.edge_query``). The RFC 7239 ``Forwarded`` header is never honoured:
   CloudFront passes a client's ``Forwarded`` through, so honouring it would let any client rewrite links;
3. otherwise the request's own ``Host`` and scheme.

A forwarded or ``Host`` value that is not a plain host name (``[A-Za-z0-9._-]``, an IPv6 literal, an
optional port) is ignored, so no header can inject a path, a user-info part or markup into a link.
The path the service is mounted under (the ASGI ``root_path``, e.g. ``/stac``) is appended in every case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from ocsge.settings import Settings

_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")


def valid_host(value: str | None) -> bool:
    """Whether ``value`` is a host name or IP literal with an optional port, and nothing else."""
    return bool(value) and _HOST.match(value) is not None  # type: ignore[arg-type]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    # a proxy chain may append: the last value is the one written by the proxy nearest to us
    return value.rsplit(",", 1)[-1].strip() or None


def public_origin(scope: Mapping[str, Any], headers: Mapping[str, str], settings: Settings | None = None) -> str:
    """``scheme://host[:port]`` clients use to reach this server (see the module docstring)."""
    if settings is None:
        from ocsge.settings import get_settings

        settings = get_settings()
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme = str(scope.get("scheme") or "http")
    if scheme not in ("http", "https"):
        scheme = "https" if scheme == "wss" else "http"
    if getattr(settings, "trust_forwarded_headers", False):
        host = _header(headers, "x-forwarded-host")
        if valid_host(host):
            proto = (_header(headers, "x-forwarded-proto") or "").lower()
            return f"{proto if proto in ('http', 'https') else scheme}://{host}"
    host = headers.get("host")
    if not valid_host(host):
        server = scope.get("server")
        if server:
            name, port = server[0], server[1]
            host = f"[{name}]" if ":" in str(name) else str(name)
            if port is not None and port not in ((80 if scheme == "http" else 443),):
                host += f":{port}"
        else:
            host = "localhost"
    return f"{scheme}://{host}"


def public_base_url(request: HTTPConnection, settings: Settings | None = None) -> str:
    """The public URL of the app that serves ``request``, without a trailing slash: the public origin
    followed by the path the app is mounted under (``https://cdn.example.org/stac`` for the STAC API)."""
    root = str(request.scope.get("root_path") or "").rstrip("/")
    return public_origin(request.scope, request.headers, settings) + root


async def add_trailing_slash(request: HTTPConnection) -> Any:
    """Answer a service's bare mount path (``/stac``, what people type) with a redirect to its root
    (``/stac/``), query string kept; relative, so that it holds behind any proxy."""
    from starlette.responses import RedirectResponse

    query = request.scope.get("query_string", b"").decode("latin-1")
    return RedirectResponse(request.scope["path"] + "/" + (f"?{query}" if query else ""), status_code=308)
