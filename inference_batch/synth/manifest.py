"""The manifest: what was generated, and the known changes and deliberate errors between the truths.

Changes and errors are measured on the truth itself (faces whose codes differ), so the manifest matches
the two millésimes by construction; a test checks it anyway. For each change, ``ids_before``/``ids_after``
(first/second millésime) list every truth polygon that is not identical in both millésimes because of it
(including neighbours merged or split by it), so that every polygon not listed is unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import shapely

from inference_batch.synth.layout import Plan
from inference_batch.synth.truth import Arrangement, TruthLayer

MANIFEST_VERSION = 1


def _wkt(geom: shapely.Geometry) -> str:
    return shapely.to_wkt(geom, rounding_precision=2, trim=True)


def _bbox(geom: shapely.Geometry) -> list[float]:
    return [round(float(v), 2) for v in geom.bounds]


def _identical(first: TruthLayer, second: TruthLayer) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks over both frames: polygons present in the other millésime with the same id and codes."""
    a, b = first.frame, second.frame
    key_a = a["id"] + "|" + a["code_cs"] + "|" + a["code_us"]
    key_b = b["id"] + "|" + b["code_cs"] + "|" + b["code_us"]
    return key_a.isin(set(key_b)).to_numpy(), key_b.isin(set(key_a)).to_numpy()


def _components(first: TruthLayer, second: TruthLayer, seeds: np.ndarray) -> tuple[set[int], set[int]]:
    """Polygons of both millésimes linked to the seed faces through shared faces, across polygons that are
    not identical in both millésimes."""
    same_a, same_b = _identical(first, second)
    fa, fb = first.face_polygon, second.face_polygon
    faces_of_a: dict[int, list[int]] = defaultdict(list)
    faces_of_b: dict[int, list[int]] = defaultdict(list)
    for face, (pa, pb) in enumerate(zip(fa, fb, strict=True)):
        faces_of_a[int(pa)].append(face)
        faces_of_b[int(pb)].append(face)
    seen_a: set[int] = set()
    seen_b: set[int] = set()
    todo = [("a", int(fa[f])) for f in seeds] + [("b", int(fb[f])) for f in seeds]
    while todo:
        side, p = todo.pop()
        if side == "a":
            if p in seen_a or same_a[p]:
                continue
            seen_a.add(p)
            todo.extend(("b", int(fb[f])) for f in faces_of_a[p])
        else:
            if p in seen_b or same_b[p]:
                continue
            seen_b.add(p)
            todo.extend(("a", int(fa[f])) for f in faces_of_b[p])
    return seen_a, seen_b


def changes_and_errors(
    plan: Plan,
    arrangement: Arrangement,
    published: list,
    first: TruthLayer,
    second: TruthLayer,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    faces = arrangement.faces
    top0, top1 = arrangement.top
    areas = shapely.area(faces)
    ids_a = first.frame["id"].to_numpy()
    ids_b = second.frame["id"].to_numpy()
    specs = {c.tag: c for c in plan.changes}

    # ---- changes: true codes differ between the millésimes --------------------------------------------
    by_tag: dict[str, list[int]] = defaultdict(list)
    for i in range(len(faces)):
        s0 = plan.features[top0[i]].states[0]
        s1 = plan.features[top1[i]].states[1]
        if (s0.cs, s0.us) == (s1.cs, s1.us):
            continue
        tag = plan.features[top1[i]].attrs.get("change") or plan.features[top0[i]].attrs.get("change")
        if tag is None:
            raise RuntimeError(f"face {i} changes from {s0} to {s1} without a change tag (plan bug)")
        by_tag[tag].append(i)
    changes: list[dict[str, Any]] = []
    for tag in [c.tag for c in plan.changes]:
        idx = np.array(by_tag.get(tag, []), dtype=np.int64)
        if idx.size == 0:
            continue  # too small a territory for this change
        geom = shapely.coverage_union_all(faces[idx])
        transitions: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
        for i in idx:
            s0 = published[top0[i]][0]
            s1 = plan.features[top1[i]].states[1]
            transitions[(s0.cs, s0.us, s1.cs, s1.us)].append(int(i))
        trans = []
        for (c0, u0, c1, u1), members in sorted(transitions.items()):
            members_a = np.array(members)
            biggest = members_a[np.argmax(areas[members_a])]
            pt = shapely.point_on_surface(faces[biggest])
            trans.append({"cs_before": c0, "us_before": u0, "cs_after": c1, "us_after": u1,
                          "area_m2": round(float(areas[members_a].sum()), 2),
                          "point": [round(pt.x, 2), round(pt.y, 2)]})
        pa, pb = _components(first, second, idx)
        spec = specs[tag]
        changes.append({
            "id": tag,
            "type": spec.type,
            "description": spec.description,
            "area_m2": round(float(areas[idx].sum()), 2),
            "bbox": _bbox(geom),
            "geometry_wkt": _wkt(geom),
            "transitions": trans,
            "ids_before": sorted(ids_a[sorted(pa)].tolist()),
            "ids_after": sorted(ids_b[sorted(pb)].tolist()),
        })

    # ---- errors: published first-millésime codes differ from the true ones --------------------------
    errors: list[dict[str, Any]] = []
    fid_index = {f.fid: n for n, f in enumerate(plan.features)}
    for err in plan.errors:
        n = fid_index[err.fid]
        idx = np.flatnonzero(top0 == n)
        if idx.size == 0:
            continue
        true0 = plan.features[n].states[0]
        geom = shapely.coverage_union_all(faces[idx])
        pt = shapely.point_on_surface(faces[idx[np.argmax(areas[idx])]])
        poly_ids = sorted(set(ids_a[first.face_polygon[idx]].tolist()))
        errors.append({
            "id": err.tag,
            "type": err.type,
            "description": err.description,
            "ids": poly_ids,
            "cs_published": err.cs, "us_published": err.us,
            "cs_corrected": true0.cs, "us_corrected": true0.us,
            "area_m2": round(float(areas[idx].sum()), 2),
            "bbox": _bbox(geom),
            "point": [round(pt.x, 2), round(pt.y, 2)],
            "geometry_wkt": _wkt(geom),
        })
    return changes, errors
