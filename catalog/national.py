"""STAC items of the national files (``ocsge.national``): one item per national vector tileset, in the
collection ``ocsge-france-tiles``, published beside the per-département collections by ``ocsge publish``.

An item says which départements the file joins (``ocsge:departements``, from the file's own metadata) and
carries ``ocsge:departement = "FR"`` so that a search by département can tell it from theirs.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from typing import Any

from catalog import stac
from catalog.collections import CollectionSpec
from catalog.fileinfo import ArtifactInfo, ArtifactReadError, read_artifact
from catalog.items import SOFTWARE, _asset, _year_end, _year_start, build_collection
from catalog.pmtiles import read_header
from ocsge import __version__
from ocsge.millesimes import campaign_of
from ocsge.national import NATIONAL, NATIONAL_PRODUCTS, NationalKey, parse_national_key
from ocsge.products import PRODUCTS
from ocsge.storage import Storage

NATIONAL_COLLECTION = CollectionSpec(
    "ocsge-france-tiles",
    "occupation_pmtiles",
    "OCS GE — France entière : tuiles vectorielles (PMTiles)",
    "Une archive PMTiles par produit et millésime pour toute la France : les tuiles des départements "
    "jointes (z ≥ 10, telles qu'elles sont publiées par département), avec des zooms 6 à 9 généralisés. "
    "Servies par /vector/{occupation|difference}/FR/{millésime}/{z}/{x}/{y}.mvt.",
    ("OCS GE", "occupation du sol", "tuiles vectorielles", "France"),
    roles=("data", "visual"),
)


def national_files(storage: Storage) -> list[tuple[str, NationalKey]]:
    """(key, parsed) of every national file under the root, in key order."""
    found = []
    for product in NATIONAL_PRODUCTS:
        for info in storage.list(f"{PRODUCTS[product].folder}/{NATIONAL}/"):
            parsed = parse_national_key(info.key)
            if parsed is not None and parsed.product == product:
                found.append((info.key, parsed))
    return sorted(found)


def _joined_departements(storage: Storage, key: str) -> list[str]:
    header = read_header(storage, key)
    raw = storage.get_range(key, header.metadata_offset, header.metadata_length)
    try:
        metadata = json.loads(gzip.decompress(raw) if header.internal_compression == 2 else raw)
    except (OSError, ValueError) as exc:
        raise ArtifactReadError(f"{key}: unreadable PMTiles metadata ({exc})") from None
    return sorted(metadata.get("ocsge:departements", {}))


def national_item(key: str, parsed: NationalKey, info: ArtifactInfo, departements: list[str]) -> dict[str, Any]:
    mill = parsed.millesime
    year = mill[1] if isinstance(mill, tuple) else mill
    props: dict[str, Any] = {
        "title": f"{NATIONAL_COLLECTION.title} — {PRODUCTS[parsed.product].title}, {parsed.token}",
        "datetime": None if isinstance(mill, tuple) else _year_start(year),
        "start_datetime": _year_start(mill[0] if isinstance(mill, tuple) else year),
        "end_datetime": _year_end(year),
        "ocsge:product": parsed.product,
        "ocsge:departement": NATIONAL,
        "ocsge:departements": departements,
        "ocsge:millesime": year,
        "ocsge:campaign": campaign_of(year).name,
        "processing:software": {SOFTWARE: __version__},
        "processing:lineage": "Jointure des tuiles vectorielles départementales (zooms 6 à 9 généralisés).",
        "version": info.sha256[:12],
    }
    if isinstance(mill, tuple):
        props["ocsge:millesime_avant"] = mill[0]
    extent = info.extent
    return {
        "type": "Feature",
        "stac_version": stac.STAC_VERSION,
        "stac_extensions": sorted({stac.FILE, stac.PROCESSING, stac.VERSION}),
        "id": key.rsplit("/", 1)[-1].split(".", 1)[0],
        "collection": NATIONAL_COLLECTION.id,
        "geometry": extent.geometry if extent is not None else None,
        **({"bbox": list(extent.bbox)} if extent is not None and extent.bbox else {}),
        "properties": props,
        "links": [],
        "assets": {"data": _asset(info, parsed.product, NATIONAL_COLLECTION.roles)},
    }


def national_catalogue(
    storage: Storage, known_sha256: Mapping[tuple[str, int, str | None], str] | None = None
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, ArtifactInfo]]:
    """The national collection (None when there is no national file), its items and the files' infos."""
    items, infos = [], {}
    for key, parsed in national_files(storage):
        info = read_artifact(storage, key, "tiles", known_sha256=dict(known_sha256 or {}))
        infos[key] = info
        items.append(national_item(key, parsed, info, _joined_departements(storage, key)))
    if not items:
        return None, [], infos
    return build_collection(NATIONAL_COLLECTION, items), items, infos
