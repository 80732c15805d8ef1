"""A search request independent of the backend, and the parsing of user input into it.

Every malformed value raises :class:`InvalidSearch` with a message naming the parameter; the HTTP layer
turns it into a 400. Nothing a client sends reaches SQL as text: filters are parsed and checked here and
passed to pgstac as JSON.

Documented limits (each answered with a 400 naming the parameter, before any costly work):

=========================  =======================================================================
``limit``                  above :data:`MAX_LIMIT` is clamped to it (the STAC API spec), below 1 refused
``filter`` (CQL2 text)     at most :data:`MAX_FILTER_TEXT` bytes, parentheses and prefix operators
                           (``NOT``, unary ``-``) nested at most :data:`MAX_FILTER_DEPTH` deep — checked
                           *before* the text reaches the ``cql2`` parser, which crashes the process on
                           a few thousand nested levels
``filter`` (CQL2 JSON)     operators nested at most :data:`MAX_FILTER_DEPTH` deep, at most
                           :data:`MAX_FILTER_NODES` values; checked by :func:`check_filter` (linear),
                           not by ``cql2``'s ``validate()``, whose cost grows with depth (≈ 2.7 s and
                           440 MB at depth 32): it is never called
``intersects`` and         at most :data:`MAX_GEOMETRY_VERTICES` positions, finite numbers, the nesting
geometry literals          of their GeoJSON type (a ``GeometryCollection`` may not contain another one)
``sortby``                 at most :data:`MAX_SORT_FIELDS` fields, names of :data:`NAME_PATTERN`
``fields``                 at most :data:`MAX_FIELDS` paths, names of :data:`NAME_PATTERN`
=========================  =======================================================================

``LIKE`` patterns are normalised (runs of ``%`` collapse to one) and matched by :func:`like_matcher` in
O(len(pattern) × len(value)), never by a backtracking regular expression.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from ocsge.errors import OcsgeError

MAX_LIMIT = 1000
DEFAULT_LIMIT = 10
MAX_FILTER_TEXT = 8192  # bytes of a CQL2 text (or JSON given as text)
MAX_FILTER_DEPTH = 32  # nesting of CQL2 operators (and of parentheses in CQL2 text)
MAX_FILTER_NODES = 20_000  # values in a CQL2 JSON filter, geometry positions excluded
MAX_GEOMETRY_VERTICES = 10_000  # positions in ``intersects`` or in all geometry literals of a filter
MAX_SORT_FIELDS = 8
MAX_FIELDS = 100
MAX_IDS = 10_000
MAX_TOKEN_CHARS = 2000  # a paging token (pgstac's own are a few hundred characters)
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.\-]{0,127}$")

# what the fields extension returns when a client asks for the default set (STAC API fields extension)
DEFAULT_FIELDS = frozenset({"type", "stac_version", "stac_extensions", "id", "collection", "geometry", "bbox",
                            "links", "assets", "properties.datetime", "properties.start_datetime",
                            "properties.end_datetime"})
# kept whenever ``include`` selects anything: an item is still a GeoJSON Feature the API can link
ALWAYS_INCLUDED = frozenset({"type", "id", "collection"})


class InvalidSearch(OcsgeError, ValueError):
    """A search parameter that cannot be understood (HTTP 400)."""


class UnknownCollection(OcsgeError, LookupError):
    """A collection that does not exist (HTTP 404)."""


class SearchTimeout(OcsgeError):
    """A search past its time budget (HTTP 503 with Retry-After)."""


SEARCH_BUDGET_S = 10.0  # seconds a search may take before it is answered 503 (and its worker stops)


class ValidatedFilter(dict):  # type: ignore[type-arg]
    """A CQL2 JSON filter that went through :func:`parse_filter`: never checked twice."""


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
    deadline: float | None = field(default=None, compare=False)  # time.monotonic() past which to stop

    def check_deadline(self) -> None:
        """Raise :class:`SearchTimeout` past the deadline (a checkpoint of long loops in the backends)."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise SearchTimeout(f"the search did not finish within its {SEARCH_BUDGET_S:g} s budget: retry "
                                "later or narrow it (collections, bbox, datetime)")

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1:
            raise InvalidSearch(f"limit must be a positive integer, got {_short(self.limit)}")
        self.limit = min(self.limit, MAX_LIMIT)  # the STAC API spec: a larger limit gets the maximum
        if self.ids is not None and len(self.ids) > MAX_IDS:
            raise InvalidSearch(f"ids lists {len(self.ids)} identifiers, more than the maximum of {MAX_IDS}")
        if self.bbox is not None:
            self.bbox = parse_bbox(self.bbox)
        if self.bbox is not None and self.intersects is not None:
            raise InvalidSearch("bbox and intersects cannot be used together")
        if self.intersects is not None:
            check_geometry(self.intersects, "intersects")
        if self.datetime is not None:
            parse_interval(self.datetime)
        if self.filter is not None:
            self.filter = parse_filter(self.filter)
        if len(self.sortby) > MAX_SORT_FIELDS:
            raise InvalidSearch(f"sortby has {len(self.sortby)} fields, more than the maximum of {MAX_SORT_FIELDS}")
        for name, direction in self.sortby:
            if direction not in ("asc", "desc") or not isinstance(name, str) or not NAME_PATTERN.match(name):
                raise InvalidSearch(f"invalid sortby {_short(name)} {_short(direction)}")
        for which in (self.include, self.exclude):
            if len(which) > MAX_FIELDS:
                raise InvalidSearch(f"fields lists {len(which)} paths, more than the maximum of {MAX_FIELDS}")
            bad = next((p for p in which if not isinstance(p, str) or not NAME_PATTERN.match(p)), None)
            if bad is not None:
                raise InvalidSearch(f"fields: invalid path {_short(bad)}")

    def fingerprint(self) -> str:
        """A short digest of what selects and orders the results (not limit, token or fields): a paging
        token carries it, so that a token replayed with another search is refused instead of paging it."""
        key = json.dumps([self.collections, self.ids, self.bbox, self.intersects, self.datetime, self.filter,
                          self.sortby], sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()

    def seal_token(self, inner: str) -> str:
        """An opaque paging token for this search: the backend's own position (an offset, pgstac's token)
        bound to :meth:`fingerprint`, never the search itself."""
        return base64.urlsafe_b64encode(f"{self.fingerprint()}:{inner}".encode()).decode().rstrip("=")

    def open_token(self) -> str | None:
        """The backend's position sealed in :attr:`token` (None without one); a malformed token, or one made
        for another search, is an :class:`InvalidSearch`."""
        if not self.token:
            return None
        try:
            if len(self.token) > MAX_TOKEN_CHARS:
                raise ValueError
            digest, inner = base64.urlsafe_b64decode(self.token + "=" * (-len(self.token) % 4)).decode().split(":", 1)
            if not inner:
                raise ValueError
        except ValueError:
            raise InvalidSearch(f"invalid paging token {self.token[:40]!r}") from None
        if digest != self.fingerprint():
            raise InvalidSearch("token: this paging token belongs to another search (send the same parameters "
                                "with it, as a 'next' link with merge=true asks)")
        return inner


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[:n] + "…"


def parse_bbox(value: Any) -> tuple[float, float, float, float]:
    """A 2D bbox (a 3D one is flattened); text ``"w,s,e,n"`` or a sequence of numbers."""
    if isinstance(value, str):
        parts: list[Any] = value.split(",")
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        raise InvalidSearch(f"bbox {_short(value)} is not a list of numbers")
    if len(parts) not in (4, 6):
        raise InvalidSearch(f"bbox {_short(value)} must have 4 (or 6) finite numbers")
    try:
        numbers = [float(v) for v in parts]
    except (TypeError, ValueError):
        raise InvalidSearch(f"bbox {_short(value)} is not a list of numbers") from None
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if not all(math.isfinite(v) for v in numbers):
        raise InvalidSearch(f"bbox {_short(value)} must have 4 (or 6) finite numbers")
    w, s, e, n = numbers
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise InvalidSearch(f"bbox {_short(value)} is outside longitude/latitude bounds or south > north")
    return (w, s, e, n)


# --- geometry ---------------------------------------------------------------------------------------
_POSITION_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2,
                   "MultiPolygon": 3}


