"""Registry of every artifact the platform writes, and the one function that names their keys.

A key is derived from (product, département, millésime) — or a pair of millésimes for differences, a
block id for per-block predictions — and nothing else, so that batch jobs, the catalogue and the
services agree on where a file lives:

    {folder}/{Dddd}/{millesime}/{stem}_{Dddd}_{millesime}{ext}            e.g.
    occupation/D077/2021/occupation_D077_2021.parquet
    difference/D077/2021-2024/difference_D077_2021-2024.parquet
    prediction/D077/2024/blocks/prediction_D077_2024_r003c007.tif
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from ocsge.errors import OcsgeError, UnknownProductError
from ocsge.millesimes import check_year
from ocsge.territory import departement


class Kind(StrEnum):
    VECTOR = "vector"  # GeoParquet in the canonical schema
    RASTER = "raster"  # COG
    TABLE = "table"  # Parquet / CSV without geometry
    TILES = "tiles"  # PMTiles
    ARCHIVE = "archive"  # download archive
    DOCUMENT = "document"  # JSON reports, manifests


@dataclass(frozen=True)
class ProductSpec:
    name: str
    folder: str
    ext: str
    kind: Kind
    title: str
    pair: bool = False  # keyed by two millésimes (differences)
    per_block: bool = False  # keyed by a block id too (prediction blocks)
    media_type: str = "application/octet-stream"


_GEOPARQUET = "application/vnd.apache.parquet"
_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
_PMTILES = "application/vnd.pmtiles"
_CSV = "text/csv"
_JSON = "application/json"
_ZIP = "application/zip"
_7Z = "application/x-7z-compressed"

PRODUCTS: dict[str, ProductSpec] = {}


def register(spec: ProductSpec) -> ProductSpec:
    if spec.name in PRODUCTS and PRODUCTS[spec.name] != spec:
        raise ValueError(f"product {spec.name!r} registered twice with different specs")
    PRODUCTS[spec.name] = spec
    return spec


for _spec in (
    # Inputs (generated territory, or ingested upstream data)
    ProductSpec("imagery_rgb", "imagery/rgb", ".tif", Kind.RASTER, "Ortho-imagery RGB 0.2 m", media_type=_COG),
    ProductSpec("imagery_irc", "imagery/irc", ".tif", Kind.RASTER, "Ortho-imagery IRC 0.2 m", media_type=_COG),
    ProductSpec("imagery_dsm", "imagery/dsm", ".tif", Kind.RASTER, "Digital surface model", media_type=_COG),
    ProductSpec("imagery_dtm", "imagery/dtm", ".tif", Kind.RASTER, "Digital terrain model", media_type=_COG),
    ProductSpec("delivery", "deliveries", ".7z", Kind.ARCHIVE, "IGN-style OCS GE delivery", media_type=_7Z),
    ProductSpec("truth", "truth", ".parquet", Kind.VECTOR, "Generated ground truth (synthetic)",
                media_type=_GEOPARQUET),
    ProductSpec("synth_manifest", "truth", ".json", Kind.DOCUMENT, "Synthetic territory manifest",
                media_type=_JSON),
    ProductSpec("communes", "ancillary/communes", ".parquet", Kind.VECTOR, "Communes", media_type=_GEOPARQUET),
    ProductSpec("bdtopo_batiment", "ancillary/bdtopo_batiment", ".parquet", Kind.VECTOR,
                "BD TOPO bâtiments", media_type=_GEOPARQUET),
    ProductSpec("bdtopo_route", "ancillary/bdtopo_route", ".parquet", Kind.VECTOR,
                "BD TOPO tronçons de route", media_type=_GEOPARQUET),
    ProductSpec("bdtopo_voie_ferree", "ancillary/bdtopo_voie_ferree", ".parquet", Kind.VECTOR,
                "BD TOPO tronçons de voie ferrée", media_type=_GEOPARQUET),
    ProductSpec("bdtopo_hydro", "ancillary/bdtopo_hydro", ".parquet", Kind.VECTOR,
                "BD TOPO surfaces hydrographiques", media_type=_GEOPARQUET),
    ProductSpec("rpg", "ancillary/rpg", ".parquet", Kind.VECTOR, "RPG parcelles", media_type=_GEOPARQUET),
    ProductSpec("bdforet", "ancillary/bdforet", ".parquet", Kind.VECTOR, "BD Forêt", media_type=_GEOPARQUET),
    ProductSpec("fichiers_fonciers", "ancillary/fichiers_fonciers", ".parquet", Kind.VECTOR,
                "Fichiers fonciers (parcelles)", media_type=_GEOPARQUET),
    # Per-millésime products
    ProductSpec("occupation", "occupation", ".parquet", Kind.VECTOR, "OCS GE occupation du sol",
                media_type=_GEOPARQUET),
    ProductSpec("zone_construite", "zone_construite", ".parquet", Kind.VECTOR, "OCS GE zone construite",
                media_type=_GEOPARQUET),
    ProductSpec("artificialisation", "artificialisation", ".parquet", Kind.VECTOR,
                "OCS GE artificialisation", media_type=_GEOPARQUET),
    ProductSpec("ingest_report", "reports/ingest", ".json", Kind.DOCUMENT, "Ingestion report", media_type=_JSON),
    ProductSpec("couverture_cog", "couverture", ".tif", Kind.RASTER, "Couverture (class raster)", media_type=_COG),
    ProductSpec("usage_cog", "usage", ".tif", Kind.RASTER, "Usage (class raster)", media_type=_COG),
    ProductSpec("artif_cog", "artif", ".tif", Kind.RASTER, "Artificialisation (class raster)", media_type=_COG),
    ProductSpec("construction_cog", "construction", ".tif", Kind.RASTER, "Zone construite (raster)",
                media_type=_COG),
    ProductSpec("occupation_pmtiles", "pmtiles/occupation", ".pmtiles", Kind.TILES,
                "OCS GE vector tiles", media_type=_PMTILES),
    ProductSpec("stats_commune", "stats/commune", ".parquet", Kind.TABLE, "Statistics per commune",
                media_type=_GEOPARQUET),
    ProductSpec("stats_commune_csv", "stats/commune", ".csv", Kind.TABLE, "Statistics per commune (CSV)",
                media_type=_CSV),
    ProductSpec("archive", "archives", ".zip", Kind.ARCHIVE, "Download archive", media_type=_ZIP),
    # Production by the model
    ProductSpec("prediction", "prediction", ".tif", Kind.RASTER, "Model prediction (classes)",
                per_block=True, media_type=_COG),
    ProductSpec("confidence", "confidence", ".tif", Kind.RASTER, "Model confidence", per_block=True,
                media_type=_COG),
    ProductSpec("prediction_vector", "prediction_vector", ".parquet", Kind.VECTOR, "Vectorised prediction",
                media_type=_GEOPARQUET),
    ProductSpec("occupation_auto", "occupation_auto", ".parquet", Kind.VECTOR,
                "OCS GE auto (prediction × ancillary)", media_type=_GEOPARQUET),
    ProductSpec("zone_construite_auto", "zone_construite_auto", ".parquet", Kind.VECTOR,
                "Zone construite of OCS GE auto (the built-up envelope of the rules and UMIs)",
                media_type=_GEOPARQUET),
    ProductSpec("qa_report", "reports/qa", ".json", Kind.DOCUMENT, "Quality report", media_type=_JSON),
    # Differences between two millésimes
    ProductSpec("difference", "difference", ".parquet", Kind.VECTOR, "Évolution (différentiel)", pair=True,
                media_type=_GEOPARQUET),
    ProductSpec("artif_difference", "artif_difference", ".parquet", Kind.VECTOR,
                "Artificialisation ±1", pair=True, media_type=_GEOPARQUET),
    ProductSpec("flows_cs", "flows/cs", ".csv", Kind.TABLE, "Flux CS × CS (ha)", pair=True, media_type=_CSV),
    ProductSpec("flows_us", "flows/us", ".csv", Kind.TABLE, "Flux US × US (ha)", pair=True, media_type=_CSV),
    ProductSpec("corrections", "corrections", ".parquet", Kind.VECTOR, "Corrections of the previous millésime",
                pair=True, media_type=_GEOPARQUET),
    ProductSpec("corrected_previous", "corrected_previous", ".parquet", Kind.VECTOR,
                "Previous millésime, corrected", pair=True, media_type=_GEOPARQUET),
    ProductSpec("change_grid", "change_grid", ".parquet", Kind.VECTOR, "65 m change grid", pair=True,
                media_type=_GEOPARQUET),
    ProductSpec("stats_flows", "stats/flows", ".parquet", Kind.TABLE, "Flows per commune", pair=True,
                media_type=_GEOPARQUET),
    ProductSpec("stats_flows_csv", "stats/flows", ".csv", Kind.TABLE, "Flows per commune (CSV)", pair=True,
                media_type=_CSV),
    ProductSpec("difference_cog", "difference_raster", ".tif", Kind.RASTER, "Changes (class raster)",
                pair=True, media_type=_COG),
    ProductSpec("difference_pmtiles", "pmtiles/difference", ".pmtiles", Kind.TILES, "Differences vector tiles",
                pair=True, media_type=_PMTILES),
    ProductSpec("difference_nature", "difference_nature", ".parquet", Kind.VECTOR,
                "Évolutions vs. corrections of the previous millésime", pair=True, media_type=_GEOPARQUET),
    # The grid between the previous millésime and a prediction lives apart from the M(n)/M(n+1) grid.
    ProductSpec("change_grid_auto", "change_grid_auto", ".parquet", Kind.VECTOR,
                "65 m change grid, prediction vs. previous millésime", pair=True, media_type=_GEOPARQUET),
    # Layers delivered by IGN beside OCCUPATION_SOL, kept as ingested.
    ProductSpec("patch_corr", "deliveries/patch_corr", ".parquet", Kind.VECTOR,
                "Delivered patch correctif of the previous millésime", pair=True, media_type=_GEOPARQUET),
    ProductSpec("delivered_difference", "deliveries/difference", ".parquet", Kind.VECTOR,
                "Delivered différentiel", pair=True, media_type=_GEOPARQUET),
    ProductSpec("delivered_artif_difference", "deliveries/artif_difference", ".parquet", Kind.VECTOR,
                "Delivered artificialisation différentiel", pair=True, media_type=_GEOPARQUET),
    # Reports and totals of the product steps.
    ProductSpec("products_report", "reports/products", ".json", Kind.DOCUMENT,
                "Per-département products run (keys, inputs fingerprint)", media_type=_JSON),
    ProductSpec("artif_totals", "reports/artif", ".json", Kind.DOCUMENT,
                "Artificialised and impermeable area (totals)", media_type=_JSON),
    ProductSpec("difference_report", "reports/difference", ".json", Kind.DOCUMENT,
                "Difference between two millésimes (totals, coverage)", pair=True, media_type=_JSON),
    ProductSpec("corrections_report", "reports/corrections", ".json", Kind.DOCUMENT,
                "Corrections of the previous millésime (totals)", pair=True, media_type=_JSON),
    ProductSpec("artif_qa", "reports/artif_qa", ".json", Kind.DOCUMENT,
                "Our artificialisation against IGN's delivered layer (agreement)", media_type=_JSON),
    ProductSpec("artif_difference_qa", "reports/artif_difference_qa", ".json", Kind.DOCUMENT,
                "Our artificialisation ±1 against IGN's delivered différentiel (agreement)", pair=True,
                media_type=_JSON),
    ProductSpec("change_grid_report", "reports/change_grid", ".json", Kind.DOCUMENT,
                "65 m change grid (origin, counts)", pair=True, media_type=_JSON),
    ProductSpec("change_grid_auto_report", "reports/change_grid_auto", ".json", Kind.DOCUMENT,
                "65 m change grid, prediction vs. previous millésime (origin, counts)", pair=True,
                media_type=_JSON),
    # Reports of archives holding only an artificialisation layer or a différentiel, keyed apart from the
    # main archive's report of the same millésime so that ingesting both keeps both.
    ProductSpec("ingest_report_artif", "reports/ingest_artificialisation", ".json", Kind.DOCUMENT,
                "Ingestion report (artificialisation delivery)", media_type=_JSON),
    ProductSpec("ingest_report_diff", "reports/ingest_difference", ".json", Kind.DOCUMENT,
                "Ingestion report (différentiel delivery)", pair=True, media_type=_JSON),
    # Analyses for planners (inference_batch/analyses): tables, their JSON summaries, map layers.
    ProductSpec("groupements", "ancillary/groupements", ".csv", Kind.TABLE,
                "Communes → groupements (EPCI, SCoT…)", media_type=_CSV),
    ProductSpec("population", "ancillary/population", ".csv", Kind.TABLE,
                "Population per INSEE 200 m cell (idcar_200m, ind)", media_type=_CSV),
    ProductSpec("portrait_stocks", "portrait/stocks", ".csv", Kind.TABLE,
                "Portrait de territoire: stocks by couverture, usage, artificialisation", media_type=_CSV),
    ProductSpec("portrait_evolution", "portrait/evolution", ".csv", Kind.TABLE,
                "Portrait de territoire: evolution between two millésimes (ha, points)", pair=True,
                media_type=_CSV),
    ProductSpec("portrait_report", "portrait/report", ".json", Kind.DOCUMENT,
                "Portrait de territoire: evolutions to check locally", pair=True, media_type=_JSON),
    ProductSpec("origine", "origine", ".csv", Kind.TABLE,
                "Origin of new built land and new artificialisation (couverture before)", pair=True,
                media_type=_CSV),
    ProductSpec("tache_urbaine", "tache_urbaine", ".parquet", Kind.VECTOR, "Tâche urbaine",
                media_type=_GEOPARQUET),
    ProductSpec("tache_urbaine_communes", "tache_urbaine/communes", ".csv", Kind.TABLE,
                "Tâche urbaine per commune: extension, zone construite", pair=True, media_type=_CSV),
    # one printable HTML page per territory (block = INSEE code, groupement code or département code)
    ProductSpec("portrait_html", "portrait/html", ".html", Kind.DOCUMENT, "Portrait de territoire (HTML report)",
                pair=True, per_block=True, media_type="text/html; charset=utf-8"),
    ProductSpec("densification", "densification", ".parquet", Kind.VECTOR,
                "Economic zones (ZAE) and their densification potential", media_type=_GEOPARQUET),
    ProductSpec("densification_csv", "densification", ".csv", Kind.TABLE,
                "Economic zones (ZAE) inventory (CSV)", media_type=_CSV),
    ProductSpec("renaturation", "renaturation", ".parquet", Kind.VECTOR,
                "Renaturation potential on the INSEE 200 m grid", media_type=_GEOPARQUET),
    ProductSpec("renaturation_csv", "renaturation", ".csv", Kind.TABLE,
                "Renaturation potential on the INSEE 200 m grid (CSV)", media_type=_CSV),
    ProductSpec("tvb", "tvb", ".parquet", Kind.VECTOR, "Trame verte et bleue: reservoirs and corridors",
                media_type=_GEOPARQUET),
    ProductSpec("tvb_resistance", "tvb/resistance", ".tif", Kind.RASTER, "Trame verte et bleue: resistance",
                media_type=_COG),
    ProductSpec("tvb_communes", "tvb/communes", ".csv", Kind.TABLE,
                "Trame verte et bleue: fragmentation per territory (effective mesh size)", media_type=_CSV),
    ProductSpec("analyses_pmtiles", "pmtiles/analyses", ".pmtiles", Kind.TILES,
                "Analyses for planners: vector tiles (tâche urbaine, ZAE, renaturation, TVB)", media_type=_PMTILES),
    # the map analyses as class COGs with a palette (ocsge.rasters), for WMTS/WMS/XYZ like the other layers
    ProductSpec("tache_urbaine_cog", "tache_urbaine/raster", ".tif", Kind.RASTER, "Tâche urbaine (raster)",
                media_type=_COG),
    ProductSpec("renaturation_cog", "renaturation/raster", ".tif", Kind.RASTER,
                "Renaturation potential and priority sectors (raster)", media_type=_COG),
):
    register(_spec)


def spec(product: str) -> ProductSpec:
    try:
        return PRODUCTS[product]
    except KeyError:
        raise UnknownProductError(f"unknown product {product!r}") from None


_BLOCK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def millesime_token(millesime: int | str | tuple[int, int]) -> str:
    if isinstance(millesime, tuple):
        first, second = (check_year(y) for y in millesime)
        if first >= second:
            raise UnknownProductError(f"millésimes {first} and {second} are not in order (earlier first)")
        return f"{first}-{second}"
    return str(check_year(millesime))


def product_key(
    product: str,
    departement_code: object,
    millesime: int | str | tuple[int, int],
    *,
    block: str | None = None,
) -> str:
    """The canonical storage key of an artifact (see the module docstring for the layout)."""
    ps = spec(product)
    if ps.pair != isinstance(millesime, tuple):
        need = "a pair of millésimes (earlier, later)" if ps.pair else "one millésime"
        raise UnknownProductError(f"product {product!r} is keyed by {need}, got {millesime!r}")
    if ps.per_block != (block is not None):
        raise UnknownProductError(f"product {product!r} {'needs' if ps.per_block else 'takes no'} block id")
    if block is not None and not _BLOCK.match(block):
        raise UnknownProductError(f"invalid block id {block!r}")
    token = departement(departement_code).token
    mill = millesime_token(millesime)
    stem = ps.folder.replace("/", "_")
    if block is not None:
        return f"{ps.folder}/{token}/{mill}/blocks/{stem}_{token}_{mill}_{block}{ps.ext}"
    return f"{ps.folder}/{token}/{mill}/{stem}_{token}_{mill}{ps.ext}"


def block_prefix(product: str, departement_code: object, millesime: int | str) -> str:
    """Prefix under which the blocks of a per-block product live (for listing)."""
    ps = spec(product)
    if not ps.per_block:
        raise UnknownProductError(f"product {product!r} is not per block")
    return f"{ps.folder}/{departement(departement_code).token}/{millesime_token(millesime)}/blocks/"


@dataclass(frozen=True)
class ParsedKey:
    product: str
    departement: str
    millesime: int | tuple[int, int]
    block: str | None = None


_KEY = re.compile(
    r"^(?P<folder>.+)/D(?P<dep>[0-9A-Z]{3})/(?P<mill>\d{4}(?:-\d{4})?)/(?:blocks/)?"
    r"(?P<stem>[^/]+)_D(?P=dep)_(?P=mill)(?:_(?P<block>[A-Za-z0-9_-]{1,64}))?(?P<ext>\.[a-z0-9]+)$"
)


def parse_key(key: str) -> ParsedKey | None:
    """The (product, département, millésime, block) a key was made from, or ``None`` for any other key.

    Only keys that :func:`product_key` rebuilds exactly are accepted, so a service can serve "any artifact"
    without ever serving a file that is not one (temporary keys, reports of another layout, ``../``).
    """
    m = _KEY.match(key)
    if m is None:
        return None
    mill_text = m["mill"]
    millesime: int | tuple[int, int] = (
        (int(mill_text[:4]), int(mill_text[5:])) if "-" in mill_text else int(mill_text)
    )
    for ps in PRODUCTS.values():
        if ps.folder != m["folder"] or ps.ext != m["ext"]:
            continue
        try:
            candidate = product_key(ps.name, m["dep"], millesime, block=m["block"] if ps.per_block else None)
        except OcsgeError:
            continue
        if candidate == key:
            dep = departement(m["dep"]).code
            return ParsedKey(ps.name, dep, millesime, m["block"] if ps.per_block else None)
    return None
