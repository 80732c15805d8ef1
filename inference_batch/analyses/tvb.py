"""Trame verte et bleue: ecological potential from the couverture and usage — reservoirs, barriers, a
resistance raster, least-cost corridors between reservoirs, and fragmentation per territory.

**Resistance** (cost of crossing a cell for terrestrial fauna; the scale 1…1000 is the one regional
SRCE cost-distance studies use, the values per class are our choice):

====================================================================  ======
forests, shrubs, other non-woody vegetation, bare natural soil, snow     1
herbaceous land (CS2.2.1) whose usage is neither agricultural nor artificial   3
vines and orchards (CS2.1.3)                                             5
herbaceous farmland (CS2.2.1 × US1.1)                                   10
water (CS1.2.2)                                                         20
other herbaceous land (gardens, verges), mineral and composite surfaces 30
sealed non-built surfaces (CS1.1.1.2)                                  100
built land (CS1.1.1.1), roads and railways (US4.1.1, US4.1.2)         1000
====================================================================  ======

**Reservoirs**: *green* = connected patches of the cost-1 and cost-3 classes of at least
``min_reservoir_m2`` (default 10 ha, our choice); *blue* = connected water surfaces of at least
``min_water_m2`` (default 1 ha). **Barriers** (fragmentation geometries after Jaeger 2000): built and
sealed land, roads and railways. **Corridors**: on the resistance raster (``cell`` m, default 50 m;
8-neighbour moves costing the mean resistance of both cells × the distance), a multi-source Dijkstra
from every reservoir cell gives each cell its nearest reservoir in cost; each pair of reservoirs whose
cost-zones touch gets the least-cost path through their meeting point (as Linkage Mapper's
least-cost links), with its cost and length. **Fragmentation**: effective mesh size
m_eff = Σ Aᵢ² / A (Jaeger 2000, "cutting-out" procedure) of the territory without its barriers, in ha.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from inference_batch.analyses.territories import load_groupements, territory_list, territory_outlines
from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import key, read_vector, step_outputs, write_table, write_vector
from inference_batch.products.ingest import required_communes_key
from inference_batch.products.inputs import layer_key, open_source
from inference_batch.products.spatial import polygonal
from inference_batch.products.stats import normalise_communes
from ocsge import schema
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import departement

NATURAL_CS = ("CS1.2.1", "CS1.2.3", "CS2.1.1.1", "CS2.1.1.2", "CS2.1.1.3", "CS2.1.2", "CS2.2.2")
ARTIFICIAL_US = ("US2", "US3", "US5", "US235", "US4.1.1", "US4.1.2", "US4.1.3", "US4.1.4", "US4.1.5", "US4.2",
                 "US4.3", "US6.1", "US6.2")
NETWORK_US = ("US4.1.1", "US4.1.2")
BARRIER = 1000.0


@dataclass(frozen=True)
class TvbParams:
    cell: float = 50.0  # m, resolution of the resistance raster and of the corridors
    min_reservoir_m2: float = 100_000.0
    min_water_m2: float = 10_000.0


def resistance(code_cs: pd.Series, code_us: pd.Series) -> np.ndarray:
    """Resistance of each polygon (see the module docstring)."""
    cs = code_cs.fillna("").astype(str).to_numpy()
    us = code_us.fillna("").astype(str).to_numpy()
    out = np.full(len(cs), 30.0)
    herb = cs == "CS2.2.1"
    out[np.isin(cs, NATURAL_CS)] = 1.0
    out[herb & ~np.isin(us, ARTIFICIAL_US) & (us != "US1.1")] = 3.0
    out[cs == "CS2.1.3"] = 5.0
    out[herb & (us == "US1.1")] = 10.0
    out[cs == "CS1.2.2"] = 20.0
    out[cs == "CS1.1.1.2"] = 100.0
    out[(cs == "CS1.1.1.1") | np.isin(us, NETWORK_US)] = BARRIER
    return out


def is_barrier(code_cs: pd.Series, code_us: pd.Series) -> np.ndarray:
    cs = code_cs.fillna("").astype(str)
    return (cs.isin(("CS1.1.1.1", "CS1.1.1.2")) | code_us.fillna("").astype(str).isin(NETWORK_US)).to_numpy()


def _patches(geoms: np.ndarray, min_area: float) -> np.ndarray:
    if len(geoms) == 0:
        return np.array([], dtype=object)
    parts = shapely.get_parts(polygonal(np.array([shapely.union_all(geoms)], dtype=object)))
    return parts[shapely.area(parts) >= min_area]


def reservoirs(layer: gpd.GeoDataFrame, params: TvbParams = TvbParams()) -> gpd.GeoDataFrame:
    """Green reservoirs (large contiguous semi-natural patches) and blue ones (water surfaces)."""
    cost = resistance(layer[schema.CODE_CS], layer[schema.CODE_US])
    geoms = layer.geometry.to_numpy()
    green = _patches(geoms[cost <= 3.0], params.min_reservoir_m2)
    blue = _patches(geoms[layer[schema.CODE_CS].astype(str).to_numpy() == "CS1.2.2"], params.min_water_m2)
    kinds = ["reservoir_vert"] * len(green) + ["reservoir_bleu"] * len(blue)
    allg = np.concatenate([green, blue]) if len(green) + len(blue) else np.array([], dtype=object)
    return gpd.GeoDataFrame({"id": [f"R{i + 1:04d}" for i in range(len(allg))], "nature": kinds,
                             "surface_ha": np.round(shapely.area(allg) / 1e4, 4) if len(allg) else []},
                            geometry=list(allg), crs=layer.crs)


@dataclass
class Raster:
    values: np.ndarray  # (rows, cols), top row first
    x0: float  # west edge
    y1: float  # north edge
    cell: float

    def centre(self, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.x0 + (c + 0.5) * self.cell, self.y1 - (r + 0.5) * self.cell

    @property
    def transform(self) -> Any:
        from rasterio.transform import from_origin

        return from_origin(self.x0, self.y1, self.cell, self.cell)


def rasterize(frame: gpd.GeoDataFrame, values: np.ndarray, cell: float, fill: float = 0.0) -> Raster:
    """Burn polygon values on a grid aligned on multiples of ``cell`` (cell centres decide)."""
    from rasterio.features import rasterize as burn

    b = frame.total_bounds
    x0, y0 = np.floor(b[0] / cell) * cell, np.floor(b[1] / cell) * cell
    x1, y1 = np.ceil(b[2] / cell) * cell, np.ceil(b[3] / cell) * cell
    shape = (round((y1 - y0) / cell), round((x1 - x0) / cell))
    r = Raster(np.full(shape, fill, dtype="float32"), x0, y1, cell)
    order = np.argsort(values, kind="stable")  # the highest resistance wins where polygons overlap
    shapes = ((g, float(v)) for g, v in zip(frame.geometry.to_numpy()[order], values[order], strict=True))
    r.values = burn(shapes, out_shape=shape, transform=r.transform, fill=fill, dtype="float32")
    return r


def corridors(cost: Raster, reservoir_frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Least-cost paths between reservoirs whose cost-zones touch (see the module docstring)."""
    empty = gpd.GeoDataFrame({"id": [], "nature": [], "reservoir_a": [], "reservoir_b": [], "cout": [],
                              "longueur_m": []}, geometry=[], crs=reservoir_frame.crs)
    if len(reservoir_frame) < 2:
        return empty
    from rasterio.features import rasterize as burn

    rows, cols = cost.values.shape
    labels = burn(((g, i + 1) for i, g in enumerate(reservoir_frame.geometry)), out_shape=(rows, cols),
                  transform=cost.transform, fill=0, dtype="int32")
    valid = cost.values > 0
    idx = np.arange(rows * cols).reshape(rows, cols)
    src, dst, w = [], [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        r1, c0, c1 = rows - dr, max(0, -dc), cols - max(0, dc)
        a = idx[0:r1, c0:c1]
        b = idx[dr:dr + r1, c0 + dc:c1 + dc]
        ok = valid.ravel()[a.ravel()] & valid.ravel()[b.ravel()]
        step_len = cost.cell * (np.sqrt(2.0) if dr and dc else 1.0)
        weight = (cost.values.ravel()[a.ravel()] + cost.values.ravel()[b.ravel()]) / 2 * step_len
        src.append(a.ravel()[ok])
        dst.append(b.ravel()[ok])
        w.append(weight[ok])
    s, d, ww = np.concatenate(src), np.concatenate(dst), np.concatenate(w)
    graph = coo_matrix((ww, (s, d)), shape=(rows * cols, rows * cols)).tocsr()
    sources = np.flatnonzero(labels.ravel() > 0)
    if len(sources) == 0:
        return empty
    dist, pred, origin = dijkstra(graph, directed=False, indices=sources, min_only=True, return_predecessors=True)
    lab = labels.ravel()
    zone = np.where(origin >= 0, lab[np.maximum(origin, 0)], 0)
    za, zb = zone[s], zone[d]
    meet = (za > 0) & (zb > 0) & (za != zb) & np.isfinite(dist[s]) & np.isfinite(dist[d])
    total = dist[s] + ww + dist[d]
    best: dict[tuple[int, int], tuple[float, int, int]] = {}
    for u, v, t, a, b in zip(s[meet], d[meet], total[meet], za[meet], zb[meet], strict=True):
        pair = (min(a, b), max(a, b))
        if pair not in best or t < best[pair][0]:
            best[pair] = (float(t), int(u) if a < b else int(v), int(v) if a < b else int(u))

    def back(node: int) -> list[int]:
        path = [node]
        while pred[path[-1]] >= 0:
            path.append(int(pred[path[-1]]))
        return path

    lines, rec = [], []
    for (a, b), (t, u, v) in sorted(best.items()):
        cells = back(u)[::-1] + back(v)
        r, c = np.divmod(np.array(cells), cols)
        x, y = cost.centre(r, c)
        line = shapely.linestrings(x, y) if len(cells) > 1 else shapely.Point(x[0], y[0]).buffer(cost.cell / 2)
        lines.append(line)
        rec.append({"id": f"C{len(rec) + 1:04d}", "nature": "corridor", "reservoir_a": reservoir_frame.id.iloc[a - 1],
                    "reservoir_b": reservoir_frame.id.iloc[b - 1], "cout": round(t, 1),
                    "longueur_m": round(float(shapely.length(line)), 1)})
    if not rec:
        return empty
    return gpd.GeoDataFrame(pd.DataFrame(rec), geometry=lines, crs=reservoir_frame.crs)


def effective_mesh(territory: shapely.Geometry, barriers: shapely.Geometry | None) -> tuple[float, int]:
    """Effective mesh size (m²) of a territory cut by the barriers, and the number of patches."""
    area = shapely.area(territory)
    if area <= 0:
        return 0.0, 0
    free = shapely.difference(territory, barriers) if barriers is not None else territory
    parts = shapely.get_parts(polygonal(np.array([free], dtype=object)))
    parts = parts[~shapely.is_empty(parts)]
    sizes = shapely.area(parts)
    return float((sizes**2).sum() / area), int((sizes > 0).sum())


class _Clipped:
    """Polygons looked up near a territory (STR-tree), united there only: one commune never pays for the
    union of the whole département's barriers."""

    def __init__(self, geoms: np.ndarray) -> None:
        self.geoms = geoms
        self.tree = shapely.STRtree(geoms) if len(geoms) else None

    def near(self, territory: shapely.Geometry) -> shapely.Geometry | None:
        if self.tree is None:
            return None
        idx = self.tree.query(territory, predicate="intersects")
        return shapely.union_all(self.geoms[idx]) if len(idx) else None


def _share(territory: shapely.Geometry, other: shapely.Geometry | None) -> float:
    area = shapely.area(territory)
    if other is None or area <= 0:
        return 0.0
    return round(100 * shapely.area(shapely.intersection(territory, other)) / area, 2)


def fragmentation(layer: gpd.GeoDataFrame, communes: gpd.GeoDataFrame, groupements: pd.DataFrame | None,
                  dep: object, reservoir_frame: gpd.GeoDataFrame) -> pd.DataFrame:
    """Per territory: effective mesh size, patches, barrier and reservoir shares."""
    communes = normalise_communes(communes)
    barriers = _Clipped(layer.geometry.to_numpy()[is_barrier(layer[schema.CODE_CS], layer[schema.CODE_US])])
    res = _Clipped(reservoir_frame.geometry.to_numpy())
    out = territory_list(communes, groupements, dep)
    outlines = territory_outlines(communes, groupements, dep)
    rows = []
    for niveau, code in zip(out.niveau, out.territoire, strict=True):
        geom = outlines[(niveau, code)]
        near = barriers.near(geom)
        meff, patches = effective_mesh(geom, near)
        rows.append({"surface_ha": round(shapely.area(geom) / 1e4, 4), "maillage_effectif_ha": round(meff / 1e4, 4),
                     "fragments": patches, "barrieres_pct": _share(geom, near),
                     "reservoirs_pct": _share(geom, res.near(geom))})
    return pd.concat([out, pd.DataFrame(rows)], axis=1)


def run_tvb(storage: Storage, dep: object, millesimes: list[int], *, params: TvbParams = TvbParams(),
            groupements: str | Path | None = None, force: bool = False) -> dict[str, str]:
    """Step: per millésime, reservoirs and corridors (GeoParquet), the resistance raster (COG) and the
    fragmentation per territory (CSV)."""
    import rasterio

    from inference_batch.writers.cog import copy_to_cog

    d = departement(dep)
    keys: dict[str, str] = {}
    for year in sorted(millesimes):
        out = {p: key(p, d.code, year) for p in ("tvb", "tvb_resistance", "tvb_communes")}
        keys.update({f"{p}_{year}": k for p, k in out.items()})
        layer_k = layer_key(storage, d.code, year)
        ckey = required_communes_key(storage, d, year, "tvb")
        grp, grp_digest = load_groupements(storage, d.code, year, groupements)
        digest = fingerprint(storage, [layer_k, ckey], params={**asdict(params), "groupements": grp_digest})
        if not force and is_up_to_date(storage, out.values(), digest):
            continue
        step(f"tvb {d.code} {year}: reservoirs, resistance ({params.cell:g} m), corridors, fragmentation")
        with open_source(storage, layer_k, [schema.CODE_CS, schema.CODE_US]) as src:
            layer = pd.concat(list(src.iter_chunks()), ignore_index=True)
        layer = gpd.GeoDataFrame(layer, geometry="geometry", crs=src.crs)
        res = reservoirs(layer, params)
        cost = rasterize(layer, resistance(layer[schema.CODE_CS], layer[schema.CODE_US]), params.cell)
        links = corridors(cost, res)
        features = pd.concat([res, links], ignore_index=True)
        features = gpd.GeoDataFrame(features, geometry="geometry", crs=layer.crs)
        frag = fragmentation(layer, read_vector(storage, ckey), grp, d.code, res)
        with refreshing(storage, out.values(), digest), step_outputs(storage) as outputs:
            outputs.add(write_vector(storage, out["tvb"], features))
            with storage.writer(out["tvb_resistance"]) as tmp, contextlib.ExitStack() as stack:
                raw = Path(str(tmp) + ".raw.tif")
                stack.callback(lambda p=raw: p.unlink(missing_ok=True))
                with rasterio.open(raw, "w", driver="GTiff", width=cost.values.shape[1],
                                   height=cost.values.shape[0], count=1, dtype="float32", crs=layer.crs,
                                   transform=cost.transform, nodata=0.0) as dst:
                    dst.write(cost.values, 1)
                copy_to_cog(raw, tmp, resampling="AVERAGE")
            outputs.add(out["tvb_resistance"])
            outputs.add(write_table(storage, out["tvb_communes"], frag))
        done(f"tvb {d.code} {year}: {len(res)} reservoirs, {len(links)} corridors")
    return keys
