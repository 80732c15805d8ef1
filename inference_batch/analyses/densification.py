"""Densification potential of economic zones (ZAE): an inventory table and a map per millésime.

**Zones** come from a user-supplied ZAE layer (any vector file GeoPandas reads; its ``id``/``nom`` columns
are kept when present), or, by default, from the OCS GE usage: the union of the polygons whose usage is
economic — secondary production ``US2``, tertiary ``US3``, the mixed ``US235`` and logistics and storage
``US4.2`` (the usages the issue names; a ``US235`` area may hold housing too) — cut into connected parts,
each at least ``min_zone_m2`` (default 5 000 m², our choice: below that it is one business, not a zone).

**Per zone**, from the couverture of the polygons inside it (cut at the zone's edge):

- ``bati_ha``: built footprint (CS1.1.1.1);
- ``artificialise_non_bati_ha``: sealed non-built surfaces (CS1.1.1.2: car parks, yards), mineral
  (CS1.1.2.1) and composite (CS1.1.2.2) surfaces;
- ``vegetalise_ha``: the vegetated remainder (CS2.*); ``autre_ha``: bare soil, water (CS1.2.*);
- ``ces_pct``: emprise au sol ratio, built footprint / zone area (the *coefficient d'emprise au sol* of
  planning documents);
- ``surface_optimisable_ha``: the non-built artificialised surfaces, where a building adds no new
  artificialisation (our choice: vegetated land is left to renaturation, not counted as optimisable),
  and ``ces_potentiel_pct`` = (built + optimisable) / zone area.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import StepError, key, read_vector, step_outputs, write_table, write_vector
from inference_batch.products.ingest import communes_key
from inference_batch.products.inputs import layer_key, open_source
from inference_batch.products.spatial import polygonal
from inference_batch.products.stats import normalise_communes, split_by_commune
from ocsge import schema
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import departement

ECONOMIC_US: tuple[str, ...] = ("US2", "US3", "US235", "US4.2")
BUILT_CS = "CS1.1.1.1"
NON_BUILT_ARTIF_CS: tuple[str, ...] = ("CS1.1.1.2", "CS1.1.2.1", "CS1.1.2.2")
ZONE_ID = "zae_id"


@dataclass(frozen=True)
class ZoneParams:
    min_zone_m2: float = 5_000.0
    usages: tuple[str, ...] = ECONOMIC_US


def zones_from_usage(frames: Any, params: ZoneParams = ZoneParams(), crs: Any = None) -> gpd.GeoDataFrame:
    """Connected parts of the union of economic-usage polygons, at least ``min_zone_m2`` each."""
    geoms = []
    for frame in frames:
        crs = crs or frame.crs
        keep = frame[schema.CODE_US].astype(str).isin(params.usages).to_numpy()
        geoms.append(frame.geometry.to_numpy()[keep])
    allg = np.concatenate(geoms) if geoms else np.array([], dtype=object)
    parts = shapely.get_parts(polygonal(np.array([shapely.union_all(allg)], dtype=object))) if len(allg) else allg
    parts = parts[shapely.area(parts) >= params.min_zone_m2] if len(parts) else parts
    order = np.lexsort((shapely.get_x(shapely.centroid(parts)), -shapely.get_y(shapely.centroid(parts)))) \
        if len(parts) else np.array([], dtype=int)
    parts = parts[order]
    return gpd.GeoDataFrame({ZONE_ID: [f"ZAE_{i + 1:04d}" for i in range(len(parts))],
                             "nom": [""] * len(parts), "origine_zone": "usage"}, geometry=list(parts), crs=crs)


def zones_from_file(path: str | Path, crs: Any) -> gpd.GeoDataFrame:
    """A user-supplied ZAE layer, in the layer's CRS, with ``zae_id`` (its id column, else a number)."""
    try:
        src = gpd.read_parquet(path) if str(path).endswith(".parquet") else gpd.read_file(path)
    except Exception as exc:  # any reader error becomes a message naming the file
        raise StepError(f"cannot read the ZAE layer {path}: {exc}") from None
    if src.crs is None:
        raise StepError(f"ZAE layer {path} has no CRS")
    src = src.to_crs(crs)
    lowered = {c.lower(): c for c in src.columns}
    ident = next((lowered[c] for c in ("zae_id", "id", "code", "identifiant") if c in lowered), None)
    name = next((lowered[c] for c in ("nom", "name", "libelle", "nom_zae") if c in lowered), None)
    ids = src[ident].astype(str).to_numpy() if ident else [f"ZAE_{i + 1:04d}" for i in range(len(src))]
    return gpd.GeoDataFrame({ZONE_ID: ids, "nom": src[name].astype(str).to_numpy() if name else "",
                             "origine_zone": "fichier"}, geometry=polygonal(src.geometry.to_numpy()), crs=crs)


