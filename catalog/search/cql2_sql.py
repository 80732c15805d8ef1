"""CQL2 JSON to DuckDB SQL over the columns of the search index (:mod:`catalog.search.item_index`), with
exactly the in-memory index's semantics (:mod:`catalog.search.embedded`), or nothing.

Every predicate that is translated gives TRUE or FALSE, never NULL (``coalesce(…, FALSE)``), so ``NOT`` and
``OR`` compose exactly. What cannot be translated with the same meaning — a comparison between two
properties, temporal and array operators, arithmetic, ``casei``/``accenti``, a property whose values have
several JSON types, a ``LIKE`` pattern with ``_`` or an escape, a boolean property compared with a number —
translates to None: the caller then evaluates the filter with the in-memory evaluator on the candidates
that the translated part of a top-level ``AND`` leaves. Values always travel as parameters; column names
are property names already checked against ``NAME_PATTERN`` and quoted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catalog.search.item_index import IndexMeta
from catalog.search.request import literal_epoch

_COMPARE = {"=", "<>", "<", "<=", ">", ">="}
_FLIPPED = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_TOP_LEVEL = {"id": '"id"', "collection": '"collection"'}
_NUMERIC = ("integer", "number")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Sql:
    """A WHERE fragment and its parameters."""

    text: str
    params: list[Any] = field(default_factory=list)


FALSE = Sql("FALSE")
TRUE = Sql("TRUE")


def _is_property(node: Any) -> bool:
    return isinstance(node, dict) and isinstance(node.get("property"), str)


def _scalar_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _typed(col: str, kind: str, literals: list[Any]) -> tuple[str, str]:
    """Column expression and parameter marker with explicit types: a prepared parameter would otherwise take
    the column's type (1.5 bound to a BIGINT column is rounded), and Python compares ints and floats exactly."""
    if kind == "string":
        return col, "CAST(? AS VARCHAR)"
    if kind == "boolean":
        return col, "CAST(? AS BOOLEAN)"
    if kind == "integer" and all(isinstance(v, int) for v in literals):
        return col, "CAST(? AS BIGINT)"
    return f"CAST({col} AS DOUBLE)", "CAST(? AS DOUBLE)"


