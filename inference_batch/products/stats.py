"""Statistics per commune and per département: stocks (CS, US, artificialised, impermeable) for a
millésime, and artificialisation flows between two millésimes, in hectares and as a share of the
commune — as sparte computes them (at commune level first, then summed; ocsge-domain.md §5.1).

Polygons cut by commune boundaries are split (intersection), so areas are preserved: a polygon
fully inside a commune (the common case, tested with a prepared ``contains_properly``) is counted
whole without any intersection; only those crossing a boundary are cut.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely import STRtree

from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import (
    StepError,
    key,
    read_table,
    read_vector,
    step_outputs,
    write_table,
    write_vector,
)
from inference_batch.products.difference import previous_key
from inference_batch.products.ingest import communes_key, required_communes_key
from inference_batch.products.inputs import layer_key, with_artif
from inference_batch.products.spatial import SpatialSource, polygonal
from ocsge import schema
from ocsge.artificialisation import IMPERMEABLE_CS
from ocsge.nomenclature import CS_LEAVES, US_LEAVES
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import departement

OUTSIDE = "hors_communes"


def normalise_communes(communes: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Communes with ``insee_com`` and ``nom`` whatever the source calls them (INSEE_COM, CODE_INSEE…)."""
    lowered = {c.lower(): c for c in communes.columns}
    insee = next((lowered[c] for c in ("insee_com", "code_insee", "insee", "code_com", "codgeo") if c in lowered), None)
    if insee is None:
        raise StepError(f"communes layer has no INSEE code column: {list(communes.columns)}")
    name = next((lowered[c] for c in ("nom", "nom_com", "nom_commune", "name", "libelle") if c in lowered), None)
    out = gpd.GeoDataFrame({
        schema.INSEE_COM: communes[insee].astype(str).to_numpy(),
        schema.NOM_COM: communes[name].astype(str).to_numpy() if name else communes[insee].astype(str).to_numpy(),
    }, geometry=communes.geometry.to_numpy(), crs=communes.crs)
    if out[schema.INSEE_COM].duplicated().any():  # a commune in several rows: one multipolygon
        return out.dissolve(by=[schema.INSEE_COM, schema.NOM_COM], as_index=False)
    return out


def split_by_commune(frames: Iterable[gpd.GeoDataFrame], communes: gpd.GeoDataFrame, columns: list[str]
                     ) -> pd.DataFrame:
    """Area (m²) of each combination of ``columns`` per commune, over chunks of a polygon layer.
    Area outside every commune is reported under ``insee_com = hors_communes``."""
    cgeoms = communes.geometry.to_numpy()
    shapely.prepare(cgeoms)
    tree = STRtree(cgeoms)
    insee = communes[schema.INSEE_COM].to_numpy(dtype=object)
    parts: list[pd.DataFrame] = []
    for frame in frames:
        if frame.empty:
            continue
        geoms = frame.geometry.to_numpy()
        area = shapely.area(geoms)
        qp, qc = tree.query(geoms, predicate="intersects")
        inside = shapely.contains_properly(cgeoms[qc], geoms[qp])
        piece = np.where(inside, area[qp], 0.0)
        cut = ~inside
        if cut.any():
            piece[cut] = shapely.area(polygonal(shapely.intersection(geoms[qp[cut]], cgeoms[qc[cut]])))
        attrs = {c: frame[c].to_numpy(dtype=object)[qp] for c in columns}
        df = pd.DataFrame({schema.INSEE_COM: insee[qc], **attrs, "area": piece})
        covered = np.bincount(qp, weights=piece, minlength=len(geoms))
        rest = area - covered
        out = rest > 0.01
        if out.any():
            df = pd.concat([df, pd.DataFrame({schema.INSEE_COM: OUTSIDE,
                                              **{c: frame[c].to_numpy(dtype=object)[out] for c in columns},
                                              "area": rest[out]})], ignore_index=True)
        parts.append(df.groupby([schema.INSEE_COM, *columns], dropna=False, sort=False)["area"].sum().reset_index())
    if not parts:
        return pd.DataFrame(columns=[schema.INSEE_COM, *columns, "area"])
    allp = pd.concat(parts, ignore_index=True)
    return allp.groupby([schema.INSEE_COM, *columns], dropna=False, sort=False)["area"].sum().reset_index()


def _ha(x: Any) -> Any:
    return np.round(x / 1e4, 4)


