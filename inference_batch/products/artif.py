"""Artificialisation of a millésime: the matrix of the décret, then its area thresholds by enclosure.

Algorithm (../shared/reference/ocsge-domain.md §2.3), on a partition of the territory into polygons:

1. Each polygon is classed artificialisé or not by the CS × US matrix (``ocsge.artificialisation``).
2. Polygons of the same class that touch form clusters (connected components of the adjacency graph
   restricted to same-class edges; scipy ``connected_components``). Only polygons smaller than the
   threshold can belong to a cluster smaller than it, so the graph is built for those alone: an
   STRtree query of the small polygons against all polygons gives their neighbours; a small polygon
   touching a large one of its class belongs to a large cluster ("anchored").
3. A cluster is an *island* when it is not anchored, its area is below 2 500 m², and it is enclosed:
   every part of its members' boundaries is shared with a neighbour (within ``tolerance``), i.e. it
   does not reach the edge of the territory or a gap, where what lies beyond is unknown.
4. A non-artificial island becomes artificial; an artificial island becomes non-artificial, except
   built surfaces (CS1.1.1.1) of at least 50 m², which stay artificial. Both rules apply to the
   clusters of the matrix classification at once (no cascade). Polygons whose class changed get
   ``crit_seuil = True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from shapely import STRtree

from inference_batch.freshness import fingerprint, is_delivered, is_up_to_date, refreshing
from inference_batch.products.artifacts import (
    StepError,
    key,
    read_vector,
    step_outputs,
    write_json,
    write_vector,
)
from ocsge import schema
from ocsge.artificialisation import IMPERMEABLE_CS, is_artificial
from ocsge.errors import UnknownCodeError
from ocsge.progress import done, step
from ocsge.storage import Storage

SEUIL_M2 = 2_500.0  # enclosed islands below this area take the class around them
SEUIL_BATI_M2 = 50.0  # built surfaces from this area stay artificial
BUILT_CS = "CS1.1.1.1"


def matrix_artif(code_cs: np.ndarray, code_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matrix classification of each polygon; second array flags pairs that could not be classed
    (missing or unknown codes: counted as non-artificial and reported)."""
    cache: dict[tuple[object, object], bool | None] = {}
    out = np.zeros(len(code_cs), dtype=bool)
    unknown = np.zeros(len(code_cs), dtype=bool)
    for i, pair in enumerate(zip(code_cs, code_us, strict=True)):
        if pair not in cache:
            try:
                cache[pair] = is_artificial(str(pair[0]), str(pair[1])) if pair[0] and pair[1] else None
            except UnknownCodeError:
                cache[pair] = None
        value = cache[pair]
        out[i] = bool(value)
        unknown[i] = value is None
    return out, unknown


@dataclass
class ThresholdResult:
    artif: np.ndarray
    crit_seuil: np.ndarray
    islands_to_artif: int
    islands_to_non_artif: int
    built_kept: int


def apply_thresholds(geoms: np.ndarray, artif: np.ndarray, code_cs: np.ndarray, *, seuil: float = SEUIL_M2,
                     seuil_bati: float = SEUIL_BATI_M2, tolerance: float = 0.01, border_length: float = 0.5
                     ) -> ThresholdResult:
    """Apply the décret's thresholds to the matrix classes ``artif`` of a partition ``geoms``."""
    n = len(geoms)
    area = shapely.area(geoms)
    small = np.flatnonzero(area < seuil)
    result = artif.copy()
    crit = np.zeros(n, dtype=bool)
    if len(small) == 0:
        return ThresholdResult(result, crit, 0, 0, 0)
    tree = STRtree(geoms)
    qi, qj = tree.query(geoms[small], predicate="intersects")
    gi = small[qi]
    other = gi != qj
    gi, qj, qi = gi[other], qj[other], qi[other]
    same = artif[gi] == artif[qj]
    is_small = area[qj] < seuil
    pos = np.full(n, -1, dtype=np.int64)
    pos[small] = np.arange(len(small))
    anchored = np.zeros(len(small), dtype=bool)
    anchored[qi[same & ~is_small]] = True
    e = same & is_small
    graph = coo_matrix((np.ones(int(e.sum())), (qi[e], pos[qj[e]])), shape=(len(small), len(small)))
    ncomp, labels = connected_components(graph, directed=False)
    comp_area = np.bincount(labels, weights=area[small], minlength=ncomp)
    comp_anchored = np.bincount(labels, weights=anchored, minlength=ncomp) > 0
    candidate = ~comp_anchored & (comp_area < seuil)
    members = np.flatnonzero(candidate[labels])  # positions in `small`
    if len(members) == 0:
        return ThresholdResult(result, crit, 0, 0, 0)
    # enclosure: the boundary of each candidate member must be covered by its neighbours
    is_member = np.zeros(len(small), dtype=bool)
    is_member[members] = True
    sel = is_member[qi]
    mi, mj = qi[sel], qj[sel]
    boundaries = shapely.boundary(geoms[small[members]])
    bpos = np.full(len(small), -1, dtype=np.int64)
    bpos[members] = np.arange(len(members))
    covered = shapely.length(shapely.intersection(boundaries[bpos[mi]], shapely.buffer(geoms[mj], tolerance)))
    covered_sum = np.bincount(bpos[mi], weights=covered, minlength=len(members))
    border = (shapely.length(boundaries) - covered_sum) > border_length
    comp_border = np.zeros(ncomp, dtype=bool)
    comp_border[labels[members[border]]] = True
    island = candidate & ~comp_border
    flip = small[island[labels]]
    to_artif = flip[~artif[flip]]
    to_non = flip[artif[flip]]
    built = (code_cs[to_non] == BUILT_CS) & (area[to_non] >= seuil_bati)
    kept = to_non[built]
    to_non = to_non[~built]
    result[to_artif] = True
    result[to_non] = False
    crit[to_artif] = True
    crit[to_non] = True
    comp_class = np.zeros(ncomp, dtype=bool)
    comp_class[labels] = artif[small]  # members of a cluster share their class
    return ThresholdResult(result, crit, int((island & ~comp_class).sum()), int((island & comp_class).sum()),
                           len(kept))