def _check_position(value: Any, name: str) -> None:
    if not isinstance(value, list) or not 2 <= len(value) <= 3 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise InvalidSearch(f"{name}: a position must be 2 or 3 finite numbers")


def _count_positions(coords: Any, depth: int, name: str) -> int:
    """Positions in ``coords`` nested ``depth`` lists deep (0: one position), iteratively; refuses anything
    that is not finite numbers at exactly that depth."""
    count = 0
    stack = [(coords, depth)]
    while stack:
        value, d = stack.pop()
        if not isinstance(value, list):
            raise InvalidSearch(f"{name}: coordinates are not nested lists of numbers")
        if d == 1:  # a list of positions: counted before any of them is looked at
            count += len(value)
            if count > MAX_GEOMETRY_VERTICES:
                raise InvalidSearch(f"{name} has more than {MAX_GEOMETRY_VERTICES} vertices")
            for position in value:
                _check_position(position, name)
            continue
        if d == 0:
            count += 1
            if count > MAX_GEOMETRY_VERTICES:
                raise InvalidSearch(f"{name} has more than {MAX_GEOMETRY_VERTICES} vertices")
            _check_position(value, name)
            continue
        if len(value) > MAX_GEOMETRY_VERTICES:
            raise InvalidSearch(f"{name} has more than {MAX_GEOMETRY_VERTICES} vertices")
        stack.extend((v, d - 1) for v in value)
    return count


