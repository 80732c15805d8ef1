"""Small generated OCS GE-like layers (vector only) for tests, examples and benchmarks.

A millésime is a Voronoi partition of the territory with spatially coherent (CS, US) pairs; the next
millésime changes the codes of some polygons and re-cuts others, as real updates do.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from ocsge import schema

# (code_cs, code_us, weight) — plausible pairs; urban ones dominate near the "towns".
URBAN_PAIRS = [("CS1.1.1.1", "US5", 5), ("CS1.1.1.2", "US4.1.1", 3), ("CS2.2.1", "US5", 3),
               ("CS1.1.1.1", "US3", 1), ("CS1.1.2.1", "US2", 1), ("CS2.1.1.1", "US5", 1)]
RURAL_PAIRS = [("CS2.2.1", "US1.1", 6), ("CS2.1.1.1", "US1.2", 3), ("CS2.1.1.2", "US1.2", 1),
               ("CS1.2.2", "US6.3", 1), ("CS2.1.2", "US6.3", 1), ("CS1.1.1.2", "US4.1.1", 1)]


def _pick(rng: np.random.Generator, pairs: list[tuple[str, str, int]], n: int) -> tuple[np.ndarray, np.ndarray]:
    w = np.array([p[2] for p in pairs], dtype=float)
    k = rng.choice(len(pairs), size=n, p=w / w.sum())
    return np.array([p[0] for p in pairs])[k], np.array([p[1] for p in pairs])[k]


def partition(n: int, bounds: tuple[float, float, float, float] = (700_000, 6_600_000, 710_000, 6_610_000),
              *, millesime: int = 2021, seed: int = 0, densify: float | None = None,
              crs: int = 2154) -> gpd.GeoDataFrame:
    """A partition of ``bounds`` into about ``n`` polygons with OCS GE codes."""
    rng = np.random.default_rng(seed)
    xmin, ymin, xmax, ymax = bounds
    pts = shapely.points(rng.uniform(xmin, xmax, n), rng.uniform(ymin, ymax, n))
    frame = shapely.box(*bounds)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=frame))
    cells = shapely.intersection(cells, frame)
    cells = cells[shapely.area(cells) > 0]
    if densify:
        cells = shapely.segmentize(cells, densify)
    c = shapely.centroid(cells)
    cx, cy = shapely.get_x(c), shapely.get_y(c)
    towns = rng.uniform([xmin, ymin], [xmax, ymax], size=(max(1, n // 20_000 + 2), 2))
    radius = 0.12 * min(xmax - xmin, ymax - ymin)
    d = np.min(np.hypot(cx[:, None] - towns[:, 0], cy[:, None] - towns[:, 1]), axis=1)
    urban = rng.random(len(cells)) < np.exp(-((d / radius) ** 2))
    cs = np.empty(len(cells), dtype=object)
    us = np.empty(len(cells), dtype=object)
    cs[urban], us[urban] = _pick(rng, URBAN_PAIRS, int(urban.sum()))
    cs[~urban], us[~urban] = _pick(rng, RURAL_PAIRS, int((~urban).sum()))
    return gpd.GeoDataFrame(
        {schema.ID: [f"OCS_{millesime}_{i:07d}" for i in range(len(cells))], schema.CODE_CS: cs,
         schema.CODE_US: us, schema.MILLESIME: millesime, schema.SOURCE: "synthetic"},
        geometry=cells, crs=crs,
    )


def evolve(previous: gpd.GeoDataFrame, millesime: int, *, change: float = 0.04, split: float = 0.03,
           seed: int = 1) -> gpd.GeoDataFrame:
    """The next millésime: a share of polygons change codes (mostly towards built-up), another share
    is cut in two by a line through its centroid, one half keeping the old codes."""
    rng = np.random.default_rng(seed)
    out = previous.copy()
    n = len(out)
    cs = out[schema.CODE_CS].to_numpy(dtype=object).copy()
    us = out[schema.CODE_US].to_numpy(dtype=object).copy()
    changed = rng.random(n) < change
    new_cs, new_us = _pick(rng, URBAN_PAIRS, int(changed.sum()))
    cs[changed], us[changed] = new_cs, new_us
    out[schema.CODE_CS], out[schema.CODE_US] = cs, us
    geoms = out.geometry.to_numpy()
    cut = np.flatnonzero((rng.random(n) < split) & ~changed)
    extra = []
    if len(cut):
        cen = shapely.centroid(geoms[cut])
        b = shapely.bounds(geoms[cut])
        angle = rng.uniform(0, np.pi, len(cut))
        half = np.hypot(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) + 1
        x, y = shapely.get_x(cen), shapely.get_y(cen)
        dx, dy = np.cos(angle) * half, np.sin(angle) * half
        # half-planes on one side of the cutting line
        side = shapely.polygons(np.stack([
            np.column_stack([x - dx, y - dy]), np.column_stack([x + dx, y + dy]),
            np.column_stack([x + dx - dy * 2, y + dy + dx * 2]), np.column_stack([x - dx - dy * 2, y - dy + dx * 2]),
            np.column_stack([x - dx, y - dy])], axis=1))
        first = shapely.intersection(geoms[cut], side)
        second = shapely.difference(geoms[cut], side)
        ok = (shapely.area(first) > 1) & (shapely.area(second) > 1)
        geoms = geoms.copy()
        geoms[cut[ok]] = first[ok]
        ncs, nus = _pick(rng, URBAN_PAIRS, int(ok.sum()))
        rows = out.iloc[cut[ok]].copy()
        rows[schema.CODE_CS], rows[schema.CODE_US] = ncs, nus
        rows = rows.set_geometry(gpd.GeoSeries(second[ok], crs=out.crs).to_numpy())
        extra.append(rows)
    out = out.set_geometry(gpd.GeoSeries(geoms, crs=out.crs).to_numpy())
    if extra:
        import pandas as pd

        out = gpd.GeoDataFrame(pd.concat([out, *extra], ignore_index=True), crs=previous.crs)
    out[schema.MILLESIME] = millesime
    out[schema.ID] = [f"OCS_{millesime}_{i:07d}" for i in range(len(out))]
    return out
