"""Département-sized pairs of synthetic truths (10⁵–10⁶ polygons per millésime, no imagery) for scale tests
and benchmarks, built with vectorised shapely/numpy only.

The territory is a jittered grid of quadrilateral parcels (≈1.4 ha each, so 200 000 polygons span
≈2 900 km², a département): an exact planar partition by construction. Codes come from smooth seeded
fields — towns (built, roads, gardens, economic zones), forests, vineyards, rivers and lakes, rare
classes sprinkled — so every couverture leaf is present. Between the millésimes ≈2 % of the parcels change:
most change codes only (urbanisation of fields, clear-cuts, building sites completed, quarry extensions,
demolitions), and ≈0.5 % are split in two (along a diagonal) with one half changing, so differences
need a real overlay.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import shapely

from inference_batch.synth.generate import write_geoparquet, write_json
from inference_batch.synth.scene import check_millesimes
from inference_batch.synth.vector_grid import (
    CHANGE_FRACTION,
    CLASSES,
    SPLIT_FRACTION,
    TRANSITIONS,
    _classes,
    _communes,
    _frame,
    _grid,
    _halves,
    _quads,
)
from ocsge.errors import OcsgeError, StorageError
from ocsge.products import product_key
from ocsge.progress import done, progress, step
from ocsge.storage import Storage, open_storage
from ocsge.territory import departement as get_departement

VECTOR_PAIR_VERSION = "1"


def build_vector_pair(n_polygons: int, seed: int = 42, departement: str = "S01",
                      millesimes: tuple[int, int] = (2021, 2024),
                      origin: tuple[float, float] = (700000.0, 6600000.0),
                      bounds: tuple[float, float, float, float] | None = None,
                      *, vertices: str | tuple[int, int] | None = None) -> dict[str, Any]:
    """The pair in memory: ``{"truth": {year: GeoDataFrame}, "communes": GeoDataFrame, "summary": dict}``.
    With ``vertices`` (a range of vertices per polygon such as ``"20-200"``), realistic geometry: wiggly
    shared boundaries, islands, a realistic update (:mod:`.vector_realistic`).

    By default the parcels have their natural size (:data:`CELL_M`) from ``origin`` (south-west corner);
    with ``bounds`` (Lambert-93 xmin, ymin, xmax, ymax) the ``n_polygons`` parcels fill exactly that box,
    however large: a small pair laid on a real département's footprint (:mod:`.footprints`)."""
    if n_polygons < 1000:
        raise OcsgeError(f"--polygons {n_polygons}: the vector-only mode needs at least 1 000 polygons")
    if n_polygons > 5_000_000:
        raise OcsgeError(f"--polygons {n_polygons}: more than 5 000 000 polygons is not supported")
    dep = get_departement(departement)
    if not dep.synthetic:
        raise OcsgeError(f"département {departement!r} is a real one: synthetic territories use S01…S99")
    years = check_millesimes(millesimes)
    if vertices is not None:
        from inference_batch.synth.vector_realistic import build_realistic_pair, parse_vertices

        if bounds is not None:
            raise OcsgeError("realistic geometry (--realistic/--vertices) is laid from the origin, not on --bounds")
        return build_realistic_pair(n_polygons, seed, dep.code, dep.crs, years, origin, parse_vertices(vertices))
    rng = np.random.default_rng([seed, 1789])
    if bounds is None:
        nx = max(2, round(math.sqrt(n_polygons * 1.25)))
        ny = max(2, n_polygons // nx)
        x0, y0 = map(float, origin)
        gx, gy = _grid(nx, ny, x0, y0, rng)
    else:
        x0, y0, x1, y1 = map(float, bounds)
        if not (x1 > x0 and y1 > y0):
            raise OcsgeError(f"bounds {bounds!r}: expected xmin, ymin, xmax, ymax with xmin < xmax and ymin < ymax")
        nx = max(2, round(math.sqrt(n_polygons * (x1 - x0) / (y1 - y0))))
        ny = max(2, n_polygons // nx)
        gx, gy = _grid(nx, ny, x0, y0, rng, (x1 - x0) / nx, (y1 - y0) / ny)
    bounds = (x0, y0, float(gx[0, -1]), float(gy[-1, 0]))
    rings = _quads(gx, gy)
    # exactly n_polygons in the first millésime: split a few cells in two
    extra = n_polygons - len(rings)
    if extra > 0:
        cut = np.zeros(len(rings), bool)
        cut[rng.choice(len(rings), size=extra, replace=False)] = True
        rings = np.concatenate([rings[~cut], *_halves(rings[cut])])
    is_quad = np.r_[np.ones(len(rings) - 2 * max(extra, 0), bool), np.zeros(2 * max(extra, 0), bool)]
    n = len(rings)
    cx, cy = rings[:, :4, 0].mean(1), rings[:, :4, 1].mean(1)
    cls1 = _classes(cx, cy, bounds, rng)
    # changes: code-only for most, splits for some
    cls2 = cls1.copy()
    candidates = np.flatnonzero(np.isin(cls1, list(TRANSITIONS)))
    n_change = min(len(candidates), int(n * CHANGE_FRACTION))
    changed = np.sort(rng.choice(candidates, size=n_change, replace=False))
    for i, c in zip(changed, cls1[changed], strict=True):
        targets, probs = zip(*TRANSITIONS[int(c)], strict=True)
        cls2[i] = targets[int(rng.choice(len(targets), p=np.array(probs) / sum(probs)))]
    splittable = changed[is_quad[changed]]
    n_split = min(len(splittable), int(n * SPLIT_FRACTION))
    split = np.sort(rng.choice(splittable, size=n_split, replace=False))
    # first millésime
    geoms1 = shapely.polygons(rings)
    ids = np.char.add(f"OCS{dep.code}_", np.char.zfill(np.arange(n).astype(str), 8))
    truth1 = _frame(ids, cls1, geoms1, years[0], dep.crs)
    # second millésime: unchanged cells keep their id; changed cells get a new one; split cells become a
    # half that keeps the old codes and a half with the new ones
    is_split = np.zeros(n, bool)
    is_split[split] = True
    keep = ~is_split
    ids2 = ids.copy()
    is_changed = np.zeros(n, bool)
    is_changed[changed] = True
    ids2[is_changed] = np.char.add(ids[is_changed], "m")
    half_a, half_b = _halves(rings[split])
    geoms2 = np.concatenate([geoms1[keep], shapely.polygons(half_a), shapely.polygons(half_b)])
    ids_2 = np.concatenate([ids2[keep], np.char.add(ids[split], "a"), np.char.add(ids[split], "b")])
    cls_2 = np.concatenate([cls2[keep], cls1[split], cls2[split]])
    truth2 = _frame(ids_2, cls_2, geoms2, years[1], dep.crs)
    communes = _communes(bounds, n, dep.code, dep.crs, rng)
    # summary of changes (by transition, with areas)
    area = shapely.area(geoms1)
    changed_area = np.where(is_split, area / 2, area)
    trans: dict[str, dict[str, float]] = {}
    for i in changed:
        (c0, u0), (c1, u1) = CLASSES[cls1[i]], CLASSES[cls2[i]]
        key = f"{c0}|{u0}|{c1}|{u1}"
        entry = trans.setdefault(key, {"polygons": 0, "area_m2": 0.0})
        entry["polygons"] += 1
        entry["area_m2"] += float(changed_area[i])
    summary = {
        "mode": "vector_pair",
        "polygons": {str(years[0]): len(truth1), str(years[1]): len(truth2)},
        "bounds": [round(v, 2) for v in bounds],
        "changed_cells": len(changed),
        "split_cells": len(split),
        "changed_fraction": round(len(changed) / n, 4),
        "transitions": [{"cs_before": k.split("|")[0], "us_before": k.split("|")[1], "cs_after": k.split("|")[2],
                         "us_after": k.split("|")[3], "polygons": int(v["polygons"]),
                         "area_m2": round(v["area_m2"], 2)} for k, v in sorted(trans.items())],
        "changed_ids_before": ids[changed].tolist(),
    }
    return {"truth": {years[0]: truth1, years[1]: truth2}, "communes": communes, "summary": summary}


def generate_vector_pair(
    storage: Storage | str | None = None,
    departement: str = "S01",
    n_polygons: int = 200_000,
    seed: int = 42,
    millesimes: tuple[int, int] = (2021, 2024),
    force: bool = False,
    vertices: str | tuple[int, int] | None = None,
    bounds: tuple[float, float, float, float] | None = None,
) -> dict[str, Any]:
    """Write a département-sized pair: ``truth`` and ``communes`` for both millésimes, and a manifest
    (``synth_manifest`` of the first millésime, ``mode: vector_pair``). Returns the manifest. ``bounds``
    places it on a given Lambert-93 box (:func:`build_vector_pair`)."""
    store = storage if storage is not None and not isinstance(storage, str) else open_storage(storage)
    dep = get_departement(departement)
    if not dep.synthetic:
        raise OcsgeError(f"département {departement!r} is a real one: synthetic territories use S01…S99")
    years = check_millesimes(millesimes)
    params = {"mode": "vector_pair", "version": VECTOR_PAIR_VERSION, "departement": dep.code,
              "n_polygons": int(n_polygons), "seed": int(seed), "millesimes": list(years)}
    if bounds is not None:  # only then: the parameters of a pair at the default place stay as they were
        params["bounds"] = [float(v) for v in bounds]
    if vertices is not None:  # only then: the parameters of a parcel pair stay as they were
        from inference_batch.synth.vector_realistic import parse_vertices

        vertices = parse_vertices(vertices)
        params["vertices"] = list(vertices)
    manifest_key = product_key("synth_manifest", dep.code, years[0])
    if not force and store.exists(manifest_key):
        try:
            old = json.loads(store.get_bytes(manifest_key))
        except (ValueError, StorageError):
            old = {}
        keys = [k for per in old.get("keys", {}).values() for k in per.values()]
        if old.get("parameters") == params and keys and all(store.exists(k) for k in keys):
            done(f"vector pair {dep.code} already generated with these parameters ({store.root})")
            return old
    store.check_writable()
    step(f"vector-only pair {dep.code}: {n_polygons:,} polygons per millésime (seed {seed})")
    pair = build_vector_pair(n_polygons, seed, dep.code, years, vertices=vertices, bounds=bounds)
    keys: dict[str, dict[str, str]] = {}
    with progress(f"writing vector pair {dep.code}", total=4) as advance:
        for year in years:
            truth_key = product_key("truth", dep.code, year)
            write_geoparquet(store, truth_key, pair["truth"][year])
            advance(info=truth_key)
            communes_key = product_key("communes", dep.code, year)
            write_geoparquet(store, communes_key, pair["communes"])
            advance(info=communes_key)
            keys[str(year)] = {"truth": truth_key, "communes": communes_key}
    manifest = {"synthetic": True, "title": f"{dep.name} — SYNTHETIC vector pair generated by ocsge synth",
                "departement": dep.code, "crs": dep.crs, "millesimes": list(years), "seed": int(seed),
                "parameters": params, "keys": keys, **pair["summary"]}
    write_json(store, manifest_key, manifest)
    done(f"vector pair {dep.code} written under {store.root} (manifest {manifest_key})")
    return manifest