def stock_table(layer_chunks: Iterable[gpd.GeoDataFrame], communes: gpd.GeoDataFrame, dep: object,
                millesime: int) -> pd.DataFrame:
    """Stocks per commune (+ one row for the département): area by CS and US, artificialised and
    impermeable area, in hectares and % of the commune."""
    communes = normalise_communes(communes)
    cols = [schema.CODE_CS, schema.CODE_US, schema.ARTIF]
    pieces = split_by_commune((with_artif(f) for f in layer_chunks), communes, cols)
    pieces[schema.CODE_CS] = pieces[schema.CODE_CS].fillna("(vide)")
    pieces[schema.CODE_US] = pieces[schema.CODE_US].fillna("(vide)")
    rows = communes[[schema.INSEE_COM, schema.NOM_COM]].copy()
    rows["surface_ha"] = _ha(communes.geometry.area.to_numpy())
    by = pieces.groupby(schema.INSEE_COM)["area"]
    rows = rows.set_index(schema.INSEE_COM)
    rows["surface_couverte_ha"] = _ha(by.sum()).reindex(rows.index).fillna(0.0)
    art = pieces[pieces[schema.ARTIF] == "artif"].groupby(schema.INSEE_COM)["area"].sum()
    imp = pieces[pieces[schema.CODE_CS].isin(IMPERMEABLE_CS)].groupby(schema.INSEE_COM)["area"].sum()
    rows["artif_ha"] = _ha(art).reindex(rows.index).fillna(0.0)
    rows["impermeable_ha"] = _ha(imp).reindex(rows.index).fillna(0.0)
    cs = pieces.pivot_table(index=schema.INSEE_COM, columns=schema.CODE_CS, values="area", aggfunc="sum")
    us = pieces.pivot_table(index=schema.INSEE_COM, columns=schema.CODE_US, values="area", aggfunc="sum")
    cs_codes = list(CS_LEAVES) + sorted(set(cs.columns) - set(CS_LEAVES))
    us_codes = list(US_LEAVES) + sorted(set(us.columns) - set(US_LEAVES))
    for code in cs_codes:
        rows[f"{code}_ha"] = _ha(cs[code]).reindex(rows.index).fillna(0.0) if code in cs else 0.0
    for code in us_codes:
        rows[f"{code}_ha"] = _ha(us[code]).reindex(rows.index).fillna(0.0) if code in us else 0.0
    rows = rows.reset_index()
    d = departement(dep)
    total = rows.drop(columns=[schema.INSEE_COM, schema.NOM_COM]).sum(numeric_only=True)
    outside = float(pieces.loc[pieces[schema.INSEE_COM] == OUTSIDE, "area"].sum())
    rows.insert(0, "niveau", "commune")
    dep_row = {"niveau": "departement", schema.INSEE_COM: d.code, schema.NOM_COM: d.name, **total.to_dict()}
    out = pd.concat([rows, pd.DataFrame([dep_row])], ignore_index=True)
    out["hors_communes_ha"] = 0.0
    out.loc[out.niveau == "departement", "hors_communes_ha"] = _ha(outside)
    out["artif_pct"] = np.round(100 * out["artif_ha"] / out["surface_ha"].replace(0, np.nan), 4).fillna(0.0)
    out["impermeable_pct"] = np.round(100 * out["impermeable_ha"] / out["surface_ha"].replace(0, np.nan), 4).fillna(0.0)
    out.insert(3, schema.MILLESIME, millesime)
    lead = ["niveau", schema.INSEE_COM, schema.NOM_COM, schema.MILLESIME, "surface_ha", "surface_couverte_ha",
            "hors_communes_ha", "artif_ha", "artif_pct", "impermeable_ha", "impermeable_pct"]
    return out[lead + [c for c in out.columns if c not in lead]]


