"""Portrait de territoire as a printable HTML page per territory (commune, groupement, département) and
pair of millésimes: the page a planner hands on (print it to PDF from the browser).

Contents: key figures; stocks of couverture and usage of both millésimes as 100 % stacked bars in the
official colours; the table of their change (ha, points) with the evolutions to check; the changes of
couverture between the millésimes as a matrix (ha, from the evolution layer); the origin of new built land
and new artificialisation; a map of the territory's couverture in the later millésime with its tâche
urbaine. Charts are drawn with matplotlib (inline SVG, text kept as text; the map as PNG); the page is
self-contained (no script, no external resource), so it prints and archives as it is.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Iterable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from inference_batch.analyses.origin import run_origin
from inference_batch.analyses.portrait import COUVERTURE, USAGE, FlagRule, label, run_portrait
from inference_batch.analyses.territories import (
    COMMUNE,
    DEPARTEMENT,
    GROUPEMENT,
    by_territory,
    load_groupements,
    read_csv_table,
    territory_outlines,
)
from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import StepError, key, read_vector, step_outputs
from inference_batch.products.ingest import required_communes_key
from inference_batch.products.inputs import layer_key
from inference_batch.products.stats import normalise_communes, split_by_commune
from ocsge import schema
from ocsge.errors import UnknownCodeError
from ocsge.nomenclature import CS_LEAVES, Kind, lookup, raster_value
from ocsge.products import product_key
from ocsge.progress import done, progress, step
from ocsge.storage import Storage
from ocsge.territory import departement

_RC = {"svg.hashsalt": "ocsge", "svg.fonttype": "none", "font.size": 9, "font.family": "DejaVu Sans"}
LEVEL_TITLES = {COMMUNE: "Commune", GROUPEMENT: "Groupement de communes", DEPARTEMENT: "Département"}


def colour(kind: str, code: str) -> str:
    try:
        return lookup(Kind(kind), code).colour or "#999999"
    except (UnknownCodeError, KeyError, ValueError):
        return "#999999"


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    with rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None})  # figures use the constrained layout: one draw
    text = buf.getvalue()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)  # RDF with licence URLs: not needed
    return text[text.index("<svg"):]


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return f'<img alt="carte" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def stock_bars(stocks: dict[int, pd.DataFrame], nomenclature: str) -> str:
    """100 % stacked bars of a nomenclature, one bar per millésime, in the official colours."""
    with rc_context(_RC):
        fig = Figure(figsize=(7.2, 1.6 + 0.1 * len(stocks)), layout="constrained")
        ax = fig.subplots()
        years = sorted(stocks)
        shown: dict[str, str] = {}
        for i, year in enumerate(years):
            rows = stocks[year]
            left = 0.0
            for code, part in zip(rows["code"], rows["part_pct"], strict=True):
                if part <= 0:
                    continue
                c = colour(nomenclature, code)
                ax.barh(i, part, left=left, color=c, edgecolor="white", linewidth=0.4, height=0.6)
                left += part
                shown[code] = c
        ax.set_yticks(range(len(years)), [str(y) for y in years])
        ax.set_xlim(0, 100)
        ax.set_xlabel("% de la surface du territoire")
        ax.invert_yaxis()
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        handles = [Patch(color=c, label=f"{code} {label(nomenclature, code)}"[:48]) for code, c in shown.items()]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
        return _svg(fig)


def change_matrix(changes: pd.DataFrame) -> str:
    """Matrix of the couverture changes (ha): rows before, columns after, only codes that change."""
    if changes.empty:
        return "<p>Aucun changement de couverture entre les deux millésimes.</p>"
    codes = [c for c in CS_LEAVES if c in set(changes.cs_avant) | set(changes.cs_apres)]
    codes += sorted((set(changes.cs_avant) | set(changes.cs_apres)) - set(codes))
    grid = changes.pivot_table(index="cs_avant", columns="cs_apres", values="area", aggfunc="sum") \
        .reindex(index=codes, columns=codes).fillna(0.0) / 1e4
    with rc_context(_RC):
        n = len(codes)
        fig = Figure(figsize=(1.2 + 0.55 * n, 1.0 + 0.45 * n), layout="constrained")
        ax = fig.subplots()
        ax.imshow(grid.to_numpy(), cmap="Oranges", vmin=0)
        ax.set_xticks(range(n), codes, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(n), codes, fontsize=7)
        ax.set_xlabel("couverture après")
        ax.set_ylabel("couverture avant")
        top = float(grid.to_numpy().max()) or 1.0
        for i in range(n):
            for j in range(n):
                v = grid.iat[i, j]
                if v > 0:
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if v > top / 2 else "black")
        return _svg(fig)


def origin_bars(rows: pd.DataFrame, title: str) -> str:
    if rows.empty:
        return ""
    with rc_context(_RC):
        fig = Figure(figsize=(6.0, 0.6 + 0.3 * len(rows)), layout="constrained")
        ax = fig.subplots()
        y = np.arange(len(rows))
        ax.barh(y, rows["part_pct"], color=[colour(COUVERTURE, c) for c in rows["cs_origine"]], edgecolor="#555",
                linewidth=0.4)
        ax.set_yticks(y, [f"{c} {label(COUVERTURE, c)}"[:40] for c in rows["cs_origine"]], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("% " + title)
        for i, (pct, ha) in enumerate(zip(rows["part_pct"], rows["surface_ha"], strict=True)):
            ax.text(pct, i, f" {pct:.0f} % ({ha:.2f} ha)", va="center", fontsize=7)
        ax.set_xlim(0, 115)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        return _svg(fig)


MAP_PX = 700  # width of the map image: the couverture is burnt on a grid of this size (fast on any territory)


def _lines(ax: Any, geom: shapely.Geometry, **style: Any) -> None:
    for line in shapely.get_parts(shapely.boundary(geom)):
        for part in shapely.get_parts(line):
            xy = shapely.get_coordinates(part)
            ax.plot(xy[:, 0], xy[:, 1], **style)


def territory_map(occupation: gpd.GeoDataFrame, outline: shapely.Geometry, tache: gpd.GeoDataFrame | None) -> str:
    """The couverture of the later millésime inside the territory (burnt on a ``MAP_PX``-wide grid in the
    official colours), its outline and the tâche urbaine."""
    from rasterio.features import rasterize as burn
    from rasterio.transform import from_origin

    x0, y0, x1, y1 = outline.bounds
    res = max(x1 - x0, y1 - y0, 1.0) / MAP_PX
    shape = (max(1, int(np.ceil((y1 - y0) / res))), max(1, int(np.ceil((x1 - x0) / res))))
    transform = from_origin(x0, y1, res, res)
    near = occupation.iloc[occupation.sindex.query(outline, predicate="intersects")]
    values = np.array([_raster_value(c) for c in near[schema.CODE_CS].astype(str)], dtype="uint8")
    grid = burn(zip(near.geometry.to_numpy(), values, strict=True), out_shape=shape, transform=transform, fill=0,
                dtype="uint8") if len(near) else np.zeros(shape, dtype="uint8")
    inside = burn([(outline, 1)], out_shape=shape, transform=transform, fill=0, dtype="uint8").astype(bool)
    rgba = np.zeros((256, 4))
    for code in CS_LEAVES:
        rgba[_raster_value(code)] = [*(int(colour(COUVERTURE, code)[k:k + 2], 16) / 255 for k in (1, 3, 5)), 1.0]
    image = rgba[np.where(inside, grid, 0)]
    fig = Figure(figsize=(6.0, 6.0 * shape[0] / shape[1] if shape[1] else 6.0), layout="constrained")
    ax = fig.subplots()
    ax.imshow(image, extent=(x0, x0 + shape[1] * res, y1 - shape[0] * res, y1), interpolation="nearest")
    _lines(ax, outline, color="black", linewidth=1.0)
    if tache is not None and not tache.empty:
        near_t = tache.geometry.to_numpy()[tache.sindex.query(outline, predicate="intersects")]
        if len(near_t):
            _lines(ax, shapely.intersection(shapely.union_all(near_t), outline), color="#7a0177", linewidth=1.2,
                   linestyle="--")
    ax.set_axis_off()
    ax.set_aspect("equal")
    return _png(fig)


def _raster_value(code: str) -> int:
    try:
        return raster_value(Kind.COUVERTURE, code)
    except (UnknownCodeError, KeyError, ValueError):
        return 0


def _fmt(v: Any, digits: int = 2, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def evolution_rows(evo: pd.DataFrame) -> str:
    out = []
    for r in evo.itertuples(index=False):
        if r.surface_debut_ha == 0 and r.surface_fin_ha == 0:
            continue
        flag = str(r.a_verifier) == "True"
        out.append(f'<tr class="{"flag" if flag else ""}"><td>{html.escape(str(r.code))}</td>'
                   f"<td>{html.escape(str(r.libelle))}</td><td>{_fmt(r.surface_debut_ha)}</td>"
                   f"<td>{_fmt(r.surface_fin_ha)}</td><td>{_fmt(r.variation_ha, sign=True)}</td>"
                   f"<td>{_fmt(r.part_debut_pct)}</td><td>{_fmt(r.part_fin_pct)}</td>"
                   f"<td>{_fmt(r.variation_pts, sign=True)}</td><td>{'à vérifier' if flag else ''}</td></tr>")
    return "\n".join(out)


_CSS = " ".join((
    'body{font-family:"DejaVu Sans",Arial,sans-serif;font-size:10pt;color:#222;max-width:1000px;',
    "margin:1.5em auto;padding:0 1em}",
    "h1{font-size:17pt;margin-bottom:.1em}",
    "h2{font-size:13pt;border-bottom:2px solid #ff377a;padding-bottom:.15em;margin-top:1.4em}",
    ".sub{color:#555;margin-top:0}.figures{display:flex;flex-wrap:wrap;gap:.6em}",
    ".figure{border:1px solid #ddd;border-radius:4px;padding:.4em .8em;min-width:10em}",
    ".figure b{display:block;font-size:14pt}table{border-collapse:collapse;width:100%;font-size:8.5pt}",
    "th,td{border:1px solid #ddd;padding:2px 5px;text-align:right}th{background:#f4f4f4}",
    "td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}tr.flag td{background:#fff3cd}",
    ".alert{background:#fff3cd;border-left:4px solid #e0a800;padding:.5em .8em}",
    ".chart svg,.chart img{max-width:100%;height:auto}.note{color:#555;font-size:8.5pt}",
    "section{page-break-inside:avoid;break-inside:avoid}",
    "@page{size:A4;margin:14mm}@media print{body{margin:0;max-width:none}h2{page-break-after:avoid}}",
))


def render_page(*, territory: dict[str, str], dep_name: str, before: int, after: int,
                stocks: dict[int, pd.DataFrame], evolution: pd.DataFrame, origin: pd.DataFrame,
                changes: pd.DataFrame, flags: list[dict[str, Any]], map_html: str) -> str:
    """The HTML page of one territory (all inputs already restricted to it)."""
    name = html.escape(territory["nom"])
    code = html.escape(territory["territoire"])
    level = LEVEL_TITLES.get(territory["niveau"], territory["niveau"])

    def stock(year: int, nomenclature: str, c: str) -> float:
        s = stocks[year]
        row = s[(s.nomenclature == nomenclature) & (s.code == c)]
        return float(row["surface_ha"].iloc[0]) if len(row) else 0.0

    surface = float(stocks[after][stocks[after].nomenclature == COUVERTURE]["surface_ha"].sum())
    art_b, art_a = stock(before, "artificialisation", "artif"), stock(after, "artificialisation", "artif")
    built_new = float(origin[origin.type == "bati"]["surface_ha"].sum())
    art_new = float(origin[origin.type == "artificialisation"]["surface_ha"].sum())
    figures = [("Surface couverte", f"{surface:.2f} ha"), (f"Artificialisé {before}", f"{art_b:.2f} ha"),
               (f"Artificialisé {after}", f"{art_a:.2f} ha"), ("Variation nette", f"{art_a - art_b:+.2f} ha"),
               ("Nouvelle artificialisation", f"{art_new:.2f} ha"), ("Nouveau bâti", f"{built_new:.2f} ha")]
    alert = "".join(f'<p class="alert">{html.escape(f["message"])}</p>' for f in flags) or \
        "<p>Aucune évolution à vérifier selon la règle ci-dessous.</p>"

    def by_nom(nomenclature: str) -> dict[int, pd.DataFrame]:
        return {y: s[s.nomenclature == nomenclature] for y, s in stocks.items()}

    evo_cs = evolution[evolution.nomenclature == COUVERTURE]
    evo_us = evolution[evolution.nomenclature == USAGE]
    head = (f"<tr><th>code</th><th>libellé</th><th>ha {before}</th><th>ha {after}</th><th>Δ ha</th>"
            f"<th>% {before}</th><th>% {after}</th><th>Δ points</th><th></th></tr>")
    origin_html = []
    kinds = (("bati", "du nouveau bâti (CS1.1.1.1)"), ("artificialisation", "de la nouvelle artificialisation"))
    for kind, title in kinds:
        rows = origin[origin.type == kind]
        if rows.empty:
            origin_html.append(f"<p>Pas de surface nouvelle ({html.escape(title)}).</p>")
            continue
        table = "".join(f"<tr><td>{html.escape(r.cs_origine)}</td><td>{html.escape(r.libelle)}</td>"
                        f"<td>{r.surface_ha:.2f}</td><td>{r.part_pct:.1f}</td></tr>" for r in rows.itertuples())
        origin_html.append(f"<h3>Origine {html.escape(title)} — {rows.surface_ha.sum():.2f} ha</h3>"
                           f'<div class="chart">{origin_bars(rows, title)}</div>'
                           f"<table><tr><th>couverture d'origine</th><th>libellé</th><th>ha</th><th>%</th></tr>{table}"
                           "</table>")
    return f"""<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Portrait de territoire — {name} ({code}), {before}–{after}</title>
