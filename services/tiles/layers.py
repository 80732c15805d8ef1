"""The raster layers we publish, named as the Géoplateforme names OCS GE layers.

``OCSGE.{COUVERTURE|USAGE|CONSTRUCTION|ARTIF}.{campaign}`` for the official kinds, and in the same style
``OCSGE.PREDICTION.{campaign}`` for model predictions and ``OCSGE.DIFFERENCE.{campaign}_{campaign}`` for
changes between two campaigns (../shared/reference/ocsge-domain.md §4.2). A layer is a national mosaic
of the per-département COGs of one product whose millésime falls in the campaign.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocsge.errors import OcsgeError
from ocsge.millesimes import CAMPAIGNS, campaign_named

# kind → (storage product, title)
KINDS: dict[str, tuple[str, str]] = {
    "COUVERTURE": ("couverture_cog", "Couverture du sol"),
    "USAGE": ("usage_cog", "Usage du sol"),
    "ARTIF": ("artif_cog", "Artificialisation"),
    "CONSTRUCTION": ("construction_cog", "Zone construite"),
    "PREDICTION": ("prediction", "Prédiction du modèle (couverture)"),
    "DIFFERENCE": ("difference_cog", "Évolutions entre deux campagnes"),
}

# Géoplateforme publishes OCS GE at PM zooms 6–16; our COGs are finer, so we go two zooms deeper.
DEFAULT_MINZOOM = 5
DEFAULT_MAXZOOM = 18
STYLE = "normal"

_ID = re.compile(r"^OCSGE\.(?P<kind>[A-Z]+)\.(?P<c1>\d{4}-\d{4})(?:_(?P<c2>\d{4}-\d{4}))?$")


class UnknownLayerError(OcsgeError, ValueError):
    def __init__(self, layer: object) -> None:
        super().__init__(
            f"unknown layer {layer!r}: expected OCSGE.{{COUVERTURE|USAGE|ARTIF|CONSTRUCTION|PREDICTION}}.<campaign> "
            f"or OCSGE.DIFFERENCE.<campaign>_<campaign>, campaigns {', '.join(c.name for c in CAMPAIGNS)}"
        )
        self.layer = layer


@dataclass(frozen=True)
class Layer:
    id: str
    kind: str  # COUVERTURE, USAGE, …
    campaign: str  # "2021-2023"
    previous: str | None = None  # earlier campaign of a DIFFERENCE layer
    minzoom: int = DEFAULT_MINZOOM
    maxzoom: int = DEFAULT_MAXZOOM

    @property
    def product(self) -> str:
        return KINDS[self.kind][0]

    @property
    def palette_kind(self) -> str:
        return self.kind.lower()

    @property
    def years(self) -> tuple[int, int]:
        c = campaign_named(self.campaign)
        return c.first_year, c.last_year

    @property
    def previous_years(self) -> tuple[int, int] | None:
        if self.previous is None:
            return None
        c = campaign_named(self.previous)
        return c.first_year, c.last_year

    @property
    def title(self) -> str:
        base = KINDS[self.kind][1]
        if self.previous:
            return f"OCS GE — {base} {self.previous} → {self.campaign}"
        return f"OCS GE — {base} {self.campaign}"

    @property
    def abstract(self) -> str:
        what = {
            "COUVERTURE": "Couverture du sol (14 postes, couleurs officielles IGN)",
            "USAGE": "Usage du sol (couleurs officielles IGN)",
            "ARTIF": "Surfaces artificialisées au sens du décret n° 2023-1096",
            "CONSTRUCTION": "Zone construite",
            "PREDICTION": "Couverture prédite par le modèle, avant règles et contrôle",
            "DIFFERENCE": "Changements entre deux millésimes",
        }[self.kind]
        return f"{what}, mosaïque nationale des départements de la campagne {self.campaign}."


def parse_layer(layer_id: str) -> Layer:
    m = _ID.match(layer_id or "")
    if not m or m["kind"] not in KINDS:
        raise UnknownLayerError(layer_id)
    known = {c.name for c in CAMPAIGNS}
    if m["kind"] == "DIFFERENCE":
        if not m["c2"] or m["c1"] not in known or m["c2"] not in known or m["c1"] >= m["c2"]:
            raise UnknownLayerError(layer_id)
        return Layer(layer_id, "DIFFERENCE", m["c2"], previous=m["c1"])
    if m["c2"] or m["c1"] not in known:
        raise UnknownLayerError(layer_id)
    return Layer(layer_id, m["kind"], m["c1"])


def all_layers() -> list[Layer]:
    """Every layer id we could publish (before asking the catalogue which ones have data)."""
    layers = [Layer(f"OCSGE.{kind}.{c.name}", kind, c.name) for kind in KINDS if kind != "DIFFERENCE"
              for c in CAMPAIGNS]
    for i, earlier in enumerate(CAMPAIGNS):
        for later in CAMPAIGNS[i + 1 :]:
            layers.append(Layer(f"OCSGE.DIFFERENCE.{earlier.name}_{later.name}", "DIFFERENCE", later.name,
                                previous=earlier.name))
    return layers
