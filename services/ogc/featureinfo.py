"""GetFeatureInfo answers (WMTS and WMS): the class code and label under the pixel, in the three formats
clients ask for."""

from __future__ import annotations

import json
from html import escape

from fastapi.responses import Response

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
        rows = []
        for layer, info in results:
            if info is None:
                rows.append(f"<tr><td>{escape(layer)}</td><td colspan='4'>aucune donnée</td></tr>")
            else:
                swatch = f"<span style='background:{info.colour};padding:0 .8em'></span> " if info.colour else ""
                rows.append(
                    f"<tr><td>{escape(layer)}</td><td>{swatch}{escape(info.code or str(info.value))}</td>"
                    f"<td>{escape(info.label or '')}</td><td>{escape(info.departement)}</td>"
                    f"<td>{escape(info.millesime)}</td></tr>"
                )
        body = (
            "<!DOCTYPE html><html lang='fr'><head><meta charset='utf-8'><title>GetFeatureInfo</title></head><body>"
            "<table><tr><th>couche</th><th>code</th><th>libellé</th><th>département</th><th>millésime</th></tr>"
            + "".join(rows) + "</table></body></html>"
        )
        return Response(body, media_type="text/html; charset=utf-8")
    lines = []
    for layer, info in results:
        if info is None:
            lines.append(f"{layer}: no data")
        else:
            lines.append(f"{layer}: {info.code or info.value} {info.label or ''} "
                         f"(value={info.value}, département={info.departement}, millésime={info.millesime})")
    return Response("\n".join(lines) + "\n", media_type="text/plain; charset=utf-8")
