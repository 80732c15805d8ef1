"""Our artificialisation against IGN's, wherever IGN delivered its own: the only way to calibrate the
thresholds (``artif.apply_thresholds``) on real deliveries.

* :func:`compare_artif` — IGN's artificialisation layer of a millésime (``artif``, ``crit_seuil`` per
  polygon of OCCUPATION_SOL) against ours computed from the same polygons and codes (matrix + thresholds):
  confusion by class (polygons and hectares), the same by ``crit_seuil`` (IGN's against ours), agreement
  figures (share of polygons and of area classed alike, intersection over union of the artificialised
  area), and per commune the artificialised area of each and the polygons classed differently.
* :func:`compare_artif_difference` — IGN's artificialisation différentiel of a pair of millésimes against
  our artificialisation ±1 layer: each side's +1 / −1 area, the area where both agree (same sign), where
  they disagree, where only one of them sees a flow; per commune the flows of each.

The reports are written beside the delivered layers by ``run_artif`` (``artif_qa``) and
``run_difference`` (``artif_difference_qa``) whenever IGN's layer is there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from inference_batch.freshness import fingerprint, is_delivered, is_up_to_date, refreshing
from inference_batch.products.artif import artificialisation
from inference_batch.products.artifacts import key, read_vector, step_outputs, write_json
from inference_batch.products.spatial import SpatialSource, overlay_chunks
from ocsge import schema
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import departement


def _ha(x: float) -> float:
    return round(float(x) / 1e4, 4)


def _share(part: float, whole: float) -> float | None:
    return round(float(part) / float(whole), 6) if whole else None


def _by_commune(frame: gpd.GeoDataFrame, communes: gpd.GeoDataFrame, columns: list[str]) -> pd.DataFrame:
    from inference_batch.products.stats import normalise_communes, split_by_commune

    com = normalise_communes(communes)
    pieces = split_by_commune([frame], com, columns)
    return pieces.merge(com[[schema.INSEE_COM, schema.NOM_COM]], on=schema.INSEE_COM, how="left")


def compare_artif(delivered: gpd.GeoDataFrame, communes: gpd.GeoDataFrame | None = None,
                  **thresholds: Any) -> dict[str, Any]:
    """QA of our artificialisation (computed from ``delivered``'s codes) against IGN's ``delivered``."""
    base = delivered.reset_index(drop=True)
    cols = [c for c in (schema.ID, schema.CODE_CS, schema.CODE_US, schema.MILLESIME) if c in base]
    ours, totals = artificialisation(base[[*cols, base.geometry.name]], **thresholds)
    area = shapely.area(base.geometry.to_numpy())
    ign = base[schema.ARTIF].to_numpy(dtype=object) == "artif"
    our = ours[schema.ARTIF].to_numpy(dtype=object) == "artif"
    ign_crit = base[schema.CRIT_SEUIL].fillna(False).to_numpy(dtype=bool) if schema.CRIT_SEUIL in base \
        else np.zeros(len(base), dtype=bool)
    our_crit = ours[schema.CRIT_SEUIL].to_numpy(dtype=bool)
    total = float(area.sum())
    same = ign == our

    def cell(mask: np.ndarray) -> dict[str, float]:
        return {"polygons": int(mask.sum()), "ha": _ha(area[mask].sum())}

    label = {True: "artif", False: "non artif"}
    confusion = {f"ign {label[a]} / ours {label[b]}": cell((ign == a) & (our == b))
                 for a in (True, False) for b in (True, False)}
    by_crit = {}
    for flag in (True, False):
        sel = ign_crit == flag
        by_crit[f"ign crit_seuil {str(flag).lower()}"] = {
            **cell(sel),
            "ours_same_class": cell(sel & same),
            "ours_crit_seuil": cell(sel & our_crit),
            "ours_same_class_area_share": _share(area[sel & same].sum(), area[sel].sum()),
        }
    crit_confusion = {f"ign {str(a).lower()} / ours {str(b).lower()}": cell((ign_crit == a) & (our_crit == b))
                      for a in (True, False) for b in (True, False)}
    report: dict[str, Any] = {
        "polygons": len(base),
        "surface_ha": _ha(total),
        "artif_ign_ha": _ha(area[ign].sum()),
        "artif_ours_ha": _ha(area[our].sum()),
        "artif_ours_minus_ign_ha": _ha(area[our].sum() - area[ign].sum()),
        "agreement": {
            "polygons_share": _share(same.sum(), len(base)),
            "area_share": _share(area[same].sum(), total),
            "artif_iou": _share(area[ign & our].sum(), area[ign | our].sum()),
            "crit_seuil_polygons_share": _share((ign_crit == our_crit).sum(), len(base)),
        },
        "confusion": confusion,
        "by_crit_seuil": by_crit,
        "crit_seuil_confusion": crit_confusion,
        "ours": {k: totals[k] for k in ("matrix_artif_ha", "unclassified_polygons", "islands_to_artif",
                                        "islands_to_non_artif", "built_kept_artif", "adjacency")},
    }
    if communes is not None:
        frame = gpd.GeoDataFrame({"artif_ign": np.where(ign, "artif", "non artif"),
                                  "artif_ours": np.where(our, "artif", "non artif")},
                                 geometry=base.geometry.to_numpy(), crs=base.crs)
        pieces = _by_commune(frame, communes, ["artif_ign", "artif_ours"])
        differ = gpd.GeoDataFrame(geometry=shapely.point_on_surface(base.geometry.to_numpy()[~same]), crs=base.crs)
        from inference_batch.products.stats import normalise_communes

        com = normalise_communes(communes)
        located = gpd.sjoin(differ, com[[schema.INSEE_COM, com.geometry.name]], how="left", predicate="within")
        counts = located[schema.INSEE_COM].fillna("hors_communes").value_counts()
        rows = []
        for (insee, nom), g in pieces.groupby([schema.INSEE_COM, pieces[schema.NOM_COM].fillna("hors communes")],
                                              sort=True):
            a_ign = g.loc[g.artif_ign == "artif", "area"].sum()
            a_our = g.loc[g.artif_ours == "artif", "area"].sum()
            agree = g.loc[g.artif_ign == g.artif_ours, "area"].sum()
            rows.append({schema.INSEE_COM: insee, schema.NOM_COM: nom, "artif_ign_ha": _ha(a_ign),
                         "artif_ours_ha": _ha(a_our), "artif_ours_minus_ign_ha": _ha(a_our - a_ign),
                         "area_agreement_share": _share(agree, g["area"].sum()),
                         "polygons_classed_differently": int(counts.get(insee, 0))})
        report["by_commune"] = rows
    return report


def compare_artif_difference(ours: Iterable[gpd.GeoDataFrame] | gpd.GeoDataFrame,
                             ign: Iterable[gpd.GeoDataFrame] | gpd.GeoDataFrame,
                             communes: gpd.GeoDataFrame | None = None, *, dep: object = None,
                             target: int = 20_000) -> dict[str, Any]:
    """QA of our artificialisation ±1 layer against IGN's artificialisation différentiel."""
    a = ours if isinstance(ours, gpd.GeoDataFrame) else pd.concat(list(ours), ignore_index=True)
    b = ign if isinstance(ign, gpd.GeoDataFrame) else pd.concat(list(ign), ignore_index=True)
    a = a.reset_index(drop=True)
    b = b.reset_index(drop=True)
    if a.crs is not None and b.crs is not None and a.crs != b.crs:
        b = b.to_crs(a.crs)
    sign_a = pd.to_numeric(a["artificialisation"]).to_numpy()
    sign_b = pd.to_numeric(b["artificialisation"]).to_numpy()
    area_a, area_b = shapely.area(a.geometry.to_numpy()), shapely.area(b.geometry.to_numpy())
    both = {"same_sign_ha": 0.0, "opposite_sign_ha": 0.0, "plus_both_ha": 0.0, "minus_both_ha": 0.0}
    overlap_a = np.zeros(len(a))
    overlap_b = np.zeros(len(b))
    if len(a) and len(b):
        col = ["artificialisation"]
        for chunk in overlay_chunks(SpatialSource(a[[*col, a.geometry.name]]),
                                    SpatialSource(b[[*col, b.geometry.name]]), target=target):
            if not len(chunk.ia):
                continue
            sa, sb = sign_a[chunk.ia], sign_b[chunk.ib]
            np.add.at(overlap_a, chunk.ia, chunk.area)
            np.add.at(overlap_b, chunk.ib, chunk.area)
            both["same_sign_ha"] += float(chunk.area[sa == sb].sum())
            both["opposite_sign_ha"] += float(chunk.area[sa != sb].sum())
            both["plus_both_ha"] += float(chunk.area[(sa > 0) & (sb > 0)].sum())
            both["minus_both_ha"] += float(chunk.area[(sa < 0) & (sb < 0)].sum())
    plus_a, minus_a = area_a[sign_a > 0].sum(), area_a[sign_a < 0].sum()
    plus_b, minus_b = area_b[sign_b > 0].sum(), area_b[sign_b < 0].sum()
    report: dict[str, Any] = {
        "ours": {"pieces": len(a), "artificialisation_ha": _ha(plus_a), "desartificialisation_ha": _ha(minus_a),
                 "artif_net_ha": _ha(plus_a - minus_a)},
        "ign": {"pieces": len(b), "artificialisation_ha": _ha(plus_b), "desartificialisation_ha": _ha(minus_b),
                "artif_net_ha": _ha(plus_b - minus_b)},
        **{k: _ha(v) for k, v in both.items()},
        "only_ours_ha": _ha(area_a.sum() - overlap_a.sum()),
        "only_ign_ha": _ha(area_b.sum() - overlap_b.sum()),
        "agreement": {
            "artificialisation_iou": _share(both["plus_both_ha"], plus_a + plus_b - both["plus_both_ha"]),
            "desartificialisation_iou": _share(both["minus_both_ha"], minus_a + minus_b - both["minus_both_ha"]),
        },
    }
    if communes is not None and dep is not None:
        from inference_batch.products.stats import flows_table

        rows = []
        fa = flows_table([a[["artificialisation", a.geometry.name]]], communes, dep, 1, 2)
        fb = flows_table([b[["artificialisation", b.geometry.name]]], communes, dep, 1, 2)
        fa = fa[fa.niveau != "departement"].set_index(schema.INSEE_COM)
        fb = fb[fb.niveau != "departement"].set_index(schema.INSEE_COM)
        for insee in fa.index:
            rows.append({schema.INSEE_COM: insee, schema.NOM_COM: fa.loc[insee, schema.NOM_COM],
                         "flux_artif_ours_ha": float(fa.loc[insee, "flux_artif_ha"]),
                         "flux_artif_ign_ha": float(fb.loc[insee, "flux_artif_ha"]),
                         "flux_desartif_ours_ha": float(fa.loc[insee, "flux_desartif_ha"]),
                         "flux_desartif_ign_ha": float(fb.loc[insee, "flux_desartif_ha"])})
        report["by_commune"] = rows
    return report


def _communes(storage: Storage, dep: object, millesime: int) -> str | None:
    from inference_batch.products.ingest import communes_key

    return communes_key(storage, departement(dep), millesime)


def run_artif_qa(storage: Storage, dep: object, millesime: int, *, force: bool = False) -> dict[str, str]:
    """Step: when the millésime's artificialisation layer is IGN's (delivered), compare ours with it
    (``artif_qa`` report). Nothing to do otherwise."""
    layer_key = key("artificialisation", dep, millesime)
    if not is_delivered(storage, layer_key):
        return {}
    qa_key = key("artif_qa", dep, millesime)
    ckey = _communes(storage, dep, millesime)
    digest = fingerprint(storage, [layer_key, *([ckey] if ckey else [])])
    if not force and is_up_to_date(storage, qa_key, digest):
        done(f"artif QA {dep} {millesime}: already done")
        return {"artif_qa": qa_key}
    step(f"artif QA {dep} {millesime}: ours against IGN's {layer_key}")
    with refreshing(storage, qa_key, digest), step_outputs(storage) as outputs:
        report = compare_artif(read_vector(storage, layer_key), read_vector(storage, ckey) if ckey else None)
        outputs.add(write_json(storage, qa_key, {"ign": layer_key, "communes": ckey, **report}))
    done(f"artif QA {dep} {millesime}: {report['agreement']['area_share']} of the area classed alike, "
         f"ours − IGN = {report['artif_ours_minus_ign_ha']:+.2f} ha")
    return {"artif_qa": qa_key}


def run_difference_qa(storage: Storage, dep: object, before: int, after: int, *, force: bool = False
                      ) -> dict[str, str]:
    """Step: when IGN's artificialisation différentiel of the pair was ingested, compare our artif ±1
    layer with it (``artif_difference_qa`` report). Nothing to do otherwise."""
    pair = (before, after)
    ign_key, ours_key = key("delivered_artif_difference", dep, pair), key("artif_difference", dep, pair)
    if not (storage.exists(ign_key) and storage.exists(ours_key)):
        return {}
    qa_key = key("artif_difference_qa", dep, pair)
    ckey = _communes(storage, dep, after)
    digest = fingerprint(storage, [ign_key, ours_key, *([ckey] if ckey else [])])
    if not force and is_up_to_date(storage, qa_key, digest):
        done(f"artif difference QA {dep} {before}-{after}: already done")
        return {"artif_difference_qa": qa_key}
    step(f"artif difference QA {dep} {before}→{after}: ours against IGN's {ign_key}")
    with refreshing(storage, qa_key, digest), step_outputs(storage) as outputs:
        report = compare_artif_difference(read_vector(storage, ours_key), read_vector(storage, ign_key),
                                          read_vector(storage, ckey) if ckey else None, dep=dep)
        outputs.add(write_json(storage, qa_key, {"ours_layer": ours_key, "ign_layer": ign_key, "communes": ckey,
                                                 **report}))
    done(f"artif difference QA {dep} {before}→{after}: net ours {report['ours']['artif_net_ha']:+.2f} ha, "
         f"IGN {report['ign']['artif_net_ha']:+.2f} ha")
    return {"artif_difference_qa": qa_key}
