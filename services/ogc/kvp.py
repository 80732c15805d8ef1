"""OGC KVP requests and exceptions shared by WMTS and WMS.

Parameter names are case-insensitive in OGC KVP; every error is an :class:`OgcError` that the service
turns into its ExceptionReport (WMTS: OWS 1.1 ``ExceptionReport``; WMS: ``ServiceExceptionReport``),
with a 4xx status: a bad request never becomes a 500.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request
from fastapi.responses import Response

from services.ogc.documents import render


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
            raise OgcError(code, f"{name}={raw[:40]!r} is not an integer", locator=name) from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"{minimum if minimum is not None else '-∞'}…{maximum if maximum is not None else '∞'}"
            raise OgcError(code, f"{name}={value} is outside {bounds}", locator=name)
        return value

    def __contains__(self, name: str) -> bool:
        return name.upper() in self._params


def ows_exception(error: OgcError) -> Response:
    """WMTS / OWS 1.1 ExceptionReport."""
    return Response(render("ows_exception.xml", error=error), status_code=error.status, media_type="application/xml",
                    headers={"Cache-Control": "no-store"})


def wms_exception(error: OgcError, version: str = "1.3.0") -> Response:
    """WMS ServiceExceptionReport (1.3.0 namespaced, 1.1.1 in the vendor media type)."""
    media = "application/vnd.ogc.se_xml" if version == "1.1.1" else "text/xml"
    return Response(render("wms_exception.xml", error=error, version=version), status_code=error.status,
                    media_type=media, headers={"Cache-Control": "no-store"})