<style>{_CSS}</style></head><body>
<h1>Portrait de territoire — {name}</h1>
<p class="sub">{level} {code} · {html.escape(dep_name)} · OCS GE {before} → {after}</p>
<section><h2>Chiffres clés</h2><div class="figures">{"".join(f'<div class="figure">{html.escape(t)}<b>{v}</b></div>'
                                                            for t, v in figures)}</div></section>
<section><h2>Évolutions à vérifier</h2>{alert}</section>
<section><h2>Couverture du sol</h2>
<div class="chart" id="stocks-couverture">{stock_bars(by_nom(COUVERTURE), COUVERTURE)}</div>
<table>{head}{evolution_rows(evo_cs)}</table></section>
<section><h2>Usage du sol</h2><div class="chart" id="stocks-usage">{stock_bars(by_nom(USAGE), USAGE)}</div>
<table>{head}{evolution_rows(evo_us)}</table></section>
<section><h2>Changements de couverture {before} → {after} (ha)</h2>
<div class="chart" id="flows">{change_matrix(changes)}</div></section>
<section><h2>Origine de la nouvelle artificialisation</h2>{"".join(origin_html)}</section>
<section><h2>Carte — couverture {after}</h2><div class="chart" id="map">{map_html}</div>
<p class="note">Trait noir : limite du territoire ; tirets violets : tâche urbaine {after} (si calculée).</p></section>
<section><h2>Méthode</h2><p class="note">Surfaces calculées par commune (polygones découpés aux limites communales)
puis sommées par groupement et pour le département ; parts en % de la surface couverte du territoire.
Évolutions à vérifier : couverture naturelle ou semi-naturelle qui varie d'au moins un point alors que la part
artificialisée varie de moins d'un point (règle inspirée de l'exemple de l'IGN pour le Var 2017→2020).
Origine : nouveau bâti = CS1.1.1.1 en {after} qui ne l'était pas en {before} ; nouvelle artificialisation = +1 du
différentiel d'artificialisation. Source : OCS GE (IGN), traitements OCS GE cloud.</p></section>
</body></html>
"""


def run_report(storage: Storage, dep: object, before: int, after: int, *, territories: Iterable[str] = (),
               groupements: str | None = None, rule: FlagRule | None = None, force: bool = False) -> dict[str, str]:
    """Step: the HTML portrait of each territory (or of ``territories``, codes) for a pair of millésimes;
    runs the portrait and origin steps first (they skip when up to date)."""
    d = departement(dep)
    pair = (before, after)
    pkeys = run_portrait(storage, d.code, [before, after], groupements=groupements, rule=rule or FlagRule(),
                         force=force)
    okeys = run_origin(storage, d.code, before, after, groupements=groupements, force=force)
    ckey = required_communes_key(storage, d, after, "report")
    grp, grp_digest = load_groupements(storage, d.code, after, groupements)
    layer = layer_key(storage, d.code, after)
    tache_key = key("tache_urbaine", d.code, after)
    diff_key = key("difference", d.code, pair)
    inputs = [pkeys[f"portrait_stocks_{before}"], pkeys[f"portrait_stocks_{after}"],
              pkeys[f"portrait_evolution_{before}_{after}"], pkeys[f"portrait_report_{before}_{after}"],
              okeys[f"origine_{before}_{after}"], ckey, layer, tache_key, diff_key]
    stocks = {y: read_csv_table(storage, pkeys[f"portrait_stocks_{y}"]) for y in pair}
    wanted = set(territories)
    all_t = stocks[after][["niveau", "territoire", "nom"]].drop_duplicates()
    chosen = all_t[all_t.territoire.isin(wanted)] if wanted else all_t
    if wanted and len(chosen) < len(wanted):
        missing = wanted - set(chosen.territoire)
        raise StepError(f"report {d.code}: unknown territory {', '.join(sorted(missing))}")
    out_keys = {f"portrait_html_{before}_{after}_{t}": key_html(d.code, pair, t) for t in chosen.territoire}
    digest = fingerprint(storage, inputs, params={"groupements": grp_digest, "territories": sorted(wanted)})
    if not force and is_up_to_date(storage, out_keys.values(), digest):
        return out_keys
    step(f"report {d.code} {before}→{after}: {len(chosen)} portrait pages")
    evolution = read_csv_table(storage, pkeys[f"portrait_evolution_{before}_{after}"])
    origin = read_csv_table(storage, okeys[f"origine_{before}_{after}"])
    flags = json.loads(storage.get_bytes(pkeys[f"portrait_report_{before}_{after}"]))["territoires_a_verifier"]
    communes = normalise_communes(read_vector(storage, ckey))
    occupation = read_vector(storage, layer, columns=[schema.CODE_CS, "geometry"])
    tache = read_vector(storage, tache_key) if storage.exists(tache_key) else None
    if storage.exists(diff_key):
        diff = read_vector(storage, diff_key, columns=[schema.CS_AVANT, schema.CS_APRES, "geometry"])
        diff = diff[diff[schema.CS_AVANT].fillna("") != diff[schema.CS_APRES].fillna("")]
        per_commune = split_by_commune([diff], communes, [schema.CS_AVANT, schema.CS_APRES])
        changes = by_territory(per_commune, communes, grp, d.code, [schema.CS_AVANT, schema.CS_APRES])
    else:
        changes = pd.DataFrame(columns=["niveau", "territoire", schema.CS_AVANT, schema.CS_APRES, "area"])
    outlines = territory_outlines(communes, grp, d.code)
    with refreshing(storage, out_keys.values(), digest), step_outputs(storage) as outputs, \
            progress("portrait pages", len(chosen)) as advance:
        for t in chosen.to_dict("records"):
            sel = {"niveau": t["niveau"], "territoire": t["territoire"]}

            def only(df: pd.DataFrame, sel: dict[str, str] = sel) -> pd.DataFrame:
                return df[(df.niveau == sel["niveau"]) & (df.territoire == sel["territoire"])]

            page = render_page(
                territory=t, dep_name=d.name, before=before, after=after,
                stocks={y: only(s) for y, s in stocks.items()}, evolution=only(evolution), origin=only(origin),
                changes=only(changes), map_html=territory_map(occupation, outlines[(t["niveau"], t["territoire"])],
                                                              tache),
                flags=[f for f in flags if f["niveau"] == t["niveau"] and f["territoire"] == t["territoire"]])
            k = out_keys[f"portrait_html_{before}_{after}_{t['territoire']}"]
            storage.put_bytes(k, page.encode(), "text/html; charset=utf-8")
            outputs.add(k)
            advance(1)
    done(f"report {d.code} {before}→{after}: {len(out_keys)} pages")
    return out_keys


def key_html(dep: object, pair: tuple[int, int], territory: str) -> str:
    """The key of a territory's page: its code as the block id (characters outside [A-Za-z0-9_-] become _)."""
    block = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in territory)[:64]
    return product_key("portrait_html", dep, pair, block=block)
