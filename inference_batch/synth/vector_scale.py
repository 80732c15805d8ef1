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

import geopandas as gpd
import numpy as np
import shapely

from inference_batch.synth.generate import write_geoparquet, write_json
from inference_batch.synth.layout import COMMUNE_NAMES
from inference_batch.synth.scene import check_millesimes
from ocsge import schema
from ocsge.errors import OcsgeError, StorageError
from ocsge.products import product_key
from ocsge.progress import done, progress, step
from ocsge.storage import Storage, open_storage
from ocsge.territory import departement as get_departement

CELL_M = 120.0  # mean parcel side
CHANGE_FRACTION = 0.02
SPLIT_FRACTION = 0.005
VECTOR_PAIR_VERSION = "1"

# (code_cs, code_us) of each class id
CLASSES: tuple[tuple[str, str], ...] = (
    ("CS2.2.1", "US1.1"),  # 0 fields and meadows
    ("CS2.1.1.1", "US1.2"),  # 1 deciduous
    ("CS2.1.1.2", "US1.2"),  # 2 conifers
    ("CS2.1.1.3", "US1.2"),  # 3 mixed
    ("CS1.1.1.1", "US5"),  # 4 houses
    ("CS1.1.1.2", "US4.1.1"),  # 5 roads
    ("CS2.2.1", "US5"),  # 6 gardens
    ("CS1.1.1.1", "US2"),  # 7 industry
    ("CS1.1.1.2", "US2"),  # 8 car parks
    ("CS2.1.3", "US1.1"),  # 9 vineyards
    ("CS1.2.2", "US6.3"),  # 10 water
    ("CS2.1.2", "US6.3"),  # 11 shrubland
    ("CS1.1.2.1", "US1.3"),  # 12 quarry
    ("CS1.2.1", "US6.1"),  # 13 building site
    ("CS1.1.2.2", "US3"),  # 14 sports grounds
    ("CS1.2.3", "US6.3"),  # 15 névé
    ("CS2.2.2", "US6.3"),  # 16 lichens, mosses
    ("CS1.2.1", "US6.3"),  # 17 bare rock
    ("CS1.1.2.1", "US4.1.2"),  # 18 railway
    ("CS1.1.1.1", "US3"),  # 19 services
    ("CS2.2.1", "US1.2"),  # 20 clear-cut
    ("CS1.2.1", "US6.2"),  # 21 demolished
)
# urbanisation of fields, clear-cuts, completed sites, quarry extensions, demolitions
TRANSITIONS: dict[int, tuple[tuple[int, float], ...]] = {
    0: ((4, 0.45), (13, 0.25), (5, 0.15), (7, 0.15)),
    1: ((20, 1.0),), 2: ((20, 1.0),), 3: ((20, 1.0),),
    13: ((4, 0.5), (7, 0.5)),
    11: ((12, 1.0),),
    7: ((21, 1.0),),
    6: ((4, 1.0),),
}


def _grid(nx: int, ny: int, x0: float, y0: float, rng: np.random.Generator, cell_x: float = CELL_M,
          cell_y: float = CELL_M) -> tuple[np.ndarray, np.ndarray]:
    """Vertex coordinates (ny+1, nx+1) of a jittered grid with uneven rows and columns of mean size
    ``cell_x`` × ``cell_y``; border vertices stay on the rectangle."""
    dx = rng.uniform(0.6, 1.4, nx)
    dy = rng.uniform(0.6, 1.4, ny)
    xs = x0 + np.r_[0, np.cumsum(dx)] / dx.sum() * nx * cell_x
    ys = y0 + np.r_[0, np.cumsum(dy)] / dy.sum() * ny * cell_y
    gx, gy = np.meshgrid(xs, ys)
    jx = rng.uniform(-0.3, 0.3, gx.shape) * cell_x * 0.6
    jy = rng.uniform(-0.3, 0.3, gy.shape) * cell_y * 0.6
    jx[:, 0] = jx[:, -1] = 0
    jy[0, :] = jy[-1, :] = 0
    return np.round(gx + jx, 2), np.round(gy + jy, 2)


