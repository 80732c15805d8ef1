"""Ground truth from a plan: the arrangement of all features, each face taking the state of the highest
feature present in a millésime, faces dissolved into OCS GE polygons by (unit, code_cs, code_us).

The arrangement is computed once for both millésimes (noded boundaries, polygonised, snapped to 1 cm),
so a polygon made of the same faces with the same codes in both millésimes has the same geometry and the
same id in both — which is what lets a test say "everything not listed in the manifest is unchanged".
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from functools import cached_property

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from inference_batch.synth.layout import GRID, Feature, Plan, State
from ocsge import schema

SOURCE = "synthetic"


@dataclass
class Arrangement:
    faces: np.ndarray  # shapely polygons, a partition of the rectangle
    top: np.ndarray  # (2, n_faces) index of the feature seen in each millésime (true state)

    def __len__(self) -> int:
        return len(self.faces)

    @cached_property
    def tree(self) -> shapely.STRtree:
        return shapely.STRtree(self.faces)


def arrange(plan: Plan) -> Arrangement:
    """Faces of the overlay of every feature, and which feature each face shows in each millésime."""
    geoms = np.array([f.geometry for f in plan.features], dtype=object)
    lines = [*list(shapely.boundary(geoms)), plan.rect.exterior]
    noded = shapely.union_all(lines, grid_size=GRID)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    faces = faces[shapely.area(faces) > 0]
    faces = faces[shapely.within(shapely.point_on_surface(faces), plan.rect)]
    faces = _stable_order(faces)
    points = shapely.point_on_surface(faces)
    tree = shapely.STRtree(geoms)
    face_idx, feat_idx = tree.query(points, predicate="within")
    prio = np.array([f.priority for f in plan.features], dtype=np.int64)
    top = np.full((2, len(faces)), -1, dtype=np.int64)
    for k in (0, 1):
        present = np.array([f.states[k] is not None for f in plan.features])
        keep = present[feat_idx]
        fi, ft = face_idx[keep], feat_idx[keep]
        key = prio[ft] * 1_000_000 + ft  # later features win ties
        order = np.lexsort((key, fi))
        fi, ft = fi[order], ft[order]
        last = np.r_[fi[1:] != fi[:-1], True]
        top[k, fi[last]] = ft[last]
    if (top < 0).any():
        missing = int((top < 0).sum())
        raise RuntimeError(f"synthetic plan leaves {missing} faces uncovered (the background must cover all)")
    return Arrangement(faces, top)


def _stable_order(faces: np.ndarray) -> np.ndarray:
    """Sort faces by their representative point so that ids do not depend on GEOS's output order."""
    pts = shapely.point_on_surface(faces)
    x, y = shapely.get_x(pts), shapely.get_y(pts)
    order = np.lexsort((np.round(x, 2), np.round(y, 2)))
    return faces[order]


def published_states(plan: Plan) -> list[tuple[State | None, State | None]]:
    """States as published: the first millésime carries the deliberate errors of the plan."""
    errors = {e.fid: e for e in plan.errors}
    out = []
    for f in plan.features:
        s0, s1 = f.states
        if f.fid in errors and s0 is not None:
            e = errors[f.fid]
            s0 = State(e.cs, e.us, s0.unit, s0.material)
        out.append((s0, s1))
    return out


def polygon_id(departement: str, face_ids: np.ndarray) -> str:
    digest = hashlib.sha1(",".join(map(str, np.sort(face_ids))).encode()).hexdigest()[:12]
    return f"OCS{departement}_{digest}"


@dataclass
class TruthLayer:
    frame: gpd.GeoDataFrame  # canonical schema
    face_polygon: np.ndarray  # for each face, the row index of its polygon in ``frame``


