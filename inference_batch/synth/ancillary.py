"""Ancillary layers shaped like BD TOPO, RPG, BD Forêt, fichiers fonciers and Admin Express communes,
derived from the plan — consistent with the truth but imperfect, as real ancillary data is.

Every imperfection is seeded and recorded (``Imperfection``) so the manifest can list it: buildings
missing from BD TOPO or not yet removed, edges shifted by a metre or two, outdated RPG parcels, BD Forêt
older than the clear-cut, a road with a wrong width, wrong building uses, cadastral parcels that lag
behind the new housing estate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from shapely import affinity

from inference_batch.synth.layout import GRID, Feature, Plan

RPG_GROUPS = {"BTH": "1", "MIS": "2", "ORH": "3", "CZH": "5", "TRN": "16", "PPH": "18", "PTR": "19",
              "VRC": "21", "VRG": "20"}
RPG_LABELS = {"1": "Blé tendre", "2": "Maïs grain et ensilage", "3": "Orge", "5": "Colza", "16": "Fourrage",
              "18": "Prairies permanentes", "19": "Prairies temporaires", "20": "Vergers", "21": "Vignes"}


@dataclass
class Imperfection:
    layer: str
    type: str
    millesime: int | None
    ids: list[str]
    description: str

    def as_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "type": self.type, "millesime": self.millesime, "ids": self.ids,
                "description": self.description}


def _shift(geom: shapely.Geometry, rng: np.random.Generator, max_m: float) -> shapely.Geometry:
    dx, dy = rng.uniform(-max_m, max_m, 2)
    return shapely.set_precision(affinity.translate(geom, dx, dy), GRID)


def _frame(rows: list[dict[str, Any]], crs: str, geometry_type: str = "polygon") -> gpd.GeoDataFrame:
    geoms = [r.pop("geometry") for r in rows]
    return gpd.GeoDataFrame(rows, geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)


AncillaryLayers = dict[int, dict[str, gpd.GeoDataFrame]]


def build_ancillary(
    plan: Plan,
    departement: str,
    millesimes: tuple[int, int],
    crs: str,
    visible: list[dict[str, shapely.Geometry]],
) -> tuple[AncillaryLayers, gpd.GeoDataFrame, list[Imperfection]]:
    """Layers per millésime (BD TOPO, RPG and fichiers fonciers of that year; BD Forêt of an older date in
    both), the communes, and the list of deliberate imperfections. ``visible[k]`` maps a feature to where
    it is seen in millésime ``k`` (a field without the roads crossing it, a stand without the lake)."""
    rng = np.random.default_rng([plan.seed, 7])
    imperfections: list[Imperfection] = []
    communes = gpd.GeoDataFrame(
        {"insee_com": [c[0] for c in plan.communes], "nom": [c[1] for c in plan.communes],
         "insee_dep": departement},
        geometry=gpd.GeoSeries([c[2] for c in plan.communes], crs=crs), crs=crs)
    ctree = shapely.STRtree(communes.geometry.to_numpy())

    def commune_of(geom: shapely.Geometry) -> str:
        hits = ctree.query(shapely.point_on_surface(geom), predicate="within")
        return str(communes["insee_com"].iloc[int(hits[0])]) if len(hits) else str(communes["insee_com"].iloc[0])

    buildings = [f for f in plan.features if f.kind in ("house", "building")]
    # choose the imperfections once, so that they are the same data "errors" in both years
    missing = {f.fid for f in buildings if rng.uniform() < 0.03 and f.states[0] is not None}
    shifted = {f.fid: (rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 1.5)) for f in buildings if rng.uniform() < 0.25}
    wrong_use = {f.fid for f in buildings if rng.uniform() < 0.04}
    new_late = {f.fid for f in buildings if f.states[0] is None and rng.uniform() < 0.4}
    out: dict[int, dict[str, gpd.GeoDataFrame]] = {}
    for k, year in enumerate(millesimes):
        layers: dict[str, gpd.GeoDataFrame] = {}
        # ---- BD TOPO bâtiments -------------------------------------------------------------------------
        rows = []
        for f in buildings:
            present = f.states[k] is not None and f.states[k].cs == "CS1.1.1.1"
            demolished_kept = k == 1 and f.states[0] is not None and not present  # not yet removed
            if not present and not demolished_kept:
                continue
            if f.fid in missing or (k == 1 and f.fid in new_late):
                continue
            geom = f.geometry
            if f.fid in shifted:
                geom = shapely.set_precision(affinity.translate(geom, *shifted[f.fid]), GRID)
            usage = f.attrs.get("usage", "Indifférencié")
            if f.fid in wrong_use:
                usage = "Indifférencié" if usage != "Indifférencié" else "Résidentiel"
            rows.append({"cleabs": f"BATIMENT{departement}{f.fid.upper()}", "usage_1": usage,
                         "hauteur": round(float(f.attrs.get("height", 6.0)), 1),
                         "nombre_de_logements": 1 if usage == "Résidentiel" else 0, "geometry": geom})
        layers["bdtopo_batiment"] = _frame(rows, crs)
        # ---- BD TOPO routes and railways (centrelines) ----------------------------------------------------
        road_rows, rail_rows = [], []
        for road in plan.roads:
            if not road.exists[k]:
                continue
            line = shapely.set_precision(shapely.intersection(road.line, plan.rect), GRID)
            if line.is_empty:
                continue
            if road.kind == "rail":
                rail_rows.append({"cleabs": f"TRONFERR{departement}{road.rid.upper()}", "nature": road.nature,
                                  "nombre_de_voies": 2, "largeur": "Normale", "geometry": line})
                continue
            width = road.width
            if road.rid == "secondary":
                width = 5.0  # a wrong width in BD TOPO (the road is 8 m wide)
            road_rows.append({"cleabs": f"TRONROUT{departement}{road.rid.upper()}", "nature": road.nature,
                              "importance": road.importance, "largeur_de_chaussee": float(width),
                              "nombre_de_voies": 2 if road.width >= 6 else 1, "geometry": line})
        layers["bdtopo_route"] = _frame(road_rows, crs)
        layers["bdtopo_voie_ferree"] = _frame(rail_rows, crs)
        # ---- BD TOPO hydrographie (surfaces) -----------------------------------------------------------
        hydro_rows = []
        for f in plan.features:
            if f.kind in ("river", "lake", "pond") and f.states[k] is not None:
                geom = f.geometry if f.kind != "lake" else _shift(f.geometry, rng, 2.0)
                hydro_rows.append({"cleabs": f"SURFHYDR{departement}{f.fid.upper()}",
                                   "nature": f.attrs.get("nature", "Plan d'eau"), "persistance": "Permanent",
                                   "geometry": geom})
        layers["bdtopo_hydro"] = _frame(hydro_rows, crs)
        # ---- RPG ---------------------------------------------------------------------------------------
        rpg_rows = []
        for f in plan.features:
            crop = f.attrs.get("crop")
            if crop is None or f.kind == "background":
                continue
            st = f.states[k]
            outdated = k == 1 and f.kind == "estate_meadow"  # still declared after the estate was built
            if st is None or (st.cs not in ("CS2.2.1", "CS2.1.3", "CS2.1.1.1") and not outdated):
                continue
            if st.us != "US1.1":
                continue
            geom = visible[0 if outdated else k].get(f.fid)
            if geom is None:
                continue
            if outdated:
                pass
            elif rng.uniform() < 0.08:
                continue  # not declared this year
            elif rng.uniform() < 0.3:
                geom = shapely.set_precision(geom.buffer(-rng.uniform(1.0, 4.0), quad_segs=2), GRID)
            if geom.is_empty:
                continue
            code = crop[k]
            group = RPG_GROUPS[code]
            rpg_rows.append({"id_parcel": f"{year}{departement}{f.fid.upper()}", "code_cultu": code,
                             "code_group": group, "culture_d": RPG_LABELS[group], "geometry": geom})
        layers["rpg"] = _frame(rpg_rows, crs)
        # ---- BD Forêt (older than both millésimes: the clear-cut is still forest) ----------------------
        foret_rows = []
        for f in plan.features:
            if "code_tfv" not in f.attrs:
                continue
            seen = visible[0].get(f.fid)
            if seen is None:
                continue
            geom = shapely.set_precision(seen.simplify(3.0).buffer(2.0, quad_segs=2).buffer(-2.0), GRID)
            geom = shapely.intersection(geom, plan.rect, grid_size=GRID)
            if geom.is_empty:
                continue
            foret_rows.append({"id": f"FORET{departement}{f.fid.upper()}", "code_tfv": f.attrs["code_tfv"],
                               "tfv": f.attrs["tfv"], "essence": f.attrs["essence"], "geometry": geom})
        layers["bdforet"] = _frame(foret_rows, crs)
        # ---- fichiers fonciers (cadastral parcels with dwellings / business premises) -----------------------
        layers["fichiers_fonciers"] = _fichiers_fonciers(plan, k, departement, commune_of, crs, visible[0])
        out[year] = layers

    imperfections += [
        Imperfection("bdtopo_batiment", "missing", None, sorted(missing),
                     "buildings missing from BD TOPO in both years"),
        Imperfection("bdtopo_batiment", "missing_new", millesimes[1], sorted(new_late),
                     "new houses not yet in BD TOPO of the second millésime"),
        Imperfection("bdtopo_batiment", "shifted", None, sorted(shifted),
                     "building footprints shifted by up to 1.5 m"),
        Imperfection("bdtopo_batiment", "wrong_usage", None, sorted(wrong_use), "wrong usage_1"),
        Imperfection("bdtopo_batiment", "outdated", millesimes[1],
                     sorted(f.fid for f in buildings if f.states[0] is not None and f.states[1] is not None
                            and f.states[1].cs != "CS1.1.1.1"),
                     "demolished building still in BD TOPO of the second millésime"),
        Imperfection("bdtopo_route", "wrong_width", None, ["secondary"],
                     "largeur_de_chaussee 5 m for a road 8 m wide"),
        Imperfection("bdtopo_route", "not_in_truth", None, [r.rid for r in plan.roads if r.kind == "track"],
                     "tracks narrower than 5 m are in BD TOPO but not captured in OCS GE"),
        Imperfection("bdtopo_hydro", "shifted", None, [f.fid for f in plan.features if f.kind == "lake"],
                     "lake outline shifted by up to 2 m"),
        Imperfection("rpg", "undeclared_or_shrunk", None, [],
                     "about 8 % of parcels undeclared each year; 30 % drawn 1–4 m inside the true edge"),
        Imperfection("rpg", "outdated", millesimes[1], [f.fid for f in plan.features if f.kind == "estate_meadow"],
                     "meadow still declared in the second millésime after the housing estate was built on it"),
        Imperfection("bdforet", "outdated", None, [f.fid for f in plan.features if f.kind == "clearcut"],
                     "BD Forêt predates the clear-cut; stands are generalised (simplified 3 m)"),
        Imperfection("fichiers_fonciers", "outdated", millesimes[1],
                     [f.fid for f in plan.features if f.kind == "estate_gardens"],
                     "the housing estate is still one undivided parcel without dwellings"),
    ]
    return out, communes, imperfections


def _fichiers_fonciers(plan: Plan, k: int, departement: str, commune_of, crs: str,
                       visible: dict[str, shapely.Geometry]) -> gpd.GeoDataFrame:
    """Cadastral parcels: one per house lot (the house buffered), one per economic building's lot, one per
    field or stand, each with its dwellings (nlogh) and business premises (nlocact)."""
    rows = []
    counters: dict[str, int] = {}

    def add(geom: shapely.Geometry, nlogh: int, nlocact: int, src: Feature) -> None:
        idcom = commune_of(geom)
        n = counters.get(idcom, 0) + 1
        counters[idcom] = n
        section = "AB" if nlogh else ("ZC" if nlocact == 0 else "AK")
        rows.append({"idpar": f"{idcom}000{section}{n:04d}", "idcom": idcom, "nlogh": nlogh, "nlocact": nlocact,
                     "source_fid": src.fid, "geometry": geom})

    for f in plan.features:
        st = f.states[k]
        if f.kind == "house":
            if f.states[0] is None:
                continue  # estate not yet divided (imperfection)
            if st is None:
                continue
            add(shapely.set_precision(f.geometry.buffer(6.0, join_style="mitre"), GRID), 1, 0, f)
        elif f.kind == "building" and st is not None and st.cs == "CS1.1.1.1":
            lot = shapely.set_precision(f.geometry.buffer(8.0, join_style="mitre"), GRID)
            add(lot, 0 if f.attrs.get("usage") != "Résidentiel" else 1, 1 if f.attrs.get("usage") != "Agricole" else 0,
                f)
        elif f.kind in ("field", "vineyard", "orchard", "stand", "estate_meadow") and f.fid in visible:
            add(visible[f.fid], 0, 0, f)  # as in the first millésime: the cadastre lags behind
    frame = _frame(rows, crs)
    return frame.drop(columns=["source_fid"])