def _flows(pieces: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    values = pd.to_numeric(pieces[column])
    return (pieces[values > 0].groupby(schema.INSEE_COM)["area"].sum(),
            pieces[values < 0].groupby(schema.INSEE_COM)["area"].sum())


def flows_table(artif_difference: Iterable[gpd.GeoDataFrame], communes: gpd.GeoDataFrame, dep: object,
                before: int, after: int, stocks_before: pd.DataFrame | None = None,
                stocks_after: pd.DataFrame | None = None, *,
                naive: Iterable[gpd.GeoDataFrame] | None = None,
                stocks_before_naive: pd.DataFrame | None = None) -> pd.DataFrame:
    """Artificialisation flows per commune (+ département): flux_artif, flux_desartif, flux_artif_net
    in ha and % of the commune; with the stocks of both millésimes when given, their change too.

    Flows outside every commune (a difference reaching beyond the communes layer) are kept in a row of
    their own, ``niveau = hors_communes``; the département row sums the communes, as in the stock table
    (which reports the area outside them as ``hors_communes_ha``), so that its flows match its stocks.
    ``naive``: when the flows come from a corrected previous millésime, the pieces of the corrections
    step (``difference_nature``, its ``artificialisation_brute``), giving the naive flows from the
    millésime as delivered in the ``*_naif_ha`` columns (with ``stocks_before_naive``, its stock)."""
    communes = normalise_communes(communes)
    pieces = split_by_commune(artif_difference, communes, ["artificialisation"])
    plus, minus = _flows(pieces, "artificialisation")
    rows = communes[[schema.INSEE_COM, schema.NOM_COM]].copy().set_index(schema.INSEE_COM)
    rows["surface_ha"] = _ha(communes.geometry.area.to_numpy())
    index = rows.index.append(pd.Index([OUTSIDE]))
    values = {"flux_artif_ha": _ha(plus).reindex(index).fillna(0.0),
              "flux_desartif_ha": _ha(minus).reindex(index).fillna(0.0)}
    if naive is not None:
        npieces = split_by_commune(naive, communes, ["artificialisation_brute"])
        nplus, nminus = _flows(npieces, "artificialisation_brute")
        values["flux_artif_naif_ha"] = _ha(nplus).reindex(index).fillna(0.0)
        values["flux_desartif_naif_ha"] = _ha(nminus).reindex(index).fillna(0.0)
    for c, v in values.items():
        rows[c] = v.reindex(rows.index).to_numpy()
    rows = rows.reset_index()
    rows.insert(0, "niveau", "commune")
    outside = {"niveau": OUTSIDE, schema.INSEE_COM: OUTSIDE, schema.NOM_COM: "hors communes", "surface_ha": 0.0,
               **{c: float(v[OUTSIDE]) for c, v in values.items()}}
    d = departement(dep)
    flux = list(values)
    total = rows[["surface_ha", *flux]].sum()  # the communes, as the stock table's département row
    out = pd.concat([rows, pd.DataFrame([outside]),
                     pd.DataFrame([{"niveau": "departement", schema.INSEE_COM: d.code, schema.NOM_COM: d.name,
                                    **total.to_dict()}])], ignore_index=True)
    out["flux_artif_net_ha"] = np.round(out.flux_artif_ha - out.flux_desartif_ha, 4)
    for c in ("flux_artif", "flux_desartif", "flux_artif_net"):
        out[f"{c}_pct"] = np.round(100 * out[f"{c}_ha"] / out["surface_ha"].replace(0, np.nan), 5).fillna(0.0)
    if naive is not None:
        out["flux_artif_net_naif_ha"] = np.round(out.flux_artif_naif_ha - out.flux_desartif_naif_ha, 4)
    out.insert(3, "millesime_debut", before)
    out.insert(4, "millesime_fin", after)
    idx = pd.MultiIndex.from_frame(out[["niveau", schema.INSEE_COM]])

    def stock(table: pd.DataFrame) -> np.ndarray:
        s = table.set_index(["niveau", schema.INSEE_COM])["artif_ha"].to_dict()
        return np.array([s.get(i, np.nan) if i[0] != OUTSIDE else np.nan for i in idx], dtype=float)

    if stocks_before is not None and stocks_after is not None:
        out["artif_debut_ha"] = stock(stocks_before)
        out["artif_fin_ha"] = stock(stocks_after)
        out["variation_stock_artif_ha"] = np.round(out.artif_fin_ha - out.artif_debut_ha, 4)
        if stocks_before_naive is not None:
            out["artif_debut_naif_ha"] = stock(stocks_before_naive)
    return out


def with_geometry(table: pd.DataFrame, communes: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The table as GeoParquet-ready frame: each commune's polygon, the département row their union."""
    communes = normalise_communes(communes)
    geoms = communes.set_index(schema.INSEE_COM).geometry
    dep_geom = shapely.union_all(communes.geometry.to_numpy())
    # the row of what lies outside every commune has no outline: an empty geometry (a null one would get a
    # bbox of nulls, which GeoParquet's covering forbids)
    values = [dep_geom if niveau == "departement" else shapely.MultiPolygon() if niveau == OUTSIDE
              else geoms.get(code) for niveau, code in zip(table["niveau"], table[schema.INSEE_COM], strict=True)]
    return gpd.GeoDataFrame(table.copy(), geometry=gpd.GeoSeries(values, crs=communes.crs), crs=communes.crs)


def _write_stats(storage: Storage, parquet_key: str, csv_key: str, table: pd.DataFrame,
                 communes: gpd.GeoDataFrame, digest: str) -> None:
    with refreshing(storage, [parquet_key, csv_key], digest), step_outputs(storage) as outputs:
        outputs.add(write_vector(storage, parquet_key, with_geometry(table, communes), sort=False))
        outputs.add(write_table(storage, csv_key, table))


def run_stats(storage: Storage, dep: object, millesimes: list[int], *, force: bool = False) -> dict[str, str]:
    """Step: stock tables per millésime and flow tables per consecutive pair (when its artif
    difference exists), per commune and for the département, as Parquet and CSV."""
    d = departement(dep)
    keys: dict[str, str] = {}
    stocks: dict[int, pd.DataFrame] = {}
    for year in sorted(millesimes):
        kp, kc = key("stats_commune", dep, year), key("stats_commune_csv", dep, year)
        keys[f"stats_commune_{year}"], keys[f"stats_commune_csv_{year}"] = kp, kc
        ckey = required_communes_key(storage, d, year, "stats")
        layer = layer_key(storage, dep, year)
        digest = fingerprint(storage, [ckey, layer])
        if not force and is_up_to_date(storage, [kp, kc], digest):
            stocks[year] = read_table(storage, kc)
            continue
        step(f"stats {d.code} {year}: {layer} by commune ({ckey})")
        com = read_vector(storage, ckey)
        with storage.local_copy(layer) as path:
            src = SpatialSource(path=path, columns=[c for c in (schema.CODE_CS, schema.CODE_US, schema.ARTIF)
                                                    if c in _names(path)])
            table = stock_table(src.iter_chunks(), com, dep, year)
        _write_stats(storage, kp, kc, table, com, digest)
        stocks[year] = table
        done(f"stats {d.code} {year}: {len(table) - 1} communes")
    years = sorted(millesimes)
    for before, after in itertools.pairwise(years):
        pair = (before, after)
        diff_key = key("artif_difference", dep, pair)
        if not storage.exists(diff_key):
            continue
        kp, kc = key("stats_flows", dep, pair), key("stats_flows_csv", dep, pair)
        keys[f"stats_flows_{before}_{after}"], keys[f"stats_flows_csv_{before}_{after}"] = kp, kc
        ckey = communes_key(storage, d, after)
        # the difference is computed from the corrected previous millésime when there is one: the stock
        # at the start is then that one's, and the naive flows come from the corrections step's pieces
        prev = previous_key(storage, dep, before, after)
        corrected = prev != layer_key(storage, dep, before)
        nature = key("difference_nature", dep, pair)
        naive = corrected and storage.exists(nature)
        # flows carry the stocks of both millésimes: their inputs are those of the stocks too
        inputs = [diff_key, layer_key(storage, dep, before), layer_key(storage, dep, after), prev]
        digest = fingerprint(storage, inputs + ([ckey] if ckey else []) + ([nature] if naive else []))
        if not force and is_up_to_date(storage, [kp, kc], digest):
            continue
        step(f"stats {d.code} {before}→{after}: flows by commune" + (" (corrected previous millésime)"
                                                                    if corrected else ""))
        com = read_vector(storage, ckey)  # type: ignore[arg-type]
        start = stocks.get(before)
        if corrected:
            with storage.local_copy(prev) as path:
                src = SpatialSource(path=path, columns=[schema.CODE_CS, schema.CODE_US, schema.ARTIF])
                start = stock_table(src.iter_chunks(), com, dep, before)
        table = flows_table([read_vector(storage, diff_key)], com, dep, before, after, start, stocks.get(after),
                            naive=[read_vector(storage, nature)] if naive else None,
                            stocks_before_naive=stocks.get(before) if naive else None)
        _write_stats(storage, kp, kc, table, com, digest)
        done(f"stats {d.code} {before}→{after}: net {table.iloc[-1]['flux_artif_net_ha']:.2f} ha")
    return keys


def _names(path: Any) -> set[str]:
    import pyarrow.parquet as pq

    return set(pq.read_schema(path).names)
