"""STAC items and collections built from discovered artifacts and what their files say.

Items carry asset hrefs relative to the storage root (``occupation/D077/2021/…``); whoever writes them
(static catalogue, snapshot, pgstac) turns them into hrefs relative to the document or absolute URLs.
Nothing here depends on the time of publishing, so re-publishing the same files gives the same JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from catalog import stac
from catalog.collections import CollectionSpec, class_list
from catalog.discover import Artifact
from catalog.fileinfo import ArtifactInfo
from ocsge import __version__
from ocsge.millesimes import campaign_of, millesime_index
from ocsge.products import PRODUCTS

SOFTWARE = "ocsge-cloud"

IGN = {"name": "IGN — Institut national de l'information géographique et forestière",
       "roles": ["licensor", "producer"], "url": "https://geoservices.ign.fr/ocsge"}
PLATFORM = {"name": "OCS GE cloud", "roles": ["processor", "host"],
            "processing:software": {SOFTWARE: __version__}}


def _year_start(year: int) -> str:
    return f"{year}-01-01T00:00:00Z"


def _year_end(year: int) -> str:
    return f"{year}-12-31T23:59:59Z"


def item_id(artifact: Artifact) -> str:
    """The file's stem: ``couverture_D077_2021``, ``difference_D077_2018-2021``, ``prediction_D077_2024_r0c1``."""
    return artifact.key.rsplit("/", 1)[-1].split(".", 1)[0]


def _asset(info: ArtifactInfo, product: str, roles: Iterable[str], title: str | None = None) -> dict[str, Any]:
    ps = PRODUCTS[product]
    asset: dict[str, Any] = {
        "href": info.key,
        "type": ps.media_type,
        "title": title or ps.title,
        "roles": list(roles),
        "file:size": info.size,
        "file:checksum": info.multihash,
    }
    if info.raster is not None:
        grid = info.raster
        band: dict[str, Any] = {"data_type": grid.dtype, "spatial_resolution": grid.resolution, "sampling": "area"}
        if grid.nodata is not None:
            integral = grid.dtype.startswith(("uint", "int")) and float(grid.nodata).is_integer()
            band["nodata"] = int(grid.nodata) if integral else grid.nodata
        asset["raster:bands"] = [dict(band) for _ in range(grid.count)]
    return asset


def build_item(
    spec: CollectionSpec,
    artifact: Artifact,
    info: ArtifactInfo,
    companions: Mapping[str, tuple[Artifact, ArtifactInfo]] | None = None,
    fallback_extent: Any = None,
) -> dict[str, Any]:
    """The STAC item of one artifact. ``companions`` maps asset keys to companion artifacts found for the
    same département and millésime; ``fallback_extent`` (an Extent) locates items whose files have no
    geometry (CSV flows), e.g. from the occupation layer of the same département."""
    dep = artifact.departement
    extent = info.extent if info.extent is not None and info.extent.geometry else fallback_extent
    extensions = {stac.FILE, stac.PROCESSING, stac.VERSION}
    props: dict[str, Any] = {}
    if isinstance(artifact.millesime, tuple):
        first, second = artifact.millesime
        props.update(datetime=None, start_datetime=_year_start(first), end_datetime=_year_end(second))
    else:
        year = artifact.millesime
        props.update(datetime=_year_start(year), start_datetime=_year_start(year), end_datetime=_year_end(year))
    mill_text = "-".join(map(str, artifact.millesime)) if isinstance(artifact.millesime, tuple) else str(
        artifact.millesime)
    title = f"{spec.title} — {dep.name} ({dep.code}), {mill_text}"
    if artifact.block:
        title += f", bloc {artifact.block}"
    props["title"] = title
    source = info.provenance.source or spec.source
    props.update({
        "ocsge:product": artifact.product,
        "ocsge:departement": dep.code,
        "ocsge:millesime": artifact.year,
        "ocsge:millesime_index": millesime_index(dep.code, artifact.year),
        "ocsge:campaign": campaign_of(artifact.year).name,
        "ocsge:source": source,
    })
    if isinstance(artifact.millesime, tuple):
        props["ocsge:millesime_avant"] = artifact.millesime[0]
    if artifact.block:
        props["ocsge:block"] = artifact.block
    if extent is not None and extent.epsg is not None:
        extensions.add(stac.PROJECTION)
        props["proj:code"] = f"EPSG:{extent.epsg}"
        if extent.native_bbox is not None:
            props["proj:bbox"] = [round(v, 3) for v in extent.native_bbox]
    if info.raster is not None:
        extensions.update({stac.PROJECTION, stac.RASTER})
        props["proj:shape"] = list(info.raster.shape)
        props["proj:transform"] = [float(v) for v in info.raster.transform]
    software = {SOFTWARE: info.provenance.software_version or __version__}
    if info.provenance.model:
        software[info.provenance.model] = info.provenance.checkpoint or "unknown"
    props["processing:software"] = software
    if source == "auto":
        model = info.provenance.model or "unknown model"
        checkpoint = f", checkpoint {info.provenance.checkpoint}" if info.provenance.checkpoint else ""
        props["processing:lineage"] = f"Produit automatiquement par {model}{checkpoint} ({SOFTWARE} "
        props["processing:lineage"] += f"{software[SOFTWARE]})."
    elif PRODUCTS[artifact.product].folder.startswith("imagery/"):  # the photos are an input, not derived
        props["processing:lineage"] = f"Imagerie aérienne du territoire, publiée telle quelle ({SOFTWARE} "
        props["processing:lineage"] += f"{software[SOFTWARE]})."
    else:
        props["processing:lineage"] = f"Dérivé de l'OCS GE de l'IGN ({SOFTWARE} {software[SOFTWARE]})."
    props["version"] = info.sha256[:12]  # changes exactly when the data changes

    assets = {"data": _asset(info, artifact.product, spec.roles)}
    if spec.classes is not None and info.raster is not None:
        extensions.add(stac.CLASSIFICATION)
        assets["data"]["classification:classes"] = class_list(spec.classes)
    for key, (comp_artifact, comp_info) in sorted((companions or {}).items()):
        roles = next(c.roles for c in spec.companions if c.asset == key)
        assets[key] = _asset(comp_info, comp_artifact.product, roles)
        if comp_info.raster is not None:
            extensions.update({stac.RASTER, stac.PROJECTION})

    return {
        "type": "Feature",
        "stac_version": stac.STAC_VERSION,
        "stac_extensions": sorted(extensions),
        "id": item_id(artifact),
        "collection": spec.id,
        "geometry": extent.geometry if extent is not None else None,
        **({"bbox": list(extent.bbox)} if extent is not None and extent.bbox else {}),
        "properties": props,
        "links": [],
        "assets": assets,
    }


