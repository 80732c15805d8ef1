"""GetFeatureInfo answers (WMTS and WMS): the class code and label under the pixel, in the three formats
clients ask for (the HTML one from ``templates/featureinfo.html``)."""

from __future__ import annotations

import json

from fastapi.responses import Response

from services.ogc.documents import render
from services.ogc.kvp import OgcError
from services.tiles.render import PixelInfo

INFO_FORMATS = ("text/plain", "application/json", "text/html")


def check_format(info_format: str | None, locator: str) -> str:
    fmt = (info_format or "text/plain").split(";")[0].strip().lower()
    if fmt not in INFO_FORMATS:
        raise OgcError("InvalidFormat", f"{locator}={info_format!r} is not one of {', '.join(INFO_FORMATS)}",
                       locator=locator)
    return fmt


def feature_info_response(results: list[tuple[str, PixelInfo | None]], fmt: str) -> Response:
    if fmt == "application/json":
        features = [
            {"type": "Feature", "geometry": None, "id": layer,
             "properties": info.as_dict() if info else {"layer": layer, "value": None}}
            for layer, info in results
        ]
        return Response(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False),
                         media_type="application/json")
    if fmt == "text/html":
        return Response(render("featureinfo.html", results=results), media_type="text/html; charset=utf-8")
    lines = []
    for layer, info in results:
        if info is None:
            lines.append(f"{layer}: no data")
        else:
            lines.append(f"{layer}: {info.code or info.value} {info.label or ''} "
                         f"(value={info.value}, département={info.departement}, millésime={info.millesime})")
    return Response("\n".join(lines) + "\n", media_type="text/plain; charset=utf-8")