def count_vertices(geom: Any, name: str = "intersects") -> int:
    """Positions of a GeoJSON geometry, after checking its structure (type, nesting, finite numbers)."""
    if not isinstance(geom, dict) or not isinstance(geom.get("type"), str):
        raise InvalidSearch(f"{name} must be a GeoJSON geometry object")
    kind = geom["type"]
    if kind == "GeometryCollection":
        members = geom.get("geometries")
        if not isinstance(members, list):
            raise InvalidSearch(f"{name}: a GeometryCollection needs a 'geometries' list")
        total = 0
        for member in members:
            if isinstance(member, dict) and member.get("type") == "GeometryCollection":
                raise InvalidSearch(f"{name}: nested GeometryCollections are not accepted")
            total += count_vertices(member, name)
            if total > MAX_GEOMETRY_VERTICES:
                raise InvalidSearch(f"{name} has more than {MAX_GEOMETRY_VERTICES} vertices")
        return total
    if kind not in _POSITION_DEPTH:
        raise InvalidSearch(f"{name}: unknown GeoJSON geometry type {_short(kind)}")
    return _count_positions(geom.get("coordinates"), _POSITION_DEPTH[kind], name)


def check_geometry(geom: Any, name: str = "intersects") -> None:
    """A GeoJSON geometry within the limits that shapely accepts and that is not empty."""
    import shapely.geometry

    count_vertices(geom, name)
    try:
        shape = shapely.geometry.shape(geom)
    except Exception as exc:  # shapely raises several types for bad GeoJSON
        raise InvalidSearch(f"{name} is not a valid GeoJSON geometry: {str(exc)[:200]}") from None
    if shape.is_empty:
        raise InvalidSearch(f"{name} is an empty geometry")


