"""The parcel grid shared by the synthetic vector pairs (:mod:`.vector_scale`, parcels, and
:mod:`.vector_realistic`, wiggly coverage): classes and their transitions, the jittered grid, the smooth class
fields, the GeoDataFrame of a millésime and the communes (its own module so that neither imports the other).
"""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import shapely

from inference_batch.synth.layout import COMMUNE_NAMES
from ocsge import schema

CELL_M = 120.0  # mean parcel side
CHANGE_FRACTION = 0.02
SPLIT_FRACTION = 0.005

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
