"""Artificialisation of a millésime: the matrix of the décret, then its area thresholds by enclosure.

Algorithm (../shared/reference/ocsge-domain.md §2.3), on a partition of the territory into polygons:

1. Each polygon is classed artificialisé or not by the CS × US matrix (``ocsge.artificialisation``).
2. Polygons of the same class that are *adjacent* form clusters (connected components, scipy
   ``connected_components``). Adjacent means, by default, sharing a stretch of boundary of positive
   length: two polygons meeting at a corner only are not adjacent (``adjacency="intersects"`` counts
   any contact, as sparte's 2024 ``ST_ClusterIntersecting`` did). Only polygons below the threshold
   can belong to a cluster below it, so the graph is built for those alone; one adjacent to a larger
   polygon of its class belongs to a large cluster ("anchored") and is never judged.
3. Each cluster is judged on its *outline*: the union of its members with its holes filled, i.e. the
   cluster plus the opposite-class islands it encloses. An outline is an *island* when its area is
   below 2 500 m² and it is enclosed: its outer boundary is shared with neighbours all along (within
   ``tolerance``, up to ``border_length``), so it does not reach the edge of the territory or a gap,
   where what lies beyond is unknown.
4. An island takes the class around it as a whole — its cluster and everything in its holes — except
   built surfaces (CS1.1.1.1) of at least 50 m², which stay artificial. Islands nested in an island
   follow the outermost one: a 100 m² garden inside a 1 600 m² yard-and-house island in a field stays
   non-artificialised with the yard, instead of being flipped to artificialised by the yard around it.
   All islands are found on the matrix classes at once (no cascade). Polygons whose class changed get
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
from ocsge.artificialisation import IMPERMEABLE_CS, artificial_whatever_usage, is_artificial
from ocsge.errors import UnknownCodeError
from ocsge.progress import done, step
from ocsge.storage import Storage

SEUIL_M2 = 2_500.0  # enclosed outlines below this area take the class around them
SEUIL_BATI_M2 = 50.0  # built surfaces from this area stay artificial
BUILT_CS = "CS1.1.1.1"
ADJACENCIES = ("edge", "intersects")


def _classify(code_cs: object, code_us: object) -> bool | None:
    value = None
    if code_cs and code_us:
        try:
            value = is_artificial(str(code_cs), str(code_us))
        except UnknownCodeError:
            value = None
    if value is None and code_cs:  # missing or unknown usage: the couverture may decide alone
        value = artificial_whatever_usage(str(code_cs))
    return value


def matrix_artif(code_cs: np.ndarray, code_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matrix classification of each polygon; second array flags pairs that could not be classed
    (missing or unknown codes: counted as non-artificial and reported). A couverture whose class does not
    depend on the usage (a building) is classed even when its usage is missing or unknown."""
    cache: dict[tuple[object, object], bool | None] = {}
    out = np.zeros(len(code_cs), dtype=bool)
    unknown = np.zeros(len(code_cs), dtype=bool)
    for i, pair in enumerate(zip(code_cs, code_us, strict=True)):
        if pair not in cache:
            cache[pair] = _classify(*pair)
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
    # per polygon: its cluster among the polygons below the threshold (-1 for larger polygons), and the
    # outermost island whose outline holds it (-1: none). Corrections use them to recompute locally.
    cluster: np.ndarray | None = None
    island: np.ndarray | None = None


CLIP_COORDS = 256  # neighbours with more vertices are clipped to the box of interest before buffering


def _near(lines: np.ndarray, geoms: np.ndarray, tolerance: float) -> np.ndarray:
    """Length of each line lying within ``tolerance`` of its paired polygon. A polygon with many
    vertices (a field, a forest holding dozens of islands) is first clipped to the line's box, so that
    buffering it costs little."""
    if len(lines) == 0:
        return np.zeros(0)
    geoms = np.asarray(geoms, dtype=object).copy()
    pad = 2 * tolerance
    b = shapely.bounds(lines)
    for k in np.flatnonzero(shapely.get_num_coordinates(geoms) > CLIP_COORDS):
        geoms[k] = shapely.clip_by_rect(geoms[k], b[k, 0] - pad, b[k, 1] - pad, b[k, 2] + pad, b[k, 3] + pad)
    return shapely.length(shapely.intersection(lines, shapely.buffer(geoms, tolerance)))


