"""OCS GE "auto": the vectorised prediction crossed with ancillary data (BD TOPO, RPG, BD Forêt, fichiers fonciers).

IGN's chain vectorises the model's heat map, then integrates BD TOPO, RPG, fichiers fonciers and BD Forêt
before photo-interpretation (ocsge-domain.md §1.4). Here the crossing is done on a raster grid (``res``,
0.5 m by default), streamed by blocks: per pixel the couverture starts as the model's, then each rule,
in order, may set the couverture and/or the usage, and records which data decided (``source``):

=====================  ==================================================================  =============
data                   rule                                                                source
=====================  ==================================================================  =============
prediction             couverture of the vectorised prediction                             auto:model
BD Forêt               usage US1.2; where the model sees trees, the species from           auto:bdforet
                       ``essence``/``code_tfv`` (feuillus CS2.1.1.1, conifères CS2.1.1.2,
                       mixte CS2.1.1.3) — an outdated stand (clear-cut) keeps the model's
                       couverture
RPG                    usage US1.1; vines (group 21) CS2.1.3, orchards (20) CS2.1.1.1,     auto:rpg
                       other crops and grassland CS2.2.1 unless the model sees artificial
                       surfaces or water; a parcel the model sees more than 5 % built over
                       is an outdated declaration and is ignored
fichiers fonciers      parcels with dwellings (``nlogh`` > 0) US5; with business premises  auto:ff
                       (``nlocact`` > 0) the use of their BD TOPO buildings (industriel
                       US2, commercial et services US3, agricole US1.1), else US235
BD TOPO hydrographie   CS1.2.2, US6.3                                                      auto:bdtopo
BD TOPO routes         roads at least 5 m wide (``largeur_de_chaussee``, else 3.5 m per    auto:bdtopo
                       lane of ``nombre_de_voies``), buffered to their width: CS1.1.1.2,
                       US4.1.1; narrower roads are not represented
BD TOPO voies ferrées  rail corridors (4 m per track + 2 m): CS1.1.2.1 (ballast), US4.1.2   auto:bdtopo
BD TOPO bâtiments      buildings of 50 m² and more: CS1.1.1.1, usage from ``usage_1``;     auto:bdtopo
                       those under 200 m² are enlarged to 200 m² (OCS GE capture rule),
                       then rasterised by pixel centre; buildings under 50 m² are not
                       represented
BD TOPO bâtiments      pixels still without a usage within 25 m of a building with a known  auto:bdtopo
(neighbourhood)        use, or inside the built-up envelope (the zone construite below),
                       take the use of the nearest building
                       (gardens, yards, car parks; complete fichiers fonciers, which cover
                       whole cadastral parcels, would decide most of these first)
fallback               pixels without a usage: US1.1 for herbaceous couverture (CS2.2.1:   (unchanged)
                       meadows and crops are agricultural unless told otherwise), US6.6
                       (usage inconnu) for artificial surfaces, US6.3 (sans usage) else
=====================  ==================================================================  =============

One built-up envelope serves the whole chain (:func:`built_envelope`): the model's built surfaces and
the BD TOPO buildings, closed by 25 m and grown by 10 m on a 5 m grid (``vectorize.envelope``); it gives
gardens and yards the use of their buildings (above), sets the UMI of the vectorisation (500 m² inside,
2 500 m² outside) and is written as the auto millésime's zone construite (``zone_construite_auto``), with
its IoU against IGN's zone construite of the millésime when one was ingested.

The (couverture, usage, source) triples are then vectorised exactly like the prediction
(:mod:`inference_batch.production.vectorize`: stepwise sieve to the UMIs with the zone construite derived
from the built pixels, polygons stitched across blocks, coverage simplification), so the result is a
planar partition in the canonical schema, written under ``occupation_auto``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize

from inference_batch.production.vectorize import UMI, Mosaic, RasterBlock, envelope, vectorize_mosaic
from inference_batch.products.artifacts import write_vector
from ocsge import schema
from ocsge.errors import OcsgeError
from ocsge.nomenclature import CS_LEAVES, code_for_value, raster_value
from ocsge.progress import console

SOURCES: tuple[str, ...] = ("", "auto:model", "auto:bdtopo", "auto:rpg", "auto:bdforet", "auto:ff")
MODEL, BDTOPO, RPG, BDFORET, FF = 1, 2, 3, 4, 5
LAYERS = ("bdtopo_batiment", "bdtopo_route", "bdtopo_voie_ferree", "bdtopo_hydro", "rpg", "bdforet",
          "fichiers_fonciers")


def cs(code: str) -> int:
    return raster_value("couverture", code)


def us(code: str) -> int:
    return raster_value("usage", code)


TREES = np.array([cs("CS2.1.1.1"), cs("CS2.1.1.2"), cs("CS2.1.1.3")])
ARTIFICIAL = np.array([cs(c) for c in CS_LEAVES if c.startswith("CS1.1")])
WATER = cs("CS1.2.2")
BUILDING_USAGE = {"Résidentiel": "US5", "Industriel": "US2", "Commercial et services": "US3", "Agricole": "US1.1",
                  "Religieux": "US3", "Sportif": "US3"}
MIN_BUILDING_M2 = 50.0
BUILT_UMI_M2 = 200.0
MIN_ROAD_WIDTH_M = 5.0
LANE_WIDTH_M = 3.5  # a road without a recorded width: its lanes × 3.5 m (the usual French lane width) [I]
USAGE_RADIUS_M = 25.0  # yards, gardens and car parks take the use of the nearest building within this distance
# … and so does what lies inside the built-up envelope: the one of vectorize.envelope (zone construite)
RPG_MAX_ARTIFICIAL = 0.05  # an RPG parcel the model sees more built over than this is an outdated declaration


def encode(c: np.ndarray, u: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(couverture value, usage value, source index) → one uint16 code; 0 where there is no couverture."""
    code = (c.astype(np.uint16) << 8) | (u.astype(np.uint16) << 3) | s.astype(np.uint16)
    code[c == 0] = 0
    return code


