"""One STAC collection per published product: identifiers, texts, companion assets and class lists.

An item is one artifact of the collection's product for one département × millésime (× block for the
per-block predictions, × pair of millésimes for differences). Companion assets are other products of the
same département and millésime that belong with it: the CSV of a statistics table, the report of an
ingestion, the PMTiles and archive of an occupation layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocsge.nomenclature import LEAVES, NODATA, TABLES, Kind
from ocsge.products import PRODUCTS, ProductSpec


@dataclass(frozen=True)
class Companion:
    asset: str  # asset key in the item
    product: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class CollectionSpec:
    id: str
    product: str  # the product whose artifacts make the items (asset "data")
    title: str
    description: str
    keywords: tuple[str, ...] = ()
    source: str = "official"  # default when the file does not say: "official" | "auto"
    classes: Kind | None = None  # class raster whose values are couverture or usage leaves
    roles: tuple[str, ...] = ("data",)
    companions: tuple[Companion, ...] = ()

    @property
    def product_spec(self) -> ProductSpec:
        return PRODUCTS[self.product]


_OCS = ("OCS GE", "occupation du sol", "land cover", "land use")
_DIFF = ("OCS GE", "évolution", "change detection")
_AUTO = ("OCS GE", "deep learning", "prediction", "FLAIR")

COLLECTIONS: tuple[CollectionSpec, ...] = (
    CollectionSpec(
        "ocsge-occupation", "occupation", "OCS GE — occupation du sol (vecteur)",
        "Polygones d'occupation du sol à grande échelle, couverture (code_cs) et usage (code_us) selon la "
        "nomenclature OCS GE, par département et millésime, en GeoParquet dans la projection du département.",
        _OCS,
        companions=(
            Companion("tiles", "occupation_pmtiles", ("visual", "overview")),
            Companion("archive", "archive", ("archive",)),
            Companion("report", "ingest_report", ("metadata",)),
        ),
    ),
    CollectionSpec(
        "ocsge-occupation-auto", "occupation_auto", "OCS GE auto — occupation produite par le modèle",
        "Occupation du sol produite automatiquement : prédiction du modèle vectorisée puis croisée avec les "
        "données exogènes (BD TOPO, RPG, BD Forêt, fichiers fonciers).",
        _AUTO, source="auto", companions=(Companion("report", "qa_report", ("metadata",)),),
    ),
    CollectionSpec(
        "ocsge-zone-construite", "zone_construite", "OCS GE — zones construites",
        "Zones construites dérivées de l'occupation du sol.", _OCS,
    ),
    CollectionSpec(
        "ocsge-artificialisation", "artificialisation", "OCS GE — artificialisation",
        "Surfaces artificialisées et non artificialisées (attributs artif, crit_seuil) selon la matrice du "
        "décret n° 2023-1096 et les seuils de surface.", (*_OCS, "artificialisation", "ZAN"),
    ),
    CollectionSpec(
        "ocsge-couverture", "couverture_cog", "OCS GE — couverture du sol (raster)",
        "Raster de classes de couverture (COG uint8, palette officielle, 0 = nodata).", _OCS,
        classes=Kind.COUVERTURE, roles=("data", "visual"),
    ),
    CollectionSpec(
        "ocsge-usage", "usage_cog", "OCS GE — usage du sol (raster)",
        "Raster de classes d'usage (COG uint8, palette officielle, 0 = nodata).", _OCS,
        classes=Kind.USAGE, roles=("data", "visual"),
    ),
    CollectionSpec(
        "ocsge-artificialisation-raster", "artif_cog", "OCS GE — artificialisation (raster)",
        "Raster d'artificialisation (COG uint8 avec palette).", (*_OCS, "artificialisation"),
        roles=("data", "visual"),
    ),
    CollectionSpec(
        "ocsge-zone-construite-raster", "construction_cog", "OCS GE — zones construites (raster)",
        "Raster des zones construites (COG uint8 avec palette).", _OCS, roles=("data", "visual"),
    ),
    CollectionSpec(
        "ocsge-occupation-tiles", "occupation_pmtiles", "OCS GE — tuiles vectorielles (PMTiles)",
        "Tuiles vectorielles de l'occupation du sol, une archive PMTiles par département et millésime.",
        (*_OCS, "vector tiles", "PMTiles"), roles=("data", "visual"),
    ),
    CollectionSpec(
        "ocsge-statistics", "stats_commune", "OCS GE — statistiques par commune",
        "Surfaces par commune et par classe de couverture et d'usage, artificialisation.",
        (*_OCS, "statistiques"), companions=(Companion("csv", "stats_commune_csv", ("data",)),),
    ),
    CollectionSpec(
        "ocsge-archives", "archive", "OCS GE — archives de téléchargement",
        "Archive de téléchargement par département et millésime (couches vecteur et rasters).",
        (*_OCS, "téléchargement"), roles=("data", "archive"),
    ),
    CollectionSpec(
        "ocsge-prediction", "prediction", "Prédiction de couverture par le modèle (blocs)",
        "Classes de couverture prédites par le modèle, un COG par bloc (valeurs des feuilles de couverture).",
        _AUTO, source="auto", classes=Kind.COUVERTURE, roles=("data", "visual"),
    ),
    CollectionSpec(
        "ocsge-confidence", "confidence", "Confiance de la prédiction (blocs)",
        "Confiance du modèle pour la classe prédite, un COG par bloc.", _AUTO, source="auto",
    ),
    CollectionSpec(
        "ocsge-prediction-vector", "prediction_vector", "Prédiction vectorisée",
        "Prédiction du modèle vectorisée (tamis de l'unité minimale d'intérêt, raccords entre blocs).",
        _AUTO, source="auto",
    ),
    CollectionSpec(
        "ocsge-difference", "difference", "OCS GE — différentiel entre millésimes",
        "Polygones qui changent de couverture ou d'usage entre deux millésimes (cs_avant, us_avant, "
        "cs_apres, us_apres).", _DIFF,
        companions=(
            Companion("tiles", "difference_pmtiles", ("visual", "overview")),
            Companion("raster", "difference_cog", ("visual",)),
        ),
    ),
    CollectionSpec(
        "ocsge-artificialisation-difference", "artif_difference", "OCS GE — artificialisation ±1",
        "Surfaces artificialisées et désartificialisées entre deux millésimes.", (*_DIFF, "artificialisation"),
    ),
    CollectionSpec(
        "ocsge-corrections", "corrections", "OCS GE — correctifs du millésime précédent",
        "Corrections apportées au millésime précédent lors de la production du suivant.", _DIFF,
    ),
    CollectionSpec(
        "ocsge-corrected-previous", "corrected_previous", "OCS GE — millésime précédent corrigé",
        "Millésime précédent avec les correctifs appliqués, comparable au suivant.", _DIFF,
    ),
    CollectionSpec(
        "ocsge-change-grid", "change_grid", "OCS GE — grille de changements (65 m)",
        "Grille de 65 m résumant les changements entre deux millésimes.", _DIFF,
    ),
    CollectionSpec(
        "ocsge-flows-couverture", "flows_cs", "OCS GE — flux de couverture (ha)",
        "Matrice des flux de couverture CS × CS en hectares entre deux millésimes.", _DIFF,
    ),
    CollectionSpec(
        "ocsge-flows-usage", "flows_us", "OCS GE — flux d'usage (ha)",
        "Matrice des flux d'usage US × US en hectares entre deux millésimes.", _DIFF,
    ),
    CollectionSpec(
        "ocsge-statistics-flows", "stats_flows", "OCS GE — flux par commune",
        "Flux de couverture, d'usage et d'artificialisation par commune entre deux millésimes.",
        (*_DIFF, "statistiques"), companions=(Companion("csv", "stats_flows_csv", ("data",)),),
    ),
    CollectionSpec(
        "ocsge-difference-raster", "difference_cog", "OCS GE — changements (raster)",
        "Raster des changements entre deux millésimes (COG uint8 avec palette).", _DIFF,
        roles=("data", "visual"),
    ),
    CollectionSpec(
        "ocsge-difference-tiles", "difference_pmtiles", "OCS GE — tuiles vectorielles des changements",
        "Tuiles vectorielles du différentiel, une archive PMTiles par département et paire de millésimes.",
        (*_DIFF, "vector tiles", "PMTiles"), roles=("data", "visual"),
    ),
    # Analyses for planners (inference_batch/analyses; README "Analyses for planners").
    CollectionSpec(
        "ocsge-portrait-stocks", "portrait_stocks", "OCS GE — portrait de territoire (stocks)",
        "Surfaces (ha) et parts (%) de chaque couverture, usage et de l'artificialisation par commune, "
        "groupement de communes (EPCI, SCoT…) et département, pour un millésime.",
        (*_OCS, "portrait de territoire", "statistiques"),
    ),
    CollectionSpec(
        "ocsge-portrait-evolution", "portrait_evolution", "OCS GE — portrait de territoire (évolution)",
        "Évolution des stocks entre deux millésimes en hectares et en points de pourcentage par commune, "
        "groupement et département, avec les évolutions à vérifier localement (couvertures naturelles qui "
        "varient d'au moins un point sans que l'artificialisation l'explique).",
        (*_DIFF, "portrait de territoire", "statistiques"),
        companions=(Companion("report", "portrait_report", ("metadata",)),),
    ),
    CollectionSpec(
        "ocsge-origine", "origine", "OCS GE — origine de la nouvelle artificialisation",
        "Nouvelle artificialisation bâtie (CS1.1.1.1) et nouvelle artificialisation (+1) entre deux "
        "millésimes par couverture d'origine, en hectares et en %, par commune, groupement et département.",
        (*_DIFF, "artificialisation", "statistiques"),
    ),
    CollectionSpec(
        "ocsge-tache-urbaine", "tache_urbaine", "OCS GE — tâche urbaine",
        "Tâche urbaine : dilatation (50 m) puis érosion (25 m) des surfaces bâties et imperméabilisées hors "
        "réseaux de transport (méthode des tampons du Certu), par département et millésime.",
        (*_OCS, "tâche urbaine", "étalement urbain"),
    ),
    CollectionSpec(
        "ocsge-tache-urbaine-communes", "tache_urbaine_communes", "OCS GE — extension de la tâche urbaine",
        "Tâche urbaine de deux millésimes par commune, groupement et département, son extension et sa "
        "comparaison avec la zone construite.", (*_DIFF, "tâche urbaine", "statistiques"),
    ),
    CollectionSpec(
        "ocsge-densification", "densification", "OCS GE — potentiel de densification des zones d'activité",
        "Zones d'activité économique (usages US2, US3, US235, US4.2 ou couche fournie) avec emprise bâtie, "
        "surfaces artificialisées non bâties, reste végétalisé, coefficient d'emprise au sol et surface "
        "optimisable.", (*_OCS, "ZAE", "densification"),
        companions=(Companion("csv", "densification_csv", ("data",)),),
    ),
    CollectionSpec(
        "ocsge-renaturation", "renaturation", "OCS GE — potentiel de renaturation (carroyage INSEE 200 m)",
        "Parts artificialisée, imperméabilisée, végétalisée et en eau par carreau INSEE de 200 m (EPSG:3035), "
        "scores biodiversité, climat et santé, secteurs prioritaires de renaturation.",
        (*_OCS, "renaturation", "carroyage INSEE"),
        companions=(Companion("csv", "renaturation_csv", ("data",)),),
    ),
    CollectionSpec(
        "ocsge-tvb", "tvb", "OCS GE — trame verte et bleue (réservoirs et corridors)",
        "Réservoirs de biodiversité (grandes taches semi-naturelles, surfaces en eau) et corridors de moindre "
        "coût entre réservoirs, dérivés de la couverture et de l'usage.", (*_OCS, "trame verte et bleue"),
        companions=(Companion("resistance", "tvb_resistance", ("data",)),
                    Companion("csv", "tvb_communes", ("data",))),
    ),
    CollectionSpec(
        "ocsge-tache-urbaine-raster", "tache_urbaine_cog", "OCS GE — tâche urbaine (raster)",
        "Tâche urbaine en raster de classes (COG uint8 avec palette, 10 m), servie en WMTS/WMS "
        "(OCSGE.TACHE_URBAINE.{campagne}).", (*_OCS, "tâche urbaine"), roles=("data", "visual"),
    ),
    CollectionSpec(
        "ocsge-renaturation-raster", "renaturation_cog", "OCS GE — potentiel de renaturation (raster)",
        "Potentiel de renaturation des carreaux INSEE de 200 m en cinq classes et secteurs prioritaires (COG "
        "uint8 avec palette, 10 m), servi en WMTS/WMS (OCSGE.RENATURATION.{campagne}).",
        (*_OCS, "renaturation", "carroyage INSEE"), roles=("data", "visual"),
    ),
    CollectionSpec(
        "ocsge-analyses-tiles", "analyses_pmtiles", "OCS GE — analyses : tuiles vectorielles (PMTiles)",
        "Couches cartographiques des analyses (tâche urbaine, zones d'activité, carreaux de renaturation, trame "
        "verte et bleue), une archive PMTiles par département et millésime.",
        (*_OCS, "vector tiles", "PMTiles"), roles=("data", "visual"),
    ),
    CollectionSpec(
        "ocsge-portrait-report", "portrait_html", "OCS GE — portrait de territoire (rapport HTML)",
        "Portrait imprimable d'un territoire (commune, groupement, département) entre deux millésimes : chiffres "
        "clés, stocks, évolutions, changements de couverture, origine de l'artificialisation, carte.",
        (*_DIFF, "portrait de territoire", "rapport"), roles=("data", "overview"),
    ),
    # The aerial images the model saw and the photo-interpreters review (issue 17), served as
    # ORTHOIMAGERY.ORTHOPHOTOS[.IRC].{campagne} (services/tiles/ortho.py).
    CollectionSpec(
        "ocsge-orthophotos", "imagery_rgb", "Orthophotographies (couleurs naturelles)",
        "Orthophotographies RVB du département pour le millésime (COG uint8, 3 bandes rouge, vert, bleu), "
        "servies en WMTS/WMS (ORTHOIMAGERY.ORTHOPHOTOS.{campagne}).",
        ("orthophotographie", "BD ORTHO", "imagerie aérienne"), roles=("data", "visual"),
    ),
    CollectionSpec(
        "ocsge-orthophotos-irc", "imagery_irc", "Orthophotographies infrarouge couleur (IRC)",
        "Orthophotographies infrarouge couleur du département pour le millésime (COG uint8, 3 bandes proche "
        "infrarouge, rouge, vert), servies en WMTS/WMS (ORTHOIMAGERY.ORTHOPHOTOS.IRC.{campagne}).",
        ("orthophotographie", "BD ORTHO IRC", "infrarouge", "imagerie aérienne"), roles=("data", "visual"),
    ),
)

BY_ID: dict[str, CollectionSpec] = {c.id: c for c in COLLECTIONS}
BY_PRODUCT: dict[str, CollectionSpec] = {c.product: c for c in COLLECTIONS}


def class_list(kind: Kind) -> list[dict[str, object]]:
    """``classification:classes`` of a couverture or usage raster: official code, label and colour per value."""
    classes: list[dict[str, object]] = [
        {"value": NODATA, "name": "nodata", "title": "Pas de donnée", "nodata": True}
    ]
    for code in LEAVES[kind]:
        entry = TABLES[kind][code]
        classes.append({
            "value": entry.raster_value,
            "name": code.replace(".", "_"),  # the extension allows [0-9A-Za-z-_] only
            "title": entry.label,
            "description": f"Code OCS GE {code}",
            "color_hint": (entry.colour or "#000000").lstrip("#").upper(),
        })
    return classes


def _check() -> None:
    """Every collection names a registered product; every companion too (fails at import, not at publish)."""
    for c in COLLECTIONS:
        for name in (c.product, *(comp.product for comp in c.companions)):
            if name not in PRODUCTS:
                raise ValueError(f"collection {c.id!r} names unknown product {name!r}")
        for comp in c.companions:
            if PRODUCTS[comp.product].pair != c.product_spec.pair:
                raise ValueError(f"companion {comp.product!r} of {c.id!r} is not keyed like {c.product!r}")


_check()