def artificialisation(occupation: gpd.GeoDataFrame, **kwargs: Any) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """The artificialisation layer (occupation + ``artif``, ``crit_seuil``) and its totals."""
    gdf = occupation.reset_index(drop=True)
    cs = gdf[schema.CODE_CS].to_numpy(dtype=object)
    us = gdf[schema.CODE_US].to_numpy(dtype=object)
    matrix, unknown = matrix_artif(cs, us)
    res = apply_thresholds(gdf.geometry.to_numpy(), matrix, cs, **kwargs)
    out = gpd.GeoDataFrame({
        schema.ID: gdf[schema.ID].to_numpy(),
        schema.CODE_CS: cs,
        schema.CODE_US: us,
        schema.MILLESIME: gdf[schema.MILLESIME].to_numpy() if schema.MILLESIME in gdf else None,
        schema.ARTIF: np.where(res.artif, "artif", "non artif"),
        schema.CRIT_SEUIL: res.crit_seuil,
    }, geometry=gdf.geometry.to_numpy(), crs=gdf.crs)
    t = totals(out)
    t.update({
        "matrix_artif_ha": round(float(shapely.area(out.geometry.to_numpy())[matrix].sum()) / 1e4, 4),
        "unclassified_polygons": int(unknown.sum()),
        "islands_to_artif": res.islands_to_artif,
        "islands_to_non_artif": res.islands_to_non_artif,
        "built_kept_artif": res.built_kept,
        "seuil_m2": kwargs.get("seuil", SEUIL_M2),
        "seuil_bati_m2": kwargs.get("seuil_bati", SEUIL_BATI_M2),
    })
    return out, t


def totals(layer: gpd.GeoDataFrame) -> dict[str, Any]:
    """Artificialised and impermeable area (ha) of an artificialisation layer."""
    area = shapely.area(layer.geometry.to_numpy())
    artif = layer[schema.ARTIF].to_numpy() == "artif"
    imper = np.isin(layer[schema.CODE_CS].to_numpy(dtype=object), list(IMPERMEABLE_CS))
    crit = layer[schema.CRIT_SEUIL].to_numpy(dtype=bool)
    total = float(area.sum())
    return {
        "polygons": len(layer),
        "surface_ha": round(total / 1e4, 4),
        "artif_ha": round(float(area[artif].sum()) / 1e4, 4),
        "artif_pct": round(100 * float(area[artif].sum()) / total, 4) if total else 0.0,
        "impermeable_ha": round(float(area[imper].sum()) / 1e4, 4),
        "impermeable_pct": round(100 * float(area[imper].sum()) / total, 4) if total else 0.0,
        "crit_seuil_polygons": int(crit.sum()),
        "crit_seuil_to_artif_ha": round(float(area[crit & artif].sum()) / 1e4, 4),
        "crit_seuil_to_non_artif_ha": round(float(area[crit & ~artif].sum()) / 1e4, 4),
    }


def run_artif(storage: Storage, dep: object, millesime: int, *, force: bool = False,
              source: str = "occupation") -> dict[str, str]:
    """Step: artificialisation layer + totals for one département × millésime. A delivered layer (IGN's
    official one, stamped by ``ocsge ingest``) is never replaced, even with ``force``: only its totals
    are computed. Our own layer is redone when its source changed (or with ``force``)."""
    layer_key = key("artificialisation", dep, millesime)
    totals_key = key("artif_totals", dep, millesime)
    keys = {"artificialisation": layer_key, "artif_totals": totals_key}
    if is_delivered(storage, layer_key):
        digest = fingerprint(storage, [layer_key])
        if not force and is_up_to_date(storage, totals_key, digest):
            done(f"artif {dep} {millesime}: already done (delivered layer)")
            return keys
        step(f"artif {dep} {millesime}: totals of the delivered layer {layer_key}")
        with refreshing(storage, totals_key, digest), step_outputs(storage) as outputs:
            layer = read_vector(storage, layer_key)
            outputs.add(write_json(storage, totals_key, {**totals(layer), "origin": "delivered layer"}))
        return keys
    src_key = key(source, dep, millesime)
    digest = fingerprint(storage, [src_key])
    if not force and is_up_to_date(storage, keys.values(), digest):
        done(f"artif {dep} {millesime}: already done")
        return keys
    if not storage.exists(src_key):
        raise StepError(f"artif {dep} {millesime}: no {source} layer ({src_key}); run `ocsge ingest` first")
    step(f"artif {dep} {millesime}: matrix and thresholds")
    with refreshing(storage, keys.values(), digest), step_outputs(storage) as outputs:
        layer, t = artificialisation(read_vector(storage, src_key))
        outputs.add(write_vector(storage, layer_key, layer))
        outputs.add(write_json(storage, totals_key, {**t, "origin": f"computed from {src_key}"}))
    done(f"artif {dep} {millesime}: {t['artif_ha']:.2f} ha artificialised ({t['artif_pct']:.2f} %), "
         f"{t['crit_seuil_polygons']} polygons by threshold")
    return keys
