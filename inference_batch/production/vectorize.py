"""Vectorisation of a class raster: sieve to the OCS GE minimum mapping units, polygonise, stitch, simplify.

The raster (the prediction blocks of a département, or any class raster) is streamed block by block —
never whole in memory. Passes 1 and 3 work per block and pass 2 on a graph of a few hundred nodes per
block, so that they run as map and reduce jobs (:mod:`inference_batch.production.vectorize_stages`,
``ocsge vectorize --map-block/--reduce/--polygons-block/--assemble``) as well as in one process
(:func:`vectorize_mosaic`), with the same polygons:

0. **zone construite**: built pixels are marked on a coarse grid (``zc_res``, 5 m), closed by
   ``zc_radius`` (25 m: buildings less than 50 m apart are joined) and grown by ``zc_buffer`` (10 m) —
   our approximation of IGN's built-up envelope (:func:`envelope`), unless a zone construite is given —
   to decide which UMI applies where (a component is inside when most of its pixels are). A map job
   computes its block's part from a margin of its neighbours (:func:`zone_construite_window`, equal);
1. **components** (map, per block; numba kernels of :mod:`inference_batch.production.components`, one
   pass over the pixels): 4-connected same-class components as runs, with their area, class, width,
   share inside the zone construite and the length of the boundary they share with each neighbour;
   then the **sieve of the block's own components** (below). A component cut by an edge shared with
   another block is frozen there — never merged away, as its area and width are only known once the
   seams are joined — and may absorb small neighbours. The block keeps its runs relabelled to its
   groups (a few runs per row), the graph of its groups and the groups along its edges;
2. **sieving on the graph** (reduce): the groups of all blocks, joined across the seams (same class on
   both sides: one node), sieved again as a whole. The sieve, stepwise: thresholds 10 → 50 → 200 → 500
   → 2 500 m², each capped at the component's own UMI — 50 m² for built (CS1.1.1.1: built surfaces are
   captured from 50 m², and those under 200 m² are enlarged to 200 m² in pass 3), 500 m² inside the
   zone construite, 2 500 m² outside. A component under its threshold joins the neighbour it shares the
   longest boundary with (ties: the larger one; network corridors, which are exempt from the area units,
   only when there is no other neighbour); all small components of a round merge at once and a merged
   group takes the class of its largest member; rounds repeat until no component is under its
   threshold. Then the **width thresholds** of the capture rules: a component narrower than its width
   everywhere (the diameter of the widest disc inside it, from a chamfer distance transform; 10 m, 20 m
   under sylviculture usage, 5 m for sealed surfaces — roads; none for built surfaces and exempt
   networks) joins its neighbour the same way, and takes that neighbour's class (a hedge joins its
   field). Documented difference from one sieve of the whole raster's graph: near seams only, small
   components inside a block merge in its rounds before the seam-cut ones are sieved, so the order of
   merges there can differ (the result depends on the block size near block edges, nowhere else).
   Why not GDAL's sieve in one pass (ml-anchors §4.5): GDAL merges a small polygon only into a neighbour
   that is already above the threshold, so clusters of small polygons (a mosaic of 300 m² patches) are
   left as they are — 30 k polygons remained at 2 500 m² on 1 km² of real FLAIR output. Merging on the
   graph has no such dead end, and the increasing thresholds make specks join their immediate
   surroundings first (a hedge pixel joins the hedge, not the field beyond it). Class-specific UMIs are
   impossible with GDAL's class-agnostic sieve;
3. **polygons** (map, per block): the block's runs relabelled to the final regions; built regions of
   50–200 m² that the block holds whole, with the window they grow in, take the nearest non-built pixels
   around them up to 200 m² (:func:`enlarge_in_block`, on the runs); then the boundaries are traced
   (:func:`~inference_batch.production.components.trace_regions`: the pieces GDAL's polygoniser gives,
   with a vertex where a boundary turns, at junctions and along the block's edges — a noded coverage),
   without reading the raster again;
4. **assembly** (reduce): pieces of a region cut by block edges are joined by their seam edges
   (:mod:`inference_batch.production.seams`: the polygons tracing the whole raster in one block would give,
   vertex for vertex; GEOS's ``coverage_union_all`` only where the join cannot prove its input) so that no
   polygon is cut by a block edge; the few small buildings near a block edge are enlarged on the
   polygons (:func:`enlarge_built`, the same pixels) and the polygons they touch renoded; the whole
   coverage is then simplified with ``shapely.coverage_simplify`` (shared edges simplified once: no gaps,
   no overlaps), its one-pixel staircases straightened first when the tolerance is a pixel or more
   (:mod:`inference_batch.production.staircases`: the same way on both sides of every shared boundary, a
   quarter fewer vertices for GEOS on real predictions; the simplified polygons then differ from those
   simplified without it by the order Visvalingam–Whyatt removes vertices in, 0.12 % of the area on the 50
   real FLAIR predictions, each polygon still within the tolerance of its pixels). Documented differences
   from the earlier one-vertex-per-corner polygons: none before the simplification; after it, 0.5 m
   simplification of the same boundaries given with fewer collinear vertices differs by ties in the
   Visvalingam–Whyatt order (0.02–0.05 % of the area on the real FLAIR predictions); buildings enlarged
   in a block are processed before those near block edges, so two small buildings competing for the same
   pixels across that line may share them differently.

Nodata (0) is never sieved and never absorbs anything; a small component surrounded only by nodata is
kept. Output: canonical GeoParquet (``id, code_cs, code_us, millesime, source, geometry``), ``source``
= ``"auto:model"``, ``code_us`` empty (usage comes with :mod:`inference_batch.production.rules`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import shapes
from rasterio.windows import Window

from inference_batch.production.components import (
    BlockRuns,
    block_components,
    choose_neighbours,
    coarse_window,
    connected_labels,
    contract_graph,
    edt_squared,
    inside_counts,
    label_boxes,
    mark_built,
    override_runs,
    paint_window,
    relabel_runs,
    trace_polygons,
    trace_regions,
)
from inference_batch.production.seams import Grid, corner_keys, sorted_in, stitch
from inference_batch.production.staircases import straighten_staircases
from ocsge.errors import OcsgeError
from ocsge.nomenclature import code_for_value, raster_value
from ocsge.progress import progress

BUILT = raster_value("couverture", "CS1.1.1.1")


@dataclass(frozen=True)
class UMI:
    """Minimum mapping units (m²) and the sieving schedule."""

    built: float = 200.0  # built components from ``built_min`` and under this are enlarged to it
    built_min: float = 50.0  # built components under this are sieved away
    inside_zc: float = 500.0
    outside_zc: float = 2500.0
    steps: tuple[float, ...] = (10.0, 50.0, 200.0, 500.0, 2500.0)
    zc_res: float = 5.0  # m, grid of the zone construite
    zc_radius: float = 25.0  # m, closing radius of built pixels (joins buildings less than 50 m apart)
    zc_buffer: float = 10.0  # m, margin around the closed built area (gardens, yards, streets)
    built_values: tuple[int, ...] = (BUILT,)  # raster values that are "zones bâties" (codes of built combinations)
    exempt_values: tuple[int, ...] = ()  # values never sieved (networks, ruled by their width, not their area)
    # width thresholds (m): a component narrower than its width everywhere (its widest inscribed square,
    # from the distance transform) joins a neighbour, as one under its area unit does. Built surfaces and
    # exempt values have none (``width_of``); ``widths`` overrides the default per value (20 m for
    # sylviculture usage in the rules' codes, 5 m for sealed non-built surfaces — roads — in a prediction)
    width: float = 10.0
    widths: tuple[tuple[int, float], ...] = ((raster_value("couverture", "CS1.1.1.2"), 5.0),)


# --- input: a class raster in blocks ------------------------------------------------------------------


@dataclass(frozen=True)
class RasterBlock:
    row_off: int
    col_off: int
    height: int
    width: int
    read: Callable[[], np.ndarray]
    # (row, col, height, width) inside the block → that part only; a map job reads the margins of its
    # neighbours with it (zone construite). Default: read the block and cut.
    read_part: Callable[[int, int, int, int], np.ndarray] | None = None

    def read_window(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        if self.read_part is not None:
            return self.read_part(row, col, height, width)
        return self.read()[row : row + height, col : col + width]


@dataclass
class Mosaic:
    """A class raster (uint8 or uint16 codes, 0 = nodata) on one grid, as blocks that tile it without overlap."""

    crs: CRS
    transform: Affine
    width: int
    height: int
    blocks: list[RasterBlock]

    @property
    def res(self) -> float:
        return abs(self.transform.a)

    def __post_init__(self) -> None:
        covered = sum(b.height * b.width for b in self.blocks)
        if covered != self.width * self.height:
            raise OcsgeError(
                f"the blocks cover {covered} px of a {self.width} × {self.height} grid: some blocks are missing "
                "or overlap (predict every block first)"
            )
        self.blocks = sorted(self.blocks, key=lambda b: (b.row_off, b.col_off))

    @classmethod
    def from_array(cls, array: np.ndarray, transform: Affine, crs: CRS | str, block_size: int) -> Mosaic:
        h, w = array.shape
        blocks = [
            RasterBlock(
                r,
                c,
                min(block_size, h - r),
                min(block_size, w - c),
                (lambda r=r, c=c: array[r : r + block_size, c : c + block_size]),
            )
            for r in range(0, h, block_size)
            for c in range(0, w, block_size)
        ]
        return cls(CRS.from_user_input(crs), transform, w, h, blocks)

    @classmethod
    def from_raster(cls, path: str, block_size: int = 8192) -> Mosaic:
        with rasterio.open(path) as src:
            if src.count != 1 or src.dtypes[0] != "uint8":
                raise OcsgeError(f"{path}: a class raster must be one uint8 band, got {src.count} × {src.dtypes[0]}")
            crs, transform, w, h = src.crs, src.transform, src.width, src.height

        def reader(win: Window) -> Callable[[], np.ndarray]:
            def read() -> np.ndarray:
                with rasterio.open(path) as src:
                    return src.read(1, window=win)

            return read

        def part_reader(r: int, c: int) -> Callable[[int, int, int, int], np.ndarray]:
            def read_part(row: int, col: int, height: int, width: int) -> np.ndarray:
                with rasterio.open(path) as src:
                    return src.read(1, window=Window(c + col, r + row, width, height))

            return read_part

        blocks = [
            RasterBlock(
                r,
                c,
                min(block_size, h - r),
                min(block_size, w - c),
                reader(Window(c, r, min(block_size, w - c), min(block_size, h - r))),
                part_reader(r, c),
            )
            for r in range(0, h, block_size)
            for c in range(0, w, block_size)
        ]
        return cls(crs, transform, w, h, blocks)

    @classmethod
    def from_block_files(cls, paths: Sequence[str]) -> Mosaic:
        """Prediction block COGs (their tags give the offset in the département grid)."""
        if not paths:
            raise OcsgeError("no prediction blocks to vectorise")
        blocks, grid = [], None
        for path in paths:
            with rasterio.open(path) as src:
                tags = src.tags()
                try:
                    r, c = (int(v) for v in tags["OCSGE_BLOCK_OFFSET"].split(","))
                    gw, gh = (int(v) for v in tags["OCSGE_GRID"].split(","))
                except (KeyError, ValueError):
                    msg = f"{path} is not a prediction block (no OCSGE_BLOCK_OFFSET/OCSGE_GRID tags)"
                    raise OcsgeError(msg) from None
                origin = src.transform @ Affine.translation(-c, -r)
                this = (src.crs, origin, gw, gh)
                if grid is None:
                    grid = this
                elif this[0] != grid[0] or this[2:] != grid[2:] or not origin.almost_equals(grid[1], 1e-6):
                    raise OcsgeError(f"{path} belongs to another grid than {paths[0]}")

                def read(path: str = path) -> np.ndarray:
                    with rasterio.open(path) as s:
                        return s.read(1)

                def read_part(row: int, col: int, height: int, width: int, path: str = path) -> np.ndarray:
                    with rasterio.open(path) as s:
                        return s.read(1, window=Window(col, row, width, height))

                blocks.append(RasterBlock(r, c, src.height, src.width, read, read_part))
        assert grid is not None
        return cls(grid[0], grid[1], grid[2], grid[3], blocks)


# --- pass 0: zone construite -------------------------------------------------------------------------


def zc_cell(mosaic: Mosaic, umi: UMI) -> int:
    """The side (px) of a cell of the coarse zone construite grid."""
    return max(1, round(umi.zc_res / mosaic.res))


def zone_construite_mask(
    mosaic: Mosaic, umi: UMI, advance: Callable[..., None] | None = None, first: list[np.ndarray] | None = None
) -> tuple[np.ndarray, int]:
    """Coarse boolean zone construite (``zc_res`` cells) from the built pixels, and the cell size in pixels.
    The blocks are read last to first, so that the pixels of the first one, which the next pass starts with,
    can be handed on (in ``first``) instead of read again."""
    k = zc_cell(mosaic, umi)
    built = np.zeros((math.ceil(mosaic.height / k), math.ceil(mosaic.width / k)), dtype=bool)
    data = None
    for b in reversed(mosaic.blocks):  # marking cells does not depend on the order
        data = b.read()
        mark_built(data, umi.built_values, b.row_off, b.col_off, k, built)
        if advance:
            advance(b.height * b.width)
    if first is not None and data is not None:
        first.append(data)
    del data
    return envelope(built, k * mosaic.res, umi), k


def zc_margin(umi: UMI, cell: float) -> int:
    """Coarse cells around a block whose built pixels can change its zone construite: the closing reaches
    ``2 · zc_radius + zc_buffer`` (dilation by radius + buffer, then erosion by radius)."""
    return math.ceil((2 * umi.zc_radius + umi.zc_buffer) / cell) + 2


def zone_construite_window(mosaic: Mosaic, block: RasterBlock, umi: UMI) -> tuple[np.ndarray, int]:
    """The zone construite of one block's coarse cells, from the built pixels of the block and of a margin
    around it (``zc_margin``) only — equal to the same cells of :func:`zone_construite_mask`, so that a
    map job needs no global pass. Returns the coarse cells of ``coarse_window(block)`` and k."""
    k = zc_cell(mosaic, umi)
    ch, cw = math.ceil(mosaic.height / k), math.ceil(mosaic.width / k)
    r0, c0, rows, cols = coarse_window(block.row_off, block.col_off, block.height, block.width, k)
    m = zc_margin(umi, k * mosaic.res)
    wr0, wc0 = max(0, r0 - m), max(0, c0 - m)
    wr1, wc1 = min(ch, r0 + rows + m), min(cw, c0 + cols + m)
    built = np.zeros((wr1 - wr0, wc1 - wc0), dtype=bool)
    py0, px0, py1, px1 = wr0 * k, wc0 * k, min(mosaic.height, wr1 * k), min(mosaic.width, wc1 * k)
    for b in mosaic.blocks:
        y0, x0 = max(py0, b.row_off), max(px0, b.col_off)
        y1, x1 = min(py1, b.row_off + b.height), min(px1, b.col_off + b.width)
        if y0 >= y1 or x0 >= x1:
            continue
        data = b.read_window(y0 - b.row_off, x0 - b.col_off, y1 - y0, x1 - x0)
        mark_built(data, umi.built_values, y0, x0, k, built, wr0, wc0)
    zone = envelope(built, k * mosaic.res, umi)
    return zone[r0 - wr0 : r0 - wr0 + rows, c0 - wc0 : c0 - wc0 + cols], k


def envelope(built: np.ndarray, cell: float, umi: UMI) -> np.ndarray:
    """The built-up envelope on a coarse grid of ``cell`` metres: the cells holding built surface, closed
    by ``zc_radius`` (built surfaces less than twice that apart are joined) and grown by ``zc_buffer``.
    The one envelope of the auto chain: it sets the UMI (500 m² inside, 2 500 m² outside), gives yards and
    gardens the usage of their buildings (``rules``) and is written as the auto millésime's zone
    construite."""
    if not built.any():
        return built
    # closing by zc_radius, grown by zc_buffer: dilate by radius + buffer, erode by radius
    dilated = np.sqrt(edt_squared(built)) <= (umi.zc_radius + umi.zc_buffer) / cell
    if dilated.all():  # nothing to erode from: no background to measure to
        return dilated
    zone = np.sqrt(edt_squared(~dilated)) > umi.zc_radius / cell
    return zone | built


def envelope_polygons(zone: np.ndarray, transform: Affine) -> list[shapely.Geometry]:
    """The coarse envelope as polygons (``transform``: the coarse grid's)."""
    if not zone.any():
        return []
    found = [
        shapely.geometry.shape(g)
        for g, _ in shapes(zone.astype(np.uint8), mask=zone, connectivity=4, transform=transform)
    ]
    return list(shapely.get_parts(shapely.union_all(found)))


def zc_from_vectors(mosaic: Mosaic, geometries: Sequence[shapely.Geometry], umi: UMI) -> tuple[np.ndarray, int]:
    """Coarse zone construite rasterised from a given layer (e.g. IGN's ZONE_CONSTRUITE)."""
    from rasterio.features import rasterize

    k = zc_cell(mosaic, umi)
    shape = (math.ceil(mosaic.height / k), math.ceil(mosaic.width / k))
    if not len(geometries):
        return np.zeros(shape, dtype=bool), k
    t = mosaic.transform @ Affine.scale(k)
    return rasterize(((g, 1) for g in geometries), out_shape=shape, transform=t, dtype="uint8").astype(bool), k


def zc_from_vectors_window(
    mosaic: Mosaic, block: RasterBlock, geometries: Sequence[shapely.Geometry], umi: UMI
) -> tuple[np.ndarray, int]:
    """The cells of ``coarse_window(block)`` of :func:`zc_from_vectors` (a map job rasterises its part only)."""
    from rasterio.features import rasterize

    k = zc_cell(mosaic, umi)
    r0, c0, rows, cols = coarse_window(block.row_off, block.col_off, block.height, block.width, k)
    if not len(geometries):
        return np.zeros((rows, cols), dtype=bool), k
    t = mosaic.transform @ Affine.scale(k) @ Affine.translation(c0, r0)
    burnt = rasterize(((g, 1) for g in geometries), out_shape=(rows, cols), transform=t, dtype="uint8")
    return burnt.astype(bool), k


# --- the graph and its sieve --------------------------------------------------------------------------


def _edge_keys(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    return (lo << 32) | hi


@dataclass
class Graph:
    """Region adjacency graph: node attributes and undirected edges with shared boundary lengths (px).
    ``frozen`` nodes (cut by a block edge, during a block's local sieve) are never merged away, as their
    area and width are not known yet; they may absorb small neighbours."""

    cls: np.ndarray  # uint16 raster values
    area: np.ndarray  # int64, px
    zc: np.ndarray  # float64, px inside the zone construite
    wide: np.ndarray | None = None  # float64, px: diameter of the widest disc inside the component
    eu: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ev: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    elen: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    frozen: np.ndarray | None = None  # bool

    @property
    def n(self) -> int:
        return len(self.cls)

    def movable(self) -> np.ndarray:
        """Nodes that may be merged away: data, not frozen."""
        ok = self.cls != 0
        return ok if self.frozen is None else ok & ~self.frozen


def _aggregate_edges(keys: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not len(keys):
        z = np.zeros(0, np.int64)
        return z, z, z
    order = np.argsort(keys, kind="stable")
    keys, lengths = keys[order], lengths[order]
    starts = np.concatenate([[0], np.nonzero(np.diff(keys))[0] + 1])
    uk = keys[starts]
    return uk >> 32, uk & 0xFFFFFFFF, np.add.reduceat(lengths, starts)


def _components(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Node → component id (0…m-1) of the graph with edges (u, v)."""
    if n == 0:
        return np.zeros(0, np.int64)
    if not len(u):
        return np.arange(n, dtype=np.int64)
    return connected_labels(n, u, v)


def contract(graph: Graph, mapping: np.ndarray, cls_rule: str = "largest", weight: np.ndarray | None = None) -> Graph:
    """The graph whose nodes are the groups of ``mapping``; a group's class is its largest member's (by
    ``weight`` when given, else by area; ties: the lowest node) or, with ``cls_rule="first"``, its members'
    (they share it). A group's width is its widest member's. One numba pass
    (:func:`~inference_batch.production.components.contract_graph`: no sort of nodes or edges per round)."""
    key = None if cls_rule == "first" else (graph.area if weight is None else weight)
    cls, area, inside, wide, frozen, eu, ev, elen = contract_graph(
        mapping, graph.cls, graph.area, graph.zc, graph.wide, graph.frozen, graph.eu, graph.ev, graph.elen, key
    )
    return Graph(cls, area, inside, wide, eu, ev, elen, frozen)


def umi_px(graph: Graph, umi: UMI, pixel_area: float) -> np.ndarray:
    in_zc = graph.zc * 2 > graph.area
    m2 = np.where(np.isin(graph.cls, umi.built_values), umi.built_min, np.where(in_zc, umi.inside_zc, umi.outside_zc))
    if umi.exempt_values:
        m2 = np.where(np.isin(graph.cls, umi.exempt_values), 0.0, m2)
    return m2 / pixel_area


def width_px(graph: Graph, umi: UMI, pixel_area: float) -> np.ndarray:
    """Each node's width threshold in pixels (0: none — built surfaces, exempt values, nodata)."""
    lut = np.full(max(int(graph.cls.max()) + 1 if graph.n else 1, 1), umi.width)
    for value, metres in umi.widths:
        if value < len(lut):
            lut[value] = metres
    for value in (*umi.built_values, *umi.exempt_values, 0):
        if value < len(lut):
            lut[value] = 0.0
    return lut[graph.cls] / math.sqrt(pixel_area)


def _merge_round(
    graph: Graph, small: np.ndarray, umi: UMI, weight: np.ndarray | None = None, avoid_small: bool = True
) -> tuple[Graph, np.ndarray] | None:
    """Each ``small`` node joins its chosen neighbour (module docstring); None when none can."""
    best = choose_neighbours(
        graph.eu, graph.ev, graph.elen, small, graph.cls, graph.area, umi.exempt_values, avoid_small
    )
    src = np.flatnonzero(best >= 0)
    if not len(src):
        return None
    groups = _components(graph.n, src, best[src])
    return contract(graph, groups, weight=weight), groups


def sieve_graph(graph: Graph, umi: UMI, pixel_area: float, max_rounds: int = 200) -> tuple[Graph, np.ndarray]:
    """Merge components under their threshold, step by step, then those narrower than their width
    threshold (a narrow one takes the class of the wide neighbour it joins); returns the final graph and
    node → group. Frozen nodes are never merged away."""
    mapping = np.arange(graph.n, dtype=np.int64)
    for step in (*umi.steps, math.inf):
        for _ in range(max_rounds):
            limit = np.minimum(umi_px(graph, umi, pixel_area), step / pixel_area)
            small = (graph.area < limit) & graph.movable()
            if not small.any():
                break
            merged = _merge_round(graph, small, umi, avoid_small=False)
            if merged is None:
                break
            graph, groups = merged
            mapping = groups[mapping]
    if graph.wide is None or umi.width <= 0:
        return graph, mapping
    for _ in range(max_rounds):
        narrow = (graph.wide < width_px(graph, umi, pixel_area)) & graph.movable()
        if not narrow.any():
            break
        # the class of a merged group: its largest member that is wide enough
        merged = _merge_round(graph, narrow, umi, weight=np.where(narrow, 0, graph.area) + graph.area * 1e-9)
        if merged is None:
            break
        graph, groups = merged
        mapping = groups[mapping]
    return graph, mapping


def regions_of(graph: Graph) -> np.ndarray:
    """Group → region: adjacent groups of the same class form one polygon."""
    same = graph.cls[graph.eu] == graph.cls[graph.ev]
    return _components(graph.n, graph.eu[same], graph.ev[same])


# --- pass 1 (map): components of a block and its local sieve -----------------------------------------


@dataclass
class BlockGraph:
    """A block after pass 1: its runs relabelled to its groups (1…m, after the local sieve), the graph of
    its groups (0-based), the groups along its four edges (for the seams), which groups are cut by an edge
    shared with another block (frozen), and the number of components it had before sieving."""

    row_off: int
    col_off: int
    runs: BlockRuns
    graph: Graph
    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray
    components: int
    interior: int  # components not cut by a shared block edge

    @property
    def height(self) -> int:
        return self.runs.height

    @property
    def width(self) -> int:
        return self.runs.width


def map_block(
    mosaic: Mosaic, block: RasterBlock, zc: np.ndarray, k: int, umi: UMI, data: np.ndarray | None = None
) -> BlockGraph:
    """Pass 1 on one block: components, widths, zone construite share (``zc``: the coarse cells of
    ``coarse_window(block)``), then the sieve of the components that lie wholly inside the block.

    A component cut by an edge shared with another block is frozen: its area and width are only known once
    the seams are joined (:func:`reduce_blocks`), so it is never merged away here — it may absorb small
    neighbours. Small interior components therefore merge in this block's rounds, before the seam
    components are sieved in the reduce: near seams only, the order of merges can differ from a sieve of
    the whole graph at once (a documented difference). What remains — the groups of the block — is a few
    hundred nodes per block, so the reduce holds a graph bounded by the number of blocks, not of pixels.
    ``data``: the block's pixels when already read."""
    widest = max([umi.width, *(m for _, m in umi.widths)]) / mosaic.res  # the largest width rule, px
    data = block.read() if data is None else data
    bc = block_components(data, width_cap_px=widest)
    del data  # the pixels are dropped once the runs are made
    r0, c0, _, _ = coarse_window(block.row_off, block.col_off, block.height, block.width, k)
    inside = inside_counts(bc.runs, bc.n, zc, k, block.row_off - r0 * k, block.col_off - c0 * k)
    frozen = np.zeros(bc.n + 1, dtype=bool)
    if block.row_off > 0:
        frozen[bc.top] = True
    if block.row_off + block.height < mosaic.height:
        frozen[bc.bottom] = True
    if block.col_off > 0:
        frozen[bc.left] = True
    if block.col_off + block.width < mosaic.width:
        frozen[bc.right] = True
    frozen = frozen[1:]
    graph = Graph(bc.cls, bc.area, inside, bc.wide, bc.eu - 1, bc.ev - 1, bc.elen, frozen)
    sieved, groups = sieve_graph(graph, umi, mosaic.res**2)
    lut = np.concatenate([[0], groups + 1]).astype(np.int32)
    runs = relabel_runs(bc.runs, lut)
    return BlockGraph(
        block.row_off,
        block.col_off,
        runs,
        sieved,
        lut[bc.top],
        lut[bc.bottom],
        lut[bc.left],
        lut[bc.right],
        bc.n,
        int(bc.n - frozen.sum()),
    )


# --- pass 2 (reduce): seams, then the sieve of the whole graph ------------------------------------------


@dataclass
class Sieved:
    """The outcome of the reduce: for block i, its group g (1…m) is region ``block_region[i][g]`` − 1
    (0: nodata or a nodata region); each region's class and area (px)."""

    block_region: list[np.ndarray]
    region_cls: np.ndarray
    region_area: np.ndarray
    components: int


def _border(edge: np.ndarray, offset: int) -> np.ndarray:
    return np.where(edge > 0, edge.astype(np.int64) + offset - 1, -1)


def reduce_blocks(blocks: Sequence[BlockGraph], umi: UMI, pixel_area: float) -> Sieved:
    """Join the groups of all blocks across the seams (the same class on both sides of a block edge: one
    node; otherwise an edge with the seam's length), sieve the whole graph, and form the regions."""
    offsets = np.cumsum([0] + [b.graph.n for b in blocks])
    parts = [b.graph for b in blocks]
    cls = np.concatenate([g.cls for g in parts]) if parts else np.zeros(0, np.uint16)
    area = np.concatenate([g.area for g in parts]) if parts else np.zeros(0, np.int64)
    inside = np.concatenate([g.zc for g in parts]) if parts else np.zeros(0)
    wide = np.concatenate([g.wide for g in parts]) if parts else np.zeros(0)
    frozen = np.concatenate([g.frozen for g in parts]) if parts else np.zeros(0, bool)
    key_parts = [_edge_keys(g.eu + o, g.ev + o) for g, o in zip(parts, offsets, strict=False)]
    len_parts = [g.elen for g in parts]
    where = {(b.row_off, b.col_off): (b, int(o)) for b, o in zip(blocks, offsets, strict=False)}
    su, sv = [], []
    for b, o in zip(blocks, offsets, strict=False):
        right = where.get((b.row_off, b.col_off + b.width))
        below = where.get((b.row_off + b.height, b.col_off))
        if right is not None:
            su.append(_border(b.right, o))
            sv.append(_border(right[0].left, right[1]))
        if below is not None:
            su.append(_border(b.bottom, o))
            sv.append(_border(below[0].top, below[1]))
    union_u, union_v = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if su:
        u, v = np.concatenate(su), np.concatenate(sv)
        ok = (u >= 0) & (v >= 0)
        u, v = u[ok], v[ok]
        same = cls[u] == cls[v]
        union_u, union_v = u[same], v[same]
        keys = _edge_keys(u[~same], v[~same])
        if len(keys):
            uk, counts = np.unique(keys, return_counts=True)
            key_parts.append(uk)
            len_parts.append(counts.astype(np.int64))
    keys = np.concatenate(key_parts) if key_parts else np.zeros(0, np.int64)
    lengths = np.concatenate(len_parts) if len_parts else np.zeros(0, np.int64)
    graph = Graph(cls, area, inside, wide)
    graph.eu, graph.ev, graph.elen = _aggregate_edges(keys, lengths)
    to_node = _components(graph.n, union_u, union_v)
    # components of the whole raster: those inside a block, and the seam-cut ones once joined
    components = sum(b.interior for b in blocks) + len(np.unique(to_node[frozen]))
    sieved, to_group = sieve_graph(contract(graph, to_node, cls_rule="first"), umi, pixel_area)
    region = regions_of(sieved)
    n_regions = int(region.max()) + 1 if len(region) else 0
    region_cls = np.zeros(n_regions, dtype=np.uint16)
    region_cls[region] = sieved.cls
    region_area = np.bincount(region, weights=sieved.area, minlength=n_regions)
    group_region = region[to_group][to_node] + 1
    block_region = [
        np.concatenate([[0], group_region[offsets[i] : offsets[i + 1]]]).astype(np.int32) for i in range(len(blocks))
    ]
    return Sieved(block_region, region_cls, region_area, components)


# --- pass 3 (map): polygons of a block ------------------------------------------------------------------


@dataclass
class VectorizeReport:
    pixels: int = 0
    components: int = 0
    after_sieve: int = 0
    built_enlarged: int = 0
    polygons: int = 0
    seam_fallbacks: int = 0  # regions united by coverage_union_all: the seam join could not prove its pieces
    zone_construite: list[shapely.Geometry] = field(default_factory=list)  # map coordinates
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # CPU time of the process per stage
    _open: list[list[float]] = field(default_factory=list, repr=False)

    @property
    def mpx_per_s(self) -> float:
        total = sum(self.seconds.values())
        return self.pixels / 1e6 / total if total else 0.0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage (wall and CPU, added to what it already has); a stage timed inside another is
        taken out of the outer one, so that the stages add up to the whole."""
        inner = [0.0, 0.0]  # what the stages inside this one take
        self._open.append(inner)
        t, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self._open.pop()
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            self.seconds[name] = self.seconds.get(name, 0.0) + wall - inner[0]
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + cpu - inner[1]
            if self._open:
                self._open[-1][0] += wall
                self._open[-1][1] += cpu


def small_built(region_cls: np.ndarray, region_area: np.ndarray, umi: UMI, px_area: float) -> tuple[np.ndarray, int]:
    """Which regions are built surfaces of ``built_min`` to ``built`` m² (enlarged to ``built``), and the
    target area in pixels."""
    target = math.ceil(umi.built / px_area - 1e-9)
    built = np.isin(region_cls, umi.built_values)
    return built & (region_area * px_area >= umi.built_min) & (region_area < target), target


def _enlarge_margin(target: int) -> int:
    return math.ceil(math.sqrt(target)) + 2


def _take_nearest(window: np.ndarray, label: int, target: int, takeable: np.ndarray) -> np.ndarray | None:
    """The flat indices of the ``window`` pixels that region ``label`` takes to reach ``target`` pixels:
    the nearest to it (Euclidean distance transform; ties in raster order) whose label is ``takeable``
    (never nodata, never another built surface), ascending in raster order among equals; None when it
    already has enough.

    Looked for first in a band around the region's box just wide enough for what it needs (its box's
    perimeter times the band's width), a few times fewer pixels than the window: every pixel nearer to the
    region than the band's width lies in the band, so when the band holds ``need`` eligible pixels that near
    they are the ones the whole window gives (raster order in the band is the window's) — else the window."""
    own = window == label
    need = target - int(own.sum())
    if need <= 0:
        return None
    h, w = window.shape
    rows, cols = np.flatnonzero(own.any(axis=1)), np.flatnonzero(own.any(axis=0))
    if len(rows):
        band = 2 + math.ceil(1.5 * need / (2 * (rows[-1] - rows[0] + cols[-1] - cols[0] + 2)))
        r0, r1 = max(0, rows[0] - band), min(h, rows[-1] + 1 + band)
        c0, c1 = max(0, cols[0] - band), min(w, cols[-1] + 1 + band)
        if (r1 - r0) * (c1 - c0) < h * w:
            take = _nearest(window[r0:r1, c0:c1], own[r0:r1, c0:c1], need, takeable, band * band)
            if take is not None:
                ty, tx = np.divmod(take, c1 - c0)
                return (ty + r0) * w + tx + c0
    return _nearest(window, own, need, takeable, None)


def _nearest(
    window: np.ndarray, own: np.ndarray, need: int, takeable: np.ndarray, within: int | None
) -> np.ndarray | None:
    """The ``need`` eligible pixels of ``window`` nearest to ``own`` (all of them when fewer); with
    ``within`` (a squared distance), None unless ``need`` of them are that near."""
    eligible = (window > 0) & ~own & takeable[window]
    dist = edt_squared(own)  # squared: the same order, ties included
    cand = np.flatnonzero(eligible.ravel())
    d = dist.ravel()[cand]
    if within is not None and np.count_nonzero(d <= within) < need:
        return None
    if need >= len(cand):
        return cand
    # the `need` nearest, ties in raster order: a stable sort's first `need`, as a set, without sorting
    cut = np.partition(d, need - 1)[need - 1]
    nearer = d < cut
    at_cut = np.flatnonzero(d == cut)[: need - int(nearer.sum())]
    return np.concatenate([cand[nearer], cand[at_cut]])


def enlarge_in_block(
    merged: BlockRuns,
    candidates: np.ndarray,
    boxes: np.ndarray,
    region_cls: np.ndarray,
    umi: UMI,
    target: int,
    open_sides: tuple[bool, bool, bool, bool] = (False, False, False, False),
) -> tuple[BlockRuns, list[int]]:
    """Small built regions enlarged on the block's runs of region ids + 1 (``merged``): those of
    ``candidates`` (region ids, ascending; ``boxes``: their first and last rows and columns) whose window
    (their box and the margin :func:`enlarge_built` looks in) lies in the block, or beyond its
    ``open_sides`` (top, bottom, left, right: edges of the mosaic, nodata beyond) — the same pixels as
    :func:`enlarge_built` takes, without rasterising or cutting polygons, and without painting the block
    (only each window). Returns the runs with the pixels taken, and the regions enlarged here; the others
    are left to :func:`enlarge_built` in the assembly."""
    h, w = merged.height, merged.width
    margin = _enlarge_margin(target)
    takeable = np.concatenate([[False], ~np.isin(region_cls, umi.built_values)])
    top, bottom, left, right = open_sides
    rows, cols, labels = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int32)]
    done = []
    for rid, (r0, r1, c0, c1) in zip(candidates.tolist(), boxes.tolist(), strict=True):
        y0, y1, x0, x1 = r0 - margin, r1 + 1 + margin, c0 - margin, c1 + 1 + margin
        if (y0 < 0 and not top) or (y1 > h and not bottom) or (x0 < 0 and not left) or (x1 > w and not right):
            continue  # its window reaches another block
        window = paint_window(merged, y0, x0, y1 - y0, x1 - x0)  # nodata beyond the mosaic
        taken_r, taken_c, taken_l = (np.concatenate(v) for v in (rows, cols, labels))
        inside = (taken_r >= y0) & (taken_r < y1) & (taken_c >= x0) & (taken_c < x1)
        window[taken_r[inside] - y0, taken_c[inside] - x0] = taken_l[inside]  # what earlier ones took
        take = _take_nearest(window, rid + 1, target, takeable)
        if take is not None and len(take):
            ty, tx = np.divmod(take, x1 - x0)
            rows.append(ty + y0)
            cols.append(tx + x0)
            labels.append(np.full(len(take), rid + 1, np.int32))
        done.append(rid)
    if len(rows) > 1:
        merged = override_runs(merged, *(np.concatenate(v) for v in (rows, cols, labels)))
    return merged, done


def block_polygons(
    runs: BlockRuns,
    row_off: int,
    col_off: int,
    group_region: np.ndarray,
    region_cls: np.ndarray,
    region_area: np.ndarray | None = None,
    umi: UMI | None = None,
    px_area: float = 1.0,
    mosaic_shape: tuple[int, int] | None = None,
    report: VectorizeReport | None = None,
) -> tuple[list[tuple[int, shapely.Geometry]], list[int]]:
    """Pass 3 on one block: (region id, polygon piece) in pixel coordinates of the mosaic, traced from the
    runs relabelled to the final regions (:func:`~inference_batch.production.components.trace_regions`:
    the pieces ``rasterio.features.shapes`` would give, in a third of its time on few regions); and the
    small built regions enlarged here (with ``region_area`` and ``umi``: those the block holds whole,
    with the window they grow in, or beyond the edges of the mosaic (``mosaic_shape``: height, width) —
    :func:`enlarge_in_block`; the rest are enlarged in the assembly).

    Pixel coordinates are exact in floating point, and pieces have a vertex where their boundary turns,
    at every junction and at every pixel corner along the block's edges: GDAL's polygoniser puts no
    vertex at T-junctions, so its output is not a correctly noded coverage; here pieces from both sides
    of a seam and neighbouring polygons share their vertices exactly, which coverage union and coverage
    simplification require."""
    lut = np.where(region_cls[np.maximum(group_region - 1, 0)] != 0, group_region, 0).astype(np.int32)
    merged = relabel_runs(runs, lut)
    done: list[int] = []
    if region_area is not None and umi is not None:
        small, target = small_built(region_cls, region_area, umi, px_area)
        labels = np.unique(merged.label)
        candidates = labels[small[np.maximum(labels - 1, 0)] & (labels > 0)] - 1
        if len(candidates):
            boxes = label_boxes(merged, candidates + 1, len(region_cls) + 1)
            whole = boxes[:, 0] == region_area[candidates]  # all its pixels are in this block
            if whole.any():
                open_sides = (False, False, False, False)
                if mosaic_shape is not None:
                    mh, mw = mosaic_shape
                    h, w = merged.height, merged.width
                    open_sides = (row_off == 0, row_off + h >= mh, col_off == 0, col_off + w >= mw)
                cand, box = candidates[whole], boxes[whole, 1:]
                with report.stage("enlarge") if report is not None else nullcontext():
                    merged, done = enlarge_in_block(merged, cand, box, region_cls, umi, target, open_sides)
    polygons, values = trace_regions(merged, row_off, col_off)
    return list(zip((values - 1).tolist(), polygons, strict=True)), done


def _mask_polygon(mask: np.ndarray, x0: int, y0: int) -> shapely.Geometry:
    """The pixels of ``mask`` (placed at x0, y0) as one (multi)polygon, a vertex at every pixel corner."""
    found = block_components(mask.astype(np.uint8), widths=False)
    lut = (np.concatenate([[0], found.cls]) > 0).astype(np.int32)
    polygons, _ = trace_polygons(found.runs, lut, y0, x0, every_corner=True)
    return polygons[0] if len(polygons) == 1 else shapely.multipolygons(polygons)


def _xy_keys(xy: np.ndarray) -> np.ndarray:
    return corner_keys(xy[:, 0], xy[:, 1])


def _turns(ring: np.ndarray) -> np.ndarray:
    """The vertices of a closed ring (without its closing one) where it turns."""
    xy = ring[:-1]
    before, after = xy - np.roll(xy, 1, axis=0), np.roll(xy, -1, axis=0) - xy
    return before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0] != 0


def renode(
    geoms: list[shapely.Geometry],
    touched: np.ndarray,
    windows: list[tuple[int, int, int, int]],
    original: dict[int, np.ndarray],
) -> None:
    """Give the ``touched`` polygons (every polygon whose box meets the ``windows`` of the buildings
    :func:`enlarge_built` grew) the vertices of a correctly noded coverage again, in place: densified to
    every pixel corner, then thinned — inside the windows, to the corners where one of them turns (every
    junction is a turn of one of the polygons meeting there, and only touched polygons reach into a
    window); outside, to the vertices each had before (``original``: sorted keys), which matched its
    neighbours' and did not change there."""

    def inside(xy: np.ndarray) -> np.ndarray:
        out = np.zeros(len(xy), bool)
        for x0, y0, x1, y1 in windows:
            out |= (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        return out

    def densify(ring: np.ndarray) -> np.ndarray:
        """A vertex at every pixel corner of the (axis-parallel) edges that meet a window."""
        a, b = ring[:-1], ring[1:]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        hit = np.zeros(len(a), bool)
        for x0, y0, x1, y1 in windows:
            hit |= (hi[:, 0] >= x0) & (lo[:, 0] <= x1) & (hi[:, 1] >= y0) & (lo[:, 1] <= y1)
        count = np.where(hit, np.abs(b - a).sum(axis=1).astype(np.int64), 1)
        edge = np.repeat(np.arange(len(a)), count)
        step = np.arange(len(edge)) - np.repeat(np.cumsum(count) - count, count)
        xy = a[edge] + np.sign(b - a)[edge] * step[:, None]
        return np.vstack([xy, xy[:1]])

    parts = [
        [[densify(np.asarray(r.coords)) for r in (p.exterior, *p.interiors)] for p in shapely.get_parts(geoms[j])]
        for j in touched.tolist()
    ]

    turns = [[[_turns(r) for r in poly] for poly in polys] for polys in parts]
    nodes = [
        _xy_keys(r[:-1][t & inside(r[:-1])])
        for polys, tp in zip(parts, turns, strict=True)
        for poly, tr in zip(polys, tp, strict=True)
        for r, t in zip(poly, tr, strict=True)
    ]
    in_windows = np.unique(np.concatenate(nodes)) if nodes else np.zeros(0, np.int64)

    def thin(ring: np.ndarray, turn: np.ndarray, before: np.ndarray) -> np.ndarray:
        xy = ring[:-1]
        keys, win = _xy_keys(xy), inside(xy)
        keep = turn | np.where(win, sorted_in(keys, in_windows), sorted_in(keys, before))
        return np.vstack([xy[keep], xy[keep][:1]])

    for j, polys, tp in zip(touched.tolist(), parts, turns, strict=True):
        before = original[j]
        out = []
        for poly, tr in zip(polys, tp, strict=True):
            rings = [thin(r, t, before) for r, t in zip(poly, tr, strict=True)]
            out.append(shapely.Polygon(rings[0], rings[1:]))
        geoms[j] = out[0] if len(out) == 1 else shapely.MultiPolygon(out)


def enlarge_built(
    geoms: list[shapely.Geometry],
    values: np.ndarray,
    area_px: np.ndarray,
    umi: UMI,
    px_area: float,
    skip: np.ndarray | None = None,
) -> int:
    """Built regions of ``built_min`` to ``built`` m² grown to ``built`` m² (the OCS GE capture rule for
    isolated built surfaces of 50–200 m²), in place, on the pixel grid of the polygons (pixel coordinates);
    ``skip``: those already enlarged by the polygons step (:func:`enlarge_in_block`).

    The region takes the non-built pixels nearest to it (distance transform from its pixels), never
    nodata nor another built surface; the neighbours it takes them from lose exactly those pixels. All
    vertices stay on pixel corners and the polygons changed are renoded (:func:`renode`), so the result
    is still a noded coverage for ``coverage_simplify``. Returns the number of regions enlarged here."""
    from rasterio.features import rasterize

    built = np.isin(values, umi.built_values)
    small, target = small_built(values, area_px, umi, px_area)
    if skip is not None:
        small &= ~skip
    small = np.flatnonzero(small)
    if not len(small):
        return 0
    tree = shapely.STRtree(np.array(geoms, dtype=object))
    margin = _enlarge_margin(target)
    lost_by: dict[int, list[shapely.Geometry]] = {}  # neighbour → pixels it lost, taken off once at the end
    grown: list[int] = []
    windows: list[tuple[int, int, int, int]] = []
    original: dict[int, np.ndarray] = {}  # the vertices of every polygon near a grown building, before
    for i in small:
        x0, y0, x1, y1 = (round(v) for v in shapely.bounds(geoms[i]))
        x0, y0, x1, y1 = x0 - margin, y0 - margin, x1 + margin, y1 + margin
        near = tree.query(shapely.box(x0, y0, x1, y1))
        # with the buildings already enlarged into the window (the tree knows their old extent only), and
        # built regions last: the pixels an enlarged building took read as built, whoever lost them
        window = shapely.box(x0, y0, x1, y1)
        near = np.union1d(near, np.array([j for j in grown if shapely.intersects(geoms[j], window)], np.int64))
        near = near[np.argsort(built[near], kind="stable")]
        shape = (y1 - y0, x1 - x0)
        # neighbours clipped to the window first: a large field has many vertices
        clipped = shapely.clip_by_rect(np.array([geoms[j] for j in near], dtype=object), x0, y0, x1, y1)
        pairs = [(g, int(j) + 1) for g, j in zip(clipped, near, strict=True) if not g.is_empty]
        local = rasterize(pairs, out_shape=shape, transform=Affine.translation(x0, y0), dtype="int32")
        takeable = np.concatenate([[False], ~built])
        take = _take_nearest(local, int(i) + 1, target, takeable)
        if take is None or not len(take):
            continue
        own = local == i + 1
        added = np.zeros(shape, dtype=bool)
        added.ravel()[take] = True
        for j in near.tolist():  # their shared edges with the building changed, or may have
            if j not in original:
                original[j] = np.unique(_xy_keys(shapely.get_coordinates(geoms[j])))
        windows.append((x0, y0, x1, y1))
        geoms[i] = _mask_polygon(own | added, x0, y0)
        grown.append(int(i))
        for j in np.unique(local.ravel()[take]) - 1:
            lost_by.setdefault(int(j), []).append(_mask_polygon((local == j + 1) & added, x0, y0))
    for j, lost_parts in lost_by.items():
        geoms[j] = shapely.difference(geoms[j], shapely.union_all(lost_parts))
    if original:
        t = np.array(sorted(original), dtype=np.int64)
        t = t[~shapely.is_empty(np.array([geoms[j] for j in t], dtype=object))]
        renode(geoms, t, windows, original)
    return len(small)


def block_grid(mosaic: Mosaic) -> Grid:
    """The seam lines of the mosaic's blocks and its extent, for :func:`assemble`."""
    blocks = ((b.row_off, b.col_off, b.height, b.width) for b in mosaic.blocks)
    return Grid.of_blocks(blocks, mosaic.width, mosaic.height)


def assemble(
    pieces: dict[int, list[shapely.Geometry]],
    region_cls: np.ndarray,
    region_area: np.ndarray,
    umi: UMI,
    mosaic: Mosaic,
    simplify: float,
    report: VectorizeReport,
    enlarged: np.ndarray | None = None,
) -> tuple[list[shapely.Geometry], np.ndarray]:
    """Pass 4 (reduce): pieces of a region cut by block edges joined along the ``mosaic``'s block edges
    (:func:`~inference_batch.production.seams.stitch`), small built regions enlarged, the
    coverage simplified and put in map coordinates. ``pieces`` is emptied on the way (memory: each copy of
    the coverage is dropped as soon as the next one is made)."""
    res = mosaic.res
    with report.stage("stitch"):  # joined by their seam edges; GEOS's coverage union where that cannot be proven
        stitched = stitch(pieces, block_grid(mosaic))
        ids, geoms, report.seam_fallbacks = stitched.ids, stitched.geoms, stitched.fallbacks
        del stitched
        idx = np.array(ids, dtype=np.int64)
        values = region_cls[idx] if ids else np.zeros(0, np.uint16)
    with report.stage("enlarge"):
        done = np.zeros(len(ids), bool) if enlarged is None else np.isin(idx, enlarged)
        report.built_enlarged = int(done.sum())
        if ids:
            report.built_enlarged += enlarge_built(geoms, values, region_area[idx], umi, res**2, skip=done)
        empty = [k for k, g in enumerate(geoms) if g.is_empty]  # a neighbour all taken by an enlarged building
        if empty:
            keep = np.setdiff1d(np.arange(len(geoms)), empty)
            geoms, values = [geoms[k] for k in keep], values[keep]
    with report.stage("simplify"):
        arr = np.array(geoms, dtype=object)
        del geoms
        if simplify > 0 and len(arr):
            if simplify / res >= 1:  # one-pixel steps first (they move boundaries by under a pixel): fewer vertices
                straighten_staircases(arr)  # in place: each polygon freed as its new one comes
            arr = shapely.coverage_simplify(arr, simplify / res)
        a = mosaic.transform
        arr = shapely.transform(arr, lambda xy: np.column_stack([a.c + a.a * xy[:, 0], a.f + a.e * xy[:, 1]]))
        bad = ~shapely.is_valid(arr)
        if bad.any():
            arr[bad] = shapely.make_valid(arr[bad])
    report.polygons = len(arr)
    return list(arr), values


def vectorize_mosaic(
    mosaic: Mosaic,
    umi: UMI | None = None,
    *,
    zone_construite: Sequence[shapely.Geometry] | None = None,
    zc_mask: tuple[np.ndarray, int] | None = None,
    simplify: float = 0.5,
) -> tuple[list[shapely.Geometry], np.ndarray, VectorizeReport]:
    """Polygons and their couverture raster values after sieving, stitching and simplification, in one
    process: the map and reduce steps of :mod:`inference_batch.production.vectorize_stages` run in turn,
    the blocks' runs kept in memory between them (after the local sieve, a few runs per row). The zone
    construite is derived from the built pixels unless given as polygons or as a coarse mask (``zc_mask``:
    the mask and its cell size in pixels); the one used is in ``report.zone_construite``."""
    umi = umi or UMI()
    report = VectorizeReport(pixels=mosaic.width * mosaic.height)
    total = float(report.pixels)
    read_first: list[np.ndarray] = []  # the first block's pixels, read last by the zone construite
    with report.stage("zone_construite"), progress("zone construite", total=total / 1e6, unit="Mpx") as advance:
        if zc_mask is not None:
            zc, k = zc_mask
            advance(total / 1e6)
        elif zone_construite is None:
            zc, k = zone_construite_mask(mosaic, umi, lambda n: advance(n / 1e6), read_first)
        else:
            zc, k = zc_from_vectors(mosaic, zone_construite, umi)
            advance(total / 1e6)
        report.zone_construite = envelope_polygons(zc, mosaic.transform @ Affine.scale(k))
    blocks = []
    with report.stage("components"), progress("components", total=total / 1e6, unit="Mpx") as advance:
        for b in mosaic.blocks:
            r0, c0, rows, cols = coarse_window(b.row_off, b.col_off, b.height, b.width, k)
            data = read_first.pop() if read_first else None
            blocks.append(map_block(mosaic, b, zc[r0 : r0 + rows, c0 : c0 + cols], k, umi, data))
            del data
            advance(b.height * b.width / 1e6)
    with report.stage("sieve"):
        sieved = reduce_blocks(blocks, umi, mosaic.res**2)
    report.components = sieved.components
    report.after_sieve = len(sieved.region_cls)
    pieces: dict[int, list[shapely.Geometry]] = {}
    enlarged: list[int] = []
    with report.stage("polygons"), progress("polygons", total=total / 1e6, unit="Mpx") as advance:
        for i, b in enumerate(blocks):
            found, done = block_polygons(
                b.runs,
                b.row_off,
                b.col_off,
                sieved.block_region[i],
                sieved.region_cls,
                sieved.region_area,
                umi,
                mosaic.res**2,
                (mosaic.height, mosaic.width),
                report,
            )
            enlarged.extend(done)
            for rid, geom in found:
                pieces.setdefault(rid, []).append(geom)
            blocks[i] = None  # type: ignore[call-overload]  # its runs are no longer needed
            advance(b.height * b.width / 1e6)
    geoms, values = assemble(
        pieces,
        sieved.region_cls,
        sieved.region_area,
        umi,
        mosaic,
        simplify,
        report,
        np.array(enlarged, dtype=np.int64),
    )
    return geoms, values, report


def to_frame(geoms: Sequence[shapely.Geometry], values: np.ndarray, crs: CRS, departement: str, millesime: int):  # type: ignore[no-untyped-def]
    """Canonical schema (``ocsge.schema``): one row per polygon, ``source = auto:model``."""
    import geopandas as gpd

    from ocsge import schema
    from ocsge.territory import departement as get_departement

    token = get_departement(departement).token
    codes = [code_for_value("couverture", int(v)) for v in values]
    return gpd.GeoDataFrame(
        {
            schema.ID: [f"PRED_{token}_{millesime}_{i:07d}" for i in range(len(geoms))],
            schema.CODE_CS: codes,
            schema.CODE_US: [None] * len(geoms),
            schema.MILLESIME: np.full(len(geoms), millesime, dtype=np.int32),
            schema.SOURCE: ["auto:model"] * len(geoms),
        },
        geometry=gpd.GeoSeries(list(geoms), crs=crs),
        crs=crs,
    )


PROVENANCE_TAGS = {"OCSGE_MODEL": "model", "OCSGE_SCHEME": "scheme", "OCSGE_TILING": "tiling"}


def block_provenance(path: str) -> dict[str, str]:
    """What the catalogue says of a layer made from prediction blocks: the model (and its scheme and
    tiling) recorded in the tags of the block COGs by ``ocsge predict``."""
    with rasterio.open(path) as src:
        tags = src.tags()
    prov = {name: tags[tag] for tag, name in PROVENANCE_TAGS.items() if tag in tags}
    return {"source": "auto", **prov}


def prediction_mosaic(storage, departement: str, millesime: int) -> tuple[Mosaic, str]:  # type: ignore[no-untyped-def]
    """The prediction blocks of a département and millésime as a mosaic, and the path of the first block."""
    from ocsge.products import block_prefix

    keys = [i.key for i in storage.list(block_prefix("prediction", departement, millesime)) if i.key.endswith(".tif")]
    if not keys:
        raise OcsgeError(f"no prediction blocks for {departement} {millesime} under {storage.root}: run ocsge predict")
    paths = [storage.gdal_path(k) for k in sorted(keys)]
    return Mosaic.from_block_files(paths), paths[0]


def write_prediction_vector(
    storage,
    departement: str,
    millesime: int,
    mosaic: Mosaic,  # type: ignore[no-untyped-def]
    geoms: Sequence[shapely.Geometry],
    values: np.ndarray,
    first_block: str,
):
    """Write ``prediction_vector`` (canonical GeoParquet, provenance of the blocks); returns key and frame."""
    from inference_batch.products.artifacts import write_vector  # geopandas: only where a layer is written
    from ocsge.products import product_key

    frame = to_frame(geoms, values, mosaic.crs, departement, millesime)
    key = product_key("prediction_vector", departement, millesime)
    write_vector(storage, key, frame, provenance=block_provenance(first_block))
    return key, frame


def vectorize(  # type: ignore[no-untyped-def]
    storage,
    departement: str,
    millesime: int,
    *,
    umi: UMI | None = None,
    simplify: float = 0.5,
    zone_construite: Sequence[shapely.Geometry] | None = None,
):
    """Vectorise the prediction blocks of a département and millésime into ``prediction_vector``, in one
    process (the map/reduce split for AWS Batch: :mod:`inference_batch.production.vectorize_stages`)."""
    mosaic, first = prediction_mosaic(storage, departement, millesime)
    geoms, values, report = vectorize_mosaic(mosaic, umi, zone_construite=zone_construite, simplify=simplify)
    key, frame = write_prediction_vector(storage, departement, millesime, mosaic, geoms, values, first)
    return key, frame, report
