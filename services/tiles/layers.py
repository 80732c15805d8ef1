"""The raster layers we publish, named as the Géoplateforme names OCS GE layers.

``OCSGE.{COUVERTURE|USAGE|CONSTRUCTION|ARTIF}.{campaign}`` for the official kinds, and in the same style
``OCSGE.PREDICTION.{campaign}`` for model predictions, ``OCSGE.PREDICTION.CONFIANCE.{campaign}`` for the
model's confidence (catalogued as ``ocsge-confidence``) and ``OCSGE.DIFFERENCE.{campaign}_{campaign}`` for
changes between two campaigns (../shared/reference/ocsge-domain.md §4.2), and for the map analyses for
planners ``OCSGE.TACHE_URBAINE.{campaign}`` and ``OCSGE.RENATURATION.{campaign}``. A layer is a national mosaic
of the per-département COGs of one product whose millésime falls in the campaign.

Legends are also served under IGN's file names (``data.geopf.fr/annexes/ressources/legendes/…``,
geoplateforme-rok4.md §6), one per kind: :data:`IGN_LEGEND_FILES`, and ``OCSGE.{name}-legend.png`` in
the same pattern for every kind (:func:`legend_file`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocsge.errors import OcsgeError
from ocsge.millesimes import CAMPAIGNS, campaign_named
from services.tiles.ortho import (
    ORTHO_ABSTRACTS,
    ORTHO_KINDS,
    ORTHO_LEGEND_FILES,
    ORTHO_MAXZOOM,
    ORTHO_MINZOOM,
    is_ortho,
    ortho_layer_id,
    parse_ortho_id,
)

# kind → (storage product, title)
KINDS: dict[str, tuple[str, str]] = {
    "COUVERTURE": ("couverture_cog", "Couverture du sol"),
    "USAGE": ("usage_cog", "Usage du sol"),
    "ARTIF": ("artif_cog", "Artificialisation"),
    "CONSTRUCTION": ("construction_cog", "Zone construite"),
    "PREDICTION": ("prediction", "Prédiction du modèle (couverture)"),
    "DIFFERENCE": ("difference_cog", "Évolutions entre deux campagnes"),
    "CONFIANCE": ("confidence", "Confiance de la prédiction"),
    # analyses for planners (inference_batch/analyses/rasters.py)
    "TACHE_URBAINE": ("tache_urbaine_cog", "Tâche urbaine"),
    "RENATURATION": ("renaturation_cog", "Potentiel de renaturation"),
    # the orthophotos (ORTHOIMAGERY.ORTHOPHOTOS[.IRC].{campaign}, services/tiles/ortho.py)
    **ORTHO_KINDS,
}
# kind → the name between "OCSGE." and the campaign in a layer id, where it is not the kind itself
ID_NAMES: dict[str, str] = {"CONFIANCE": "PREDICTION.CONFIANCE"}
_KIND_OF_NAME = {ID_NAMES.get(kind, kind): kind for kind in KINDS}

# IGN's legend files for OCS GE (the Géoplateforme's LegendURL), by kind
IGN_LEGEND_FILES: dict[str, str] = {
    "COUVERTURE": "OCSGE.COUVERTURE-legend.png",
    "USAGE": "ocsge/OCSGE_USAGE.png",
    "CONSTRUCTION": "OCSGE.CONSTRUCTIONS-legend.png",
    "ARTIF": "OCSGE-ARTIFICIALISATION-legend.png",
    **ORTHO_LEGEND_FILES,
}

# Géoplateforme publishes OCS GE at PM zooms 6–16; our COGs are finer, so we go two zooms deeper.
DEFAULT_MINZOOM = 5
DEFAULT_MAXZOOM = 18
STYLE = "normal"

_ID = re.compile(r"^OCSGE\.(?P<name>[A-Z_]+(?:\.[A-Z]+)?)\.(?P<c1>\d{4}-\d{4})(?:_(?P<c2>\d{4}-\d{4}))?$")


class UnknownLayerError(OcsgeError, ValueError):
    def __init__(self, layer: object) -> None:
        super().__init__(
            f"unknown layer {layer!r}: expected OCSGE.{{COUVERTURE|USAGE|ARTIF|CONSTRUCTION|PREDICTION|"
            f"PREDICTION.CONFIANCE|TACHE_URBAINE|RENATURATION}}.<campaign> or "
            f"OCSGE.DIFFERENCE.<campaign>_<campaign> or ORTHOIMAGERY.ORTHOPHOTOS[.IRC].<campaign>, campaigns "
            f"{', '.join(c.name for c in CAMPAIGNS)}"
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
        if is_ortho(self.kind):
            return f"{base} {self.campaign}"
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
            "CONFIANCE": "Confiance du modèle dans la classe prédite (probabilité de la classe retenue, "
                         "classes de 10 %)",
            "TACHE_URBAINE": "Tâche urbaine : surfaces bâties et imperméabilisées et leurs abords (dilatation 50 m, "
                             "érosion 25 m)",
            "RENATURATION": "Potentiel de renaturation des carreaux INSEE de 200 m (cinq classes) et secteurs "
                            "prioritaires",
            **ORTHO_ABSTRACTS,
        }[self.kind]
        return (f"{what}, mosaïque nationale des départements de la campagne {self.campaign}. Un seul "
                f"département : paramètre DEPARTEMENT (par ex. DEPARTEMENT=77).")


def layer_id(kind: str, campaign: str) -> str:
    if is_ortho(kind):
        return ortho_layer_id(kind, campaign)
    return f"OCSGE.{ID_NAMES.get(kind, kind)}.{campaign}"


def legend_file(kind: str) -> str:
    """The legend file name of a kind: IGN's where the Géoplateforme has one, else in IGN's pattern."""
    return IGN_LEGEND_FILES.get(kind) or f"OCSGE.{ID_NAMES.get(kind, kind)}-legend.png"


def kind_of_legend_file(name: str) -> str | None:
    """The kind a legend file name stands for (IGN's names and ``OCSGE.{name}-legend.png``), else None."""
    for kind, file in IGN_LEGEND_FILES.items():
        if name == file:
            return kind
    if name.startswith("OCSGE.") and name.endswith("-legend.png"):
        return _KIND_OF_NAME.get(name[len("OCSGE."):-len("-legend.png")])
    return None


def parse_layer(layer_id: str) -> Layer:
    known = {c.name for c in CAMPAIGNS}
    ortho = parse_ortho_id(layer_id)
    if ortho is not None:
        if ortho[1] not in known:
            raise UnknownLayerError(layer_id)
        return Layer(layer_id, ortho[0], ortho[1], minzoom=ORTHO_MINZOOM, maxzoom=ORTHO_MAXZOOM)
    m = _ID.match(layer_id or "")
    kind = _KIND_OF_NAME.get(m["name"]) if m else None
    if not m or kind is None or is_ortho(kind):
        raise UnknownLayerError(layer_id)
    if kind == "DIFFERENCE":
        if not m["c2"] or m["c1"] not in known or m["c2"] not in known or m["c1"] >= m["c2"]:
            raise UnknownLayerError(layer_id)
        return Layer(layer_id, "DIFFERENCE", m["c2"], previous=m["c1"])
    if m["c2"] or m["c1"] not in known:
        raise UnknownLayerError(layer_id)
    return Layer(layer_id, kind, m["c1"])


def all_layers() -> list[Layer]:
    """Every layer id we could publish (before asking the catalogue which ones have data)."""
    layers = [Layer(layer_id(kind, c.name), kind, c.name) for kind in KINDS
              if kind != "DIFFERENCE" and not is_ortho(kind) for c in CAMPAIGNS]
    layers += [parse_layer(layer_id(kind, c.name)) for kind in ORTHO_KINDS for c in CAMPAIGNS]
    for i, earlier in enumerate(CAMPAIGNS):
        for later in CAMPAIGNS[i + 1 :]:
            layers.append(Layer(f"OCSGE.DIFFERENCE.{earlier.name}_{later.name}", "DIFFERENCE", later.name,
                                previous=earlier.name))
    return layers