# --- datetime ---------------------------------------------------------------------------------------
def _instant(text: str, name: str) -> float | None:
    text = text.strip()
    if text in ("", ".."):
        return None
    try:
        value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise InvalidSearch(f"datetime {_short(name)} is not RFC 3339 (e.g. 2021-01-01T00:00:00Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def parse_interval(value: str) -> tuple[float | None, float | None]:
    """``(start, end)`` in POSIX seconds, None for an open end; an instant gives start == end."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidSearch(f"datetime {_short(value)} is empty")
    if len(value) > 100:
        raise InvalidSearch("datetime is longer than 100 characters")
    if "/" in value:
        parts = value.split("/")
        if len(parts) != 2:
            raise InvalidSearch(f"datetime interval {_short(value)} must have exactly one '/'")
        start, end = _instant(parts[0], value), _instant(parts[1], value)
        if start is None and end is None:
            raise InvalidSearch(f"datetime interval {_short(value)} is open at both ends")
        if start is not None and end is not None and start > end:
            raise InvalidSearch(f"datetime interval {_short(value)} ends before it starts")
        return start, end
    instant = _instant(value, value)
    if instant is None:
        raise InvalidSearch(f"datetime {_short(value)} is not an instant")
    return instant, instant


def literal_epoch(node: Any) -> float | None:
    """POSIX seconds of a CQL2 ``{"timestamp": …}`` or ``{"date": …}`` literal, None for anything else."""
    if isinstance(node, dict) and len(node) == 1:
        if isinstance(node.get("timestamp"), str):
            return _instant(node["timestamp"], "filter timestamp")
        if isinstance(node.get("date"), str):
            try:
                day = date.fromisoformat(node["date"])
            except ValueError:
                raise InvalidSearch(f"filter: DATE {_short(node['date'])} is not YYYY-MM-DD") from None
            return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    return None


# --- CQL2 ---------------------------------------------------------------------------------------------
_LOGICAL = {"and", "or"}
_COMPARISON = {"=", "<>", "<", "<=", ">", ">="}
_SPATIAL = {"s_intersects", "s_equals", "s_disjoint", "s_touches", "s_within", "s_overlaps", "s_crosses",
            "s_contains"}
_TEMPORAL = {"t_after", "t_before", "t_contains", "t_disjoint", "t_during", "t_equals", "t_finishedby",
             "t_finishes", "t_intersects", "t_meets", "t_metby", "t_overlappedby", "t_overlaps", "t_startedby",
             "t_starts"}
_ARRAY = {"a_equals", "a_contains", "a_containedby", "a_overlaps"}
_ARITHMETIC = {"+", "-", "*", "/", "%", "^", "div"}
_TEXT_FUNCTIONS = {"casei", "accenti"}
_PREDICATES = _LOGICAL | _COMPARISON | _SPATIAL | _TEMPORAL | _ARRAY | {"not", "like", "between", "in", "isnull"}


def _json_depth(value: Any) -> int:
    """Nesting depth of JSON containers, iteratively (no recursion on hostile input)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in node)
    return deepest


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # unrolled: linear, no alternation per character


SMALL_JSON_BYTES = 2048


def text_json_shape(text: str | bytes) -> tuple[int, int]:
    """``(depth, arrays)`` of JSON text without parsing it (vectorised): the nesting depth of ``[``/``{``
    and the number of ``[`` outside strings (at least the number of GeoJSON positions it holds)."""
    import numpy as np

    raw = text.encode() if isinstance(text, str) else bytes(text)
    raw = _JSON_STRING.sub(b'""', raw)  # string contents cannot open or close anything
    if len(raw) <= SMALL_JSON_BYTES:  # a typical search body: a loop costs less than numpy's setup
        depth = deepest = 0
        for byte in raw:
            if byte == 91 or byte == 123:  # [ {
                depth += 1
                deepest = max(deepest, depth)
            elif byte == 93 or byte == 125:  # ] }
                depth -= 1
        return deepest, raw.count(b"[")
    data = np.frombuffer(raw, dtype=np.uint8)
    opens = data == ord("[")
    steps = np.zeros(data.shape, dtype=np.int32)
    steps[opens | (data == ord("{"))] = 1
    steps[(data == ord("]")) | (data == ord("}"))] = -1
    return int(np.cumsum(steps).max(initial=0)), int(np.count_nonzero(opens))


def text_json_depth(text: str | bytes) -> int:
    """Nesting depth of ``[``/``{`` in JSON text, outside strings, without parsing it."""
    return text_json_shape(text)[0]


