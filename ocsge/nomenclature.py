"""OCS GE nomenclature: couverture (CS) and usage (US) codes, labels, official colours, hierarchy,
the uint8 value of each leaf in class rasters, and a tolerant parser for codes found in real data.

Codes, labels and colours come from the IGN legend images and sparte's seeds
(../shared/reference/ocsge-domain.md §1.2–1.3). Raster value 0 is nodata in every class raster.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ocsge.errors import MissingAttributeError, UnknownCodeError

NODATA = 0


class Kind(StrEnum):
    COUVERTURE = "couverture"
    USAGE = "usage"

    @property
    def prefix(self) -> str:
        return "CS" if self is Kind.COUVERTURE else "US"


@dataclass(frozen=True)
class Code:
    code: str
    label: str
    parent: str | None
    colour: str | None  # "#RRGGBB"; None for intermediate levels without an official colour
    raster_value: int | None  # uint8 value in class rasters; leaves only

    @property
    def is_leaf(self) -> bool:
        return self.raster_value is not None

    @property
    def rgb(self) -> tuple[int, int, int]:
        if self.colour is None:
            raise ValueError(f"{self.code} has no colour")
        return tuple(int(self.colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


# (code, label, parent, colour, is_leaf) in legend order; leaves get raster values 1, 2, … in this order.
_CS_ROWS: list[tuple[str, str, str | None, str | None, bool]] = [
    ("CS1", "Sans végétation", None, "#FF377A", False),
    ("CS1.1", "Surfaces anthropisées", "CS1", None, False),
    ("CS1.1.1", "Zones imperméables", "CS1.1", None, False),
    ("CS1.1.1.1", "Zones bâties", "CS1.1.1", "#FF377A", True),
    ("CS1.1.1.2", "Zones non bâties (routes, places, parkings…)", "CS1.1.1", "#FF9191", True),
    ("CS1.1.2", "Zones perméables", "CS1.1", None, False),
    ("CS1.1.2.1", "Zones à matériaux minéraux", "CS1.1.2", "#FFFF99", True),
    ("CS1.1.2.2", "Zones à autres matériaux composites", "CS1.1.2", "#A64D00", True),
    ("CS1.2", "Surfaces naturelles", "CS1", None, False),
    ("CS1.2.1", "Sols nus (sable, pierres meubles, rochers saillants…)", "CS1.2", "#CCCCCC", True),
    ("CS1.2.2", "Surfaces d'eau (eau continentale et maritime)", "CS1.2", "#00CCF2", True),
    ("CS1.2.3", "Névés et glaciers", "CS1.2", "#A6E6CC", True),
    ("CS2", "Avec végétation", None, None, False),
    ("CS2.1", "Végétation ligneuse", "CS2", None, False),
    ("CS2.1.1", "Formations arborées", "CS2.1", "#80BE00", False),
    ("CS2.1.1.1", "Peuplement de feuillus", "CS2.1.1", "#80FF00", True),
    ("CS2.1.1.2", "Peuplement de conifères", "CS2.1.1", "#00A600", True),
    ("CS2.1.1.3", "Peuplement mixte", "CS2.1.1", "#80BE00", True),
    ("CS2.1.2", "Formations arbustives et sous-arbrisseaux", "CS2.1", "#A6FF80", True),
    ("CS2.1.3", "Autres formations ligneuses (vignes et autres lianes)", "CS2.1", "#E68000", True),
    ("CS2.2", "Végétation non ligneuse", "CS2", None, False),
    ("CS2.2.1", "Formations herbacées (pelouses, prairies, terres arables…)", "CS2.2", "#CCF24D", True),
    ("CS2.2.2", "Autres formations non ligneuses (lichen, mousse, bambous…)", "CS2.2", "#CCFFCC", True),
]

_US_ROWS: list[tuple[str, str, str | None, str | None, bool]] = [
    ("US1", "Production primaire", None, None, False),
    ("US1.1", "Agriculture", "US1", "#FFFFA8", True),
    ("US1.2", "Sylviculture", "US1", "#008000", True),
    ("US1.3", "Activités d'extraction", "US1", "#A600CC", True),
    ("US1.4", "Pêche et aquaculture", "US1", "#000099", True),
    ("US1.5", "Autres productions primaires", "US1", "#996633", True),
    ("US2", "Production secondaire", None, "#E6004D", True),
    ("US3", "Production tertiaire", None, "#FF8C00", True),
    ("US5", "Usage résidentiel", None, "#BE0961", True),
    ("US235", "Production secondaire, tertiaire et usage résidentiel", None, "#E6004D", True),
    ("US4", "Réseaux de transport, logistique et infrastructures", None, None, False),
    ("US4.1", "Réseaux de transport", "US4", None, False),
    ("US4.1.1", "Réseaux routiers", "US4.1", "#CC0000", True),
    ("US4.1.2", "Réseaux ferrés", "US4.1", "#5A5A5A", True),
    ("US4.1.3", "Réseaux aériens", "US4.1", "#E6CCE6", True),
    ("US4.1.4", "Réseaux de transport fluvial et maritime", "US4.1", "#0066FF", True),
    ("US4.1.5", "Autres réseaux de transport", "US4.1", "#660033", True),
    ("US4.2", "Services logistiques et de stockage", "US4", "#FF0000", True),
    ("US4.3", "Réseaux d'utilité publique", "US4", "#FF4B00", True),
    ("US6", "Autre usage", None, None, False),
    ("US6.1", "Zones en transition", "US6", "#FF4DFF", True),
    ("US6.2", "Zones abandonnées", "US6", "#404040", True),
    ("US6.3", "Sans usage", "US6", "#F0F028", True),
    ("US6.6", "Usage inconnu", "US6", "#FFCC00", True),
]


def _build(rows: list[tuple[str, str, str | None, str | None, bool]]) -> dict[str, Code]:
    table: dict[str, Code] = {}
    value = 0
    for code, label, parent, colour, leaf in rows:
        if leaf:
            value += 1
        table[code] = Code(code, label, parent, colour, value if leaf else None)
    return table


COUVERTURE: dict[str, Code] = _build(_CS_ROWS)
USAGE: dict[str, Code] = _build(_US_ROWS)
TABLES: dict[Kind, dict[str, Code]] = {Kind.COUVERTURE: COUVERTURE, Kind.USAGE: USAGE}

CS_LEAVES: tuple[str, ...] = tuple(c.code for c in COUVERTURE.values() if c.is_leaf)
US_LEAVES: tuple[str, ...] = tuple(c.code for c in USAGE.values() if c.is_leaf)
LEAVES: dict[Kind, tuple[str, ...]] = {Kind.COUVERTURE: CS_LEAVES, Kind.USAGE: US_LEAVES}

# The new-generation OCS GE splits US235 into US2, US3 and US5; both forms occur in deliveries.
US235_PARTS: frozenset[str] = frozenset({"US2", "US3", "US5"})


def lookup(kind: Kind | str, code: str) -> Code:
    table = TABLES[Kind(kind)]
    try:
        return table[code]
    except KeyError:
        raise UnknownCodeError(Kind(kind).value, code) from None


def parents(kind: Kind | str, code: str) -> list[str]:
    """Ancestors of a code, nearest first (``CS1.1.1.1`` → ``CS1.1.1, CS1.1, CS1``)."""
    chain: list[str] = []
    parent = lookup(kind, code).parent
    while parent is not None:
        chain.append(parent)
        parent = TABLES[Kind(kind)][parent].parent
    return chain


def leaves_under(kind: Kind | str, code: str) -> list[str]:
    lookup(kind, code)
    return [leaf for leaf in LEAVES[Kind(kind)] if leaf == code or code in parents(kind, leaf)]


def raster_value(kind: Kind | str, code: str) -> int:
    entry = lookup(kind, code)
    if entry.raster_value is None:
        raise UnknownCodeError(f"leaf {Kind(kind).value}", code)
    return entry.raster_value


def code_for_value(kind: Kind | str, value: int) -> str | None:
    """Inverse of :func:`raster_value`; ``None`` for nodata or values outside the table."""
    leaves = LEAVES[Kind(kind)]
    return leaves[value - 1] if 1 <= value <= len(leaves) else None


def palette(kind: Kind | str) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table for a class raster: leaf values in official colours, 0 transparent."""
    table: dict[int, tuple[int, int, int, int]] = {NODATA: (0, 0, 0, 0)}
    for leaf in LEAVES[Kind(kind)]:
        entry = TABLES[Kind(kind)][leaf]
        table[entry.raster_value] = (*entry.rgb, 255)  # type: ignore[index]
    return table


