"""Département-sized pairs with realistic geometry (``ocsge synth --vector-only --realistic``): tens to
hundreds of vertices a polygon, boundaries shared exactly between neighbours, islands, and a second
millésime that changes as a real OCS GE update does.

The first millésime is the wiggly coverage of :mod:`inference_batch.synth.coverage` over the jittered
grid of :mod:`inference_batch.synth.vector_scale` (same classes, same ≈1.4 ha cells): natural
boundaries (woods, water, scrub) carry the most vertices, built-up ones the fewest, and ≈2 % of the
polygons are islands inside a host (ponds and clearings in woods, farms and ponds in fields), the host
holding the matching hole. Between the millésimes, as between two real ones, most polygons are
identical (same coordinates), and:

* ≈2 % of the cells change codes only (urbanisation, clear-cuts, completed sites…), of which ≈0.5 %
  of all cells are split in two along a new wiggly line, one half keeping the old codes;
* ≈0.3 % of the cells are merged with their eastern neighbour (a field absorbing the next one);
* the shared boundary of ≈0.5 % of the neighbour pairs is redrawn (both polygons reshaped);
* 5 % of the islands disappear (a pond filled, the host loses its hole), new ones appear in ≈0.2 % of
  the cells (new farm buildings, clearings).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely

from inference_batch.synth.coverage import AMPLITUDE, EdgeNet, assemble, draw_polylines, edge_net, island_rings
from ocsge.errors import OcsgeError

ISLAND_FRACTION = 0.02
MERGE_FRACTION = 0.003
RESHAPE_FRACTION = 0.005
ISLANDS_REMOVED = 0.05
NEW_ISLAND_FRACTION = 0.002
DEFAULT_VERTICES = "20-200"  # `ocsge synth --vector-only --realistic`
MIN_ISLAND_ROOM = 6.0  # m: a cell holds an island only with this much room around its centre
NATURAL = (1, 2, 3, 10, 11, 15, 16, 17)  # woods, water, scrub, mountain: the wiggliest boundaries
FARMED = (0, 9, 20)
ISLAND_HOSTS = {1: (10, 0), 2: (10, 0), 3: (10, 0), 0: (4, 10), 9: (4, 10), 11: (17, 17)}  # host → islands


def parse_vertices(value: str | tuple[int, int]) -> tuple[int, int]:
    """``"20-200"`` → (20, 200): the range of vertices per polygon of the realistic geometry."""
    if isinstance(value, tuple):
        lo, hi = value
    else:
        try:
            lo, hi = (int(v) for v in str(value).replace(" ", "").split("-"))
        except ValueError:
            raise OcsgeError(f"--vertices {value!r}: expected a range such as 20-200") from None
    if not 5 <= lo <= hi <= 5_000:
        raise OcsgeError(f"--vertices {value!r}: expected 5 ≤ min ≤ max ≤ 5000 vertices per polygon")
    return int(lo), int(hi)


def _roughness(cls: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    base = np.full(len(cls), 0.15)
    base[np.isin(cls, FARMED)] = 0.5
    base[np.isin(cls, NATURAL)] = 0.85
    return np.clip(base + rng.uniform(-0.15, 0.15, len(cls)), 0, 1)


def _island_room(net: EdgeNet, quads: np.ndarray, amplitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre of each cell and the radius free around it: the distance to the straight cell's boundary
    minus the largest offset of its wiggly edges."""
    centres = quads[:, :4].mean(axis=1)
    straight = shapely.polygons(quads)
    inner = shapely.distance(shapely.points(centres), shapely.boundary(straight))
    start, end = net.edge_ends()
    length = np.hypot(*(net.corners[end] - net.corners[start]).T)
    offset = (amplitude * length)[net.cell_edges(np.arange(len(quads)))].max(axis=1)
    return centres, inner - offset


def _split(coords: np.ndarray, p2: int, cut: np.ndarray) -> tuple[shapely.Polygon, shapely.Polygon] | None:
    """A cell's ring cut from its corner p0 (position 0) to its corner p2 (position ``p2``) along ``cut``
    (interior points from p0 to p2); None when a half would be invalid."""
    for line in (cut, cut[:0]):  # the wiggly cut, else the straight diagonal
        first = shapely.Polygon(np.concatenate([coords[: p2 + 1], line[::-1], coords[:1]]))
        second = shapely.Polygon(np.concatenate([coords[p2:], line, coords[p2 : p2 + 1]]))
        if first.is_valid and second.is_valid:
            return first, second
    return None