def _quads(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """(n, 5, 2) closed rings of the grid's cells, row by row, counter-clockwise."""
    p0 = np.stack([gx[:-1, :-1], gy[:-1, :-1]], -1)
    p1 = np.stack([gx[:-1, 1:], gy[:-1, 1:]], -1)
    p2 = np.stack([gx[1:, 1:], gy[1:, 1:]], -1)
    p3 = np.stack([gx[1:, :-1], gy[1:, :-1]], -1)
    return np.stack([p0, p1, p2, p3, p0], -2).reshape(-1, 5, 2)


def _halves(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each quad cut in two triangles along an inner diagonal: no new vertex, so the neighbours' edges are
    untouched and the partition stays exact."""
    p0, p1, p2, p3 = r[:, 0], r[:, 1], r[:, 2], r[:, 3]

    def side(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.sign((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))

    use02 = (side(p0, p2, p1) * side(p0, p2, p3)) < 0  # p1 and p3 on either side of p0–p2
    # closed rings of 5 points like the quads' (the last vertex repeated), so arrays stay homogeneous
    a = np.where(use02[:, None, None], np.stack([p0, p1, p2, p0, p0], 1), np.stack([p1, p2, p3, p1, p1], 1))
    b = np.where(use02[:, None, None], np.stack([p0, p2, p3, p0, p0], 1), np.stack([p1, p3, p0, p1, p1], 1))
    return a, b


def _smooth(u: np.ndarray, v: np.ndarray, rng: np.random.Generator, waves: float) -> np.ndarray:
    z = np.zeros_like(u)
    for _ in range(4):
        a = rng.uniform(0.5, 1.5, 2) * waves
        p = rng.uniform(0, 2 * np.pi, 2)
        z += np.sin(2 * np.pi * a[0] * u + p[0]) * np.cos(2 * np.pi * a[1] * v + p[1])
    return z / 2


def _classes(cx: np.ndarray, cy: np.ndarray, bounds: tuple[float, float, float, float],
             rng: np.random.Generator) -> np.ndarray:
    x0, y0, x1, y1 = bounds
    u, v = (cx - x0) / (x1 - x0), (cy - y0) / (y1 - y0)
    n = len(cx)
    cls = np.zeros(n, np.int16)
    forest = _smooth(u, v, rng, 3.0) + 0.3 * rng.standard_normal(n)
    cls[forest > 0.55] = 1
    kind = _smooth(u, v, rng, 2.0)
    cls[(forest > 0.55) & (kind > 0.3)] = 2
    cls[(forest > 0.55) & (np.abs(kind) <= 0.1)] = 3
    cls[(forest > 0.3) & (forest <= 0.55) & (rng.uniform(size=n) < 0.15)] = 11
    vines = _smooth(u, v, rng, 1.5)
    cls[(cls == 0) & (vines > 0.8)] = 9
    # towns: gaussian blobs, denser in their centres
    n_towns = max(3, int(math.sqrt(n) / 12))
    tx, ty = rng.uniform(0.05, 0.95, n_towns), rng.uniform(0.05, 0.95, n_towns)
    radius = rng.uniform(0.01, 0.04, n_towns) * max(1.0, 150 / math.sqrt(n))
    urban = np.zeros(n)
    for i in range(n_towns):
        urban = np.maximum(urban, np.exp(-((u - tx[i]) ** 2 + (v - ty[i]) ** 2) / (2 * radius[i] ** 2)))
    r = rng.uniform(size=n)
    town = urban * (0.7 + 0.6 * rng.uniform(size=n)) > 0.35
    cls[town & (r < 0.35)] = 4
    cls[town & (r >= 0.35) & (r < 0.55)] = 6
    cls[town & (r >= 0.55) & (r < 0.70)] = 5
    cls[town & (r >= 0.70) & (r < 0.80)] = 7
    cls[town & (r >= 0.80) & (r < 0.86)] = 8
    cls[town & (r >= 0.86) & (r < 0.89)] = 19
    cls[town & (r >= 0.89) & (r < 0.91)] = 13
    cls[town & (r >= 0.91) & (r < 0.92)] = 14
    # roads between towns and a railway: cells crossed by straight lines
    for k in range(n_towns - 1):
        d = np.abs((tx[k + 1] - tx[k]) * (ty[k] - v) - (tx[k] - u) * (ty[k + 1] - ty[k]))
        d /= math.hypot(tx[k + 1] - tx[k], ty[k + 1] - ty[k]) + 1e-9
        lo_u, hi_u = sorted((tx[k], tx[k + 1]))
        on = (d < 0.35 / math.sqrt(n)) & (u >= lo_u - 0.01) & (u <= hi_u + 0.01)
        cls[on] = 5
    cls[np.abs(v - 0.5 - 0.1 * np.sin(2 * np.pi * u)) < 0.3 / math.sqrt(n)] = 18
    # rivers and lakes
    river = np.abs(v - 0.3 - 0.05 * np.sin(6 * u + rng.uniform(0, 6))) < 0.35 / math.sqrt(n)
    cls[river] = 10
    lakes = _smooth(u, v, rng, 5.0) > 1.15
    cls[lakes & (cls <= 3)] = 10
    # mountains in a corner: rock, névé, lichens; quarries here and there
    hill = (u > 0.85) & (v < 0.15)
    cls[hill & (forest < 0.3)] = 17
    cls[hill & (forest < -0.2)] = 16
    cls[hill & (forest < -0.6)] = 15
    cls[(cls == 0) & (rng.uniform(size=n) < 0.003)] = 12
    # every class present at least a few times, whatever the size
    for c in range(len(CLASSES)):
        if c in (20, 21):
            continue
        if not (cls == c).any():
            cls[rng.choice(n, size=min(3, n), replace=False)] = c
    return cls


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


def _frame(ids: np.ndarray, cls: np.ndarray, geoms: np.ndarray, year: int, crs: str) -> gpd.GeoDataFrame:
    cs = np.array([c for c, _ in CLASSES], dtype=object)
    us = np.array([u for _, u in CLASSES], dtype=object)
    return gpd.GeoDataFrame(
        {schema.ID: ids.astype(object), schema.CODE_CS: cs[cls], schema.CODE_US: us[cls],
         schema.MILLESIME: np.full(len(ids), year, np.int32), schema.SOURCE: "synthetic"},
        geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)


def _communes(bounds: tuple[float, float, float, float], n_cells: int, dep: str, crs: str,
              rng: np.random.Generator) -> gpd.GeoDataFrame:
    """≈ one commune per 400 parcels, on a coarser jittered grid of its own (limits do not follow parcels)."""
    x0, y0, x1, y1 = bounds
    n_com = min(999, max(4, n_cells // 400))
    ncx = max(2, round(math.sqrt(n_com * (x1 - x0) / (y1 - y0))))
    ncy = max(2, round(n_com / ncx))
    xs = np.linspace(x0, x1, ncx + 1)
    ys = np.linspace(y0, y1, ncy + 1)
    gx, gy = np.meshgrid(xs, ys)
    jx = rng.uniform(-0.25, 0.25, gx.shape) * (x1 - x0) / ncx
    jy = rng.uniform(-0.25, 0.25, gy.shape) * (y1 - y0) / ncy
    jx[:, [0, -1]] = 0
    jy[[0, -1], :] = 0
    geoms = shapely.polygons(_quads(np.round(gx + jx, 2), np.round(gy + jy, 2)))
    k = len(geoms)
    width = 2 if k < 100 else 3
    codes = [f"{dep}{i + 1:0{width}d}" for i in range(k)]
    names = [f"{COMMUNE_NAMES[i % len(COMMUNE_NAMES)]} {i // len(COMMUNE_NAMES) + 1}" for i in range(k)]
    return gpd.GeoDataFrame({"insee_com": codes, "nom": names, "insee_dep": dep},
                            geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)


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