def _summaries(items: list[dict[str, Any]]) -> dict[str, Any]:
    def values(name: str) -> list[Any]:
        return sorted({it["properties"][name] for it in items if it["properties"].get(name) is not None})

    summaries: dict[str, Any] = {
        name: values(name)
        for name in ("ocsge:departement", "ocsge:millesime", "ocsge:campaign", "ocsge:source", "proj:code")
        if values(name)
    }
    return summaries


def _union_bbox(items: list[dict[str, Any]]) -> list[float]:
    boxes = [it["bbox"] for it in items if it.get("bbox")]
    if not boxes:
        return [-180.0, -90.0, 180.0, 90.0]
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def build_collection(spec: CollectionSpec, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The collection of a product: extent and summaries from its items, item_assets from the spec."""
    starts = [it["properties"]["start_datetime"] for it in items]
    ends = [it["properties"]["end_datetime"] for it in items]
    extensions: set[str] = set()
    data_asset: dict[str, Any] = {
        "type": spec.product_spec.media_type, "roles": list(spec.roles), "title": spec.product_spec.title,
    }
    first_data = items[0]["assets"]["data"] if items else {}
    if "raster:bands" in first_data:
        extensions.add(stac.RASTER)
        data_asset["raster:bands"] = [{k: v for k, v in b.items() if k in ("data_type", "nodata", "sampling")}
                                      for b in first_data["raster:bands"]]
    if "classification:classes" in first_data:
        extensions.add(stac.CLASSIFICATION)
        data_asset["classification:classes"] = first_data["classification:classes"]
    item_assets = {"data": data_asset}
    for comp in spec.companions:
        cps = PRODUCTS[comp.product]
        item_assets[comp.asset] = {"type": cps.media_type, "roles": list(comp.roles), "title": cps.title}
    providers = [IGN, PLATFORM] if spec.source == "official" else [PLATFORM]
    if PLATFORM in providers:
        extensions.add(stac.PROCESSING)
    return {
        "type": "Collection",
        "stac_version": stac.STAC_VERSION,
        "stac_extensions": sorted(extensions),
        "id": spec.id,
        "title": spec.title,
        "description": spec.description,
        "keywords": list(spec.keywords),
        "license": stac.LICENSE,
        "providers": providers,
        "extent": {
            "spatial": {"bbox": [_union_bbox(items)]},
            "temporal": {"interval": [[min(starts) if starts else None, max(ends) if ends else None]]},
        },
        "summaries": _summaries(items),
        "item_assets": item_assets,
        "links": [{"rel": "license", "href": stac.LICENSE_URL, "type": "text/html",
                   "title": "Licence Ouverte / Open Licence 2.0 (Etalab)"}],
    }
