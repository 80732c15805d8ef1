"""The plan of the generated territory: where every field, house, road and stand is, in both millésimes.

A plan is a list of :class:`Feature` — a polygon with a priority and, for each of the two millésimes,
the state it has then (codes, merge unit, material for the imagery) or ``None`` when it does not exist
then. The truth is the arrangement of all features where each face takes the state of the highest
feature present (``truth.py``); the imagery paints the same faces (``imagery.py``); ancillary layers are
derived from the features (``ancillary.py``). Everything here is pure and seeded: one seed, one plan.

The territory is laid out in bands (south → north) that scale with its size, so that a 200 m × 200 m
test territory holds every couverture leaf as the default 2 km × 1.5 km one does:

    v 0.93–1.00  meadows and a hedge strip north of the railway
    v 0.58–0.93  town (west) | economic zone | village and its new housing estate (east)
    v 0.30–0.58  fields (RPG-like parcels), vineyards, orchard, a farm, a fish pond, fallow shrubland
    v 0.20–0.30  the river with a sand bank
    v 0.00–0.20  lake | deciduous, conifer and mixed stands (one clear-cut in M3) | quarry | rocks,
                 a névé patch and lichens on a hill (south-east)

Coordinates are Lambert-93 metres; ``origin`` is the south-west corner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon, box
from shapely.geometry.base import BaseGeometry

GRID = 0.01  # every geometry is snapped to 1 cm so that overlays are exact and reproducible

# Priorities: a higher one covers a lower one where both exist in a millésime.
P_BACKGROUND, P_ZONE, P_LOT, P_PATCH, P_BUILDING, P_WATER, P_RAIL, P_ROAD = 0, 10, 20, 25, 30, 40, 50, 60


@dataclass(frozen=True)
class State:
    """What a feature is in one millésime."""

    cs: str
    us: str
    unit: str  # adjacent faces with the same unit and codes form one truth polygon
    material: str  # what the imagery paints (see imagery.MATERIALS)


@dataclass
class Feature:
    fid: str
    kind: str
    geometry: BaseGeometry
    priority: int
    states: tuple[State | None, State | None]  # (M_first, M_second)
    attrs: dict[str, Any] = field(default_factory=dict)

    def state(self, k: int) -> State | None:
        return self.states[k]


@dataclass
class Road:
    """A road or railway centreline (BD TOPO shape) and whether it exists in each millésime."""

    rid: str
    line: LineString
    width: float
    kind: str  # "road", "street", "track", "rail"
    exists: tuple[bool, bool] = (True, True)
    nature: str = "Route à 1 chaussée"
    importance: str = "4"


@dataclass
class ChangeSpec:
    """A known change between the millésimes (what and why); where it is comes from the truth."""

    tag: str
    type: str
    description: str


@dataclass
class ErrorSpec:
    """A deliberate error in the first millésime's truth: the feature is published with wrong codes."""

    tag: str
    type: str
    fid: str
    cs: str
    us: str
    description: str


@dataclass
class Plan:
    width: float
    height: float
    origin: tuple[float, float]
    seed: int
    features: list[Feature]
    roads: list[Road]
    changes: list[ChangeSpec]
    errors: list[ErrorSpec]
    communes: list[tuple[str, str, BaseGeometry]]  # (insee_com, nom, geometry)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        x0, y0 = self.origin
        return (x0, y0, x0 + self.width, y0 + self.height)

    @property
    def rect(self) -> Polygon:
        return box(*self.bounds)


def snap(geom: BaseGeometry) -> BaseGeometry:
    return shapely.set_precision(geom, GRID)


def _state(cs: str, us: str, unit: str, material: str) -> State:
    return State(cs, us, unit, material)


class _Builder:
    """Collects features in a deterministic order with per-kind counters."""

    def __init__(self, rect: Polygon) -> None:
        self.rect = rect
        self.features: list[Feature] = []
        self.counters: dict[str, int] = {}

    def add(
        self,
        kind: str,
        geometry: BaseGeometry,
        priority: int,
        first: State | None,
        second: State | str | None = "same",
        **attrs: Any,
    ) -> Feature | None:
        geometry = snap(shapely.intersection(geometry, self.rect, grid_size=GRID))
        geometry = _polygonal(geometry)
        if geometry is None or geometry.area < 1.0:
            return None
        n = self.counters.get(kind, 0)
        self.counters[kind] = n + 1
        fid = f"{kind}_{n:04d}"
        states = (first, first if second == "same" else second)
        # A None unit placeholder means "this feature's own unit".
        states = tuple(replace(s, unit=fid) if s is not None and s.unit == "" else s for s in states)
        feat = Feature(fid, kind, geometry, priority, states, dict(attrs))  # type: ignore[arg-type]
        self.features.append(feat)
        return feat


def _polygonal(geom: BaseGeometry) -> BaseGeometry | None:
    if geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else None


