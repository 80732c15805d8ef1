"""One error map for every HTTP app (tiles, OGC, vector, downloads, stats; the STAC app may use it too).

=====================================  ======  ==========================================================
raised                                 status  why
=====================================  ======  ==========================================================
``InvalidStorageKey``, ``OcsgeError``  400     bad input (an unknown département, millésime, layer, key)
``ArtifactNotFound``                   404     the storage answered and the artifact is not there
``StorageUnavailable``/``StorageError`` 503    the storage could not be reached or read; ``Retry-After``
``HTTPException`` / validation         as is   what the route decided (4xx)
anything else                          500     a genuine fault: the traceback is logged, never returned
=====================================  ======  ==========================================================

Apps add their own library errors (``extra``, e.g. rio-tiler's) with the status they deserve. Under the
OGC paths (``/wmts…``, ``/wms``) every error, whatever its status, is an OGC exception document
(WMTS: OWS 1.1 ``ExceptionReport``; WMS: ``ServiceExceptionReport``), never JSON and never a traceback;
an error that names its parameter (``param``, e.g. :class:`services.params.InvalidParameter`) gives it as
the exception's ``locator``.

No answer reveals where the storage lives: a 4xx message has its absolute local paths, ``/vsi…`` GDAL paths
and ``s3://`` URLs replaced by ``<path>`` (:func:`scrub`), a 5xx says only the generic text of its status
(or the ``public_detail`` its exception declares, e.g. the render budget's 503), and a validation error
does not echo the input it refused.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ocsge.errors import ArtifactNotFound, InvalidStorageKey, OcsgeError, StorageError, StorageUnavailable
from services.ogc.kvp import OgcError, ows_exception, wms_exception

log = logging.getLogger("ocsge.services")

RETRY_AFTER_S = 30

# Most specific first: the first class an exception is an instance of decides.
BASE_STATUSES: tuple[tuple[type[BaseException], int], ...] = (
    (InvalidStorageKey, 400),
    (ArtifactNotFound, 404),
    (StorageUnavailable, 503),
    (StorageError, 503),
    (OcsgeError, 400),
)

GENERIC = {
    404: "not found: the requested artifact is not (or no longer) available",
    500: "internal error: the fault is ours and has been logged",
    503: "storage temporarily unavailable, retry later",
}


def status_of(exc: BaseException, extra: Mapping[type[BaseException], int] | None = None) -> int:
    for cls, status in (*tuple((extra or {}).items()), *BASE_STATUSES):
        if isinstance(exc, cls):
            return status
    return 500


# an absolute path of two segments or more, a GDAL virtual path, or a storage URL
_PATHS = re.compile(r"(?:(?:s3|gs|file)://|/vsi[a-z0-9_]+/)\S*|(?<![\w.:/])/(?:[\w.\-]+/)+[\w.\-]+")


def scrub(text: str) -> str:
    """``text`` without local paths, ``/vsi…`` paths or storage URLs (each becomes ``<path>``)."""
    return _PATHS.sub("<path>", text)


def public_message(exc: BaseException, status: int) -> str:
    """What the client may read: the message of a 4xx that names its input; a generic text otherwise (a
    storage error names roots and buckets, a fault names internals)."""
    if status >= 500 or isinstance(exc, ArtifactNotFound):
        detail = getattr(exc, "public_detail", None) if status >= 500 else None
        return detail if isinstance(detail, str) else GENERIC.get(status, GENERIC[500])
    return scrub(str(exc) or type(exc).__name__)


def is_ogc(request: Request) -> bool:
    path = request.url.path
    return path == "/wms" or path == "/wmts" or path.startswith("/wmts/")


def ogc_response(request: Request, status: int, message: str, code: str | None = None,
                 locator: str | None = None) -> Response:
    if code is None:
        code = "InvalidParameterValue" if status in (400, 422) else "NoApplicableCode"
    error = OgcError(code, message, locator=locator, status=status)
    if request.url.path == "/wms":
        params = {k.upper(): v for k, v in request.query_params.items()}
        version = params.get("VERSION") or params.get("WMTVER") or "1.3.0"
        response = wms_exception(error, version if version in ("1.3.0", "1.1.1") else "1.3.0")
    else:
        response = ows_exception(error)
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def _without_input(error: Any) -> Any:
    """A validation error as FastAPI reports it, less the input it refused (a body can be megabytes)."""
    return {k: v for k, v in error.items() if k not in ("input", "url")} if isinstance(error, dict) else error


def add_error_handlers(app: FastAPI, ogc: bool = False,
                       extra: Mapping[type[BaseException], int] | None = None) -> None:
    """Install the map on ``app``; ``ogc=True`` when the app serves ``/wmts`` or ``/wms``."""

    def respond(request: Request, exc: BaseException) -> Response:
        status = status_of(exc, extra)
        if status >= 500:
            log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        else:
            log.info("%s %s: %s %s", request.method, request.url.path, status, exc)
        message = public_message(exc, status)
        if ogc and is_ogc(request):
            param = getattr(exc, "param", None)
            return ogc_response(request, status, message, locator=param if isinstance(param, str) else None)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    async def on_error(request: Request, exc: Exception) -> Response:
        return respond(request, exc)

    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.detail, str):
            exc.detail = scrub(exc.detail)
        if ogc and is_ogc(request):
            return ogc_response(request, exc.status_code, str(exc.detail))
        return await http_exception_handler(request, exc)

    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        if ogc and is_ogc(request):
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
            return ogc_response(request, 400, f"{where or 'request'}: {first.get('msg', 'invalid')}", locator=where)
        return await request_validation_exception_handler(request, RequestValidationError(
            [_without_input(e) for e in exc.errors()], body=None))

    for cls in (*tuple((extra or {}).keys()), *(c for c, _ in BASE_STATUSES)):
        app.add_exception_handler(cls, on_error)
    app.add_exception_handler(StarletteHTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_error)
