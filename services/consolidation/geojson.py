"""GeoJSON in and out of the consolidation API: validation of client geometries, reprojection between
EPSG:4326 (what clients speak, RFC 7946) and the département's CRS (what is stored), and the split of a
polygon along a drawn line.

Every refusal is an :class:`InvalidInput` naming the field (HTTP 422): wrong type, too many vertices,
non-finite coordinates, invalid polygon, outside the window's territory, a line that does not cut the
polygon in two.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import shapely
from pyproj import Transformer
from shapely.geometry import LineString, mapping, shape
from shapely.geometry.base import BaseGeometry

from ocsge.consolidation.model import InvalidInput

Bbox = tuple[float, float, float, float]
# A drawn geometry may leave the territory's box by this much (metres): a click on the edge is inside.
EDGE_TOLERANCE_M = 10.0


@lru_cache(maxsize=32)
def _transformer(src: int, dst: int) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


def reproject(geom: BaseGeometry, src: int, dst: int) -> BaseGeometry:
    if src == dst:
        return geom
    t = _transformer(src, dst)
    return shapely.transform(geom, lambda xy: _stack(*t.transform(xy[:, 0], xy[:, 1])))


def _stack(x: Any, y: Any) -> Any:
    import numpy as np

    return np.column_stack([x, y])


def to_feature(geom: BaseGeometry, epsg: int, properties: dict[str, Any], id_: str | None = None) -> dict[str, Any]:
    """A GeoJSON feature in EPSG:4326 (7 decimals: ~1 cm) of a geometry stored in ``epsg``."""
    out = shapely.set_precision(reproject(geom, epsg, 4326), 1e-7) if epsg != 4326 else geom
    feature: dict[str, Any] = {"type": "Feature", "geometry": mapping(out), "properties": properties}
    if id_ is not None:
        feature["id"] = id_
    return feature


def collection(features: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def _count_vertices(coords: Any, limit: int, param: str, depth: int = 0) -> int:
    """Vertices of a GeoJSON ``coordinates`` array, refused past ``limit`` or past polygon nesting."""
    if depth > 3 or not isinstance(coords, list):
        raise InvalidInput(param, "coordinates must be nested arrays of [x, y] positions")
    if coords and isinstance(coords[0], int | float):
        if (
            len(coords) < 2
            or len(coords) > 3
            or not all(isinstance(c, int | float) and math.isfinite(c) for c in coords)
        ):
            raise InvalidInput(param, "each position must be 2 or 3 finite numbers")
        return 1
    total = 0
    for c in coords:
        total += _count_vertices(c, limit - total, param, depth + 1)
        if total > limit:
            raise InvalidInput(param, f"more than {limit} vertices")
    return total


def parse_geometry(
    value: Any, allowed: tuple[str, ...], *, param: str, max_vertices: int, epsg: int, territory: Bbox | None
) -> BaseGeometry:
    """A client geometry (EPSG:4326 GeoJSON) checked and reprojected to the département's ``epsg``."""
    if not isinstance(value, dict) or value.get("type") not in allowed:
        raise InvalidInput(param, f"must be a GeoJSON geometry of type {' or '.join(allowed)}")
    coords = value.get("coordinates")
    _count_vertices(coords, max_vertices, param)
    try:
        geom = shape({"type": value["type"], "coordinates": coords})
    except (ValueError, TypeError, IndexError, AttributeError, shapely.errors.GEOSException) as exc:
        raise InvalidInput(param, f"not a valid {value['type']}: {exc}") from None
    if geom.is_empty:
        raise InvalidInput(param, "empty geometry")
    lon0, lat0, lon1, lat1 = geom.bounds
    if not (-180 <= lon0 <= lon1 <= 180 and -90 <= lat0 <= lat1 <= 90):
        raise InvalidInput(param, "coordinates must be longitude, latitude (EPSG:4326)")
    if not geom.is_valid:
        raise InvalidInput(param, f"invalid geometry: {shapely.is_valid_reason(geom)}")
    local = reproject(geom, 4326, epsg)
    if territory is not None:
        x0, y0, x1, y1 = territory
        box = shapely.box(x0 - EDGE_TOLERANCE_M, y0 - EDGE_TOLERANCE_M, x1 + EDGE_TOLERANCE_M, y1 + EDGE_TOLERANCE_M)
        if not box.contains(local):
            raise InvalidInput(param, "outside the territory of this consolidation window")
    return local


def _side(line: LineString, part: BaseGeometry) -> float:
    """> 0 when ``part`` lies on the left of ``line`` (in its drawing direction), < 0 on the right."""
    p = part.representative_point()
    d = line.project(p)
    step = max(min(line.length * 1e-3, 0.5), 1e-6)
    a = line.interpolate(max(d - step, 0.0))
    b = line.interpolate(min(d + step, line.length))
    return (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x)


def split_polygon(polygon: BaseGeometry, line: LineString, *, param: str = "line") -> list[BaseGeometry]:
    """The two parts of ``polygon`` cut by ``line``: [left, right] of the line's drawing direction."""
    from shapely.ops import split

    try:
        pieces = [g for g in split(polygon, line).geoms if g.area > 0]
    except (ValueError, shapely.errors.GEOSException) as exc:
        raise InvalidInput(param, f"cannot split the polygon with this line: {exc}") from None
    if len(pieces) != 2:
        raise InvalidInput(
            param,
            f"the line must cut the polygon in exactly two parts (it gives {len(pieces)}): "
            "draw it across the polygon, from outside to outside",
        )
    sides = [_side(line, p) for p in pieces]
    if (sides[0] > 0) == (sides[1] > 0):
        raise InvalidInput(param, "cannot tell the left part from the right part of the line")
    return pieces if sides[0] > 0 else [pieces[1], pieces[0]]
