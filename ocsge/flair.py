"""FLAIR class schemes and their mapping onto OCS GE couverture leaves.

Models trained on FLAIR data predict FLAIR classes, not OCS GE codes. IGN publishes no official
FLAIR → CS table, so the mapping below is ours, built from the class definitions
(../shared/reference/ml-anchors.md §1.2, §1.4) and documented here class by class:

- building → CS1.1.1.1; impervious surface, swimming pool → CS1.1.1.2 (sealed, not built);
- pervious surface → CS1.1.2.1: FLAIR does not split mineral from composite, mineral is the common case;
- greenhouse → CS1.1.1.1 (a greenhouse is a building in BD TOPO);
- bare soil → CS1.2.1; water → CS1.2.2; snow → CS1.2.3;
- deciduous / coniferous / mixed → CS2.1.1.1 / CS2.1.1.2 / CS2.1.1.3; brushwood → CS2.1.2;
- vineyard and ligneous (vines, other lianas) → CS2.1.3;
- herbaceous vegetation, agricultural land, plowed land → CS2.2.1 (its label includes arable land);
- clear cut → CS2.2.1: the ground is herbaceous until the stand grows back (low confidence);
- "other" / undefined → no code (nodata): the class is defined as "none of the above".
CS2.2.2 (lichen, moss, bamboo) has no FLAIR counterpart and is never predicted from FLAIR classes.

Schemes (``value`` is what the model outputs or the mask file stores):
- ``flair19``: FLAIR #1 label files, values 1…19;
- ``flair13``: FLAIR #1/#2 baselines, outputs 0…12 = values 1…12, then 13 "other" (value >12 folded);
- ``flair15``: FLAIR-INC 15-class models, outputs 0…14 = the 19 classes without clear cut, mixed,
  ligneous and other, in FLAIR #1 order;
- ``cosia``: FLAIR-HUB / CoSIA 0-based order (0 building, 1 greenhouse, … 18 undefined);
- ``couverture``: our own models, outputs 0…13 = CS leaf raster values 1…14.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocsge.errors import OcsgeError
from ocsge.nomenclature import CS_LEAVES

# FLAIR #1 classes by label value (1-based), with their FLAIR colours.
FLAIR19: dict[int, tuple[str, str]] = {
    1: ("building", "#db0e9a"),
    2: ("pervious surface", "#938e7b"),
    3: ("impervious surface", "#f80c00"),
    4: ("bare soil", "#a97101"),
    5: ("water", "#1553ae"),
    6: ("coniferous", "#194a26"),
    7: ("deciduous", "#46e483"),
    8: ("brushwood", "#f3a60d"),
    9: ("vineyard", "#660082"),
    10: ("herbaceous vegetation", "#55ff00"),
    11: ("agricultural land", "#fff30d"),
    12: ("plowed land", "#e4df7c"),
    13: ("swimming pool", "#3de6eb"),
    14: ("snow", "#ffffff"),
    15: ("clear cut", "#8ab3a0"),
    16: ("mixed", "#6b714f"),
    17: ("ligneous", "#c5dc42"),
    18: ("greenhouse", "#9999ff"),
    19: ("other", "#000000"),
}

FLAIR_TO_CS: dict[str, str | None] = {
    "building": "CS1.1.1.1",
    "pervious surface": "CS1.1.2.1",
    "impervious surface": "CS1.1.1.2",
    "bare soil": "CS1.2.1",
    "water": "CS1.2.2",
    "coniferous": "CS2.1.1.2",
    "deciduous": "CS2.1.1.1",
    "brushwood": "CS2.1.2",
    "vineyard": "CS2.1.3",
    "herbaceous vegetation": "CS2.2.1",
    "agricultural land": "CS2.2.1",
    "plowed land": "CS2.2.1",
    "swimming pool": "CS1.1.1.2",
    "snow": "CS1.2.3",
    "clear cut": "CS2.2.1",
    "mixed": "CS2.1.1.3",
    "ligneous": "CS2.1.3",
    "greenhouse": "CS1.1.1.1",
    "other": None,
    "undefined": None,
}

_COSIA_ORDER = [
    "building", "greenhouse", "swimming pool", "impervious surface", "pervious surface", "bare soil",
    "water", "snow", "herbaceous vegetation", "agricultural land", "plowed land", "vineyard",
    "deciduous", "coniferous", "brushwood", "clear cut", "ligneous", "mixed", "undefined",
]
_FLAIR15_ORDER = [FLAIR19[v][0] for v in range(1, 20) if v not in (15, 16, 17, 19)]


@dataclass(frozen=True)
class ClassScheme:
    """The classes a model outputs, as an ordered list of names (output index → class)."""

    name: str
    classes: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to_couverture(self) -> list[str | None]:
        """CS leaf code for each output index (``None`` = nodata)."""
        if self.name == "couverture":
            return list(self.classes)
        return [FLAIR_TO_CS[c] for c in self.classes]

    def lookup_table(self) -> list[int]:
        """uint8 CS raster value for each output index, for a vectorised remap (``lut[argmax]``)."""
        return [CS_LEAVES.index(cs) + 1 if cs else 0 for cs in self.to_couverture()]


SCHEMES: dict[str, ClassScheme] = {
    "flair19": ClassScheme("flair19", tuple(FLAIR19[v][0] for v in range(1, 20))),
    "flair13": ClassScheme("flair13", (*(FLAIR19[v][0] for v in range(1, 13)), "other")),
    "flair15": ClassScheme("flair15", tuple(_FLAIR15_ORDER)),
    "cosia": ClassScheme("cosia", tuple(_COSIA_ORDER)),
    "couverture": ClassScheme("couverture", CS_LEAVES),
}


def scheme(name: str) -> ClassScheme:
    try:
        return SCHEMES[name]
    except KeyError:
        raise OcsgeError(f"unknown class scheme {name!r}: expected one of {', '.join(SCHEMES)}") from None


def flair_mask_to_scheme_index(value: int, name: str) -> int | None:
    """Index in scheme ``name`` of a FLAIR #1 mask value (1…19), ``None`` when the scheme lacks it."""
    label = FLAIR19[value][0]
    target = scheme(name)
    if name == "flair13":
        return min(value, 13) - 1
    if label in target.classes:
        return target.classes.index(label)
    if name == "couverture":
        cs = FLAIR_TO_CS[label]
        return CS_LEAVES.index(cs) if cs else None
    return None