def check_cql2_text(text: str) -> None:
    """Refuse a CQL2 text the parser must not see: too long, or nested too deep (parentheses, or a run
    of prefix operators such as ``NOT NOT …`` or ``- - - 1``), counted outside string literals."""
    if len(text.encode()) > MAX_FILTER_TEXT:
        raise InvalidSearch(f"filter is longer than {MAX_FILTER_TEXT} bytes")
    outside = re.sub(r"'(?:[^']|'')*'?", "''", text)  # string literals (with '' escapes) cannot nest
    depth = 0
    for ch in outside:
        if ch == "(":
            depth += 1
            if depth > MAX_FILTER_DEPTH:
                raise InvalidSearch(f"filter nests parentheses deeper than {MAX_FILTER_DEPTH} levels")
        elif ch == ")":
            depth -= 1
    run = 0
    for match in re.finditer(r"\bNOT\b|[^\s]", outside, re.IGNORECASE):
        token = match.group(0)
        if token.upper() == "NOT" or token in ("-", "+"):
            run += 1
            if run > MAX_FILTER_DEPTH:
                raise InvalidSearch(f"filter chains more than {MAX_FILTER_DEPTH} prefix operators (NOT, -, +)")
        elif token != "(":
            run = 0


def parse_filter(value: Any, lang: str | None = None) -> dict[str, Any]:
    """CQL2 text or JSON (a string or an object) into checked CQL2 JSON (see the limits above)."""
    if isinstance(value, ValidatedFilter):
        return value
    if lang not in (None, "cql2-text", "cql2-json"):
        raise InvalidSearch(f"filter-lang {_short(lang)} is not supported (cql2-text, cql2-json)")
    if isinstance(value, bool):
        node: Any = value
    elif isinstance(value, dict):
        if lang == "cql2-text":
            raise InvalidSearch("filter-lang is cql2-text but the filter is a JSON object")
        node = value
    elif isinstance(value, str):
        if len(value.encode()) > MAX_FILTER_TEXT:
            raise InvalidSearch(f"filter is longer than {MAX_FILTER_TEXT} bytes")
        if lang == "cql2-json" or (lang is None and value.lstrip().startswith("{")):
            if text_json_depth(value) > 2 * MAX_FILTER_DEPTH + 8:
                raise InvalidSearch(f"filter nests deeper than {MAX_FILTER_DEPTH} operators")
            try:
                node = json.loads(value)
            except ValueError:
                raise InvalidSearch("invalid CQL2 filter: not valid JSON (filter-lang cql2-json)") from None
        else:
            check_cql2_text(value)
            node = _parse_cql2_text(value)
    else:
        raise InvalidSearch(f"filter must be CQL2 text or JSON, got {type(value).__name__}")
    return check_filter(node)


def _parse_cql2_text(text: str) -> Any:
    import cql2

    try:
        return cql2.Expr(text).to_json()
    except Exception as exc:  # cql2 raises bare Exceptions for parse errors
        detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip().strip("|"))
        raise InvalidSearch(f"invalid CQL2 filter: {detail[:300] or type(exc).__name__}") from None


def check_filter(node: Any) -> ValidatedFilter:
    """Check a CQL2 JSON filter: a boolean expression of the CQL2 operators (basic, advanced comparison,
    spatial, temporal, array, arithmetic, ``casei``/``accenti``) within the limits, ``LIKE`` patterns
    normalised; a literal ``true``/``false`` becomes the equivalent comparison ``1 = 1``/``1 = 0``."""
    if isinstance(node, ValidatedFilter):
        return node
    if _json_depth(node) > 2 * MAX_FILTER_DEPTH + 8:
        raise InvalidSearch(f"filter nests deeper than {MAX_FILTER_DEPTH} operators")
    checker = _FilterChecker()
    checker.boolean(node, 0)
    if isinstance(node, bool):  # a literal true/false: the equivalent comparison, so it stays a dict
        node = {"op": "=", "args": [1, 1 if node else 0]}
    if not isinstance(node, dict):
        raise InvalidSearch("invalid CQL2 filter: the filter must be a boolean expression")
    return ValidatedFilter(node)