def decode(code: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    code = code.astype(np.uint16)
    return code >> 8, (code >> 3) & 0x1F, code & 0x7


BUILT_CODES = tuple(int(x) for x in encode(np.full(256, cs("CS1.1.1.1")), np.arange(256) // 8, np.arange(256) % 8))
# road and rail corridors from BD TOPO are captured by width (≥ 5 m), whatever the area of a piece
NETWORK_CODES = (int(encode(np.array([cs("CS1.1.1.2")]), np.array([us("US4.1.1")]), np.array([BDTOPO]))[0]),
                 int(encode(np.array([cs("CS1.1.2.1")]), np.array([us("US4.1.2")]), np.array([BDTOPO]))[0]))


def _codes(c: np.ndarray, u: np.ndarray, s: np.ndarray) -> tuple[int, ...]:
    return tuple(int(x) for x in encode(c, u, s))


_N_CS, _N_SRC = len(CS_LEAVES), len(SOURCES)
# width thresholds in the rules' codes (vectorize.UMI.widths): 20 m for sylviculture usage, 5 m for sealed
# non-built surfaces (roads the model sees); 10 m for every other cover
WIDTHS: tuple[tuple[int, float], ...] = (
    *((c, 5.0) for c in _codes(np.full(32 * _N_SRC, cs("CS1.1.1.2")), np.repeat(np.arange(32), _N_SRC),
                               np.tile(np.arange(_N_SRC), 32))),
    *((c, 20.0) for c in _codes(np.repeat(np.arange(1, _N_CS + 1), _N_SRC), np.full(_N_CS * _N_SRC, us("US1.2")),
                                np.tile(np.arange(_N_SRC), _N_CS))),
)


def _species(essence: object, code_tfv: object) -> int:
    text = f"{essence or ''} {code_tfv or ''}".lower()
    if "mixte" in text or "ff3" in text:
        return cs("CS2.1.1.3")
    if "conif" in text or "ff2" in text:
        return cs("CS2.1.1.2")
    if "feuill" in text or "ff1" in text:
        return cs("CS2.1.1.1")
    return 0


def road_width(roads: gpd.GeoDataFrame) -> np.ndarray:
    """Width of each BD TOPO road (m): ``largeur_de_chaussee`` when recorded, else the number of lanes
    (``nombre_de_voies``) × :data:`LANE_WIDTH_M`; 0 when neither is known (not represented)."""
    n = len(roads)
    width = gpd.pd.to_numeric(roads.get("largeur_de_chaussee", gpd.pd.Series(np.full(n, np.nan))),
                              errors="coerce").to_numpy(dtype=float)
    lanes = gpd.pd.to_numeric(roads.get("nombre_de_voies", gpd.pd.Series(np.full(n, np.nan))),
                              errors="coerce").fillna(0).to_numpy(dtype=float)
    missing = ~(width > 0)
    return np.where(missing, np.maximum(lanes, 0) * LANE_WIDTH_M, width)


def enlarge_small_buildings(geoms: np.ndarray, target: float = BUILT_UMI_M2) -> np.ndarray:
    """Buildings of 50–200 m² grown to 200 m² by a mitred buffer.

    For a convex footprint a mitred buffer by ``d`` has area ≈ ``A + P d + 4 d²``; solving for the target
    gives ``d``, then one correction step handles concave footprints."""
    out = geoms.copy()
    area = shapely.area(geoms)
    small = (area >= MIN_BUILDING_M2) & (area < target)
    for i in np.nonzero(small)[0]:
        g = geoms[i]
        a, p = g.area, g.length
        d = (-p + math.sqrt(p * p + 16 * (target - a))) / 8
        grown = shapely.buffer(g, d, join_style="mitre")
        if grown.area < target:
            d += (target - grown.area) / max(grown.length, 1e-6)
            grown = shapely.buffer(g, d, join_style="mitre")
        out[i] = grown
    return out


@dataclass
class Layer:
    """Polygons of one ancillary layer, prepared for rasterising by window, with per-feature values."""

    name: str
    geoms: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)
    # every pixel a polygon touches, or (default) those whose centre it holds: on 0.5 m pixels all_touched
    # adds a half-pixel ring to every footprint (≈ +8 % of built area); by centre the area is kept on average
    all_touched: bool = False
    tree: shapely.STRtree | None = None

    def __post_init__(self) -> None:
        self.tree = shapely.STRtree(self.geoms)

    def index(self, bounds: tuple[float, float, float, float], shape: tuple[int, int], transform: Affine) -> np.ndarray:
        """1-based feature index per pixel (0 = none); later features win where they overlap."""
        hits = np.sort(self.tree.query(shapely.box(*bounds)))  # type: ignore[union-attr]
        if not len(hits):
            return np.zeros(shape, dtype=np.int32)
        return rasterize(((self.geoms[i], int(i) + 1) for i in hits), out_shape=shape, transform=transform,
                         dtype="int32", all_touched=self.all_touched)


def prepare_layers(ancillary: dict[str, gpd.GeoDataFrame], crs,  # type: ignore[no-untyped-def]
                   prediction: gpd.GeoDataFrame | None = None) -> dict[str, Layer]:
    """Turn the ancillary frames into rasterisable polygon layers with the attributes the rules read.

    With the prediction, RPG parcels that the model sees mostly built over (more than
    :data:`RPG_MAX_ARTIFICIAL` of their area artificial) are dropped as outdated declarations."""
    layers: dict[str, Layer] = {}

    def frame(name: str) -> gpd.GeoDataFrame | None:
        f = ancillary.get(name)
        if f is None or f.empty:
            return None
        return f.to_crs(crs) if f.crs is not None and crs is not None and f.crs != crs else f

    if (f := frame("bdforet")) is not None:
        species = np.array([_species(e, c) for e, c in zip(f.get("essence", [None] * len(f)),
                                                              f.get("code_tfv", [None] * len(f)), strict=True)])
        layers["bdforet"] = Layer("bdforet", f.geometry.to_numpy(), {"species": species})
    if (f := frame("rpg")) is not None:
        group = f.get("code_group", gpd.pd.Series([""] * len(f))).astype(str).to_numpy()
        crop_cs = np.where(group == "21", cs("CS2.1.3"), np.where(group == "20", cs("CS2.1.1.1"), cs("CS2.2.1")))
        parcels = f.geometry.to_numpy()
        keep = ~outdated_parcels(parcels, prediction) if prediction is not None else np.ones(len(f), bool)
        if keep.any():
            layers["rpg"] = Layer("rpg", parcels[keep], {"cs": crop_cs[keep]})
    buildings = frame("bdtopo_batiment")
    if (f := frame("fichiers_fonciers")) is not None:
        nlogh = f.get("nlogh", gpd.pd.Series(np.zeros(len(f)))).fillna(0).to_numpy()
        nlocact = f.get("nlocact", gpd.pd.Series(np.zeros(len(f)))).fillna(0).to_numpy()
        usage = np.zeros(len(f), dtype=np.uint8)
        usage[nlocact > 0] = us("US235")
        if buildings is not None and (nlocact > 0).any():
            usage = _activity_usage(f, nlocact, usage, buildings)
        usage[nlogh > 0] = us("US5")
        keep = usage > 0
        layers["fichiers_fonciers"] = Layer("fichiers_fonciers", f.geometry.to_numpy()[keep], {"us": usage[keep]})
    if (f := frame("bdtopo_hydro")) is not None:
        polys = f.geometry.to_numpy()
        polys = polys[shapely.get_dimensions(polys) == 2]
        if len(polys):
            layers["bdtopo_hydro"] = Layer("bdtopo_hydro", polys)
    if (f := frame("bdtopo_route")) is not None:
        width = road_width(f)
        keep = width >= MIN_ROAD_WIDTH_M
        if keep.any():
            polys = shapely.buffer(f.geometry.to_numpy()[keep], width[keep] / 2, cap_style="flat")
            layers["bdtopo_route"] = Layer("bdtopo_route", polys)
    if (f := frame("bdtopo_voie_ferree")) is not None:
        tracks = f.get("nombre_de_voies", gpd.pd.Series(np.ones(len(f)))).fillna(1).to_numpy(dtype=float)
        polys = shapely.buffer(f.geometry.to_numpy(), (4.0 * np.maximum(tracks, 1) + 2.0) / 2, cap_style="flat")
        layers["bdtopo_voie_ferree"] = Layer("bdtopo_voie_ferree", polys)
    if buildings is not None:
        geoms = buildings.geometry.to_numpy()
        keep = shapely.area(geoms) >= MIN_BUILDING_M2
        usage_1 = buildings.get("usage_1", gpd.pd.Series([None] * len(buildings))).to_numpy()[keep]
        bus = np.array([us(BUILDING_USAGE[u]) if u in BUILDING_USAGE else 0 for u in usage_1], dtype=np.uint8)
        if keep.any():
            layers["bdtopo_batiment"] = Layer("bdtopo_batiment", enlarge_small_buildings(geoms[keep]), {"us": bus})
    return layers


def outdated_parcels(parcels: np.ndarray, prediction: gpd.GeoDataFrame) -> np.ndarray:
    """RPG parcels whose area the model sees mostly artificial (built over since the declaration)."""
    geoms = prediction.geometry.to_numpy()
    artificial = np.array([bool(c) and c.startswith("CS1.1") for c in prediction[schema.CODE_CS]])
    if not artificial.any():
        return np.zeros(len(parcels), dtype=bool)
    art = geoms[artificial]
    tree = shapely.STRtree(art)
    pi, ai = tree.query(parcels, predicate="intersects")
    share = np.zeros(len(parcels))
    if len(pi):
        np.add.at(share, pi, shapely.area(shapely.intersection(parcels[pi], art[ai])))
    return share > RPG_MAX_ARTIFICIAL * np.maximum(shapely.area(parcels), 1e-9)


def _activity_usage(parcels: gpd.GeoDataFrame, nlocact: np.ndarray, usage: np.ndarray,
                    buildings: gpd.GeoDataFrame) -> np.ndarray:
    """Usage of business parcels from the BD TOPO buildings on them (largest built area wins)."""
    bgeoms = buildings.geometry.to_numpy()
    busage = buildings.get("usage_1", gpd.pd.Series([None] * len(buildings))).to_numpy()
    tree = shapely.STRtree(bgeoms)
    pgeoms = parcels.geometry.to_numpy()
    for i in np.nonzero(nlocact > 0)[0]:
        hits = tree.query(pgeoms[i], predicate="intersects")
        best: dict[str, float] = {}
        for j in hits:
            code = BUILDING_USAGE.get(busage[j])
            if code is not None and code != "US5":
                best[code] = best.get(code, 0.0) + shapely.intersection(pgeoms[i], bgeoms[j]).area
        if best:
            usage[i] = us(max(best, key=best.get))  # type: ignore[arg-type]
    return usage


def apply_rules(pred_cs: np.ndarray, idx: dict[str, np.ndarray], layers: dict[str, Layer],
                near_usage: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel rules of the module docstring on one window; returns the uint16 codes.

    ``near_usage``: usage value of the nearest BD TOPO building with a known use within
    :data:`USAGE_RADIUS_M` (0 = none), for pixels no layer gave a usage to."""
    c = pred_cs.astype(np.uint8).copy()
    u = np.zeros_like(c)
    s = np.where(c > 0, MODEL, 0).astype(np.uint8)
    has = c > 0

    def at(name: str) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        if name not in idx:
            return None, None
        i = idx[name]
        m = (i > 0) & has
        return m, i[m] - 1

    m, k = at("bdforet")
    if m is not None:
        trees = np.isin(c, TREES) & m
        species = np.zeros_like(c)
        species[m] = layers["bdforet"].values["species"][k]
        sel = trees & (species > 0)
        c[sel] = species[sel]
        u[m] = us("US1.2")
        s[m] = BDFORET
    m, k = at("rpg")
    if m is not None:
        crop = np.zeros_like(c)
        crop[m] = layers["rpg"].values["cs"][k]
        vegetal = m & ~np.isin(c, ARTIFICIAL) & (c != WATER)
        c[vegetal] = crop[vegetal]
        u[m] = us("US1.1")
        s[m] = RPG
    m, k = at("fichiers_fonciers")
    if m is not None:
        u[m] = layers["fichiers_fonciers"].values["us"][k]
        s[m] = FF
    m, _ = at("bdtopo_hydro")
    if m is not None:
        c[m], u[m], s[m] = WATER, us("US6.3"), BDTOPO
    m, _ = at("bdtopo_route")
    if m is not None:
        c[m], u[m], s[m] = cs("CS1.1.1.2"), us("US4.1.1"), BDTOPO
    m, _ = at("bdtopo_voie_ferree")
    if m is not None:
        c[m], u[m], s[m] = cs("CS1.1.2.1"), us("US4.1.2"), BDTOPO
    m, k = at("bdtopo_batiment")
    if m is not None:
        c[m] = cs("CS1.1.1.1")
        busage = layers["bdtopo_batiment"].values["us"][k]
        known = busage > 0
        mm = np.zeros_like(m)
        mm[m] = known
        u[mm] = busage[known]
        s[m] = BDTOPO
    none = has & (u == 0)
    if near_usage is not None:
        near = none & (near_usage > 0)
        u[near], s[near] = near_usage[near], BDTOPO
        none &= ~near
    u[none & np.isin(c, ARTIFICIAL)] = us("US6.6")
    u[none & (c == cs("CS2.2.1"))] = us("US1.1")
    u[none & ~np.isin(c, ARTIFICIAL) & (c != cs("CS2.2.1"))] = us("US6.3")
    return encode(c, u, s)


def nearest_building_usage(layer: Layer, t: Affine, shape: tuple[int, int], res: float,
                           zone: np.ndarray | None = None) -> np.ndarray:
    """Usage of the nearest building with a known use, for the pixels of a window that lie within
    :data:`USAGE_RADIUS_M` of such a building or inside the built-up envelope ``zone`` (the window's
    pixels of the auto millésime's zone construite, :func:`built_envelope`); 0 elsewhere.

    Buildings are rasterised over the window grown by the reach of the rule, so that a building just
    across a block edge counts the same on both sides of the edge; inside the envelope, the nearest
    building is looked for over that reach too."""
    from scipy import ndimage

    h, w = shape
    reach = 2 * USAGE_RADIUS_M
    if zone is not None and zone.any():
        reach = max(reach, 100.0)  # inside the envelope, buildings farther away still lend their use
    pad = math.ceil(reach / res)
    tp = t @ Affine.translation(-pad, -pad)
    big = (h + 2 * pad, w + 2 * pad)
    bounds = (tp.c, tp.f - big[0] * res, tp.c + big[1] * res, tp.f)
    idx = layer.index(bounds, big, tp)
    usage = np.zeros(big, dtype=np.uint8)
    has = idx > 0
    usage[has] = layer.values["us"][idx[has] - 1]
    known = usage > 0
    if not known.any():
        return np.zeros(shape, dtype=np.uint8)
    dist, (ri, ci) = ndimage.distance_transform_edt(~known, return_indices=True)
    near = usage[ri, ci][pad : pad + h, pad : pad + w]
    inside = dist[pad : pad + h, pad : pad + w] * res <= USAGE_RADIUS_M
    if zone is not None:
        inside |= zone
    return np.where(inside, near, 0).astype(np.uint8)


def rules_grid(prediction: gpd.GeoDataFrame, res: float) -> tuple[Affine, int, int]:
    """The grid of the rules over the prediction's extent: transform, width, height."""
    if prediction.empty:
        raise OcsgeError("the vectorised prediction is empty: nothing to cross with ancillary data")
    x0, y0, x1, y1 = prediction.total_bounds
    x0, y0 = math.floor(x0 / res) * res, math.floor(y0 / res) * res
    width, height = math.ceil((x1 - x0) / res - 1e-9), math.ceil((y1 - y0) / res - 1e-9)
    return Affine(res, 0, x0, 0, -res, y0 + height * res), width, height


def built_envelope(prediction: gpd.GeoDataFrame, layers: dict[str, Layer], res: float, umi: UMI
                   ) -> tuple[np.ndarray, int]:
    """The one built-up envelope of the auto millésime, on the coarse grid (``umi.zc_res``) of the rules
    grid: the built surfaces (the model's CS1.1.1.1 and BD TOPO buildings of 50 m² and more, enlarged)
    closed and grown as ``vectorize.envelope`` does. It sets the UMI of the vectorisation, gives gardens
    and yards the use of their buildings, and is written as the millésime's ``zone_construite_auto``.
    Returns the mask and its cell size in pixels of the rules grid."""
    transform, width, height = rules_grid(prediction, res)
    k = max(1, round(umi.zc_res / res))
    shape = (math.ceil(height / k), math.ceil(width / k))
    built = [g for g, c in zip(prediction.geometry.to_numpy(), prediction[schema.CODE_CS], strict=True)
             if c == "CS1.1.1.1"]
    if "bdtopo_batiment" in layers:
        built += list(layers["bdtopo_batiment"].geoms)
    if not built:
        return np.zeros(shape, dtype=bool), k
    mask = rasterize(((g, 1) for g in built), out_shape=shape, transform=transform @ Affine.scale(k),
                     dtype="uint8", all_touched=True).astype(bool)
    return envelope(mask, k * res, umi), k


def rules_mosaic(prediction: gpd.GeoDataFrame, layers: dict[str, Layer], res: float, block_size: int,
                 zone: tuple[np.ndarray, int] | None = None) -> Mosaic:
    """Blocks of the rules grid over the prediction's extent, each computed when read; ``zone``: the
    built-up envelope (:func:`built_envelope`)."""
    transform, width, height = rules_grid(prediction, res)
    geoms = prediction.geometry.to_numpy()
    values = np.array([cs(c) if c else 0 for c in prediction[schema.CODE_CS]], dtype=np.uint8)
    tree = shapely.STRtree(geoms)

    def reader(r: int, c: int, h: int, w: int) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            t = transform @ Affine.translation(c, r)
            bounds = (t.c, t.f - h * res, t.c + w * res, t.f)
            hits = tree.query(shapely.box(*bounds))
            pred = np.zeros((h, w), dtype=np.uint8)
            if len(hits):
                pred = rasterize(((geoms[i], int(values[i])) for i in hits), out_shape=(h, w), transform=t,
                                 dtype="uint8")
            idx = {name: layer.index(bounds, (h, w), t) for name, layer in layers.items()}
            near = None
            if "bdtopo_batiment" in layers:
                window = None
                if zone is not None:
                    mask, k = zone
                    window = mask[np.ix_(np.arange(r, r + h) // k, np.arange(c, c + w) // k)]
                near = nearest_building_usage(layers["bdtopo_batiment"], t, (h, w), res, window)
            return apply_rules(pred, idx, layers, near)

        return read

    blocks = [RasterBlock(r, c, min(block_size, height - r), min(block_size, width - c),
                          reader(r, c, min(block_size, height - r), min(block_size, width - c)))
              for r in range(0, height, block_size) for c in range(0, width, block_size)]
    return Mosaic(prediction.crs, transform, width, height, blocks)


@dataclass
class RulesReport:
    layers_used: list[str]
    layers_missing: list[str]
    polygons: int
    by_source: dict[str, int]
    zone_construite: gpd.GeoDataFrame | None = None  # the built-up envelope used (zone_construite_auto)
    zone_construite_iou: float | None = None  # against IGN's zone construite of the millésime, when ingested


def occupation_auto(prediction: gpd.GeoDataFrame, ancillary: dict[str, gpd.GeoDataFrame], millesime: int,
                    departement: str, *, res: float = 0.5, block_size: int = 4096, umi: UMI | None = None,
                    simplify: float = 0.5) -> tuple[gpd.GeoDataFrame, RulesReport]:
    """The OCS GE auto layer (canonical schema) from a vectorised prediction and ancillary frames."""
    from ocsge.territory import departement as get_departement

    layers = prepare_layers(ancillary, prediction.crs, prediction)
    base = umi or UMI()
    umi = UMI(**{**base.__dict__, "built_values": BUILT_CODES, "exempt_values": NETWORK_CODES,
                 "widths": WIDTHS})
    zone = built_envelope(prediction, layers, res, umi)
    mosaic = rules_mosaic(prediction, layers, res, block_size, zone)
    geoms, codes, vreport = vectorize_mosaic(mosaic, umi, zc_mask=zone, simplify=simplify)
    c, u, s = decode(np.asarray(codes))
    token = get_departement(departement).token
    frame = gpd.GeoDataFrame(
        {
            schema.ID: [f"AUTO_{token}_{millesime}_{i:07d}" for i in range(len(geoms))],
            schema.CODE_CS: [code_for_value("couverture", int(v)) for v in c],
            schema.CODE_US: [code_for_value("usage", int(v)) for v in u],
            schema.MILLESIME: np.full(len(geoms), millesime, dtype=np.int32),
            schema.SOURCE: [SOURCES[int(v)] for v in s],
        },
        geometry=gpd.GeoSeries(list(geoms), crs=prediction.crs),
        crs=prediction.crs,
    )
    zc = gpd.GeoDataFrame({
        schema.ID: [f"ZCAUTO_{token}_{millesime}_{i:05d}" for i in range(len(vreport.zone_construite))],
        schema.MILLESIME: np.full(len(vreport.zone_construite), millesime, dtype=np.int16),
        schema.SOURCE: "auto",
    }, geometry=gpd.GeoSeries(vreport.zone_construite, crs=prediction.crs), crs=prediction.crs)
    report = RulesReport(sorted(layers), sorted(set(LAYERS) - set(layers)), len(frame),
                         frame[schema.SOURCE].value_counts().to_dict(), zc)
    return frame, report


def envelope_iou(ours: gpd.GeoDataFrame, ign: gpd.GeoDataFrame) -> float | None:
    """Intersection over union of two zones construites (ours against IGN's), over the extent of ours."""
    a = shapely.union_all(ours.geometry.to_numpy())
    b = shapely.union_all(ign.to_crs(ours.crs).geometry.to_numpy() if ign.crs != ours.crs else ign.geometry.to_numpy())
    b = shapely.intersection(b, shapely.box(*ours.total_bounds)) if len(ours) else b
    union = shapely.union(a, b).area
    return round(shapely.intersection(a, b).area / union, 4) if union else None


def load_ancillary(storage, departement: str, millesime: int) -> dict[str, gpd.GeoDataFrame]:  # type: ignore[no-untyped-def]
    """The ancillary layers stored for a département and millésime (missing layers are left out)."""
    from ocsge.products import product_key

    out = {}
    for name in LAYERS:
        key = product_key(name, departement, millesime)
        if storage.exists(key):
            with storage.local_copy(key) as path:
                out[name] = gpd.read_parquet(path)
    return out


def rules(storage, departement: str, millesime: int, **kwargs) -> tuple[str, gpd.GeoDataFrame, RulesReport]:  # type: ignore[no-untyped-def]
    """Read ``prediction_vector`` and the ancillary layers, write ``occupation_auto``."""
    from ocsge.products import product_key

    key = product_key("prediction_vector", departement, millesime)
    if not storage.exists(key):
        raise OcsgeError(f"no vectorised prediction {key} under {storage.root}: run ocsge vectorize first")
    with storage.local_copy(key) as path:
        prediction = gpd.read_parquet(path)
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
        provenance = json.loads(meta[b"ocsge"]) if b"ocsge" in meta else {"source": "auto"}
    ancillary = load_ancillary(storage, departement, millesime)
    if not ancillary:
        console.print(f"  no ancillary layer for {departement} {millesime}: usage from the couverture only")
    frame, report = occupation_auto(prediction, ancillary, millesime, departement, **kwargs)
    out = product_key("occupation_auto", departement, millesime)
    write_vector(storage, out, frame, provenance=provenance)  # the model of the prediction it crosses
    if report.zone_construite is not None:
        write_vector(storage, product_key("zone_construite_auto", departement, millesime), report.zone_construite,
                     provenance=provenance)
        ign = product_key("zone_construite", departement, millesime)
        if storage.exists(ign) and len(report.zone_construite):
            with storage.local_copy(ign) as path:
                report.zone_construite_iou = envelope_iou(report.zone_construite, gpd.read_parquet(path))
    return out, frame, report