def adjacent(a: np.ndarray, b: np.ndarray, adjacency: str = "edge", *, tolerance: float = 0.01,
             min_length: float = 0.5) -> np.ndarray:
    """Which pairs of neighbouring polygons ``(a[k], b[k])`` are adjacent.

    ``edge`` (default): they share a stretch of boundary of positive length (DE-9IM: boundaries meet
    along a line, or interiors overlap). A contact reduced to points (a corner) is not adjacency; it is
    re-measured within ``tolerance`` (real data has shared vertices a few millimetres apart) and counts
    when the boundary of ``a`` runs along ``b`` for more than ``min_length`` metres.
    ``intersects``: any contact, a single corner included (sparte's 2024 ``ST_ClusterIntersecting``),
    or a gap narrower than ``tolerance``.
    """
    if adjacency not in ADJACENCIES:
        raise ValueError(f"adjacency must be one of {ADJACENCIES}, not {adjacency!r}")
    if len(a) == 0:
        return np.ones(0, dtype=bool)
    if adjacency == "intersects":
        return shapely.dwithin(a, b, tolerance)
    rel = shapely.relate(a, b).astype("U9")
    chars = rel.view("U1").reshape(len(a), 9)
    out = (chars[:, 0] != "F") | (chars[:, 4] == "1")
    points = np.flatnonzero(~out)
    if len(points) and tolerance > 0:
        near = _near(shapely.boundary(a[points]), b[points], tolerance)
        out[points] = near > min_length
    return out


def _filled(geoms: np.ndarray) -> np.ndarray:
    """Each (multi)polygon with its holes filled: its outline."""
    parts, index = shapely.get_parts(geoms, return_index=True)
    filled = shapely.polygons(shapely.get_exterior_ring(parts))
    counts = np.bincount(index, minlength=len(geoms))
    out = np.empty(len(geoms), dtype=object)
    one = counts == 1
    out[one] = filled[np.isin(index, np.flatnonzero(one))]
    for i in np.flatnonzero(~one):
        out[i] = shapely.union_all(filled[index == i]) if counts[i] else shapely.Polygon()
    return out


