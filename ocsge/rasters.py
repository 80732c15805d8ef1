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
ENCODINGS: dict[str, tuple[RasterClass, ...]] = {"artif": ARTIF, "construction": CONSTRUCTION,
                                                  "difference": DIFFERENCE}


def value_of(layer: str, code: str) -> int:
    """Raster value of a class code (``value_of("artif", "non artif") == 2``); nodata when unknown."""
    return next((c.value for c in ENCODINGS[layer] if c.code == code), NODATA)


def palette(layer: str) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table: nodata transparent, each class in its colour."""
    return {NODATA: (0, 0, 0, 0), **{c.value: c.rgba for c in ENCODINGS[layer]}}


def labels(layer: str) -> dict[int, str]:
    return {c.value: c.label for c in ENCODINGS[layer]}
