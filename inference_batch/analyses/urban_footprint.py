"""Tâche urbaine: the urban footprint that separates built-up areas and their close surroundings from
natural, agricultural and forest land, per millésime; its extension between millésimes per commune,
compared with IGN's zone construite.

Method — the buffer method of the CERTU (Certu 2008, "Détermination d'un MOS et calcul d'une tache urbaine
à partir de la BD TOPO"; Certu 2013, "Mesure de la consommation d'espace", fiches 1.3 and 2.3), applied to
OCS GE polygons instead of BD TOPO buildings or cadastral parcels:

1. **sources**: built surfaces (couverture ``CS1.1.1.1``, any usage) and sealed non-built surfaces
   (``CS1.1.1.2``: car parks, yards, squares) except transport networks (usage ``US4.1.*``), which
   would otherwise stretch the footprint along every road and railway (our choice);
2. **dilation** by ``dilation`` metres (default 50 m), union of everything;
3. **erosion** by ``erosion`` metres (default 25 m). Gaps narrower than twice the dilation are filled
   (built areas less than 100 m apart form one footprint) and a margin of ``dilation − erosion``
   (25 m) is kept around the outermost buildings: their "close surroundings";
4. patches below ``min_area_m2`` (default 0: none dropped) are dropped; the result is clipped to the
   communes of the département.

As the Certu notes, the areas depend strongly on the buffer sizes: compare millésimes computed with the
same parameters (they are recorded in the products' fingerprints), not with other methods. Buffers are
round (``join_style="round"``); ``"mitre"`` keeps rectilinear shapes rectilinear (exact areas, tests).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from inference_batch.analyses.territories import by_territory, load_groupements, territory_list
from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import StepError, key, read_vector, step_outputs, write_table, write_vector
from inference_batch.products.ingest import communes_key, required_communes_key
from inference_batch.products.inputs import layer_key, open_source
from inference_batch.products.spatial import polygonal
from inference_batch.products.stats import normalise_communes, split_by_commune
from ocsge import schema
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import departement

BUILT_CS, SEALED_CS = "CS1.1.1.1", "CS1.1.1.2"
TRANSPORT_US = "US4.1"


@dataclass(frozen=True)
class FootprintParams:
    dilation: float = 50.0  # m
    erosion: float = 25.0  # m
    min_area_m2: float = 0.0
    join_style: str = "round"  # "round" | "mitre"

    def __post_init__(self) -> None:
        if self.dilation <= 0 or self.erosion < 0 or self.erosion > self.dilation:
            raise StepError(f"tâche urbaine: need dilation > 0 and 0 ≤ erosion ≤ dilation, got {self.dilation} "
                            f"and {self.erosion}")
        if self.join_style not in ("round", "mitre"):
            raise StepError(f"tâche urbaine: join_style must be round or mitre, got {self.join_style!r}")


def source_mask(code_cs: pd.Series, code_us: pd.Series) -> np.ndarray:
    """Built surfaces, and sealed non-built surfaces other than transport networks."""
    cs = code_cs.astype(str)
    us = code_us.fillna("").astype(str)
    return ((cs == BUILT_CS) | ((cs == SEALED_CS) & ~us.str.startswith(TRANSPORT_US))).to_numpy()


def footprint(geoms: np.ndarray, params: FootprintParams = FootprintParams(),
              clip: shapely.Geometry | None = None) -> np.ndarray:
    """The patches (polygons) of the tâche urbaine of the source surfaces ``geoms``."""
    if len(geoms) == 0:
        return np.array([], dtype=object)
    kw = {"join_style": params.join_style, "mitre_limit": 10.0}
    dilated = shapely.union_all(shapely.buffer(geoms, params.dilation, **kw))
    eroded = shapely.buffer(dilated, -params.erosion, **kw) if params.erosion > 0 else dilated
    if clip is not None:
        eroded = shapely.intersection(eroded, clip)
    parts = shapely.get_parts(polygonal(np.array([eroded], dtype=object)))
    parts = parts[~shapely.is_empty(parts)]
    return parts[shapely.area(parts) >= max(params.min_area_m2, 1e-6)]


def footprint_frame(parts: np.ndarray, millesime: int, crs: object) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({
        schema.ID: [f"TU_{millesime}_{i:06d}" for i in range(len(parts))],
        schema.MILLESIME: millesime,
        "surface_ha": np.round(shapely.area(parts) / 1e4, 4),
    }, geometry=list(parts), crs=crs)


def commune_table(tache_before: gpd.GeoDataFrame, tache_after: gpd.GeoDataFrame,
                  zc_before: gpd.GeoDataFrame | None, zc_after: gpd.GeoDataFrame | None,
                  communes: gpd.GeoDataFrame, groupements: pd.DataFrame | None, dep: object,
                  before: int, after: int) -> pd.DataFrame:
    """Per commune, groupement and département: the tâche of both millésimes, its extension (gross: land
    in the later tâche and not in the earlier; retreat: the opposite; net: the difference of areas), and
    the zone construite of both millésimes with the parts of the later tâche inside and outside it."""
    communes = normalise_communes(communes)
    crs = communes.crs
    b = shapely.union_all(tache_before.geometry.to_numpy())
    a = shapely.union_all(tache_after.geometry.to_numpy())
    layers: dict[str, shapely.Geometry] = {
        "tache_debut": b, "tache_fin": a, "extension_brute": shapely.difference(a, b),
        "retrait": shapely.difference(b, a),
    }
    has_zc = zc_before is not None and zc_after is not None
    if has_zc:
        zb = shapely.union_all(zc_before.geometry.to_numpy())  # type: ignore[union-attr]
        za = shapely.union_all(zc_after.geometry.to_numpy())  # type: ignore[union-attr]
        layers.update({"zone_construite_debut": zb, "zone_construite_fin": za,
                       "tache_fin_dans_zone_construite": shapely.intersection(a, za),
                       "tache_fin_hors_zone_construite": shapely.difference(a, za),
                       "zone_construite_fin_hors_tache": shapely.difference(za, a)})
    frame = gpd.GeoDataFrame({"mesure": list(layers)}, geometry=list(layers.values()), crs=crs)
    frame = frame[~frame.geometry.is_empty]
    per_commune = pd.concat([
        split_by_commune([frame], communes, ["mesure"]),
        pd.DataFrame({schema.INSEE_COM: communes[schema.INSEE_COM], "mesure": "surface",
                      "area": communes.geometry.area.to_numpy()}),
    ], ignore_index=True)
    areas = by_territory(per_commune, communes, groupements, dep, ["mesure"])
    wide = areas.pivot_table(index=["niveau", "territoire"], columns="mesure", values="area", aggfunc="sum")
    out = territory_list(communes, groupements, dep)
    idx = pd.MultiIndex.from_frame(out[["niveau", "territoire"]])
    for name in ("surface", *layers):
        values = wide[name].reindex(idx).to_numpy() if name in wide else np.zeros(len(out))
        out[f"{name}_ha"] = np.round(np.nan_to_num(values) / 1e4, 4)
    out.insert(3, "millesime_debut", before)
    out.insert(4, "millesime_fin", after)
    out["extension_nette_ha"] = np.round(out.tache_fin_ha - out.tache_debut_ha, 4)
    out["extension_pct"] = np.round(100 * out.extension_nette_ha / out.tache_debut_ha.replace(0, np.nan), 2)
    out["part_tache_fin_pct"] = np.round(100 * out.tache_fin_ha / out.surface_ha.replace(0, np.nan), 2)
    if not has_zc:
        for name in ("zone_construite_debut", "zone_construite_fin", "tache_fin_dans_zone_construite",
                     "tache_fin_hors_zone_construite", "zone_construite_fin_hors_tache"):
            out[f"{name}_ha"] = np.nan
    return out


def run_footprint(storage: Storage, dep: object, millesimes: list[int], *,
                  params: FootprintParams = FootprintParams(), groupements: str | Path | None = None,
                  force: bool = False) -> dict[str, str]:
    """Step: the tâche urbaine of each millésime (GeoParquet) and, per consecutive pair, its extension
    per commune, groupement and département compared with the zone construite (CSV)."""
    d = departement(dep)
    years = sorted(millesimes)
    keys: dict[str, str] = {}
    for year in years:
        out = key("tache_urbaine", d.code, year)
        keys[f"tache_urbaine_{year}"] = out
        ckey = communes_key(storage, d, year)
        layer = layer_key(storage, d.code, year)
        digest = fingerprint(storage, [layer, *([ckey] if ckey else [])], params=asdict(params))
        if not force and is_up_to_date(storage, out, digest):
            continue
        step(f"tache-urbaine {d.code} {year}: +{params.dilation:g} m / −{params.erosion:g} m around built land")
        clip = None
        if ckey is not None:
            clip = shapely.union_all(read_vector(storage, ckey).geometry.to_numpy())
        with open_source(storage, layer, [schema.CODE_CS, schema.CODE_US]) as src:
            crs = src.crs
            chunks = [c.geometry.to_numpy()[source_mask(c[schema.CODE_CS], c[schema.CODE_US])]
                      for c in src.iter_chunks()]
        sources = np.concatenate(chunks) if chunks else np.array([], dtype=object)
        parts = footprint(sources, params, clip)
        with refreshing(storage, out, digest), step_outputs(storage) as outputs:
            outputs.add(write_vector(storage, out, footprint_frame(parts, year, crs)))
        done(f"tache-urbaine {d.code} {year}: {len(parts)} patches, {shapely.area(parts).sum() / 1e4:.2f} ha")
    for before, after in itertools.pairwise(years):
        pair = (before, after)
        out = key("tache_urbaine_communes", d.code, pair)
        keys[f"tache_urbaine_communes_{before}_{after}"] = out
        ckey = required_communes_key(storage, d, after, "tache-urbaine")
        grp, grp_digest = load_groupements(storage, d.code, after, groupements)
        zc = [key("zone_construite", d.code, y) for y in pair]
        inputs = [keys[f"tache_urbaine_{before}"], keys[f"tache_urbaine_{after}"], ckey, *zc]
        digest = fingerprint(storage, inputs, params={"groupements": grp_digest})
        if not force and is_up_to_date(storage, out, digest):
            continue
        step(f"tache-urbaine {d.code} {before}→{after}: extension per commune")
        zones = [read_vector(storage, k) if storage.exists(k) else None for k in zc]
        if any(z is None for z in zones):
            zones = [None, None]
        table = commune_table(read_vector(storage, inputs[0]), read_vector(storage, inputs[1]), zones[0], zones[1],
                              read_vector(storage, ckey), grp, d.code, before, after)
        with refreshing(storage, out, digest), step_outputs(storage) as outputs:
            outputs.add(write_table(storage, out, table[[c for c in table.columns if c != "geometry"]]))
        net = float(table.loc[table.niveau == "departement", "extension_nette_ha"].iloc[0])
        done(f"tache-urbaine {d.code} {before}→{after}: {net:+.2f} ha")
    return keys

