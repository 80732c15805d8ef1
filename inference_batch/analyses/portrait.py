"""Portrait de territoire and follow-up of flows (IGN's first use of the OCS GE).

For each territory — each commune, each groupement of a user-supplied commune → groupement table (EPCI,
SCoT…), the département — and each millésime: the area of every couverture and usage code and of the
artificialised / non-artificialised land, in hectares and as a share (%) of the territory's covered
area (the sum of the polygons inside it, so that the shares of a nomenclature add up to 100). Between
two millésimes: the change of each in hectares and in points of percentage.

**Evolutions to check locally** (our rule, after IGN's example for the Var 2017→2020: "loss of 1 % of
deciduous forest but gain of 2 % of mixed forest, loss of 1 % of water, gain of 2 % of shrubland, while
everything else did not change ⇒ evolutions to check locally"). Natural and semi-natural couvertures
(:data:`SLOW_CS`: bare soil, water, snow, the three forests, shrubland, vines and other woody, other
non-woody) change slowly; over the few years between millésimes they move by more than a point of a
whole territory only through a real event (fire, clearing) or, far more often, a change of
interpretation between millésimes. A slow couverture of a territory is flagged when

1. it changes by at least ``points`` points of percentage (default 1.0, the order of IGN's example), and
2. the artificialised share of the territory changes by less than ``points`` (the change is not
   explained by development, IGN's "everything else did not change").

Flags ask for a local check; they do not say the data is wrong. The report (JSON) lists each flagged
territory with a sentence in IGN's words.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from inference_batch.analyses.territories import (
    TERRITORY,
    by_territory,
    load_groupements,
    read_csv_table,
    territory_list,
)
from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import (
    key,
    read_vector,
    step_outputs,
    write_json,
    write_table,
)
from inference_batch.products.ingest import required_communes_key
from inference_batch.products.inputs import layer_key, open_source
from inference_batch.products.stats import normalise_communes, split_by_commune
from ocsge import schema
from ocsge.errors import UnknownCodeError
from ocsge.nomenclature import CS_LEAVES, US_LEAVES, Kind, lookup
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import departement

EMPTY = "(vide)"
COUVERTURE, USAGE, ARTIFICIALISATION = "couverture", "usage", "artificialisation"
NOMENCLATURES = {COUVERTURE: schema.CODE_CS, USAGE: schema.CODE_US, ARTIFICIALISATION: schema.ARTIF}
ARTIF_CODES = ("artif", "non artif")
SLOW_CS: tuple[str, ...] = ("CS1.2.1", "CS1.2.2", "CS1.2.3", "CS2.1.1.1", "CS2.1.1.2", "CS2.1.1.3", "CS2.1.2",
                            "CS2.1.3", "CS2.2.2")
STOCK_COLUMNS = [*TERRITORY, schema.MILLESIME, "nomenclature", "code", "libelle", "surface_ha",
                 "surface_territoire_ha", "part_pct"]


@dataclass(frozen=True)
class FlagRule:
    """Parameters of the "evolutions to check locally" rule (see the module docstring)."""

    points: float = 1.0  # change of a slow couverture, in points of the territory, that raises a flag
    artif_points: float | None = None  # artificialised share must move less than this (default: points)

    @property
    def artif_limit(self) -> float:
        return self.points if self.artif_points is None else self.artif_points


def label(nomenclature: str, code: str) -> str:
    if nomenclature == ARTIFICIALISATION:
        return {"artif": "Artificialisé", "non artif": "Non artificialisé"}.get(code, code)
    try:
        return lookup(Kind(nomenclature), code).label
    except (UnknownCodeError, KeyError, ValueError):
        return "Sans code" if code == EMPTY else code


def _codes(nomenclature: str, present: set[str]) -> list[str]:
    leaves = {COUVERTURE: CS_LEAVES, USAGE: US_LEAVES, ARTIFICIALISATION: ARTIF_CODES}[nomenclature]
    return list(leaves) + sorted(present - set(leaves))


def stock_table(areas: pd.DataFrame, territories: pd.DataFrame, millesime: int) -> pd.DataFrame:
    """Stocks in long form: one row per territory × nomenclature × code (every leaf code listed, 0 when
    absent). ``areas`` has ``niveau, territoire, nom, code_cs, code_us, artif, area`` (m²)."""
    frames = []
    for nomenclature, column in NOMENCLATURES.items():
        values = areas[column].fillna(EMPTY).astype(str)
        sums = areas.assign(code=values).groupby(["niveau", "territoire", "code"], sort=False)["area"].sum()
        codes = _codes(nomenclature, set(values))
        grid = pd.MultiIndex.from_tuples(
            [(n, t, c) for n, t in territories[["niveau", "territoire"]].itertuples(index=False) for c in codes],
            names=["niveau", "territoire", "code"])
        full = sums.reindex(grid, fill_value=0.0).reset_index()
        full["nomenclature"] = nomenclature
        frames.append(full)
    out = pd.concat(frames, ignore_index=True).merge(territories, on=["niveau", "territoire"], how="left")
    total = out.groupby(["niveau", "territoire", "nomenclature"])["area"].transform("sum")
    out[schema.MILLESIME] = millesime
    out["libelle"] = [label(n, c) for n, c in zip(out["nomenclature"], out["code"], strict=True)]
    out["surface_ha"] = np.round(out["area"] / 1e4, 4)
    out["surface_territoire_ha"] = np.round(total / 1e4, 4)
    out["part_pct"] = np.round(100 * out["area"] / total.replace(0, np.nan), 4).fillna(0.0)
    return out[STOCK_COLUMNS]


def evolution_table(before: pd.DataFrame, after: pd.DataFrame, rule: FlagRule = FlagRule()) -> pd.DataFrame:
    """Change of every stock between two millésimes in ha and points, with the flags of ``rule``."""
    on = [*TERRITORY, "nomenclature", "code", "libelle"]
    b = before[[*on, schema.MILLESIME, "surface_ha", "part_pct"]].rename(
        columns={schema.MILLESIME: "millesime_debut", "surface_ha": "surface_debut_ha", "part_pct": "part_debut_pct"})
    a = after[[*on, schema.MILLESIME, "surface_ha", "part_pct"]].rename(
        columns={schema.MILLESIME: "millesime_fin", "surface_ha": "surface_fin_ha", "part_pct": "part_fin_pct"})
    out = b.merge(a, on=on, how="outer")
    for c in ("surface_debut_ha", "surface_fin_ha", "part_debut_pct", "part_fin_pct"):
        out[c] = out[c].fillna(0.0)
    out["millesime_debut"] = int(before[schema.MILLESIME].iloc[0]) if len(before) else np.nan
    out["millesime_fin"] = int(after[schema.MILLESIME].iloc[0]) if len(after) else np.nan
    out["variation_ha"] = np.round(out.surface_fin_ha - out.surface_debut_ha, 4)
    out["variation_pts"] = np.round(out.part_fin_pct - out.part_debut_pct, 4)
    out["variation_relative_pct"] = np.round(100 * out.variation_ha / out.surface_debut_ha.replace(0, np.nan), 2)
    artif = out[(out.nomenclature == ARTIFICIALISATION) & (out.code == "artif")]
    artif_pts = artif.set_index(["niveau", "territoire"])["variation_pts"]
    out["variation_artif_pts"] = artif_pts.reindex(pd.MultiIndex.from_frame(out[["niveau", "territoire"]])) \
        .fillna(0.0).to_numpy()
    slow = (out.nomenclature == COUVERTURE) & out.code.isin(SLOW_CS)
    flagged = slow & (out.variation_pts.abs() >= rule.points - 1e-9) \
        & (out.variation_artif_pts.abs() < rule.artif_limit)
    out["a_verifier"] = flagged
    out["motif"] = ""
    out.loc[flagged, "motif"] = [
        f"{'gain' if v > 0 else 'perte'} de {abs(v):.1f} pt de {lab} alors que l'artificialisation varie de "
        f"{art:+.1f} pt" for v, lab, art in out.loc[flagged, ["variation_pts", "libelle", "variation_artif_pts"]]
        .itertuples(index=False)]
    cols = [*TERRITORY, "millesime_debut", "millesime_fin", "nomenclature", "code", "libelle", "surface_debut_ha",
            "surface_fin_ha", "variation_ha", "variation_relative_pct", "part_debut_pct", "part_fin_pct",
            "variation_pts", "variation_artif_pts", "a_verifier", "motif"]
    # communes, groupements, département; within each, the nomenclatures and codes in legend order
    rank = {c: i for i, c in enumerate((*CS_LEAVES, *US_LEAVES, *ARTIF_CODES))}
    out["_n"] = out.niveau.map({"commune": 0, "groupement": 1, "departement": 2})
    out["_c"] = out.code.map(rank).fillna(len(rank))
    out = out.sort_values(["_n", "territoire", "nomenclature", "_c", "code"], kind="stable")
    return out[cols].reset_index(drop=True)


def flag_report(evolution: pd.DataFrame, rule: FlagRule, dep: object, before: int, after: int) -> dict[str, Any]:
    """The territories with evolutions to check, each with a sentence in the words of IGN's example."""
    d = departement(dep)
    territories = []
    flagged = evolution[evolution.a_verifier]
    for (niveau, code, nom), rows in flagged.groupby(TERRITORY, sort=False):
        parts = [f"{'gain' if v > 0 else 'perte'} de {abs(v):.1f} pt de {lab}"
                 for v, lab in rows[["variation_pts", "libelle"]].itertuples(index=False)]
        art = float(rows["variation_artif_pts"].iloc[0])
        territories.append({
            "niveau": niveau, "territoire": code, "nom": nom,
            "message": ", ".join(parts) + f", alors que l'artificialisation varie de {art:+.1f} pt "
                       "⇒ évolutions à vérifier localement",
            "classes": [{"code": c, "libelle": lab, "variation_ha": float(ha), "variation_pts": float(pts)}
                        for c, lab, ha, pts in rows[["code", "libelle", "variation_ha", "variation_pts"]]
                        .itertuples(index=False)],
        })
    return {
        "departement": d.code, "millesime_debut": before, "millesime_fin": after,
        "regle": {**asdict(rule), "artif_points": rule.artif_limit, "couvertures_lentes": list(SLOW_CS),
                  "description": "variation d'une couverture naturelle ou semi-naturelle ≥ points (en points du "
                                 "territoire) alors que la part artificialisée varie de moins de artif_points"},
        "territoires_a_verifier": territories,
    }


