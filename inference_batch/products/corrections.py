"""Corrections of the previous millésime ("erreurs M2", IGN's *patch correctif*).

Given the previous millésime P, a corrections layer C (polygons with ``cs_corr``/``us_corr``; ``RAS``
or empty = no correction — IGN's patch covers all of P, a hand-made layer only the places it fixes)
and the later millésime N, this step writes:

* ``corrected_previous``: P with C's codes where C corrects it (split along C's boundaries, the rest
  untouched), the delivered codes kept in ``cs_origine``/``us_origine`` and the delivered class in
  ``artif_origine``. Artificialisation is *not* recomputed everywhere: P's ``artif``/``crit_seuil`` (IGN's
  delivered artificialisation layer, or ours) are kept, and the thresholds are recomputed only for the
  polygons whose judgement a correction can change — the corrected polygons, the clusters below the
  threshold that contain or touch one (``artif.apply_thresholds``), and everything inside the outline of an
  island that holds one of those. A patch that corrects nothing (all ``RAS``) gives P back unchanged;
* ``corrections``: the corrected parts only (``code_cs``/``code_us`` as delivered, ``cs_corr``/``us_corr``);
  a usage re-coded across nomenclature generations (``US235`` → ``US5``) is no correction (``ocsge.usage``);
* ``difference_nature``: every part where N differs from P as delivered or from P corrected (codes or
  artificialisation), with ``nature`` = ``'evolution'`` (N differs from corrected P: a real change,
  ``cs_avant``… being the corrected codes) or ``'correction'`` (N differs only from the erroneous P: a
  false flow), and the artificialisation flow both ways (``artificialisation`` real,
  ``artificialisation_brute`` naive). Its totals are summed over every chunk of the overlay.

When a corrected previous millésime exists, the published difference, artificialisation ±1 and commune
flows are computed from it (``difference.run_difference``, ``stats.run_stats``); the naive flows (from P as
delivered) stay available in ``difference_nature`` and as the ``*_naif`` columns of the commune flows.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely import STRtree

from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artif import ThresholdResult, apply_thresholds, artificialisation, matrix_artif
from inference_batch.products.artifacts import (
    GeoParquetAppender,
    StepError,
    key,
    read_vector,
    step_outputs,
    write_json,
    write_vector,
)
from inference_batch.products.inputs import layer_key, open_source, with_artif
from inference_batch.products.spatial import MIN_PIECE_AREA, SpatialSource, overlay_chunks, polygonal
from ocsge import schema
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.usage import same_usage

CS_ORIGINE, US_ORIGINE, ARTIF_ORIGINE = "cs_origine", "us_origine", "artif_origine"
NATURE = "nature"


def _codes(values: pd.Series) -> np.ndarray:
    """Correction codes with ``RAS``/empty as None."""
    out = values.to_numpy(dtype=object).copy()
    for i, v in enumerate(out):
        if v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and v.strip().upper() in ("", "RAS")):
            out[i] = None
    return out


CRIT_ORIGINE = "crit_seuil_origine"


def apply_corrections(previous: gpd.GeoDataFrame, corrections: gpd.GeoDataFrame, *, target: int = 20_000
                      ) -> gpd.GeoDataFrame:
    """P with C's codes applied, split along C where C covers part of a polygon of P; P's codes, ``artif``
    and ``crit_seuil`` are kept as ``*_origine``."""
    prev = with_artif(previous).reset_index(drop=True)
    if schema.CRIT_SEUIL not in prev:
        prev = prev.assign(**{schema.CRIT_SEUIL: False})
    corr = corrections.reset_index(drop=True).copy()
    corr[schema.CS_CORR] = _codes(corr[schema.CS_CORR])
    corr[schema.US_CORR] = _codes(corr[schema.US_CORR])
    corr = corr[~(corr[schema.CS_CORR].isna() & corr[schema.US_CORR].isna())]  # RAS everywhere: no-op
    cols_p = [schema.ID, schema.CODE_CS, schema.CODE_US, schema.ARTIF, schema.CRIT_SEUIL]
    parts: list[gpd.GeoDataFrame] = []
    touched = np.zeros(len(prev), dtype=bool)
    if len(corr):
        for chunk in overlay_chunks(SpatialSource(prev, columns=cols_p),
                                    SpatialSource(corr, columns=[schema.CS_CORR, schema.US_CORR]), target=target):
            if not len(chunk.ia):
                continue
            pieces = chunk.frame(cols_p, [schema.CS_CORR, schema.US_CORR], suffixes=("", ""))
            touched[chunk.ia] = True
            parts.append(pieces)
            # what of each touched polygon lies outside every correction keeps its codes
            covered = pieces.groupby("ia")["area"].sum()
            full = chunk.a.geometry.area.reindex(covered.index)
            partial = covered.index[(full - covered).to_numpy() > MIN_PIECE_AREA]
            for ia in partial:
                geom = chunk.a.geometry.loc[ia]
                rest = polygonal(np.array([shapely.difference(geom, shapely.union_all(
                    pieces.geometry[pieces.ia == ia].to_numpy()))]))[0]
                if shapely.area(rest) > MIN_PIECE_AREA:
                    row = chunk.a.loc[[ia], cols_p].assign(ia=ia, area=shapely.area(rest))
                    row[schema.CS_CORR] = None
                    row[schema.US_CORR] = None
                    parts.append(gpd.GeoDataFrame(row, geometry=[rest], crs=prev.crs))
    untouched = prev.loc[~touched, [*cols_p, prev.geometry.name]].copy()
    untouched[schema.CS_CORR] = None
    untouched[schema.US_CORR] = None
    frames = [untouched, *[p.drop(columns=["ia", "ib", "area"], errors="ignore") for p in parts]]
    allp = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=prev.crs)
    cs_corr = allp[schema.CS_CORR].to_numpy(dtype=object)
    us_corr = allp[schema.US_CORR].to_numpy(dtype=object)
    out = gpd.GeoDataFrame({
        schema.ID: [f"{i}" if n == 0 else f"{i}_{n}" for i, n in zip(
            allp[schema.ID], allp.groupby(schema.ID).cumcount(), strict=True)],
        schema.CODE_CS: np.where(pd.isna(cs_corr), allp[schema.CODE_CS].to_numpy(dtype=object), cs_corr),
        schema.CODE_US: np.where(pd.isna(us_corr), allp[schema.CODE_US].to_numpy(dtype=object), us_corr),
        CS_ORIGINE: allp[schema.CODE_CS].to_numpy(dtype=object),
        US_ORIGINE: allp[schema.CODE_US].to_numpy(dtype=object),
        ARTIF_ORIGINE: allp[schema.ARTIF].to_numpy(dtype=object),
        CRIT_ORIGINE: allp[schema.CRIT_SEUIL].fillna(False).to_numpy(dtype=bool),
    }, geometry=allp.geometry.to_numpy(), crs=prev.crs)
    if schema.MILLESIME in previous:
        out[schema.MILLESIME] = previous[schema.MILLESIME].iloc[0] if len(previous) else None
    return out


def code_changed(layer: gpd.GeoDataFrame) -> np.ndarray:
    """Polygons of a corrected layer whose codes differ from the delivered ones (``US235`` ≡ its parts)."""
    return ((layer[schema.CODE_CS].fillna("") != layer[CS_ORIGINE].fillna("")).to_numpy()
            | ~same_usage(layer[schema.CODE_US], layer[US_ORIGINE]))


def affected_by(geoms: np.ndarray, changed: np.ndarray, res: ThresholdResult, *, tolerance: float = 0.01
                ) -> np.ndarray:
    """Polygons whose threshold judgement a change of codes can alter: the changed polygons, every cluster
    below the threshold that contains or touches one, and everything inside the outline of an island
    holding one of those (islands nested in it follow it)."""
    affected = changed.copy()
    idx = np.flatnonzero(changed)
    if len(idx) == 0:
        return affected
    _, near = STRtree(geoms).query(geoms[idx], predicate="dwithin", distance=tolerance)
    assert res.cluster is not None and res.island is not None
    clusters = np.unique(res.cluster[np.concatenate([idx, near])])
    clusters = clusters[clusters >= 0]
    affected |= np.isin(res.cluster, clusters) & (res.cluster >= 0)
    islands = np.unique(res.island[affected])
    islands = islands[islands >= 0]
    affected |= np.isin(res.island, islands) & (res.island >= 0)
    return affected


def corrected_previous(previous: gpd.GeoDataFrame, corrections: gpd.GeoDataFrame, *, target: int = 20_000,
                       **thresholds: Any) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """(corrected P, the corrections layer). P's ``artif``/``crit_seuil`` are kept (computed with the
    thresholds first when P has none) except where a correction can change them (:func:`affected_by`)."""
    base = previous if schema.ARTIF in previous else artificialisation(previous, **thresholds)[0]
    applied = apply_corrections(base, corrections, target=target)
    changed = code_changed(applied)
    artif = applied[ARTIF_ORIGINE].to_numpy(dtype=object) == "artif"
    crit = applied[CRIT_ORIGINE].to_numpy(dtype=bool)
    affected = np.zeros(len(applied), dtype=bool)
    if changed.any():
        cs = applied[schema.CODE_CS].to_numpy(dtype=object)
        matrix, _ = matrix_artif(cs, applied[schema.CODE_US].to_numpy(dtype=object))
        geoms = applied.geometry.to_numpy()
        res = apply_thresholds(geoms, matrix, cs, **thresholds)
        affected = affected_by(geoms, changed, res, tolerance=thresholds.get("tolerance", 0.01))
        artif = np.where(affected, res.artif, artif)
        crit = np.where(affected, res.crit_seuil, crit)
    layer = gpd.GeoDataFrame({
        schema.ID: applied[schema.ID].to_numpy(),
        schema.CODE_CS: applied[schema.CODE_CS].to_numpy(dtype=object),
        schema.CODE_US: applied[schema.CODE_US].to_numpy(dtype=object),
        schema.MILLESIME: applied[schema.MILLESIME].to_numpy() if schema.MILLESIME in applied else None,
        schema.ARTIF: np.where(artif, "artif", "non artif"),
        schema.CRIT_SEUIL: crit.astype(bool),
        CS_ORIGINE: applied[CS_ORIGINE].to_numpy(dtype=object),
        US_ORIGINE: applied[US_ORIGINE].to_numpy(dtype=object),
        ARTIF_ORIGINE: applied[ARTIF_ORIGINE].to_numpy(dtype=object),
        "seuils_recalcules": affected,
    }, geometry=applied.geometry.to_numpy(), crs=applied.crs)
    corr = gpd.GeoDataFrame({
        schema.ID: applied[schema.ID].to_numpy()[changed],
        schema.CODE_CS: applied[CS_ORIGINE].to_numpy()[changed],
        schema.CODE_US: applied[US_ORIGINE].to_numpy()[changed],
        schema.CS_CORR: applied[schema.CODE_CS].to_numpy()[changed],
        schema.US_CORR: applied[schema.CODE_US].to_numpy()[changed],
    }, geometry=applied.geometry.to_numpy()[changed], crs=applied.crs)
    return layer, corr


NATURE_COLUMNS = [schema.ID, NATURE, schema.CS_AVANT, schema.US_AVANT, schema.CS_APRES, schema.US_APRES,
                  CS_ORIGINE, US_ORIGINE, "artificialisation", "artificialisation_brute", schema.GEOMETRY]


def difference_nature(corrected: SpatialSource, after: SpatialSource, path: Path, *, target: int = 20_000
                      ) -> dict[str, float]:
    """Stream the parts where N differs from P (delivered or corrected), classed by nature."""
    cols_a = [schema.CODE_CS, schema.CODE_US, schema.ARTIF, CS_ORIGINE, US_ORIGINE, ARTIF_ORIGINE]
    cols_b = [schema.CODE_CS, schema.CODE_US, schema.ARTIF]
    template = gpd.GeoDataFrame({c: pd.Series(dtype=object) for c in NATURE_COLUMNS[:-1]},
                                geometry=gpd.GeoSeries([], crs=corrected.crs), crs=corrected.crs)
    writer = GeoParquetAppender(path, template)
    totals = {"evolution_ha": 0.0, "correction_ha": 0.0, "artif_net_ha": 0.0, "artif_net_brut_ha": 0.0,
              "false_artif_flows_ha": 0.0}
    n = 0
    for chunk in overlay_chunks(corrected, after, target=target):
        p = chunk.frame(cols_a, cols_b)
        if p.empty:
            continue
        f = {c: p[c].fillna("").to_numpy(dtype=object) for c in p.columns if c.endswith(("_a", "_b"))}
        art_corr = (f["artif_a"] == "artif").astype(int)
        art_orig = (f["artif_origine_a"] == "artif").astype(int)
        art_after = (f["artif_b"] == "artif").astype(int)
        real = (f["code_cs_a"] != f["code_cs_b"]) | ~same_usage(f["code_us_a"], f["code_us_b"])
        naive = (f["cs_origine_a"] != f["code_cs_b"]) | ~same_usage(f["us_origine_a"], f["code_us_b"])
        real_flow, naive_flow = art_after - art_corr, art_after - art_orig
        # totals of every piece, before anything is skipped: a threshold-only flip counts in every chunk
        area = p["area"].to_numpy()
        totals["evolution_ha"] += area[real].sum() / 1e4
        totals["correction_ha"] += area[naive & ~real].sum() / 1e4
        totals["artif_net_ha"] += (area * real_flow).sum() / 1e4
        totals["artif_net_brut_ha"] += (area * naive_flow).sum() / 1e4
        totals["false_artif_flows_ha"] += (area * np.abs(naive_flow - real_flow)).sum() / 1e4
        keep = real | naive | (real_flow != 0) | (naive_flow != 0)
        if not keep.any():
            continue
        evolution = real | (real_flow != 0)
        part = gpd.GeoDataFrame({
            schema.ID: [f"NAT_{n + i:08d}" for i in range(int(keep.sum()))],
            NATURE: np.where(evolution[keep], "evolution", "correction"),
            schema.CS_AVANT: p["code_cs_a"].to_numpy()[keep], schema.US_AVANT: p["code_us_a"].to_numpy()[keep],
            schema.CS_APRES: p["code_cs_b"].to_numpy()[keep], schema.US_APRES: p["code_us_b"].to_numpy()[keep],
            CS_ORIGINE: p["cs_origine_a"].to_numpy()[keep], US_ORIGINE: p["us_origine_a"].to_numpy()[keep],
            "artificialisation": real_flow[keep].astype("int8"),
            "artificialisation_brute": naive_flow[keep].astype("int8"),
        }, geometry=p.geometry.to_numpy()[keep], crs=corrected.crs)
        n += len(part)
        writer.append(part)
    writer.close()
    return {k: round(float(v), 4) for k, v in totals.items()} | {"parts": n}


def run_corrections(storage: Storage, dep: object, before: int, after: int, *,
                    corrections: str | Path | gpd.GeoDataFrame | None = None, force: bool = False,
                    target: int = 20_000) -> dict[str, str]:
    """Step: corrected previous millésime, corrections layer and evolution/correction difference.
    ``corrections`` defaults to the ingested patch (``patch_corr``) of the pair."""
    pair = (before, after)
    keys = {p: key(p, dep, pair) for p in ("corrected_previous", "corrections", "difference_nature",
                                          "corrections_report")}
    prev_key, after_key = layer_key(storage, dep, before), layer_key(storage, dep, after)
    # a corrections layer given as a file or a frame is not a stored input: the step is then always redone
    digest = fingerprint(storage, [prev_key, after_key, key("patch_corr", dep, pair)],
                         params={"corrections": None if corrections is None else "given"})
    if not force and corrections is None and is_up_to_date(storage, keys.values(), digest):
        done(f"corrections {dep} {before}-{after}: already done")
        return keys
    if corrections is None:
        patch = key("patch_corr", dep, pair)
        if not storage.exists(patch):
            raise StepError(f"no corrections layer for {dep} {before}-{after}: ingest an archive with a "
                            f"PATCH_CORR layer ({patch}) or pass --corrections FILE")
        corr = read_vector(storage, patch)
        origin = patch
    elif isinstance(corrections, gpd.GeoDataFrame):
        corr, origin = corrections, "frame"
    else:
        corr, origin = gpd.read_file(corrections), str(corrections)
    missing = {schema.CS_CORR, schema.US_CORR} - set(corr.columns)
    if missing:
        raise StepError(f"corrections layer {origin} lacks {', '.join(sorted(missing))}")
    step(f"corrections {dep} {before}: {origin}")
    previous = read_vector(storage, prev_key)
    if corr.crs is not None and previous.crs is not None and corr.crs != previous.crs:
        corr = corr.to_crs(previous.crs)
    layer, corr_layer = corrected_previous(previous, corr, target=target)
    with refreshing(storage, keys.values(), digest), step_outputs(storage) as outputs:
        outputs.add(write_vector(storage, keys["corrected_previous"], layer))
        outputs.add(write_vector(storage, keys["corrections"], corr_layer))
        cols = [schema.CODE_CS, schema.CODE_US, schema.ARTIF]
        with contextlib.ExitStack() as stack:
            after_src = stack.enter_context(open_source(storage, after_key, cols))
            path = stack.enter_context(storage.writer(keys["difference_nature"]))
            outputs.add(keys["difference_nature"])
            totals = difference_nature(SpatialSource(layer), after_src, path, target=target)
        recomputed = layer["seuils_recalcules"].to_numpy(dtype=bool)
        report = {"previous": prev_key, "corrections": origin, "corrected_polygons": len(corr_layer),
                  "corrected_ha": round(float(corr_layer.geometry.area.sum()) / 1e4, 4),
                  "thresholds_recomputed_polygons": int(recomputed.sum()),
                  "thresholds_recomputed_ha": round(float(layer.geometry.area.to_numpy()[recomputed].sum()) / 1e4, 4),
                  **totals}
        outputs.add(write_json(storage, keys["corrections_report"], report))
    done(f"corrections {dep} {before}-{after}: {report['corrected_ha']:.2f} ha corrected, "
         f"{report['correction_ha']:.2f} ha of false flows, {report['evolution_ha']:.2f} ha of evolutions")
    return keys