def usage_group(code: str) -> str:
    """Fold US2/US3/US5 into US235 so that old- and new-generation usage codes compare."""
    return "US235" if code in US235_PARTS else code


# --- tolerant parsing of codes found in real deliveries --------------------------------------

ATTRIBUTE_NAMES: dict[Kind, tuple[str, ...]] = {
    # In sparte's order of preference (current GPKG, older SHP, some older deliveries).
    Kind.COUVERTURE: ("code_cs", "CODE_CS", "couverture"),
    Kind.USAGE: ("code_us", "CODE_US", "usage"),
}


def find_code_column(columns: Iterable[str], kind: Kind | str) -> str:
    """Name of the column holding ``kind`` codes, tolerating the attribute names of every delivery."""
    available = list(columns)
    for name in ATTRIBUTE_NAMES[Kind(kind)]:
        if name in available:
            return name
    lowered = {c.lower(): c for c in available}
    for name in ATTRIBUTE_NAMES[Kind(kind)]:
        if name.lower() in lowered:
            return lowered[name.lower()]
    raise MissingAttributeError(
        f"no {Kind(kind).value} attribute: expected one of {', '.join(ATTRIBUTE_NAMES[Kind(kind)])}, "
        f"found columns {available}"
    )


class Issue(StrEnum):
    """What the parser had to do with a raw value; anything but OK is reported."""

    OK = "ok"
    REFORMATTED = "reformatted"  # case, spaces, commas or a missing prefix were fixed
    NON_LEAF = "non_leaf"  # a known intermediate code (e.g. CS2.1.1), kept and reported
    EMPTY = "empty"  # null or blank: no code
    UNKNOWN = "unknown"  # not in the nomenclature: no code