class Translator:
    def __init__(self, meta: IndexMeta) -> None:
        self.meta = meta

    def column(self, prop: str) -> tuple[str, str] | bool | None:
        """(SQL expression, kind) of a property; False when no item has it (every value is null); None when
        it has no typed column (values of several types)."""
        prop = prop.removeprefix("properties.")
        if prop in _TOP_LEVEL:
            return _TOP_LEVEL[prop], "string"
        if prop not in self.meta.known:
            return False
        if prop == "datetime":  # as the in-memory index: datetime, else start_datetime
            return "NULLIF(\"datetime\", '')", "string"
        kind = self.meta.typed.get(prop)
        return (quote("p:" + prop), kind) if kind is not None else None

    def epoch_column(self, prop: str) -> str | None:
        """The POSIX-seconds column of a property (None: no value of it is a timestamp)."""
        prop = prop.removeprefix("properties.")
        if prop == "datetime" and "datetime" in self.meta.known:
            return '"start"'  # as pgstac and the in-memory index: an interval item's datetime is its start
        return quote("e:" + prop) if prop in self.meta.epochs else None

    def translate(self, node: Any) -> Sql | None:
        if isinstance(node, bool):
            return TRUE if node else FALSE
        if not isinstance(node, dict) or "op" not in node:
            return None
        op, args = str(node["op"]).lower(), node.get("args", [])
        if op in ("and", "or"):
            parts = [self.translate(a) for a in args]
            if any(p is None for p in parts):
                return None
            return Sql(
                "(" + f" {op.upper()} ".join(p.text for p in parts) + ")",  # type: ignore[union-attr]
                [v for p in parts for v in p.params],
            )  # type: ignore[union-attr]
        if op == "not":
            inner = self.translate(args[0]) if args else None
            return None if inner is None else Sql(f"(NOT {inner.text})", inner.params)
        return self.leaf(op, list(args))

    def leaf(self, op: str, args: list[Any]) -> Sql | None:
        if op in _FLIPPED and len(args) == 2 and not _is_property(args[0]) and _is_property(args[1]):
            op, args = _FLIPPED[op], [args[1], args[0]]
        if not args or not _is_property(args[0]):
            return None
        prop = args[0]["property"]
        if prop.removeprefix("properties.") == "geometry":
            return None
        if op in _COMPARE and len(args) == 2:
            epoch = literal_epoch(args[1])
            if epoch is not None:  # compared as instants; null or not a timestamp never matches
                col = self.epoch_column(prop)
                return FALSE if col is None else Sql(f"coalesce({col} {op} ?, FALSE)", [epoch])
        resolved = self.column(prop)
        if resolved is None:
            return None
        if op == "isnull" and len(args) == 1:
            return TRUE if resolved is False else Sql(f"({resolved[0]} IS NULL)")  # type: ignore[index]
        if resolved is False:  # no item has the property: every comparison with null is false
            return FALSE if op in ("=", "<>", "<", "<=", ">", ">=", "in", "between", "like") else None
        col, kind = resolved  # type: ignore[misc]
        if op in _COMPARE and len(args) == 2:
            return self._compare(op, col, kind, args[1])
        if op == "in" and len(args) == 2 and isinstance(args[1], list) and args[1]:
            values = args[1]
            if (
                not all(_scalar_kind(v) is not None for v in values)
                or any(isinstance(v, bool) for v in values)
                or kind == "boolean"
            ):
                return None  # bool and 1 are one key in the in-memory index's postings: not worth the copy
            want = "string" if kind == "string" else "number"
            kept = [v for v in values if _scalar_kind(v) == want]
            if not kept:
                return FALSE
            col, mark = _typed(col, kind, kept)
            return Sql(f"coalesce({col} IN ({', '.join([mark] * len(kept))}), FALSE)", kept)
        if op == "between" and len(args) == 3:
            lo, hi = args[1], args[2]
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lo, hi)) or kind == "boolean":
                return None
            if kind == "string":
                return FALSE
            col, mark = _typed(col, kind, [lo, hi])
            return Sql(f"coalesce({col} BETWEEN {mark} AND {mark}, FALSE)", [lo, hi])
        if op == "like" and len(args) == 2 and isinstance(args[1], str):
            if kind != "string":
                return FALSE
            pattern = args[1]
            if "_" in pattern or "\\" in pattern:
                return None  # DuckDB matches those by backtracking: the linear matcher of request.py does it
            return Sql(f"coalesce({col} LIKE ?, FALSE)", [pattern])
        return None

    def _compare(self, op: str, col: str, kind: str, literal: Any) -> Sql | None:
        lit_kind = _scalar_kind(literal)
        if lit_kind is None:
            return None  # an expression or a property: the evaluator's job
        if (kind == "boolean" and lit_kind != "boolean") or (lit_kind == "boolean" and kind != "boolean"):
            return None  # Python compares True with 1: follow the evaluator rather than guess
        same = lit_kind == kind or (lit_kind == "number" and kind in _NUMERIC)
        if not same:  # a string against a number: only "<>" holds, where the value is not null
            return Sql(f"({col} IS NOT NULL)") if op == "<>" else FALSE
        col, mark = _typed(col, kind, [literal])
        return Sql(f"coalesce({col} {op} {mark}, FALSE)", [literal])

    def sort_key(self, name: str, direction: str) -> str | bool | None:
        """ORDER BY term of a sortby field; False to skip it (no item has it); None when the in-memory order
        cannot be reproduced (values of several types, sorted by their text)."""
        resolved = self.column(name)
        if resolved is False or resolved is None:
            return resolved
        return f"{resolved[0]} {direction.upper()} NULLS LAST"  # type: ignore[index]