class _FilterChecker:
    """Recursive descent over CQL2 JSON; recursion is bounded: the depth was checked before."""

    def __init__(self) -> None:
        self.nodes = 0
        self.vertices = 0

    def _count(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_FILTER_NODES:
            raise InvalidSearch(f"filter has more than {MAX_FILTER_NODES} values")

    def _op(self, node: Any, depth: int) -> tuple[str, list[Any]] | None:
        if not isinstance(node, dict) or "op" not in node:
            return None
        if depth > MAX_FILTER_DEPTH:
            raise InvalidSearch(f"filter nests deeper than {MAX_FILTER_DEPTH} operators")
        op, args = node.get("op"), node.get("args")
        if not isinstance(op, str) or not isinstance(args, list) or set(node) - {"op", "args"}:
            raise InvalidSearch("invalid CQL2 filter: an operation is {\"op\": name, \"args\": [...]}")
        return op.lower(), args

    def _arity(self, op: str, args: list[Any], *counts: int) -> None:
        if len(args) not in counts:
            raise InvalidSearch(f"invalid CQL2 filter: {op} takes {' or '.join(map(str, counts))} arguments, "
                                f"got {len(args)}")

    def boolean(self, node: Any, depth: int) -> None:
        self._count()
        if isinstance(node, bool) or self._property(node):
            return
        parsed = self._op(node, depth)
        if parsed is None:
            raise InvalidSearch(f"invalid CQL2 filter: {_short(node)} is not a boolean expression")
        op, args = parsed
        if op not in _PREDICATES:
            if op in _ARITHMETIC or op in _TEXT_FUNCTIONS:
                raise InvalidSearch(f"invalid CQL2 filter: {op} is not a boolean expression")
            raise InvalidSearch(f"invalid CQL2 filter: unknown operator or function {_short(op)}")
        if op in _LOGICAL:
            if len(args) < 2:
                raise InvalidSearch(f"invalid CQL2 filter: {op} takes at least 2 arguments")
            for arg in args:
                self.boolean(arg, depth + 1)
        elif op == "not":
            self._arity(op, args, 1)
            self.boolean(args[0], depth + 1)
        elif op in _COMPARISON:
            self._arity(op, args, 2)
            for arg in args:
                self.scalar(arg, depth + 1)
        elif op == "like":
            self._arity(op, args, 2)
            self.scalar(args[0], depth + 1)
            args[1] = self.pattern(args[1], depth + 1)
        elif op == "between":
            self._arity(op, args, 3)
            for arg in args:
                self.scalar(arg, depth + 1)
        elif op == "in":
            self._arity(op, args, 2)
            self.scalar(args[0], depth + 1)
            if not isinstance(args[1], list) or not args[1]:
                raise InvalidSearch("invalid CQL2 filter: in takes a non-empty list of values")
            for arg in args[1]:
                self.scalar(arg, depth + 1)
        elif op == "isnull":
            self._arity(op, args, 1)
            self.any_value(args[0], depth + 1)
        elif op in _SPATIAL:
            self._arity(op, args, 2)
            for arg in args:
                self.spatial(arg, depth + 1)
        elif op in _TEMPORAL:
            self._arity(op, args, 2)
            for arg in args:
                self.temporal(arg, depth + 1)
        elif op in _ARRAY:
            self._arity(op, args, 2)
            for arg in args:
                self.array(arg, depth + 1)

    def _property(self, node: Any) -> bool:
        if isinstance(node, dict) and "property" in node:
            name = node["property"]
            if len(node) != 1 or not isinstance(name, str) or not NAME_PATTERN.match(name):
                raise InvalidSearch(f"invalid CQL2 filter: property name {_short(name)} is not accepted")
            return True
        return False

    def scalar(self, node: Any, depth: int) -> None:
        self._count()
        if node is None:
            raise InvalidSearch("invalid CQL2 filter: null is not a value (use IS NULL)")
        if isinstance(node, str | bool) or self._property(node):
            return
        if isinstance(node, int | float):
            if not math.isfinite(node):
                raise InvalidSearch("invalid CQL2 filter: numbers must be finite")
            return
        if literal_epoch(node) is not None:
            return
        parsed = self._op(node, depth)
        if parsed is None:
            raise InvalidSearch(f"invalid CQL2 filter: {_short(node)} is not a value")
        op, args = parsed
        if op in _ARITHMETIC:
            self._arity(op, args, 2)
            for arg in args:
                self.scalar(arg, depth + 1)
        elif op in _TEXT_FUNCTIONS:
            self._arity(op, args, 1)
            self.scalar(args[0], depth + 1)
        elif op in _PREDICATES:  # a boolean expression as a value (e.g. ``(a = 1) = true``)
            self.boolean(node, depth)
        else:
            raise InvalidSearch(f"invalid CQL2 filter: unknown operator or function {_short(op)}")

    def pattern(self, node: Any, depth: int) -> Any:
        if isinstance(node, str):
            return normalise_like(node)
        parsed = self._op(node, depth)
        if parsed is not None and parsed[0] in _TEXT_FUNCTIONS:
            self._arity(parsed[0], parsed[1], 1)
            parsed[1][0] = self.pattern(parsed[1][0], depth + 1)
            return node
        raise InvalidSearch("invalid CQL2 filter: like takes a string pattern")

    def spatial(self, node: Any, depth: int) -> None:
        self._count()
        if self._property(node):
            return
        if isinstance(node, dict) and "bbox" in node:
            parse_bbox_literal(node["bbox"])
            return
        if isinstance(node, dict) and "type" in node:
            self.vertices += count_vertices(node, "filter geometry")
            if self.vertices > MAX_GEOMETRY_VERTICES:
                raise InvalidSearch(f"filter geometries have more than {MAX_GEOMETRY_VERTICES} vertices")
            return
        raise InvalidSearch(f"invalid CQL2 filter: {_short(node)} is not a geometry")

    def temporal(self, node: Any, depth: int) -> None:
        self._count()
        if self._property(node) or literal_epoch(node) is not None:
            return
        if isinstance(node, dict) and "interval" in node:
            bounds = node["interval"]
            if not isinstance(bounds, list) or len(bounds) != 2:
                raise InvalidSearch("invalid CQL2 filter: an interval has 2 bounds")
            for bound in bounds:
                if isinstance(bound, str):
                    if bound != "..":
                        _instant(bound, "filter interval")
                elif not (self._property(bound) or literal_epoch(bound) is not None):
                    raise InvalidSearch(f"invalid CQL2 filter: interval bound {_short(bound)}")
            return
        raise InvalidSearch(f"invalid CQL2 filter: {_short(node)} is not a time instant or interval")

    def array(self, node: Any, depth: int) -> None:
        self._count()
        if self._property(node):
            return
        if isinstance(node, list):
            for value in node:
                if isinstance(value, list):
                    if depth > MAX_FILTER_DEPTH:
                        raise InvalidSearch(f"filter nests deeper than {MAX_FILTER_DEPTH} operators")
                    self.array(value, depth + 1)
                else:
                    self.scalar(value, depth + 1)
            return
        raise InvalidSearch(f"invalid CQL2 filter: {_short(node)} is not an array")

    def any_value(self, node: Any, depth: int) -> None:
        if isinstance(node, list):
            self.array(node, depth)
        elif isinstance(node, dict) and ("type" in node or "bbox" in node):
            self.spatial(node, depth)
        elif isinstance(node, dict) and "interval" in node:
            self.temporal(node, depth)
        else:
            self.scalar(node, depth)


def parse_bbox_literal(value: Any) -> None:
    if not isinstance(value, list) or len(value) not in (4, 6) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise InvalidSearch("invalid CQL2 filter: a BBOX has 4 or 6 finite numbers")


# --- LIKE ---------------------------------------------------------------------------------------------
def _like_tokens(pattern: str) -> list[str | None]:
    """A LIKE pattern as tokens: a literal character, ``"_"``-wildcard as ``""``, ``%`` as None
    (backslash escapes the next character)."""
    out: list[str | None] = []
    escaped = False
    for ch in pattern:
        if escaped:
            out.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            if not out or out[-1] is not None:  # a run of % is one %
                out.append(None)
        elif ch == "_":
            out.append("")
        else:
            out.append(ch)
    if escaped:
        out.append("\\\\")
    return out


def normalise_like(pattern: str) -> str:
    """The same pattern with every run of unescaped ``%`` collapsed to one (what it means anyway)."""
    return "".join("%" if t is None else "_" if t == "" else t for t in _like_tokens(pattern))


def like_matcher(pattern: str) -> Callable[[str], bool]:
    """A matcher for a CQL2 LIKE pattern (``%`` any run, ``_`` one character, ``\\`` escapes), in
    O(len(pattern) × len(value)) whatever the pattern: the pattern is split on ``%`` into fixed-length
    segments, the first anchored at the start, the last at the end, the others found leftmost in order
    (which is optimal for such patterns), each with a regular expression that has no repetition."""
    tokens = _like_tokens(pattern)
    segments: list[list[str]] = [[]]
    for token in tokens:
        if token is None:
            segments.append([])
        else:
            segments[-1].append(token)

    def regex(segment: list[str]) -> re.Pattern[str]:
        parts = ["." if t == "" else re.escape(t[1:] if t.startswith("\\") and len(t) == 2 else t) for t in segment]
        return re.compile("".join(parts), re.DOTALL)

    compiled = [(len(s), regex(s)) for s in segments]
    if len(compiled) == 1:
        size, rx = compiled[0]
        return lambda value: len(value) == size and rx.fullmatch(value) is not None
    (first_len, first), middle, (last_len, last) = compiled[0], compiled[1:-1], compiled[-1]

    def match(value: str) -> bool:
        if len(value) < first_len + last_len + sum(n for n, _ in middle):
            return False
        if first_len and first.match(value) is None:
            return False
        end = len(value) - last_len
        if last_len and last.fullmatch(value, end) is None:
            return False
        pos = first_len
        for size, rx in middle:
            if size == 0:
                continue
            found = rx.search(value, pos, end)
            if found is None:
                return False
            pos = found.end()
        return pos <= end

    return match


# --- sortby, fields -----------------------------------------------------------------------------------
def parse_sortby(value: Any) -> list[tuple[str, str]]:
    """``"-datetime,+id"`` or ``[{"field": .., "direction": ..}]`` into (field, direction) pairs."""
    if value in (None, "", []):
        return []
    out: list[tuple[str, str]] = []
    entries = value.split(",") if isinstance(value, str) else value
    if not isinstance(entries, list | tuple):
        raise InvalidSearch("sortby must be a list of fields")
    if len(entries) > MAX_SORT_FIELDS:
        raise InvalidSearch(f"sortby has {len(entries)} fields, more than the maximum of {MAX_SORT_FIELDS}")
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
        if not name or direction not in ("asc", "desc") or not NAME_PATTERN.match(name):
            raise InvalidSearch(f"invalid sortby entry {_short(entry)}")
        out.append((name, direction))
    return out


def parse_fields(value: Any) -> tuple[set[str], set[str]]:
    """``"id,-properties.title"`` or ``{"include": [...], "exclude": [...]}`` into (include, exclude).

    ``""`` (a ``fields`` parameter given empty) asks for the default set (:data:`DEFAULT_FIELDS`); only
    exclusions select every field but those."""
    if value is None or value == []:
        return set(), set()
    if value == "":
        return set(DEFAULT_FIELDS), set()
    if isinstance(value, dict):
        include, exclude = set(value.get("include") or ()), set(value.get("exclude") or ())
        if not include and ("include" in value or not exclude):
            include = set(DEFAULT_FIELDS) - exclude  # include given empty: from the default set
        return include, exclude
    entries = value.split(",") if isinstance(value, str) else list(value)
    if len(entries) > 2 * MAX_FIELDS:
        raise InvalidSearch(f"fields lists more than {MAX_FIELDS} paths")
    include, exclude = set(), set()
    for entry in entries:
        if not isinstance(entry, str):
            raise InvalidSearch("fields must be a list of paths")
        entry = entry.strip()
        if entry.startswith("-"):
            exclude.add(entry[1:])
        elif entry:
            include.add(entry.lstrip("+"))
    return include, exclude


def apply_fields(item: dict[str, Any], include: set[str], exclude: set[str]) -> dict[str, Any]:
    """The fields extension: keep ``include`` paths (and :data:`ALWAYS_INCLUDED`), then drop ``exclude``
    paths, except those also included or containing an included path (``-properties,+properties.x``
    keeps ``properties`` with ``x`` only): an include wins over an exclude."""
    if not include and not exclude:
        return item
    out: dict[str, Any]
    if include:
        out = {}
        for path in include | ALWAYS_INCLUDED:
            _copy_path(item, out, path.split("."))
    else:
        out = dict(item)
    for path in exclude:
        if path in include or any(kept.startswith(path + ".") for kept in include):
            continue
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
