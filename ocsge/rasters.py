"""Value encodings of the class rasters that are not nomenclature layers (artificialisation, zone
construite, changes), shared by the producer (``inference_batch.products.render``) and the services
(legends, GetFeatureInfo). Couverture and usage rasters use ``ocsge.nomenclature`` raster values.

0 is nodata in every class raster; a class with alpha 0 is written but not drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocsge.nomenclature import NODATA


@dataclass(frozen=True)
class RasterClass:
    value: int
    code: str
    label: str
    colour: str  # "#RRGGBB"
    visible: bool = True

    @property
    def rgba(self) -> tuple[int, int, int, int]:
        r, g, b = (int(self.colour[i : i + 2], 16) for i in (1, 3, 5))
        return (r, g, b, 255 if self.visible else 0)


# Artificialised in the built pink of CS1.1.1.1's family, non-artificialised in the herbaceous green.
ARTIF: tuple[RasterClass, ...] = (
    RasterClass(1, "artif", "Artificialisé", "#E6004D"),
    RasterClass(2, "non artif", "Non artificialisé", "#CCF24D"),
)
CONSTRUCTION: tuple[RasterClass, ...] = (
    RasterClass(1, "zone construite", "Zone construite", "#BE0961"),
    RasterClass(2, "hors zone construite", "Hors zone construite", "#FFFFFF", visible=False),
)
DIFFERENCE: tuple[RasterClass, ...] = (
    RasterClass(1, "couverture", "Changement de couverture", "#FF8C00"),
    RasterClass(2, "usage", "Changement d'usage", "#0066FF"),
    RasterClass(3, "couverture et usage", "Changement de couverture et d'usage", "#A600CC"),
    RasterClass(4, "artificialisation", "Artificialisation (+1)", "#E6004D"),
    RasterClass(5, "désartificialisation", "Désartificialisation (−1)", "#00A600"),
)
# Analyses for planners (inference_batch/analyses/rasters.py), in the colours of their map style
# (services/stats/analyses.py): the tâche urbaine in its purple; the renaturation potential (0–100) in five
# classes of the style's green ramp, the priority sectors over them in red.
TACHE_URBAINE: tuple[RasterClass, ...] = (RasterClass(1, "tache urbaine", "Tâche urbaine", "#7A0177"),)
RENATURATION: tuple[RasterClass, ...] = (
    RasterClass(1, "0-20", "Potentiel de renaturation 0–20", "#EDF8E9"),
    RasterClass(2, "20-40", "Potentiel de renaturation 20–40", "#BAE4B3"),
    RasterClass(3, "40-60", "Potentiel de renaturation 40–60", "#74C476"),
    RasterClass(4, "60-80", "Potentiel de renaturation 60–80", "#31A354"),
    RasterClass(5, "80-100", "Potentiel de renaturation 80–100", "#006D2C"),
    RasterClass(6, "prioritaire", "Secteur prioritaire de renaturation", "#D7301F"),
)
ENCODINGS: dict[str, tuple[RasterClass, ...]] = {"artif": ARTIF, "construction": CONSTRUCTION,
                                                  "difference": DIFFERENCE, "tache_urbaine": TACHE_URBAINE,
                                                  "renaturation": RENATURATION}


def value_of(layer: str, code: str) -> int:
    """Raster value of a class code (``value_of("artif", "non artif") == 2``); nodata when unknown."""
    return next((c.value for c in ENCODINGS[layer] if c.code == code), NODATA)


def palette(layer: str) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table: nodata transparent, each class in its colour."""
    return {NODATA: (0, 0, 0, 0), **{c.value: c.rgba for c in ENCODINGS[layer]}}


def labels(layer: str) -> dict[int, str]:
    return {c.value: c.label for c in ENCODINGS[layer]}