def dissolve(
    plan: Plan,
    arrangement: Arrangement,
    k: int,
    year: int,
    departement: str,
    crs: str,
    states: list[tuple[State | None, State | None]] | None = None,
) -> TruthLayer:
    """Truth polygons of millésime ``k`` (0 or 1): faces merged by (unit, code_cs, code_us), split into
    connected parts; each polygon's id is derived from its faces."""
    states = states or [f.states for f in plan.features]
    top = arrangement.top[k]
    keys = []
    for fi in top:
        st = states[fi][k]
        assert st is not None
        keys.append((st.unit, st.cs, st.us))
    key_codes = pd.Series(pd.Categorical([f"{u}|{c}|{s}" for u, c, s in keys]))
    codes = key_codes.cat.codes.to_numpy()
    cats = key_codes.cat.categories
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1], True])
    rows_geom: list[BaseGeometry] = []
    rows_cs: list[str] = []
    rows_us: list[str] = []
    rows_id: list[str] = []
    face_polygon = np.full(len(arrangement), -1, dtype=np.int64)
    for a, b in itertools.pairwise(bounds):
        idx = order[a:b]
        _unit, cs, us = cats[codes[idx[0]]].split("|")
        if len(idx) == 1:
            parts = [arrangement.faces[idx[0]]]
            groups = [idx]
        else:
            merged = shapely.coverage_union_all(arrangement.faces[idx])
            parts = list(shapely.get_parts(merged))
            if len(parts) == 1:
                groups = [idx]
            else:
                tree = shapely.STRtree(parts)
                pi, pj = tree.query(shapely.point_on_surface(arrangement.faces[idx]), predicate="within")
                assign = np.full(len(idx), -1)
                assign[pi] = pj
                groups = [idx[assign == j] for j in range(len(parts))]
        for part, members in zip(parts, groups, strict=True):
            face_polygon[members] = len(rows_geom)
            rows_geom.append(part)
            rows_cs.append(cs)
            rows_us.append(us)
            rows_id.append(polygon_id(departement, members))
    frame = gpd.GeoDataFrame(
        {
            schema.ID: rows_id,
            schema.CODE_CS: rows_cs,
            schema.CODE_US: rows_us,
            schema.MILLESIME: np.full(len(rows_id), int(year), dtype=np.int32),
            schema.SOURCE: SOURCE,
        },
        geometry=gpd.GeoSeries(rows_geom, crs=crs),
        crs=crs,
    )
    frame = frame.rename_geometry(schema.GEOMETRY) if frame.geometry.name != schema.GEOMETRY else frame
    # stable row order: by id (ids are content hashes, independent of grouping order)
    order_rows = np.argsort(frame[schema.ID].to_numpy(), kind="stable")
    inverse = np.empty_like(order_rows)
    inverse[order_rows] = np.arange(len(order_rows))
    frame = frame.iloc[order_rows].reset_index(drop=True)
    return TruthLayer(frame, inverse[face_polygon])


def zone_construite(truth: gpd.GeoDataFrame, departement: str, year: int, crs: str,
                    bounds: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
    """Built-up envelope: buildings dilated by 25 m, merged, eroded by 15 m (the dilation–erosion IGN
    describes), kept where at least 2 500 m², clipped to the territory."""
    built = truth.geometry[truth[schema.CODE_CS] == "CS1.1.1.1"].to_numpy()
    rect = shapely.box(*bounds)
    if len(built) == 0:
        geoms: list[BaseGeometry] = []
    else:
        env = shapely.union_all(shapely.buffer(built, 25.0, quad_segs=4)).buffer(-15.0, quad_segs=4)
        env = shapely.intersection(env, rect, grid_size=GRID)
        geoms = [g for g in shapely.get_parts(env) if g.geom_type == "Polygon" and g.area >= 2500.0]
        geoms.sort(key=lambda g: (g.centroid.y, g.centroid.x))
    ids = [f"ZC{departement}_{year}_{i:05d}" for i in range(len(geoms))]
    return gpd.GeoDataFrame({schema.ID: ids, schema.MILLESIME: np.full(len(ids), int(year), dtype=np.int32),
                             schema.SOURCE: SOURCE}, geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)


def visible_geometries(plan: Plan, arrangement: Arrangement, k: int) -> dict[str, BaseGeometry]:
    """Where each feature is seen in millésime ``k`` (its faces not covered by a higher feature)."""
    top = arrangement.top[k]
    order = np.argsort(top, kind="stable")
    cuts = np.flatnonzero(np.r_[True, top[order][1:] != top[order][:-1], True])
    out: dict[str, BaseGeometry] = {}
    for a, b in itertools.pairwise(cuts):
        idx = order[a:b]
        feature: Feature = plan.features[int(top[idx[0]])]
        out[feature.fid] = arrangement.faces[idx[0]] if len(idx) == 1 else shapely.coverage_union_all(
            arrangement.faces[idx])
    return out
