"""A search request independent of the backend, and the parsing of user input into it.

Every malformed value raises :class:`InvalidSearch` with a message naming the parameter; the HTTP layer
turns it into a 400. Nothing a client sends reaches SQL as text: filters are parsed by ``cql2`` and
passed to pgstac as JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ocsge.errors import OcsgeError

MAX_LIMIT = 1000
DEFAULT_LIMIT = 10


class InvalidSearch(OcsgeError, ValueError):
    """A search parameter that cannot be understood (HTTP 400)."""


class UnknownCollection(OcsgeError, LookupError):
    """A collection that does not exist (HTTP 404)."""


@dataclass
class SearchRequest:
    collections: list[str] | None = None
    ids: list[str] | None = None
    bbox: tuple[float, float, float, float] | None = None
    intersects: dict[str, Any] | None = None  # GeoJSON geometry
    datetime: str | None = None  # RFC 3339 instant or interval ("a/b", "../b", "a/..")
    filter: dict[str, Any] | None = None  # CQL2 JSON
    sortby: list[tuple[str, str]] = field(default_factory=list)  # (field, "asc" | "desc")
    include: set[str] = field(default_factory=set)
    exclude: set[str] = field(default_factory=set)
    limit: int = DEFAULT_LIMIT
    token: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1:
            raise InvalidSearch(f"limit must be a positive integer, got {self.limit!r}")
        if self.limit > MAX_LIMIT:
            raise InvalidSearch(f"limit {self.limit} is over the maximum of {MAX_LIMIT}")
        if self.bbox is not None:
            self.bbox = parse_bbox(self.bbox)
        if self.bbox is not None and self.intersects is not None:
            raise InvalidSearch("bbox and intersects cannot be used together")
        if self.intersects is not None:
            check_geometry(self.intersects)
        if self.datetime is not None:
            parse_interval(self.datetime)
        if self.filter is not None:
            self.filter = parse_filter(self.filter)
        for name, direction in self.sortby:
            if direction not in ("asc", "desc") or not name:
                raise InvalidSearch(f"invalid sortby {name!r} {direction!r}")


def parse_bbox(value: Any) -> tuple[float, float, float, float]:
    """A 2D bbox (a 3D one is flattened); text ``"w,s,e,n"`` or a sequence of numbers."""
    if isinstance(value, str):
        parts: list[Any] = value.split(",")
    else:
        parts = list(value)
    try:
        numbers = [float(v) for v in parts]
    except (TypeError, ValueError):
        raise InvalidSearch(f"bbox {value!r} is not a list of numbers") from None
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
        raise InvalidSearch(f"bbox {value!r} must have 4 (or 6) finite numbers")
    w, s, e, n = numbers
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise InvalidSearch(f"bbox {value!r} is outside longitude/latitude bounds or south > north")
    return (w, s, e, n)


def check_geometry(geom: Any) -> None:
    import shapely.geometry

    if not isinstance(geom, dict) or "type" not in geom:
        raise InvalidSearch("intersects must be a GeoJSON geometry object")
    try:
        shape = shapely.geometry.shape(geom)
    except Exception as exc:  # shapely raises several types for bad GeoJSON
        raise InvalidSearch(f"intersects is not a valid GeoJSON geometry: {exc}") from None
    if shape.is_empty:
        raise InvalidSearch("intersects is an empty geometry")


def _instant(text: str, name: str) -> float | None:
    text = text.strip()
    if text in ("", ".."):
        return None
    try:
        value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise InvalidSearch(f"datetime {name!r} is not RFC 3339 (e.g. 2021-01-01T00:00:00Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def parse_interval(value: str) -> tuple[float | None, float | None]:
    """``(start, end)`` in POSIX seconds, None for an open end; an instant gives start == end."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidSearch(f"datetime {value!r} is empty")
    if "/" in value:
        parts = value.split("/")
        if len(parts) != 2:
            raise InvalidSearch(f"datetime interval {value!r} must have exactly one '/'")
        start, end = _instant(parts[0], value), _instant(parts[1], value)
        if start is None and end is None:
            raise InvalidSearch(f"datetime interval {value!r} is open at both ends")
        if start is not None and end is not None and start > end:
            raise InvalidSearch(f"datetime interval {value!r} ends before it starts")
        return start, end
    instant = _instant(value, value)
    if instant is None:
        raise InvalidSearch(f"datetime {value!r} is not an instant")
    return instant, instant


