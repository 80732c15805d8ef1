"""Artificialisation and imperméabilisation of a (couverture, usage) pair.

The matrix is the "matrice de passage" of décret n° 2023-1096 as applied by IGN and sparte
(../shared/reference/ocsge-domain.md §2.2). It classifies one polygon; the area thresholds of the
décret (50 m² built, 2 500 m² otherwise, by enclosure) are a later, neighbourhood step.
"""

from __future__ import annotations

from ocsge.errors import UnknownCodeError
from ocsge.nomenclature import CS_LEAVES, US_LEAVES, Kind, leaves_under

# Sealed or built surfaces: artificial whatever their usage.
ALWAYS_ARTIFICIAL_CS: frozenset[str] = frozenset({"CS1.1.1.1", "CS1.1.1.2", "CS1.1.2.2"})
# Mineral surfaces are artificial unless they are quarries (extraction usage).
MINERAL_CS = "CS1.1.2.1"
EXTRACTION_US = "US1.3"
# Herbaceous surfaces become artificial under residential, economic, network or transition usages.
HERBACEOUS_CS: frozenset[str] = frozenset({"CS2.2.1", "CS2.2.2"})
ARTIFICIALISING_US: frozenset[str] = frozenset(
    {"US2", "US3", "US5", "US235", "US4.1.1", "US4.1.2", "US4.1.3", "US4.1.4", "US4.1.5", "US4.2",
     "US4.3", "US6.1", "US6.2"}
)
IMPERMEABLE_CS: frozenset[str] = frozenset({"CS1.1.1.1", "CS1.1.1.2"})


def _leaf_rule(code_cs: str, code_us: str) -> bool:
    if code_cs in ALWAYS_ARTIFICIAL_CS:
        return True
    if code_cs == MINERAL_CS:
        return code_us != EXTRACTION_US
    if code_cs in HERBACEOUS_CS:
        return code_us in ARTIFICIALISING_US
    return False


def _uniform(kind: Kind, code: str, answers: set[bool]) -> bool:
    """An intermediate code (e.g. CS2.1.1 in old data) is classified only when all its leaves agree."""
    if len(answers) != 1:
        raise UnknownCodeError(f"{kind.value} (ambiguous intermediate code for artificialisation)", code)
    return answers.pop()


def is_artificial(code_cs: str, code_us: str) -> bool:
    """True when the matrix classifies the pair as artificialisé (before thresholds).

    Unknown codes raise (a typo must not read as "non artif"); intermediate codes are accepted when every
    leaf below them gives the same answer (CS2.1.1 → never artificial), and raise otherwise.
    """
    cs_leaves = leaves_under(Kind.COUVERTURE, code_cs)
    us_leaves = leaves_under(Kind.USAGE, code_us)
    answers = {_leaf_rule(cs, us) for cs in cs_leaves for us in us_leaves}
    return _uniform(Kind.COUVERTURE, f"{code_cs} × {code_us}", answers)


def artificial_whatever_usage(code_cs: str) -> bool | None:
    """The class of a couverture when it does not depend on the usage (built, sealed, composite: always
    artificialisé; natural surfaces and woody vegetation: never), else None (CS1.1.2.1, CS2.2.x), and
    None for an unknown code. Classes a polygon whose usage is missing or unknown (``INDETERMINE`` in old
    deliveries): a building is artificialised whatever its usage."""
    try:
        cs_leaves = leaves_under(Kind.COUVERTURE, code_cs)
    except UnknownCodeError:
        return None
    answers = {_leaf_rule(cs, us) for cs in cs_leaves for us in US_LEAVES}
    return answers.pop() if len(answers) == 1 else None


def is_impermeable(code_cs: str) -> bool:
    """Imperméabilisation as sparte measures it: built or sealed non-built surfaces."""
    answers = {cs in IMPERMEABLE_CS for cs in leaves_under(Kind.COUVERTURE, code_cs)}
    return _uniform(Kind.COUVERTURE, code_cs, answers)


def matrix() -> dict[tuple[str, str], bool]:
    """The whole matrix over leaf codes, e.g. to join onto a table of polygons."""
    return {(cs, us): is_artificial(cs, us) for cs in CS_LEAVES for us in US_LEAVES}