def territory_areas(frames: Any, communes: pd.DataFrame, groupements: pd.DataFrame | None, dep: object
                    ) -> pd.DataFrame:
    """Area (m²) by code_cs × code_us × artif for every territory, from chunks of an occupation layer."""
    cols = [schema.CODE_CS, schema.CODE_US, schema.ARTIF]
    per_commune = split_by_commune(frames, communes, cols)
    return by_territory(per_commune, communes, groupements, dep, cols)


def run_portrait(storage: Storage, dep: object, millesimes: list[int], *, groupements: str | Path | None = None,
                 rule: FlagRule = FlagRule(), force: bool = False) -> dict[str, str]:
    """Step: stocks per millésime, and evolution + evolutions to check per consecutive pair."""
    d = departement(dep)
    years = sorted(millesimes)
    keys: dict[str, str] = {}
    stocks: dict[int, pd.DataFrame] = {}
    for year in years:
        out = key("portrait_stocks", d.code, year)
        keys[f"portrait_stocks_{year}"] = out
        ckey = required_communes_key(storage, d, year, "portrait")
        grp, grp_digest = load_groupements(storage, d.code, year, groupements)
        layer = layer_key(storage, d.code, year)
        digest = fingerprint(storage, [ckey, layer], params={"groupements": grp_digest})
        if not force and is_up_to_date(storage, out, digest):
            stocks[year] = read_csv_table(storage, out)
            continue
        step(f"portrait {d.code} {year}: stocks of {layer} by territory")
        communes = normalise_communes(read_vector(storage, ckey))
        with open_source(storage, layer, [schema.CODE_CS, schema.CODE_US, schema.ARTIF]) as src:
            areas = territory_areas(src.iter_chunks(), communes, grp, d.code)
        table = stock_table(areas, territory_list(communes, grp, d.code), year)
        with refreshing(storage, out, digest), step_outputs(storage) as outputs:
            outputs.add(write_table(storage, out, table))
        stocks[year] = read_csv_table(storage, out)  # the evolution uses the figures as published
        done(f"portrait {d.code} {year}: {table[['niveau', 'territoire']].drop_duplicates().shape[0]} territories")
    for before, after in itertools.pairwise(years):
        pair = (before, after)
        ek, rk = key("portrait_evolution", d.code, pair), key("portrait_report", d.code, pair)
        keys[f"portrait_evolution_{before}_{after}"], keys[f"portrait_report_{before}_{after}"] = ek, rk
        inputs = [keys[f"portrait_stocks_{before}"], keys[f"portrait_stocks_{after}"]]
        digest = fingerprint(storage, inputs, params=asdict(rule))
        if not force and is_up_to_date(storage, [ek, rk], digest):
            continue
        step(f"portrait {d.code} {before}→{after}: evolution and evolutions to check")
        evo = evolution_table(stocks[before], stocks[after], rule)
        report = flag_report(evo, rule, d.code, before, after)
        with refreshing(storage, [ek, rk], digest), step_outputs(storage) as outputs:
            outputs.add(write_table(storage, ek, evo))
            outputs.add(write_json(storage, rk, report))
        done(f"portrait {d.code} {before}→{after}: {len(report['territoires_a_verifier'])} territories to check")
    return keys