def parse_filter(value: Any, lang: str | None = None) -> dict[str, Any]:
    """CQL2 text or JSON (a string or an object) into validated CQL2 JSON."""
    import cql2

    try:
        if isinstance(value, dict):
            expr = cql2.Expr(value)
        elif lang == "cql2-json" or (isinstance(value, str) and value.lstrip().startswith("{")):
            expr = cql2.Expr(json.loads(value))
        elif isinstance(value, str):
            expr = cql2.Expr(value)
        else:
            raise InvalidSearch(f"filter must be CQL2 text or JSON, got {type(value).__name__}")
        expr.validate()
        out = expr.to_json()
    except InvalidSearch:
        raise
    except Exception as exc:  # cql2 raises bare Exceptions for parse errors
        detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip().strip("|"))
        raise InvalidSearch(f"invalid CQL2 filter: {detail[:300] or type(exc).__name__}") from None
    if not isinstance(out, dict):
        raise InvalidSearch("filter must be a boolean expression")
    return out


def parse_sortby(value: Any) -> list[tuple[str, str]]:
    """``"-datetime,+id"`` or ``[{"field": .., "direction": ..}]`` into (field, direction) pairs."""
    if value in (None, "", []):
        return []
    out: list[tuple[str, str]] = []
    entries = value.split(",") if isinstance(value, str) else value
    for entry in entries:
        if isinstance(entry, str):
            entry = entry.strip()
            direction = "desc" if entry.startswith("-") else "asc"
            name = entry.lstrip("+-").strip()
        elif isinstance(entry, dict):
            name, direction = str(entry.get("field", "")), str(entry.get("direction", "asc")).lower()
        else:  # a pydantic sort model (stac-fastapi POST): direction is an enum
            raw = getattr(entry, "direction", "asc")
            name, direction = str(getattr(entry, "field", "")), str(getattr(raw, "value", raw)).lower()
        if not name or direction not in ("asc", "desc"):
            raise InvalidSearch(f"invalid sortby entry {entry!r}")
        out.append((name, direction))
    return out


def parse_fields(value: Any) -> tuple[set[str], set[str]]:
    """``"id,-properties.title"`` or ``{"include": [...], "exclude": [...]}`` into (include, exclude)."""
    if value in (None, "", []):
        return set(), set()
    if isinstance(value, dict):
        return set(value.get("include") or ()), set(value.get("exclude") or ())
    entries = value.split(",") if isinstance(value, str) else list(value)
    include, exclude = set(), set()
    for entry in entries:
        entry = entry.strip()
        if entry.startswith("-"):
            exclude.add(entry[1:])
        elif entry:
            include.add(entry.lstrip("+"))
    return include, exclude


def apply_fields(item: dict[str, Any], include: set[str], exclude: set[str]) -> dict[str, Any]:
    """The fields extension: keep ``include`` paths (plus id and collection), then drop ``exclude`` ones."""
    if not include and not exclude:
        return item
    out: dict[str, Any]
    if include:
        out = {}
        for path in include | {"id", "collection"}:
            _copy_path(item, out, path.split("."))
    else:
        out = dict(item)
    for path in exclude - include:
        _drop_path(out, path.split("."))
    return out


def _copy_path(src: dict[str, Any], dst: dict[str, Any], parts: list[str]) -> None:
    head = parts[0]
    if head not in src:
        return
    if len(parts) == 1 or not isinstance(src[head], dict):
        dst[head] = src[head]
        return
    child = dst.setdefault(head, {})
    if isinstance(child, dict):
        _copy_path(src[head], child, parts[1:])


def _drop_path(obj: dict[str, Any], parts: list[str]) -> None:
    head = parts[0]
    if head not in obj:
        return
    if len(parts) == 1:
        obj.pop(head)
    elif isinstance(obj[head], dict):
        obj[head] = dict(obj[head])
        _drop_path(obj[head], parts[1:])
