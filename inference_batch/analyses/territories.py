"""The territories an analysis reports on: each commune, each grouping of communes (EPCI, SCoT… from a
user-supplied commune → groupement table) and the département.

Areas are first computed per commune (polygons cut by commune boundaries, areas preserved, as the
commune statistics do), then summed per groupement and for the département, as sparte does
(ocsge-domain.md §5.1). The département total includes what lies outside every commune.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely

from inference_batch.products.artifacts import StepError, key
from inference_batch.products.stats import OUTSIDE, normalise_communes
from ocsge import schema
from ocsge.storage import Storage
from ocsge.territory import departement

COMMUNE, GROUPEMENT, DEPARTEMENT = "commune", "groupement", "departement"
TERRITORY = ["niveau", "territoire", "nom"]  # the columns that name a territory in every table
GROUPEMENT_CODE, GROUPEMENT_NOM = "groupement", "nom_groupement"

_INSEE = ("insee_com", "code_insee", "insee", "codgeo", "code_commune", "commune")
_GROUP = ("groupement", "code_groupement", "siren", "epci", "scot", "code_epci", "code_scot")
_GROUP_NAME = ("nom_groupement", "libelle_groupement", "nom_epci", "nom_scot", "libelle", "nom")


def normalise_groupements(table: pd.DataFrame, source: str = "groupements") -> pd.DataFrame:
    """A commune → groupement table with ``insee_com, groupement, nom_groupement``, whatever its columns
    are called (first column matching an INSEE name, then a groupement code; the name is optional).
    A commune may belong to several groupements (an EPCI and a SCoT): one row each."""
    lowered = {c.lower().strip(): c for c in table.columns}
    insee = next((lowered[c] for c in _INSEE if c in lowered), None)
    group = next((lowered[c] for c in _GROUP if c in lowered), None)
    if insee is None or group is None:
        raise StepError(f"{source}: need a commune column ({', '.join(_INSEE)}) and a groupement column "
                        f"({', '.join(_GROUP)}); found {list(table.columns)}")
    name = next((lowered[c] for c in _GROUP_NAME if c in lowered and lowered[c] not in (insee, group)), None)
    out = pd.DataFrame({
        schema.INSEE_COM: table[insee].astype(str).str.strip(),
        GROUPEMENT_CODE: table[group].astype(str).str.strip(),
    })
    out[GROUPEMENT_NOM] = table[name].astype(str).str.strip() if name else out[GROUPEMENT_CODE]
    return out.drop_duplicates([schema.INSEE_COM, GROUPEMENT_CODE]).reset_index(drop=True)


def load_groupements(storage: Storage, dep: object, millesime: int, path: str | Path | None
                     ) -> tuple[pd.DataFrame | None, str | None]:
    """The groupements to report on and a digest of them (for the freshness fingerprint): the file given,
    else the stored ``groupements`` table of the département (latest ≤ millésime, else any), else none."""
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise StepError(f"groupements file {p} does not exist")
        data = p.read_bytes()
        table = pd.read_csv(p, dtype=str, sep=None, engine="python")
        return normalise_groupements(table, str(p)), hashlib.sha256(data).hexdigest()
    d = departement(dep)
    keys = sorted(o.key for o in storage.list(f"ancillary/groupements/{d.token}/") if o.key.endswith(".csv"))
    if not keys:
        return None, None
    exact = key("groupements", d.code, millesime)
    chosen = exact if exact in keys else keys[-1]
    data = storage.get_bytes(chosen)
    table = pd.read_csv(io.BytesIO(data), dtype=str, sep=None, engine="python")
    return normalise_groupements(table, chosen), hashlib.sha256(data).hexdigest()


def read_csv_table(storage: Storage, csv_key: str) -> pd.DataFrame:
    """A table written by an analysis, read back with its codes as text (INSEE 01001 stays 01001)."""
    text = {"niveau": str, "territoire": str, "nom": str, "code": str, "libelle": str, "motif": str,
            schema.INSEE_COM: str}
    return pd.read_csv(io.BytesIO(storage.get_bytes(csv_key)), dtype=text, keep_default_na=False,
                       na_values=[""])


def by_territory(per_commune: pd.DataFrame, communes: pd.DataFrame, groupements: pd.DataFrame | None,
                 dep: object, columns: list[str], value: str = "area") -> pd.DataFrame:
    """Sum ``value`` by ``columns`` for each commune, each groupement and the département.

    ``per_commune`` has ``insee_com`` (``hors_communes`` for what lies outside every commune), the
    ``columns`` and ``value``; the result has ``niveau, territoire, nom``, the ``columns`` and ``value``."""
    communes = normalise_communes(communes) if "geometry" in communes else communes
    names = dict(zip(communes[schema.INSEE_COM], communes[schema.NOM_COM], strict=True))
    parts: list[pd.DataFrame] = []
    inside = per_commune[per_commune[schema.INSEE_COM] != OUTSIDE]
    com = inside.groupby([schema.INSEE_COM, *columns], dropna=False, sort=False)[value].sum().reset_index()
    com.insert(0, "niveau", COMMUNE)
    com = com.rename(columns={schema.INSEE_COM: "territoire"})
    com.insert(2, "nom", com["territoire"].map(names).fillna(com["territoire"]))
    parts.append(com)
    if groupements is not None and not groupements.empty:
        joined = inside.merge(groupements, on=schema.INSEE_COM, how="inner")
        grp = joined.groupby([GROUPEMENT_CODE, GROUPEMENT_NOM, *columns], dropna=False, sort=False)[value].sum()
        grp = grp.reset_index().rename(columns={GROUPEMENT_CODE: "territoire", GROUPEMENT_NOM: "nom"})
        grp.insert(0, "niveau", GROUPEMENT)
        parts.append(grp)
    d = departement(dep)
    dep_rows = per_commune.groupby(columns, dropna=False, sort=False)[value].sum().reset_index()
    dep_rows.insert(0, "niveau", DEPARTEMENT)
    dep_rows.insert(1, "territoire", d.code)
    dep_rows.insert(2, "nom", d.name)
    parts.append(dep_rows)
    out = pd.concat([p for p in parts if not p.empty], ignore_index=True) if any(not p.empty for p in parts) \
        else pd.DataFrame(columns=[*TERRITORY, *columns, value])
    return out[[*TERRITORY, *columns, value]]


def territory_list(communes: pd.DataFrame, groupements: pd.DataFrame | None, dep: object) -> pd.DataFrame:
    """Every territory (``niveau, territoire, nom``), so that one with nothing to report still has a row."""
    communes = normalise_communes(communes) if "geometry" in communes else communes
    rows = [(COMMUNE, c, n) for c, n in zip(communes[schema.INSEE_COM], communes[schema.NOM_COM], strict=True)]
    if groupements is not None:
        rows += [(GROUPEMENT, g, n) for g, n in groupements[[GROUPEMENT_CODE, GROUPEMENT_NOM]]
                 .drop_duplicates(GROUPEMENT_CODE).itertuples(index=False)]
    d = departement(dep)
    rows.append((DEPARTEMENT, d.code, d.name))
    return pd.DataFrame(rows, columns=TERRITORY)


def territory_outlines(communes: gpd.GeoDataFrame, groupements: pd.DataFrame | None, dep: object
                       ) -> dict[tuple[str, str], shapely.Geometry]:
    """The outline of each territory: a commune's polygon, the union of a groupement's, of all communes."""
    geoms = dict(zip(communes[schema.INSEE_COM], communes.geometry, strict=True))
    out = {(COMMUNE, c): g for c, g in geoms.items()}
    if groupements is not None:
        for code, members in groupements.groupby(GROUPEMENT_CODE)[schema.INSEE_COM]:
            out[(GROUPEMENT, code)] = shapely.union_all([geoms[m] for m in members if m in geoms])
    out[(DEPARTEMENT, departement(dep).code)] = shapely.union_all(communes.geometry.to_numpy())
    return out