def _rect_oriented(cx: float, cy: float, along: float, across: float, angle: float) -> Polygon:
    """A rectangle centred on (cx, cy), ``along`` in direction ``angle`` (radians), ``across`` normal to it."""
    ca, sa = math.cos(angle), math.sin(angle)
    hx, hy = along / 2, across / 2
    pts = [(-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy)]
    return Polygon([(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts])


def _ellipse(cx: float, cy: float, rx: float, ry: float, rng: np.random.Generator, wobble: float = 0.12) -> Polygon:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    k = 1 + wobble * np.sin(3 * t + rng.uniform(0, 2 * np.pi)) + wobble / 2 * np.sin(5 * t + rng.uniform(0, 6))
    return Polygon(np.column_stack([cx + rx * k * np.cos(t), cy + ry * k * np.sin(t)]))


def _voronoi_cells(region: BaseGeometry, spacing: float, rng: np.random.Generator, jitter: float = 0.35
                   ) -> list[BaseGeometry]:
    """Field-like cells: Voronoi of a jittered grid over the region, clipped to it, largest first kept in
    a stable (row, column) order."""
    minx, miny, maxx, maxy = region.bounds
    nx = max(1, round((maxx - minx) / spacing))
    ny = max(1, round((maxy - miny) / spacing))
    sx, sy = (maxx - minx) / nx, (maxy - miny) / ny
    gx, gy = np.meshgrid(np.arange(nx) + 0.5, np.arange(ny) + 0.5)
    px = minx + (gx.ravel() + rng.uniform(-jitter, jitter, gx.size)) * sx
    py = miny + (gy.ravel() + rng.uniform(-jitter, jitter, gy.size)) * sy
    if px.size == 1:
        return [region]
    points = shapely.multipoints(np.column_stack([px, py]))
    cells = shapely.get_parts(shapely.voronoi_polygons(points, extend_to=box(minx - 10, miny - 10, maxx + 10,
                                                                              maxy + 10)))
    # voronoi_polygons returns cells in an order that is not the points' order: sort by centroid (row, col)
    cells = [c for c in (shapely.intersection(c, region, grid_size=GRID) for c in cells) if c.area > 1.0]
    cells.sort(key=lambda c: (round(c.centroid.y / max(sy, 1.0)), c.centroid.x))
    return cells


def _line(points: list[tuple[float, float]]) -> LineString:
    return LineString(points)


def _wavy(x0: float, y0: float, x1: float, y1: float, amp: float, waves: float, phase: float, n: int = 64
          ) -> LineString:
    """A gently sinuous line from (x0, y0) to (x1, y1)."""
    t = np.linspace(0, 1, n)
    dx, dy = x1 - x0, y1 - y0
    length = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / length, dx / length
    off = amp * np.sin(2 * np.pi * waves * t + phase) * np.sin(np.pi * t) ** 0.3
    return LineString(np.column_stack([x0 + dx * t + nx * off, y0 + dy * t + ny * off]))


def _corridor(line: LineString, width: float) -> Polygon:
    return line.buffer(width / 2, cap_style="flat", join_style="round", quad_segs=4)


COMMUNE_NAMES = ("Villesynth", "Bourg-sur-Synth", "Les Champs-Synthétiques", "Mont-Synthétique",
                 "Synthville-la-Forêt", "Saint-Artefact")


def build_plan(
    width_m: float = 2000.0,
    height_m: float = 1500.0,
    seed: int = 42,
    origin: tuple[float, float] = (700000.0, 6600000.0),
    departement: str = "S01",
) -> Plan:
    """Lay out the territory (pure, seeded)."""
    if width_m < 150 or height_m < 150:
        raise ValueError(f"territory {width_m} m × {height_m} m is too small: 150 m × 150 m at least")
    rng = np.random.default_rng(seed)
    W, H = float(width_m), float(height_m)
    x0, y0 = map(float, origin)
    rect = box(x0, y0, x0 + W, y0 + H)
    b = _Builder(rect)

    def X(u: float) -> float:
        return x0 + u * W

    def Y(v: float) -> float:
        return y0 + v * H

    small = min(W, H) < 600  # a test territory: fewer, smaller objects
    out = 50.0  # lines start/end outside the rectangle so that they cross it fully

    # ---- main network (centrelines) -------------------------------------------------------------
    v_rail, v_sec = 0.93, 0.58
    rail_w = 10.0
    river_w = float(np.clip(0.012 * H, 8.0, 20.0))
    river_line = _wavy(x0 - out, Y(0.25), X(1) + out, Y(0.25) + 0.01 * H, amp=0.025 * H, waves=1.3,
                       phase=rng.uniform(0, 2 * np.pi), n=96)
    main_line = _wavy(X(0.42), y0 - out, X(0.42) + 0.01 * W, Y(1) + out, amp=min(0.01 * W, 15), waves=1.0,
                      phase=rng.uniform(0, 2 * np.pi))
    x_main = X(0.42)
    sec_line = _line([(x0 - out, Y(v_sec)), (X(1) + out, Y(v_sec) + 0.005 * H)])
    rail_line = _line([(x0 - out, Y(v_rail)), (X(1) + out, Y(v_rail))])
    x_vil = X(0.71)
    village_line = _line([(x_vil, Y(v_sec) - 5), (x_vil, Y(v_rail))])
    x_quarry_road = X(0.70)
    quarry_road_line = _line([(x_quarry_road, Y(v_sec)), (x_quarry_road, Y(0.12))])
    new_road_line = _line([(x_main, Y(0.45)), (x_quarry_road, Y(0.45))])
    track_line = _line([(x0 + 0.02 * W, Y(0.40)), (x_main - 8, Y(0.40))])

    roads = [
        Road("main", main_line, 12.0, "road", nature="Route à 2 chaussées", importance="2"),
        Road("secondary", sec_line, 8.0, "road", importance="3"),
        Road("village", village_line, 7.0, "road", importance="4"),
        Road("quarry_access", quarry_road_line, 7.0, "road", importance="4"),
        Road("new_link", new_road_line, 7.0, "road", exists=(False, True), importance="4"),
        Road("farm_track", track_line, 3.0, "track", nature="Chemin", importance="5"),
    ]
    road_states = {
        "road": _state("CS1.1.1.2", "US4.1.1", "", "asphalt"),
        "street": _state("CS1.1.1.2", "US4.1.1", "", "asphalt"),
    }

    # ---- background: meadow everywhere nothing else is --------------------------------------------
    b.add("background", rect, P_BACKGROUND, _state("CS2.2.1", "US1.1", "background", "meadow"),
          crop=("PPH", "PPH"))

    # ---- south band: lake | forest | quarry | hill ---------------------------------------------------
    river_poly = _corridor(river_line, river_w)
    # regions meet on the river's centreline, hidden under the water: no slivers along the banks
    halves = shapely.get_parts(shapely.polygonize(shapely.get_parts(shapely.union_all(
        [rect.exterior, river_line], grid_size=GRID))))
    halves = sorted((h for h in halves if h.area > 1), key=lambda h: h.centroid.y)
    south, north_of_river = halves[0], halves[-1]
    forest_region = shapely.intersection(south, box(x0, y0, X(0.62), Y(0.30)))
    stands = _voronoi_cells(forest_region, 90.0 if small else 260.0, rng)
    forest_types = [("CS2.1.1.1", "deciduous", 22.0, "FF1-00-00", "Forêt fermée à mélange de feuillus", "Feuillus"),
                    ("CS2.1.1.2", "conifer", 24.0, "FF2-00-00", "Forêt fermée à mélange de conifères", "Conifères"),
                    ("CS2.1.1.3", "mixed", 20.0, "FF32-00-00",
                     "Forêt fermée à mélange de conifères prépondérants et feuillus", "Mixte")]
    stand_feats: list[Feature] = []
    if len(stands) < 3:  # make sure each of the three stand types exists
        stands = [shapely.intersection(forest_region, box(X(a), y0, X(c), Y(0.3))) for a, c in
                  ((0.0, 0.24), (0.24, 0.44), (0.44, 0.62))]
    for i, cell in enumerate(stands):
        cs, mat, h, tfv, label, ess = forest_types[i % 3] if i < 3 else forest_types[int(rng.integers(0, 3))]
        f = b.add("stand", cell, P_ZONE, _state(cs, "US1.2", "", mat), height=h * rng.uniform(0.85, 1.15),
                  code_tfv=tfv, tfv=label, essence=ess)
        if f is not None:
            stand_feats.append(f)
    # lake in the west (covers part of the forest)
    lake_r = max(12.0, 0.055 * min(W, H) * 1.3)
    lake = _ellipse(X(0.10), Y(0.11), lake_r * 1.2, lake_r * 0.9, rng)
    b.add("lake", lake, P_WATER, _state("CS1.2.2", "US6.3", "", "water"), nature="Plan d'eau")
    # clear-cut: a part of the largest conifer stand, in the second millésime
    conifers = [f for f in stand_feats if f.states[0] is not None and f.states[0].cs == "CS2.1.1.2"]
    if conifers:
        target = max(conifers, key=lambda f: f.geometry.area)
        c = target.geometry.representative_point()
        side = math.sqrt(target.geometry.area) * 0.45
        cut = shapely.intersection(box(c.x - side / 2, c.y - side / 2, c.x + side / 2, c.y + side / 2),
                                   target.geometry.buffer(-2.0))
        b.add("clearcut", cut, P_PATCH, None, _state("CS2.2.1", "US1.2", "", "clearcut"), change="clear_cut")
    # quarry and its extension into shrubland
    qx0, qx1 = X(0.63), X(0.81)
    quarry_zone = shapely.intersection(south, box(qx0, y0, qx1, Y(0.30)))
    b.add("shrub", quarry_zone, P_ZONE, _state("CS2.1.2", "US6.3", "shrub_quarry", "shrub"), height=2.0)
    qy1 = Y(0.17)
    quarry = box(qx0 + 0.25 * (qx1 - qx0), y0, qx1, qy1)
    b.add("quarry", quarry, P_LOT, _state("CS1.1.2.1", "US1.3", "quarry", "quarry"), depth=8.0)
    ext = box(qx0 + 0.02 * (qx1 - qx0), y0, qx0 + 0.25 * (qx1 - qx0), qy1 - 0.03 * H)
    b.add("quarry_ext", ext, P_LOT, None, _state("CS1.1.2.1", "US1.3", "quarry", "quarry"), depth=6.0,
          change="quarry_extension")
    # hill: rocks, a névé patch, lichens and mosses
    hill = shapely.intersection(south, box(X(0.83), y0, X(1), Y(0.30)))
    b.add("rock", hill, P_ZONE, _state("CS1.2.1", "US6.3", "", "rock"))
    hc = (X(0.93), Y(0.07))
    moss = _ellipse(hc[0], hc[1], max(14.0, 0.045 * W), max(12.0, 0.05 * H), rng)
    b.add("lichen", moss, P_LOT, _state("CS2.2.2", "US6.3", "", "lichen"))
    neve = _ellipse(hc[0], hc[1], max(7.0, 0.022 * W), max(6.0, 0.025 * H), rng, wobble=0.2)
    b.add("neve", neve, P_PATCH, _state("CS1.2.3", "US6.3", "", "snow"))
    hill_shrub = box(X(0.83), Y(0.15), X(0.90), Y(0.22))
    shrub_err = b.add("shrub", hill_shrub, P_LOT, _state("CS2.1.2", "US6.3", "", "shrub"), height=2.5)

    # ---- river, sand bank ---------------------------------------------------------------------------
    b.add("river", river_poly, P_WATER, _state("CS1.2.2", "US6.3", "river", "water"), nature="Écoulement naturel")
    bank_c = river_line.interpolate(0.28, normalized=True)
    bank = _ellipse(bank_c.x, bank_c.y - river_w * 0.5, max(20.0, 0.05 * W), river_w * 0.55, rng, wobble=0.05)
    b.add("sandbank", shapely.difference(bank, river_poly.buffer(-river_w * 0.25)), P_WATER + 1,
          _state("CS1.2.1", "US6.3", "", "sand"))

    # ---- agricultural band ----------------------------------------------------------------------------
    agri = shapely.intersection(north_of_river, box(x0, y0, X(1), Y(v_sec)), grid_size=GRID)
    fields = _voronoi_cells(agri, 55.0 if small else 170.0, rng)
    crops = [("BTH", "1"), ("MIS", "2"), ("CZH", "5"), ("ORH", "3"), ("TRN", "16"), ("PTR", "19"), ("PPH", "18")]
    rotation = {"BTH": "CZH", "MIS": "BTH", "CZH": "BTH", "ORH": "MIS", "TRN": "ORH", "PTR": "PTR", "PPH": "PPH"}
    field_feats: list[Feature] = []
    vine_feats: list[Feature] = []
    specials_done: set[str] = set()
    n_fields = len(fields)
    for i, cell in enumerate(fields):
        cx = (cell.centroid.x - x0) / W
        # east part: vineyards (and the orchard), one fallow, one pasture; others crops
        if cx > 0.74 and (i % 3 != 0 or "vine" not in specials_done):
            f = b.add("vineyard", cell, P_ZONE, _state("CS2.1.3", "US1.1", "", "vineyard"), height=1.6,
                      crop=("VRC", "VRC"), row_angle=float(rng.uniform(0, np.pi)))
            if f:
                vine_feats.append(f)
                specials_done.add("vine")
            continue
        if "orchard" not in specials_done and cx > 0.55:
            specials_done.add("orchard")
            b.add("orchard", cell, P_ZONE, _state("CS2.1.1.1", "US1.1", "", "orchard"), height=4.0,
                  crop=("VRG", "VRG"), row_angle=float(rng.uniform(0, np.pi)))
            continue
        if "fallow" not in specials_done and (i == n_fields // 2 or (i == n_fields - 1)):
            specials_done.add("fallow")
            b.add("shrub", cell, P_ZONE, _state("CS2.1.2", "US6.3", "", "shrub"), height=1.5)
            continue
        code, _group = crops[int(rng.integers(0, len(crops)))]
        crop2 = rotation[code] if rng.uniform() < 0.8 else code
        mat = "meadow" if code in ("PPH", "PTR") else "crop"
        f = b.add("field", cell, P_ZONE, _state("CS2.2.1", "US1.1", "", mat),
                  _state("CS2.2.1", "US1.1", "", "meadow" if crop2 in ("PPH", "PTR") else "crop"),
                  crop=(code, crop2), row_angle=float(rng.uniform(0, np.pi)), height=0.6)
        if f:
            field_feats.append(f)
    # at least one vineyard even in narrow territories
    if not vine_feats and field_feats:
        f = field_feats.pop()
        vine = State("CS2.1.3", "US1.1", f.fid, "vineyard")
        f.kind, f.states = "vineyard", (vine, vine)
        f.attrs.update(crop=("VRC", "VRC"), height=1.6)
        vine_feats.append(f)
    # a farm in a field west of the main road: farm buildings and a yard
    farm_host = min((f for f in field_feats if (f.geometry.centroid.x - x0) / W < 0.35),
                    key=lambda f: abs(f.geometry.centroid.y - Y(0.50)), default=None)
    if farm_host is not None:
        c = farm_host.geometry.representative_point()
        yard = box(c.x - 18, c.y - 14, c.x + 18, c.y + 14)
        b.add("farmyard", shapely.intersection(yard, farm_host.geometry.buffer(-2)), P_LOT,
              _state("CS1.1.1.2", "US1.1", "", "parking"))
        b.add("building", box(c.x - 16, c.y + 1, c.x + 4, c.y + 12), P_BUILDING,
              _state("CS1.1.1.1", "US1.1", "", "roof_metal"), height=7.0, usage="Agricole")
        b.add("building", box(c.x + 5, c.y - 12, c.x + 17, c.y + 6), P_BUILDING,
              _state("CS1.1.1.1", "US1.1", "", "roof_tile"), height=8.0, usage="Agricole")
    # a fish pond (aquaculture) in the field nearest the river on the east side of the main road
    pond_host = min((f for f in field_feats if f.geometry.centroid.x > x_main + 20),
                    key=lambda f: f.geometry.centroid.y, default=None)
    if pond_host is not None:
        c = pond_host.geometry.representative_point()
        r = min(25.0, math.sqrt(pond_host.geometry.area) * 0.3)
        b.add("pond", shapely.intersection(box(c.x - r, c.y - r * 0.7, c.x + r, c.y + r * 0.7),
                                           pond_host.geometry.buffer(-2)), P_WATER,
              _state("CS1.2.2", "US1.4", "", "water"), nature="Plan d'eau")

    # ---- north strip: meadow with a hedge of deciduous trees -------------------------------------------
    hedge = box(x0, Y(v_rail) + rail_w / 2 + 2, X(1), Y(v_rail) + rail_w / 2 + 2 + max(8.0, 0.02 * H))
    b.add("hedge", hedge, P_ZONE, _state("CS2.1.1.1", "US6.3", "", "deciduous"), height=12.0,
          code_tfv="FF1-00-00", tfv="Forêt fermée à mélange de feuillus", essence="Feuillus")

    # ---- town (west of the main road) ----------------------------------------------------------------
    town = box(x0, Y(v_sec), x_main, Y(v_rail))
    street_w = 6.0
    sp_x, sp_y = (70.0, 55.0) if small else (110.0, 85.0)
    streets: list[Road] = []
    tx0, ty0, tx1, ty1 = town.bounds
    nvx = max(0, int((tx1 - tx0) / sp_x) - 1)
    nvy = max(0, int((ty1 - ty0) / sp_y) - 1)
    for k in range(nvx):
        x = tx1 - (k + 1) * (tx1 - tx0) / (nvx + 1)
        streets.append(Road(f"street_v{k}", _line([(x, ty0), (x, ty1)]), street_w, "street", importance="5"))
    for k in range(nvy):
        y = ty0 + (k + 1) * (ty1 - ty0) / (nvy + 1)
        streets.append(Road(f"street_h{k}", _line([(tx0 - out, y), (tx1, y)]), street_w, "street", importance="5"))
    roads.extend(streets)
    blocks = [g for g in shapely.get_parts(shapely.polygonize(shapely.get_parts(shapely.union_all(
        [town.exterior, *[s.line for s in streets]], grid_size=GRID)))) if g.area > 50]
    blocks = [shapely.intersection(g, town, grid_size=GRID) for g in blocks]
    blocks.sort(key=lambda g: (-round(g.centroid.y, -1), g.centroid.x))
    specials = ["sports", "park", "square"]
    for bi, block in enumerate(blocks):
        unit = f"gardens_{bi:03d}"
        b.add("garden", block, P_LOT, _state("CS2.2.1", "US5", unit, "lawn"))
        keep_out: list[BaseGeometry] = []
        inner = block.buffer(-(street_w / 2 + 4.0) if not small else -(street_w / 2 + 2.0))
        if inner.is_empty:
            continue
        ib = inner.bounds
        iw, ih = ib[2] - ib[0], ib[3] - ib[1]
        want = specials[bi] if bi < len(specials) else None
        if len(blocks) < len(specials) and bi == len(blocks) - 1 and bi > 0:
            want = "sports" if "sports" not in specials[:bi] else want
        if want == "sports":
            sw, sh = min(105.0, 0.55 * iw), min(68.0, 0.55 * ih)
            cx, cy = (ib[0] + ib[2]) / 2, (ib[1] + ib[3]) / 2
            ground = box(cx - sw / 2, cy - sh / 2, cx + sw / 2, cy + sh / 2)
            b.add("sports", ground, P_PATCH, _state("CS1.1.2.2", "US3", "", "turf"))
            keep_out.append(ground.buffer(4))
        elif want == "park":
            park = inner.buffer(-8)
            if not park.is_empty and park.area > 300:
                b.add("park", park, P_PATCH, _state("CS2.2.1", "US3", "", "lawn"))
                c = park.centroid
                r = math.sqrt(park.area) * 0.25
                b.add("park_trees", _ellipse(c.x - r * 0.6, c.y, r, r * 0.8, rng), P_PATCH + 1,
                      _state("CS2.1.1.1", "US3", "", "deciduous"), height=15.0)
                b.add("building", box(c.x + r * 0.7, c.y - 8, c.x + r * 0.7 + 22, c.y + 8), P_BUILDING,
                      _state("CS1.1.1.1", "US3", "", "roof_grey"), height=9.0, usage="Commercial et services")
                keep_out.append(park.buffer(6))
        elif want == "square":
            sq = inner.buffer(-5)
            if not sq.is_empty and sq.area > 300:
                b.add("square", sq, P_PATCH, _state("CS1.1.1.2", "US3", "", "parking"))
                c = sq.centroid
                b.add("building", box(c.x - 14, c.y - 10, c.x + 14, c.y + 10), P_BUILDING,
                      _state("CS1.1.1.1", "US3", "", "roof_tile"), height=12.0, usage="Commercial et services")
                keep_out.append(sq.buffer(6))
        _houses(b, block, street_w, keep_out, rng, unit_state=("CS1.1.1.1", "US5"), lot=22.0)

    # ---- economic zone (between the main road and the village road) -----------------------------------
    econ = box(x_main, Y(v_sec), x_vil, Y(v_rail))
    ex0, ey0, ex1, ey1 = econ.bounds
    ey_mid = (ey0 + ey1) / 2
    roads.append(Road("econ_street", _line([(ex0, ey_mid), (ex1, ey_mid)]), 8.0, "street", importance="4"))
    lots = _grid_lots(econ, ncols=2 if small else 3, nrows=2)
    econ_uses = ["site", "warehouse", "vacant", "retail", "logistics", "warehouse"]
    for li, lot in enumerate(lots):
        use = econ_uses[li % len(econ_uses)]
        inner = lot.buffer(-7.0)
        if inner.is_empty:
            continue
        bx0, by0, bx1, by1 = inner.bounds
        bw, bh = bx1 - bx0, by1 - by0
        b.add("econ_lawn", lot, P_LOT, _state("CS2.2.1", "US2", f"econ_lawn_{li}", "lawn"))
        if use == "site":  # a building site in M2 that is a warehouse with its car park in M3
            b.add("site", inner, P_PATCH, _state("CS1.2.1", "US6.1", "", "site"),
                  _state("CS1.1.1.2", "US2", "", "parking"), change="site_completed")
            b.add("building", box(bx0 + 0.1 * bw, by0 + 0.35 * bh, bx0 + 0.75 * bw, by1 - 0.1 * bh), P_BUILDING,
                  None, _state("CS1.1.1.1", "US2", "", "roof_flat"), height=10.0, usage="Industriel",
                  change="site_completed")
        elif use == "vacant":  # grassland that becomes a building site in M3
            b.add("vacant", inner, P_PATCH, _state("CS2.2.1", "US6.3", "", "meadow"),
                  _state("CS1.2.1", "US6.1", "", "site"), change="new_building_site")
        elif use == "warehouse":
            b.add("parking", box(bx0, by0, bx1, by0 + 0.3 * bh), P_PATCH, _state("CS1.1.1.2", "US2", "", "parking"))
            b.add("building", box(bx0 + 0.05 * bw, by0 + 0.38 * bh, bx1 - 0.05 * bw, by1 - 0.08 * bh), P_BUILDING,
                  _state("CS1.1.1.1", "US2", "", "roof_flat"), height=float(rng.uniform(8, 14)), usage="Industriel")
        elif use == "retail":
            b.add("parking", box(bx0, by0, bx1, by0 + 0.5 * bh), P_PATCH, _state("CS1.1.1.2", "US3", "", "parking"))
            b.add("building", box(bx0 + 0.1 * bw, by0 + 0.55 * bh, bx1 - 0.1 * bw, by1 - 0.05 * bh), P_BUILDING,
                  _state("CS1.1.1.1", "US3", "", "roof_grey"), height=9.0, usage="Commercial et services")
        elif use == "logistics":
            b.add("gravel", box(bx0, by0, bx0 + 0.45 * bw, by1), P_PATCH, _state("CS1.1.2.1", "US4.2", "", "gravel"))
            b.add("building", box(bx0 + 0.52 * bw, by0 + 0.1 * bh, bx1 - 0.05 * bw, by1 - 0.1 * bh), P_BUILDING,
                  _state("CS1.1.1.1", "US4.2", "", "roof_metal"), height=12.0, usage="Industriel")

    # ---- village (east) and its new housing estate ------------------------------------------------------
    vil = box(x_vil, Y(v_sec), X(1), Y(v_rail))
    vx0, vy0, vx1, vy1 = vil.bounds
    vy_mid = vy0 + 0.45 * (vy1 - vy0)
    old = box(vx0, vy_mid, vx1, vy1)
    b.add("garden", old, P_LOT, _state("CS2.2.1", "US5", "gardens_village", "lawn"))
    fac_w, fac_h = min(45.0, 0.3 * (vx1 - vx0)), min(30.0, 0.3 * (vy1 - vy_mid))
    fx, fy = vx0 + 12, vy_mid + 10
    factory_lot = box(fx - 4, fy - 4, fx + fac_w + 4, fy + fac_h + 4)
    b.add("factory_yard", factory_lot, P_PATCH, _state("CS1.1.1.2", "US2", "", "parking"),
          _state("CS1.2.1", "US6.2", "demolished", "rubble"), change="demolition")
    b.add("building", box(fx, fy, fx + fac_w, fy + fac_h), P_BUILDING,
          _state("CS1.1.1.1", "US2", "", "roof_metal"), _state("CS1.2.1", "US6.2", "demolished", "rubble"),
          height=10.0, usage="Industriel", change="demolition")
    _houses(b, old, 7.0, [factory_lot.buffer(5)], rng, unit_state=("CS1.1.1.1", "US5"), lot=26.0)
    estate = box(vx0 + 8, vy0 + 8, vx1, vy_mid - 4)
    b.add("estate_meadow", box(vx0, vy0, vx1, vy_mid), P_LOT, _state("CS2.2.1", "US1.1", "", "meadow"),
          crop=("PPH", "PPH"))
    eb = estate.bounds
    ecy = (eb[1] + eb[3]) / 2
    estate_street = _line([(vx0, ecy), (eb[2] - 15, ecy)])
    roads.append(Road("estate_street", estate_street, 6.0, "street", exists=(False, True), importance="5"))
    b.add("estate_gardens", estate, P_LOT, None, _state("CS2.2.1", "US5", "gardens_estate", "lawn"),
          change="new_housing")
    _houses(b, estate, 6.0, [], rng, unit_state=("CS1.1.1.1", "US5"), lot=22.0, first_exists=False,
            change="new_housing", street_line=estate_street)

    # ---- roads and rail on top ------------------------------------------------------------------------
    for road in roads:
        if road.kind == "track":
            continue  # narrower than 5 m: not captured (BD TOPO only)
        st = road_states["street" if road.kind == "street" else "road"]
        poly = _corridor(road.line, road.width)
        s1 = st if road.exists[0] else None
        s2 = st if road.exists[1] else None
        # major roads cover minor ones at junctions; new roads never cut existing ones
        prio = P_ROAD + 10 - 2 * int(road.importance) - (0 if road.exists[0] else 1)
        b.add("road", poly, prio, s1, s2, road_id=road.rid, width=road.width,
              **({"change": "new_road"} if road.rid == "new_link" else {}),
              **({"change": "new_housing"} if road.rid == "estate_street" else {}))
    # railway in three segments (split at the main and village roads)
    cuts = [x0 - out, x_main, x_vil, X(1) + out]
    rail_feats: list[Feature] = []
    for k in range(3):
        seg = shapely.intersection(_corridor(rail_line, rail_w), box(cuts[k], Y(v_rail) - 20, cuts[k + 1],
                                                                      Y(v_rail) + 20))
        f = b.add("rail", seg, P_RAIL, _state("CS1.1.2.1", "US4.1.2", "", "ballast"))
        if f:
            rail_feats.append(f)
    roads.append(Road("rail", rail_line, rail_w, "rail", nature="Voie ferrée principale"))

    # ---- changes and deliberate errors ---------------------------------------------------------------
    changes = [
        ChangeSpec("new_housing", "new_housing", "houses, gardens and a street built on a meadow"),
        ChangeSpec("new_road", "new_road", "a link road built across fields"),
        ChangeSpec("clear_cut", "clear_cut", "clear-cut of part of a conifer stand"),
        ChangeSpec("demolition", "demolition", "an old factory demolished, its site left as rubble"),
        ChangeSpec("quarry_extension", "quarry_extension", "the quarry extended into shrubland"),
        ChangeSpec("new_building_site", "new_building_site", "works started on a vacant lot"),
        ChangeSpec("site_completed", "site_completed", "a building site completed: warehouse and car park"),
    ]
    errors: list[ErrorSpec] = []
    if len(vine_feats) >= 2:  # another vineyard stays right, so every couverture leaf is in both truths
        v = max(vine_feats, key=lambda f: f.geometry.area)
        errors.append(ErrorSpec("error_vineyard", "wrong_code_cs", v.fid, "CS2.1.1.1", "US1.1",
                                "vineyard published as a broadleaf (orchard-like) stand"))
    parks = [f for f in b.features if f.kind == "park"]
    target = parks[0] if parks else next((f for f in b.features if f.kind == "garden"), None)
    if target is not None:
        errors.append(ErrorSpec("error_park", "wrong_code_us", target.fid, "CS2.2.1", "US1.1",
                                "public park / gardens published as agriculture"))
    if rail_feats:
        r = rail_feats[-1]
        errors.append(ErrorSpec("error_rail", "wrong_code_cs_us", r.fid, "CS1.1.1.2", "US4.1.1",
                                "railway land published as a road"))
    if shrub_err is not None:
        errors.append(ErrorSpec("error_shrub", "wrong_code_cs", shrub_err.fid, "CS2.1.1.1", "US6.3",
                                "shrubland published as a broadleaf stand"))

    communes = _communes(departement, rect, rng)
    return Plan(W, H, (x0, y0), seed, b.features, roads, changes, errors, communes)


def _grid_lots(region: Polygon, ncols: int, nrows: int) -> list[Polygon]:
    x0, y0, x1, y1 = region.bounds
    lots = []
    for r in range(nrows):
        for c in range(ncols):
            lots.append(box(x0 + c * (x1 - x0) / ncols, y0 + r * (y1 - y0) / nrows,
                            x0 + (c + 1) * (x1 - x0) / ncols, y0 + (r + 1) * (y1 - y0) / nrows))
    return lots


def _houses(
    b: _Builder,
    block: BaseGeometry,
    street_w: float,
    keep_out: list[BaseGeometry],
    rng: np.random.Generator,
    unit_state: tuple[str, str],
    lot: float,
    first_exists: bool = True,
    change: str | None = None,
    street_line: LineString | None = None,
) -> None:
    """Houses along the inside of a block's edges (or along a street inside it), a lot every ``lot`` m."""
    setback = street_w / 2 + 5.0
    ring_src = block.buffer(-setback) if street_line is None else None
    placed: list[BaseGeometry] = []
    forbidden = shapely.union_all(keep_out) if keep_out else None
    allowed = block.buffer(-(street_w / 2 + 2.0))
    stations: list[tuple[float, float, float]] = []  # (x, y, angle)
    if street_line is not None:
        n = int(street_line.length / lot)
        for k in range(n):
            d = (k + 0.5) * lot
            p = street_line.interpolate(d)
            q = street_line.interpolate(min(d + 1, street_line.length))
            ang = math.atan2(q.y - p.y, q.x - p.x)
            for side in (1, -1):
                off = street_w / 2 + 5.0 + 8.0
                stations.append((p.x - side * off * math.sin(ang), p.y + side * off * math.cos(ang), ang))
    elif ring_src is not None and not ring_src.is_empty:
        for poly in shapely.get_parts(ring_src):
            ring = poly.exterior
            inward = 1.0 if ring.is_ccw else -1.0  # left of a counter-clockwise ring is inside
            n = int(ring.length / lot)
            for k in range(n):
                d = (k + 0.5) * lot
                p = ring.interpolate(d)
                q = ring.interpolate(min(d + 1.0, ring.length))
                ang = math.atan2(q.y - p.y, q.x - p.x)
                # move the centre 8 m inward (the ring runs counter-clockwise: left is inside)
                stations.append((p.x - inward * 8.0 * math.sin(ang), p.y + inward * 8.0 * math.cos(ang), ang))
    for x, y, ang in stations:
        if rng.uniform() < 0.12:
            continue  # an empty lot
        along, across = rng.uniform(14.0, 18.0), rng.uniform(14.5, 16.0)  # ≥ 200 m²: the built UMI
        house = _rect_oriented(x, y, along, across, ang)
        if not allowed.contains(house):
            continue
        if forbidden is not None and house.intersects(forbidden):
            continue
        if any(house.distance(p) < 3.0 for p in placed):
            continue
        placed.append(house)
        st = State(unit_state[0], unit_state[1], "", "roof_tile" if rng.uniform() < 0.75 else "roof_grey")
        # gable roof: ridge along the house, eaves at 60 % of the ridge height (imagery/DSM)
        attrs: dict[str, Any] = {"height": float(rng.uniform(5.5, 9.0)), "usage": "Résidentiel",
                                 "gable": (float(x), float(y), float(ang), float(across))}
        if change:
            attrs["change"] = change
        b.add("house", house, P_BUILDING, st if first_exists else None, st, **attrs)


def _communes(dep: str, rect: Polygon, rng: np.random.Generator) -> list[tuple[str, str, BaseGeometry]]:
    """Four communes meeting near the centre, with jagged (cadastre-like) limits."""
    x0, y0, x1, y1 = rect.bounds
    W, H = x1 - x0, y1 - y0
    cx = x0 + W * rng.uniform(0.45, 0.55)
    cy = y0 + H * rng.uniform(0.45, 0.55)
    vline = _wavy(cx, y0 - 10, cx + 0.02 * W, y1 + 10, amp=0.03 * W, waves=2.0, phase=rng.uniform(0, 6))
    hline = _wavy(x0 - 10, cy, x1 + 10, cy - 0.02 * H, amp=0.03 * H, waves=2.5, phase=rng.uniform(0, 6))
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(
        shapely.union_all([rect.exterior, vline, hline], grid_size=GRID))))
    faces = [snap(shapely.intersection(f, rect, grid_size=GRID)) for f in faces if f.area > 1]
    faces = [f for f in faces if f.area > 1]
    faces.sort(key=lambda g: (-round(g.centroid.y - y0 > H / 2), g.centroid.x))
    # NW, NE, SW, SE
    return [(f"{dep}{i + 1:02d}", COMMUNE_NAMES[i], f) for i, f in enumerate(faces)]