def build_realistic_pair(
    n_polygons: int,
    seed: int,
    dep_code: str,
    crs: str,
    years: tuple[int, int],
    origin: tuple[float, float],
    vertices: tuple[int, int],
) -> dict[str, Any]:
    """``{"truth": {year: GeoDataFrame}, "communes": GeoDataFrame, "summary": dict}`` as
    :func:`~inference_batch.synth.vector_scale.build_vector_pair`, with realistic geometry."""
    from inference_batch.synth.vector_grid import (
        CHANGE_FRACTION,
        SPLIT_FRACTION,
        TRANSITIONS,
        _classes,
        _communes,
        _frame,
        _grid,
        _quads,
    )

    vmin, vmax = vertices
    rng = np.random.default_rng([seed, 1789, 2])
    n_cells_wanted = round(n_polygons * (1 - ISLAND_FRACTION))
    nx = max(2, round(math.sqrt(n_cells_wanted * 1.25)))
    ny = max(2, n_cells_wanted // nx)
    x0, y0 = map(float, origin)
    gx, gy = _grid(nx, ny, x0, y0, rng)
    bounds = (x0, y0, float(gx[0, -1]), float(gy[-1, 0]))
    quads = _quads(gx, gy)
    n_cells = len(quads)
    cls1 = _classes(quads[:, :4, 0].mean(1), quads[:, :4, 1].mean(1), bounds, rng)
    # edges: as many interior points as the rougher of the two cells asks, log-spread over the range
    rough = _roughness(cls1, rng)
    topology = EdgeNet(
        nx,
        ny,
        np.column_stack([gx.ravel(), gy.ravel()]),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        np.zeros((0, 2)),
    )
    lo, hi = topology.edge_cells()
    interior = (lo >= 0) & (hi >= 0)
    q = np.where(interior, np.maximum(rough[np.maximum(lo, 0)], rough[np.maximum(hi, 0)]), 0)
    kmin, kmax = max(1.0, (vmin - 4) / 4), max(1.0, (vmax - 4) / 4)
    counts = np.where(interior, np.round(kmin * (kmax / kmin) ** q), 0).astype(np.int64)
    amplitude = np.where(interior, AMPLITUDE * rng.uniform(0.4, 1.0, len(interior)), 0.0)
    net1 = edge_net(gx, gy, counts, amplitude, rng)
    # islands: the polygons the grid lacks, each in a host cell with room for it
    n_islands = n_polygons - n_cells
    centres, room = _island_room(net1, quads, amplitude)
    eligible = np.flatnonzero(np.isin(cls1, list(ISLAND_HOSTS)) & (room > MIN_ISLAND_ROOM))
    if len(eligible) < n_islands:
        raise OcsgeError(f"--polygons {n_polygons}: too few cells to hold {n_islands} islands")
    hosts = np.sort(rng.choice(eligible, size=n_islands, replace=False))

    def islands_in(cells: np.ndarray, kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        radius = rng.uniform(0.3, 0.6, len(cells)) * room[cells] / 1.3
        k = np.round(12 + (kmax * 2) * rough[cells]).astype(np.int64)
        return island_rings(centres[cells], radius, k, rng), kinds

    choice = rng.integers(0, 2, n_islands)
    isl_cls = np.array([ISLAND_HOSTS[int(c)][j] for c, j in zip(cls1[hosts], choice, strict=True)], np.int16)
    isl_rings, isl_cls = islands_in(hosts, isl_cls)
    cells = np.arange(n_cells)
    geoms1 = np.concatenate(
        [assemble(net1.rings(cells), dict(zip(hosts.tolist(), isl_rings, strict=True))), shapely.polygons(isl_rings)]
    )
    ids = np.char.add(f"OCS{dep_code}_", np.char.zfill(np.arange(n_polygons).astype(str), 8))
    truth1 = _frame(ids, np.concatenate([cls1, isl_cls]), geoms1, years[0], crs)

    # --- second millésime ------------------------------------------------------------------------------
    is_host = np.zeros(n_cells, bool)
    is_host[hosts] = True
    cls2 = cls1.copy()
    candidates = np.flatnonzero(np.isin(cls1, list(TRANSITIONS)))
    changed = np.sort(
        rng.choice(candidates, size=min(len(candidates), int(n_polygons * CHANGE_FRACTION)), replace=False)
    )
    for i, c in zip(changed, cls1[changed], strict=True):
        targets, probs = zip(*TRANSITIONS[int(c)], strict=True)
        cls2[i] = targets[int(rng.choice(len(targets), p=np.array(probs) / sum(probs)))]
    is_changed = np.zeros(n_cells, bool)
    is_changed[changed] = True
    splittable = changed[~is_host[changed]]
    split = np.sort(rng.choice(splittable, size=min(len(splittable), int(n_polygons * SPLIT_FRACTION)), replace=False))
    col = cells % nx
    mergeable = np.flatnonzero((col % 2 == 0) & (col < nx - 1))
    mergeable = mergeable[
        ~is_changed[mergeable] & ~is_changed[mergeable + 1] & ~is_host[mergeable] & ~is_host[mergeable + 1]
    ]
    left = np.sort(rng.choice(mergeable, size=min(len(mergeable), int(n_polygons * MERGE_FRACTION)), replace=False))
    in_pair = np.zeros(n_cells, bool)
    in_pair[split] = True
    in_pair[left] = in_pair[left + 1] = True
    # moved boundaries: interior edges away from the split and merged cells, same amplitude as before
    free_edge = np.flatnonzero(interior & ~in_pair[np.maximum(lo, 0)] & ~in_pair[np.maximum(hi, 0)])
    moved = np.sort(rng.choice(free_edge, size=min(len(free_edge), int(n_polygons * RESHAPE_FRACTION)), replace=False))
    net2 = net1.redrawn(moved, amplitude[moved], rng)
    reshaped = np.zeros(n_cells, bool)
    reshaped[lo[moved]] = reshaped[hi[moved]] = True
    # islands: some disappear, new ones appear in cells with room that keep their codes
    gone = np.sort(rng.choice(n_islands, size=int(n_islands * ISLANDS_REMOVED), replace=False))
    kept_island = np.ones(n_islands, bool)
    kept_island[gone] = False
    new_room = np.flatnonzero(
        np.isin(cls1, list(ISLAND_HOSTS)) & (room > MIN_ISLAND_ROOM) & ~is_host & ~in_pair & ~is_changed
    )
    new_hosts = np.sort(
        rng.choice(new_room, size=min(len(new_room), int(n_polygons * NEW_ISLAND_FRACTION)), replace=False)
    )
    new_cls = np.array([ISLAND_HOSTS[int(c)][0] if c != 11 else 17 for c in cls1[new_hosts]], np.int16)
    new_rings, new_cls = islands_in(new_hosts, new_cls)
    holes2 = {int(h): r for h, r, k in zip(hosts, isl_rings, kept_island, strict=True) if k}
    holes2.update(zip(new_hosts.tolist(), new_rings, strict=True))
    hole_changed = np.zeros(n_cells, bool)
    hole_changed[hosts[gone]] = hole_changed[new_hosts] = True
    # the cells as they are (codes maybe changed, shape maybe moved), then split halves and merged pairs
    plain = cells[~in_pair]
    plain_geoms = assemble(net2.rings(plain), {int(np.searchsorted(plain, h)): r for h, r in holes2.items()})
    ids_cells = ids[:n_cells]
    suffix = np.where(is_changed, "m", np.where(reshaped | hole_changed, "r", ""))
    plain_ids = np.char.add(ids_cells[plain], suffix[plain])
    extra_geoms: list[shapely.Polygon] = []
    extra_ids: list[str] = []
    extra_cls: list[int] = []
    k_edges = net2.counts[net2.cell_edges(split)] if len(split) else np.zeros((0, 4), np.int64)
    corners = net2.cell_corners(split) if len(split) else np.zeros((0, 4), np.int64)
    cut_counts = np.maximum(2, (k_edges[:, 0] + k_edges[:, 1]) // 2)
    cuts = draw_polylines(
        net2.corners[corners[:, 0]], net2.corners[corners[:, 2]], cut_counts, np.full(len(split), AMPLITUDE / 2), rng
    )
    cut_start = np.cumsum(cut_counts) - cut_counts
    unsplit: list[int] = []
    changed_area = shapely.area(geoms1[:n_cells])
    for j, cell in enumerate(split):
        coords = net2.ring_coords(int(cell))
        halves = _split(
            coords, int(k_edges[j, 0] + k_edges[j, 1] + 2), cuts[cut_start[j] : cut_start[j] + cut_counts[j]]
        )
        if halves is None:  # rare: neither cut fits; the cell changes codes whole
            unsplit.append(j)
            extra_geoms.append(shapely.Polygon(coords))
            extra_ids.append(f"{ids_cells[cell]}m")
            extra_cls.append(int(cls2[cell]))
            continue
        extra_geoms.extend(halves)
        changed_area[cell] = halves[1].area  # the half with the new codes
        extra_ids.extend([f"{ids_cells[cell]}a", f"{ids_cells[cell]}b"])
        extra_cls.extend([int(cls1[cell]), int(cls2[cell])])
    for cell in left:
        a, b = net2.ring_coords(int(cell)), net2.ring_coords(int(cell) + 1)
        ka, kb = net2.counts[net2.cell_edges(np.array([cell, cell + 1]))]
        p1, p2 = ka[0] + 1, ka[0] + ka[1] + 2
        q3 = kb[0] + kb[1] + kb[2] + 3
        extra_geoms.append(shapely.Polygon(np.concatenate([a[: p1 + 1], b[1 : q3 + 1], a[p2 + 1 :]])))
        extra_ids.append(f"{ids_cells[cell]}u")
        extra_cls.append(int(cls1[cell]))
    isl_ids = ids[n_cells:]
    new_ids = np.char.add(f"OCS{dep_code}_N", np.char.zfill(np.arange(len(new_hosts)).astype(str), 7))
    geoms2 = np.concatenate(
        [
            plain_geoms,
            np.array(extra_geoms, dtype=object),
            shapely.polygons(isl_rings[kept_island]),
            shapely.polygons(new_rings),
        ]
    )
    ids2 = np.concatenate([plain_ids, np.array(extra_ids, dtype=str).reshape(-1), isl_ids[kept_island], new_ids])
    cls_2 = np.concatenate([cls2[plain], np.array(extra_cls, np.int16), isl_cls[kept_island], new_cls])
    truth2 = _frame(ids2.astype(str), cls_2, geoms2, years[1], crs)
    # what changed, by id of the first millésime
    changed_before = is_changed | reshaped | hole_changed | in_pair
    gone_ids = isl_ids[gone]
    summary = {
        "mode": "vector_pair",
        "geometry": "realistic",
        "vertices": [vmin, vmax],
        "polygons": {str(years[0]): len(truth1), str(years[1]): len(truth2)},
        "bounds": [round(v, 2) for v in bounds],
        "vertices_per_polygon": _vertex_stats(geoms1),
        "islands": n_islands,
        "changed_cells": len(changed),
        "split_cells": len(split) - len(unsplit),
        "merged_pairs": len(left),
        "moved_boundaries": len(moved),
        "islands_removed": len(gone),
        "islands_added": len(new_hosts),
        "changed_fraction": round(len(changed) / n_polygons, 4),
        "transitions": _transitions(cls1[changed], cls2[changed], changed_area[changed]),
        "changed_ids_before": np.concatenate([ids_cells[changed_before], gone_ids]).tolist(),
    }
    communes = _communes(bounds, n_polygons, dep_code, crs, rng)
    return {"truth": {years[0]: truth1, years[1]: truth2}, "communes": communes, "summary": summary}


def _transitions(before: np.ndarray, after: np.ndarray, area: np.ndarray) -> list[dict[str, Any]]:
    """Changes of codes by transition (classes before and after of each changed cell, with the area
    that changed), sorted by codes."""
    from inference_batch.synth.vector_grid import CLASSES

    trans: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for b, a, m2 in zip(before, after, area, strict=True):
        entry = trans.setdefault((*CLASSES[int(b)], *CLASSES[int(a)]), {"polygons": 0, "area_m2": 0.0})
        entry["polygons"] += 1
        entry["area_m2"] += float(m2)
    return [
        {
            "cs_before": k[0],
            "us_before": k[1],
            "cs_after": k[2],
            "us_after": k[3],
            "polygons": int(v["polygons"]),
            "area_m2": round(v["area_m2"], 2),
        }
        for k, v in sorted(trans.items())
    ]


def _vertex_stats(geoms: np.ndarray) -> dict[str, float]:
    counts = shapely.get_num_coordinates(geoms) - 1 - shapely.get_num_interior_rings(geoms)
    return {
        "min": int(counts.min()),
        "median": float(np.median(counts)),
        "mean": round(float(counts.mean()), 1),
        "p90": float(np.percentile(counts, 90)),
        "max": int(counts.max()),
    }