def inventory(zones: gpd.GeoDataFrame, frames: Any, communes: gpd.GeoDataFrame | None = None
              ) -> gpd.GeoDataFrame:
    """The zones with their built, non-built artificialised and vegetated areas, CES and optimisable area."""
    target = gpd.GeoDataFrame({schema.INSEE_COM: zones[ZONE_ID].to_numpy(), schema.NOM_COM: zones["nom"].to_numpy()},
                              geometry=zones.geometry.to_numpy(), crs=zones.crs)
    pieces = split_by_commune(frames, target, [schema.CODE_CS])
    pieces = pieces[pieces[schema.INSEE_COM] != "hors_communes"]
    cs = pieces[schema.CODE_CS].fillna("").astype(str)
    groups = {
        "bati": cs == BUILT_CS,
        "artificialise_non_bati": cs.isin(NON_BUILT_ARTIF_CS),
        "vegetalise": cs.str.startswith("CS2"),
    }
    groups["autre"] = ~(groups["bati"] | groups["artificialise_non_bati"] | groups["vegetalise"])
    out = zones.copy()
    area = shapely.area(out.geometry.to_numpy())
    out["surface_ha"] = np.round(area / 1e4, 4)
    for name, mask in groups.items():
        sums = pieces[mask.to_numpy()].groupby(schema.INSEE_COM)["area"].sum()
        out[f"{name}_ha"] = np.round(sums.reindex(out[ZONE_ID]).fillna(0.0).to_numpy() / 1e4, 4)
    safe = np.where(area > 0, area, np.nan)
    built = out["bati_ha"].to_numpy() * 1e4
    optim = out["artificialise_non_bati_ha"].to_numpy() * 1e4
    out["ces_pct"] = np.round(np.nan_to_num(100 * built / safe), 2)
    out["surface_optimisable_ha"] = out["artificialise_non_bati_ha"]
    out["ces_potentiel_pct"] = np.round(np.nan_to_num(100 * (built + optim) / safe), 2)
    if communes is not None:
        com = normalise_communes(communes).to_crs(out.crs)
        points = gpd.GeoDataFrame(geometry=out.geometry.representative_point(), crs=out.crs)
        joined = gpd.sjoin(points, com, how="left", predicate="within")
        joined = joined[~joined.index.duplicated()]
        out.insert(1, schema.INSEE_COM, joined[schema.INSEE_COM].reindex(out.index).fillna("").to_numpy())
    return out


def run_densification(storage: Storage, dep: object, millesimes: list[int], *, zae: str | Path | None = None,
                      params: ZoneParams = ZoneParams(), force: bool = False) -> dict[str, str]:
    """Step: per millésime, the zones with their inventory (GeoParquet map + CSV table)."""
    import hashlib

    d = departement(dep)
    keys: dict[str, str] = {}
    zae_digest = hashlib.sha256(Path(zae).read_bytes()).hexdigest() if zae is not None else None
    for year in sorted(millesimes):
        kp, kc = key("densification", d.code, year), key("densification_csv", d.code, year)
        keys[f"densification_{year}"], keys[f"densification_csv_{year}"] = kp, kc
        layer = layer_key(storage, d.code, year)
        ckey = communes_key(storage, d, year)
        digest = fingerprint(storage, [layer, *([ckey] if ckey else [])],
                             params={**asdict(params), "zae": zae_digest})
        if not force and is_up_to_date(storage, [kp, kc], digest):
            continue
        step(f"densification {d.code} {year}: economic zones of {layer}")
        with open_source(storage, layer, [schema.CODE_CS, schema.CODE_US]) as src:
            zones = zones_from_file(zae, src.crs) if zae is not None else zones_from_usage(src.iter_chunks(), params,
                                                                                         src.crs)
            table = inventory(zones, src.iter_chunks(), read_vector(storage, ckey) if ckey else None)
        table.insert(1, schema.MILLESIME, year)
        with refreshing(storage, [kp, kc], digest), step_outputs(storage) as outputs:
            outputs.add(write_vector(storage, kp, table, sort=False))
            outputs.add(write_table(storage, kc, pd.DataFrame(table.drop(columns="geometry"))))
        done(f"densification {d.code} {year}: {len(table)} zones, "
             f"{table.surface_optimisable_ha.sum():.2f} ha optimisable")
    return keys
