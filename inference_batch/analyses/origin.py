"""Origin of newly built and newly artificialised land between two millésimes, by couverture of origin.

IGN's table "nouvelle artificialisation bâtie M(n)→M(n+1) par couverture d'origine" (e.g. 67 % herbaceous
CS2.2.1, 17 % mineral CS1.1.2.1, 8 % forest, 1 % vineyards), per commune, groupement and département:

- ``type = bati``: land built in M(n+1) (``cs_apres = CS1.1.1.1``) that was not built in M(n), from the
  evolution layer (``difference``: the pieces whose couverture or usage changed);
- ``type = artificialisation``: land artificialised in M(n+1) and not in M(n) (``artificialisation = +1``
  of the ``artif_difference`` layer, i.e. after the décret's thresholds when both millésimes have them).

Each row gives the area (ha) coming from one couverture of M(n) (``cs_origine``) and its share (%) of
the territory's total for that type; the shares of a territory and type add up to 100.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from inference_batch.analyses.portrait import COUVERTURE, EMPTY, label
from inference_batch.analyses.territories import TERRITORY, by_territory, load_groupements
from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import StepError, key, read_vector, step_outputs, write_table
from inference_batch.products.ingest import required_communes_key
from inference_batch.products.stats import normalise_communes, split_by_commune
from ocsge import schema
from ocsge.nomenclature import CS_LEAVES
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import departement

BUILT_CS = "CS1.1.1.1"
BATI, ARTIFICIALISATION = "bati", "artificialisation"
COLUMNS = [*TERRITORY, "millesime_debut", "millesime_fin", "type", "cs_origine", "libelle", "surface_ha",
           "total_ha", "part_pct"]


def new_land(difference: gpd.GeoDataFrame | None, artif_difference: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame:
    """The pieces of newly built and newly artificialised land with ``type`` and ``cs_origine``."""
    parts = []
    if difference is not None and not difference.empty:
        built = difference[(difference[schema.CS_APRES] == BUILT_CS) & (difference[schema.CS_AVANT] != BUILT_CS)]
        parts.append(built.assign(type=BATI))
    if artif_difference is not None and not artif_difference.empty:
        plus = artif_difference[pd.to_numeric(artif_difference["artificialisation"]) > 0]
        parts.append(plus.assign(type=ARTIFICIALISATION))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return gpd.GeoDataFrame({"type": [], "cs_origine": []}, geometry=[], crs=None)
    out = pd.concat(parts, ignore_index=True)
    out["cs_origine"] = out[schema.CS_AVANT].fillna(EMPTY).astype(str)
    return gpd.GeoDataFrame(out[["type", "cs_origine"]], geometry=out.geometry.to_numpy(), crs=parts[0].crs)


def origin_table(frames: Iterable[gpd.GeoDataFrame], communes: gpd.GeoDataFrame, groupements: pd.DataFrame | None,
                 dep: object, before: int, after: int) -> pd.DataFrame:
    """Area and share of each couverture of origin, per territory and type."""
    communes = normalise_communes(communes)
    per_commune = split_by_commune(frames, communes, ["type", "cs_origine"])
    areas = by_territory(per_commune, communes, groupements, dep, ["type", "cs_origine"])
    areas = areas[areas["area"] > 0.01]  # slivers below 1 cm² from the cut by communes
    total = areas.groupby(["niveau", "territoire", "type"])["area"].transform("sum")
    out = areas.assign(
        millesime_debut=before, millesime_fin=after,
        libelle=[label(COUVERTURE, c) for c in areas["cs_origine"]],
        surface_ha=np.round(areas["area"] / 1e4, 4),
        total_ha=np.round(total / 1e4, 4),
        part_pct=np.round(100 * areas["area"] / total, 2),
    )
    # communes, groupements, département; built before artificialised; largest origin first
    out["_n"] = out.niveau.map({"commune": 0, "groupement": 1, "departement": 2})
    out["_t"] = out.type.map({BATI: 0, ARTIFICIALISATION: 1})
    out["_c"] = out.cs_origine.map({c: i for i, c in enumerate(CS_LEAVES)}).fillna(len(CS_LEAVES))
    out = out.sort_values(["_n", "territoire", "_t", "surface_ha", "_c"], ascending=[True, True, True, False, True],
                          kind="stable")
    return out[COLUMNS].reset_index(drop=True)


def run_origin(storage: Storage, dep: object, before: int, after: int, *, groupements: str | Path | None = None,
               force: bool = False) -> dict[str, str]:
    """Step: the origin table of a pair of millésimes (needs ``ocsge diff`` of the pair)."""
    d = departement(dep)
    pair = (before, after)
    out = key("origine", d.code, pair)
    dkey, akey = key("difference", d.code, pair), key("artif_difference", d.code, pair)
    if not storage.exists(dkey) or not storage.exists(akey):
        raise StepError(f"origine {d.code} {before}-{after}: no difference layers ({dkey}); run `ocsge diff` first")
    ckey = required_communes_key(storage, d, after, "origine")
    grp, grp_digest = load_groupements(storage, d.code, after, groupements)
    digest = fingerprint(storage, [dkey, akey, ckey], params={"groupements": grp_digest})
    if not force and is_up_to_date(storage, out, digest):
        return {f"origine_{before}_{after}": out}
    step(f"origine {d.code} {before}→{after}: new built and artificialised land by couverture of origin")
    cols = [schema.CS_AVANT, schema.CS_APRES]
    land = new_land(read_vector(storage, dkey, columns=[*cols, "geometry"]),
                    read_vector(storage, akey, columns=[*cols, "artificialisation", "geometry"]))
    table = origin_table([land], read_vector(storage, ckey), grp, d.code, before, after)
    with refreshing(storage, out, digest), step_outputs(storage) as outputs:
        outputs.add(write_table(storage, out, table))
    dep_rows = table[(table.niveau == "departement") & (table.type == BATI)]
    done(f"origine {d.code} {before}→{after}: {dep_rows.surface_ha.sum():.2f} ha newly built")
    return {f"origine_{before}_{after}": out}
