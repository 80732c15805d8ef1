"""MapLibre styles for the vector layers, in the official OCS GE colours (``ocsge.nomenclature``)."""

from __future__ import annotations

from typing import Any

from ocsge.nomenclature import COUVERTURE, USAGE

# attribute → colour table; differences are coloured by what the land became
ATTRIBUTES: dict[str, dict[str, Any]] = {
    "code_cs": COUVERTURE, "code_us": USAGE, "cs_apres": COUVERTURE, "us_apres": USAGE,
    "cs_avant": COUVERTURE, "us_avant": USAGE,
}
DEFAULT_ATTRIBUTE = {"occupation": "code_cs", "difference": "cs_apres"}


def colour_expression(attribute: str) -> list[Any]:
    """``match`` on the code. Each label is a one-element array (``["CS1.1.1.1"]``), which MapLibre reads
    like the scalar: QGIS's MapLibre-style converter (3.22) reads only array labels and draws every polygon
    in the fallback grey otherwise."""
    table = ATTRIBUTES[attribute]
    expr: list[Any] = ["match", ["get", attribute]]
    for code, entry in table.items():
        if entry.colour:
            expr += [[code], entry.colour]
    expr.append("#9E9E9E")
    return expr


def maplibre_style(name: str, tilejson_url: str, source_layer: str, attribute: str,
                   bounds: tuple[float, float, float, float], minzoom: int, maxzoom: int, *,
                   national: bool = False) -> dict[str, Any]:
    """The style of one tileset; a national one opens on the whole of its extent (its lowest zoom)."""
    west, south, east, north = bounds
    return {
        "version": 8,
        "name": name,
        "center": [(west + east) / 2, (south + north) / 2],
        "zoom": minzoom if national else max(minzoom, min(maxzoom, 13)),
        "sources": {"ocsge": {"type": "vector", "url": tilejson_url}},
        "layers": [
            {"id": "background", "type": "background", "paint": {"background-color": "#ffffff"}},
            {
                "id": f"{source_layer}-fill",
                "type": "fill",
                "source": "ocsge",
                "source-layer": source_layer,
                "paint": {"fill-color": colour_expression(attribute), "fill-opacity": 0.85},
            },
            {
                "id": f"{source_layer}-outline",
                "type": "line",
                "source": "ocsge",
                "source-layer": source_layer,
                "minzoom": 14,
                "paint": {"line-color": "#333333", "line-width": 0.3, "line-opacity": 0.6},
            },
        ],
    }