@dataclass(frozen=True)
class ParsedCode:
    raw: object
    code: str | None
    issue: Issue


_SPACES = re.compile(r"\s+")


def parse_code(raw: object, kind: Kind | str) -> ParsedCode:
    """Parse one raw attribute value into a nomenclature code.

    Accepts ``CS1.1.1.1``, ``cs1.1.1.1``, ``1.1.1.1``, ``CS 1.1.1.1``, ``CS1,1,1,1`` and numbers read
    from old shapefiles; ``US235`` as well as ``US2``/``US3``/``US5``. Never drops a value silently:
    the returned :class:`Issue` says what was done.
    """
    kind = Kind(kind)
    if raw is None or (isinstance(raw, float) and raw != raw):  # None or NaN
        return ParsedCode(raw, None, Issue.EMPTY)
    text = _SPACES.sub("", str(raw)).replace(",", ".").upper()
    if not text:
        return ParsedCode(raw, None, Issue.EMPTY)
    if not text.startswith(kind.prefix):
        text = kind.prefix + text
    text = text.rstrip(".")
    entry = TABLES[kind].get(text)
    if entry is None:
        return ParsedCode(raw, None, Issue.UNKNOWN)
    if not entry.is_leaf:
        return ParsedCode(raw, text, Issue.NON_LEAF)
    return ParsedCode(raw, text, Issue.OK if text == raw else Issue.REFORMATTED)


@dataclass
class CodeReport:
    """Counts of every anomaly met while parsing a column, by issue and raw value."""

    kind: Kind
    counts: Counter[tuple[Issue, str]] = field(default_factory=Counter)

    def add(self, parsed: ParsedCode, n: int = 1) -> None:
        if parsed.issue is not Issue.OK:
            self.counts[(parsed.issue, repr(parsed.raw))] += n

    @property
    def anomalies(self) -> int:
        return sum(n for (issue, _), n in self.counts.items() if issue is not Issue.REFORMATTED)

    def as_rows(self) -> list[dict[str, object]]:
        return [
            {"kind": self.kind.value, "issue": issue.value, "raw": raw, "count": n}
            for (issue, raw), n in sorted(self.counts.items(), key=lambda kv: (kv[0][0], kv[0][1]))
        ]


def parse_codes(values: Iterable[object], kind: Kind | str) -> tuple[list[str | None], CodeReport]:
    """Parse a column of raw values; unique values are parsed once (columns are long, codes few)."""
    kind = Kind(kind)
    report = CodeReport(kind)
    cache: dict[object, ParsedCode] = {}
    out: list[str | None] = []
    for raw in values:
        key = raw if isinstance(raw, str | int | float | type(None)) else repr(raw)
        parsed = cache.get(key)
        if parsed is None:
            parsed = cache[key] = parse_code(raw, kind)
        report.add(parsed)
        out.append(parsed.code)
    return out, report


def legend(kind: Kind | str, codes: Mapping[str, object] | None = None) -> list[dict[str, object]]:
    """Legend entries (code, label, colour, value) for the leaves of a kind, in legend order."""
    return [
        {"code": c, "label": TABLES[Kind(kind)][c].label, "colour": TABLES[Kind(kind)][c].colour,
         "value": TABLES[Kind(kind)][c].raster_value}
        for c in LEAVES[Kind(kind)]
        if codes is None or c in codes
    ]
