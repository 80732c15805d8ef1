"""OGC KVP requests and exceptions shared by WMTS and WMS.

Parameter names are case-insensitive in OGC KVP; every error is an :class:`OgcError` that the service
turns into its ExceptionReport (WMTS: OWS 1.1 ``ExceptionReport``; WMS: ``ServiceExceptionReport``),
with a 4xx status: a bad request never becomes a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import escape, quoteattr

from fastapi import Request
from fastapi.responses import Response


class OgcError(Exception):
    def __init__(self, code: str, message: str, locator: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.locator = locator
        self.status = status


class Kvp:
    """Query parameters with case-insensitive names (the last value wins, as most servers do)."""

    def __init__(self, params: Mapping[str, str]) -> None:
        self._params = {k.upper(): v for k, v in params.items()}

    @classmethod
    def of(cls, request: Request) -> Kvp:
        return cls(dict(request.query_params))

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self._params.get(name.upper())
        return default if value is None or value == "" else value

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise OgcError("MissingParameterValue", f"missing parameter {name}", locator=name)
        return value

    def integer(self, name: str, minimum: int | None = None, maximum: int | None = None,
                required: bool = True, code: str = "InvalidParameterValue") -> int:
        raw = self.require(name) if required else self.get(name)
        if raw is None:
            return -1
        try:
            value = int(raw.rsplit(":", 1)[-1] if name.upper() == "TILEMATRIX" else raw)
        except ValueError:
            raise OgcError(code, f"{name}={raw!r} is not an integer", locator=name) from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"{minimum if minimum is not None else '-∞'}…{maximum if maximum is not None else '∞'}"
            raise OgcError(code, f"{name}={value} is outside {bounds}", locator=name)
        return value

    def __contains__(self, name: str) -> bool:
        return name.upper() in self._params


def ows_exception(error: OgcError) -> Response:
    """WMTS / OWS 1.1 ExceptionReport."""
    locator = f" locator={quoteattr(error.locator)}" if error.locator else ""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows/1.1" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="1.0.0" xml:lang="fr" '
        'xsi:schemaLocation="http://www.opengis.net/ows/1.1 http://schemas.opengis.net/ows/1.1.0/owsExceptionReport.xsd">\n'
        f'  <ows:Exception exceptionCode="{error.code}"{locator}>\n'
        f"    <ows:ExceptionText>{escape(error.message)}</ows:ExceptionText>\n"
        "  </ows:Exception>\n"
        "</ows:ExceptionReport>\n"
    )
    return Response(body, status_code=error.status, media_type="application/xml",
                    headers={"Cache-Control": "no-store"})


def wms_exception(error: OgcError, version: str = "1.3.0") -> Response:
    """WMS ServiceExceptionReport (1.3.0 namespaced, 1.1.1 in the vendor media type)."""
    locator = f" locator={quoteattr(error.locator)}" if error.locator else ""
    if version == "1.1.1":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<ServiceExceptionReport version="1.1.1">\n'
            f'  <ServiceException code="{error.code}"{locator}>{escape(error.message)}</ServiceException>\n'
            "</ServiceExceptionReport>\n"
        )
        media = "application/vnd.ogc.se_xml"
    else:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ServiceExceptionReport version="1.3.0" xmlns="http://www.opengis.net/ogc" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xsi:schemaLocation="http://www.opengis.net/ogc http://schemas.opengis.net/wms/1.3.0/exceptions_1_3_0.xsd">\n'
            f'  <ServiceException code="{error.code}"{locator}>{escape(error.message)}</ServiceException>\n'
            "</ServiceExceptionReport>\n"
        )
        media = "text/xml"
    return Response(body, status_code=error.status, media_type=media, headers={"Cache-Control": "no-store"})


def x(text: object) -> str:
    """XML-escaped text."""
    return escape(str(text))


def attr(text: object) -> str:
    return quoteattr(str(text))