def apply_thresholds(geoms: np.ndarray, artif: np.ndarray, code_cs: np.ndarray, *, seuil: float = SEUIL_M2,
                     seuil_bati: float = SEUIL_BATI_M2, adjacency: str = "edge", tolerance: float = 0.01,
                     border_length: float = 0.5) -> ThresholdResult:
    """Apply the décret's thresholds to the matrix classes ``artif`` of a partition ``geoms``.

    Rule (module docstring): clusters of same-class polygons (``adjacency``, see :func:`adjacent`) are
    judged on their *outline*, the cluster with the holes it encloses filled in. An outline below
    ``seuil`` that is enclosed (its outer boundary shared with neighbours all along, to
    ``border_length``) takes the class around it as a whole — the cluster and every polygon in its
    holes — except built surfaces (CS1.1.1.1) of at least ``seuil_bati``, which stay artificial.
    Nested islands follow the outermost one."""
    n = len(geoms)
    area = shapely.area(geoms)
    small = np.flatnonzero(area < seuil)
    result = artif.copy()
    crit = np.zeros(n, dtype=bool)
    cluster = np.full(n, -1, dtype=np.int64)
    island_of = np.full(n, -1, dtype=np.int64)
    if len(small) == 0:
        return ThresholdResult(result, crit, 0, 0, 0, cluster, island_of)
    tree = STRtree(geoms)
    # neighbours within ``tolerance``: real partitions have gaps and overlaps of a few millimetres
    qi, qj = tree.query(geoms[small], predicate="dwithin", distance=tolerance)
    gi = small[qi]
    keep = gi != qj
    qi, qj, gi = qi[keep], qj[keep], gi[keep]
    same = artif[gi] == artif[qj]
    qi, qj, gi = qi[same], qj[same], gi[same]
    touch = adjacent(geoms[gi], geoms[qj], adjacency, tolerance=tolerance, min_length=border_length)
    qi, qj = qi[touch], qj[touch]
    is_small = area[qj] < seuil
    pos = np.full(n, -1, dtype=np.int64)
    pos[small] = np.arange(len(small))
    anchored = np.zeros(len(small), dtype=bool)
    anchored[qi[~is_small]] = True  # joined to a polygon above the threshold: never an island
    e = is_small
    graph = coo_matrix((np.ones(int(e.sum())), (qi[e], pos[qj[e]])), shape=(len(small), len(small)))
    ncomp, labels = connected_components(graph, directed=False)
    cluster[small] = labels
    comp_area = np.bincount(labels, weights=area[small], minlength=ncomp)
    comp_anchored = np.bincount(labels, weights=anchored, minlength=ncomp) > 0
    comp_class = np.zeros(ncomp, dtype=bool)
    comp_class[labels] = artif[small]  # members of a cluster share their class
    cand = np.flatnonzero(~comp_anchored & (comp_area < seuil))  # an outline is never smaller than its cluster
    if len(cand) == 0:
        return ThresholdResult(result, crit, 0, 0, 0, cluster, island_of)
    # outlines of the candidate clusters: union of the members, holes filled
    is_cand = np.zeros(ncomp, dtype=bool)
    is_cand[cand] = True
    members = small[is_cand[labels]]
    order = np.argsort(labels[pos[members]], kind="stable")
    members = members[order]
    mlab = labels[pos[members]]
    bounds = np.searchsorted(mlab, cand)
    ends = np.append(bounds[1:], len(members))
    unions = np.empty(len(cand), dtype=object)
    single = (ends - bounds) == 1
    unions[single] = geoms[members[bounds[single]]]
    for k in np.flatnonzero(~single):
        unions[k] = shapely.union_all(geoms[members[bounds[k]:ends[k]]])
    outline = _filled(unions)
    small_outline = shapely.area(outline) < seuil
    cand, outline = cand[small_outline], outline[small_outline]
    if len(cand) == 0:
        return ThresholdResult(result, crit, 0, 0, 0, cluster, island_of)
    # what each outline holds (its members and its holes' contents) and what borders it
    ok_, oj = tree.query(outline, predicate="dwithin", distance=tolerance)
    inside = shapely.contains(outline[ok_], shapely.point_on_surface(geoms[oj]))
    ring = shapely.boundary(outline)  # outer rings only: holes are filled
    nk, nj = ok_[~inside], oj[~inside]
    covered = np.bincount(nk, weights=_near(ring[nk], geoms[nj], tolerance), minlength=len(cand))
    enclosed = shapely.length(ring) - covered <= border_length
    # nested islands follow the outermost one: each polygon goes to the largest enclosing island
    ck, cj = ok_[inside], oj[inside]
    ok = enclosed[ck]
    ck, cj = ck[ok], cj[ok]
    out_area = shapely.area(outline)
    by = np.lexsort((-out_area[ck], cj))  # per polygon, largest outline first
    ck, cj = ck[by], cj[by]
    first = np.ones(len(cj), dtype=bool)
    first[1:] = cj[1:] != cj[:-1]
    ck, cj = ck[first], cj[first]
    island_of[cj] = cand[ck]
    target = ~comp_class[cand[ck]]  # the class around the island
    built = (~target) & (code_cs[cj] == BUILT_CS) & (area[cj] >= seuil_bati) & artif[cj]
    new = np.where(built, True, target)
    result[cj] = new
    crit[cj] = new != artif[cj]
    top = np.unique(island_of[cj])  # the outermost islands (nested ones point to them)
    return ThresholdResult(result, crit, int((~comp_class[top]).sum()), int(comp_class[top].sum()),
                           int(built.sum()), cluster, island_of)


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
        "adjacency": kwargs.get("adjacency", "edge"),
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
