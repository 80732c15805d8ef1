"""Tables of the analyses for planners as JSON and CSV, read from their catalogued artifacts.

    /stats/{dep}/analyses                              the analysis tables of a département, with links, and
                                                       the HTML portraits and PMTiles of the analyses
    /stats/{dep}/{millesime}/portrait.json|.csv        stocks per territory (one millésime)
    /stats/{dep}/{m1-m2}/evolution.json|.csv           change between two millésimes, evolutions to check
    /stats/{dep}/{m1-m2}/a-verifier.json               the territories whose evolutions are to check
    /stats/{dep}/{m1-m2}/origine.json|.csv             new built land and artificialisation by origin
    /stats/{dep}/{m1-m2}/tache-urbaine.json|.csv       tâche urbaine and its extension per territory
    /stats/{dep}/{millesime}/densification.json|.csv   economic zones and their densification potential
    /stats/{dep}/{millesime}/renaturation.json|.csv    INSEE 200 m cells, scores, priority sectors
    /stats/{dep}/{millesime}/fragmentation.json|.csv   effective mesh size per territory (trame verte et bleue)

    /stats/{dep}/{millesime}/carte.json                MapLibre style of the analyses' PMTiles, with a legend

Tables filter with ``?niveau=commune|groupement|departement`` and ``?territoire=<code>`` (INSEE code,
groupement code or département; for the zones and cells, their commune or their ``idcar_200m``).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import Response

from services.assets import AssetFinder, AssetRef
from services.params import dep_code
from services.stats.tables import csv_response, typed
from services.urls import public_base_url

# URL name → (product, what it holds)
TABLES: dict[str, tuple[str, str]] = {
    "portrait": ("portrait_stocks", "Stocks par couverture, usage et artificialisation"),
    "evolution": ("portrait_evolution", "Évolution entre deux millésimes (ha, points), évolutions à vérifier"),
    "origine": ("origine", "Nouvelle artificialisation bâtie et nouvelle artificialisation par couverture d'origine"),
    "tache-urbaine": ("tache_urbaine_communes", "Tâche urbaine et son extension, comparée à la zone construite"),
    "densification": ("densification_csv", "Zones d'activité : emprise bâtie, CES, surface optimisable"),
    "renaturation": ("renaturation_csv", "Carreaux INSEE 200 m : parts, scores, secteurs prioritaires"),
    "fragmentation": ("tvb_communes", "Trame verte et bleue : maillage effectif, barrières, réservoirs"),
}
REPORT = "portrait_report"
REPORT_HTML = "portrait_html"  # one printable page per territory, served under /files/{key}
TILES = "analyses_pmtiles"  # the map layers, served under /files/{key} (HTTP ranges)
PRODUCTS_SERVED = (*(p for p, _ in TABLES.values()), REPORT, REPORT_HTML, TILES)
LEVELS = ("commune", "groupement", "departement")


_TEXT = {"territoire", "nom", "code", "libelle", "cs_origine", "motif", "niveau", "nomenclature", "type",
         "insee_com", "zae_id", "idcar_200m"}


def analyses_router(finder: AssetFinder) -> APIRouter:
    router = APIRouter(tags=["Analyses"])

    def base(request: Request) -> str:
        return public_base_url(request)

    def asset(product: str, dep: str, millesime: str) -> AssetRef:
        code = dep_code(dep)
        for found in finder.find(product, departement=code):
            if found.millesime == millesime:
                return found
        raise HTTPException(404, f"no {product} for département {code}, millésime(s) {millesime!r}")

    @router.get("/stats/{dep}/analyses")
    def listing(request: Request, dep: Annotated[str, Path()]) -> dict[str, Any]:
        code = dep_code(dep)
        b = base(request)
        tables = []
        for name, (product, title) in TABLES.items():
            for found in finder.find(product, departement=code):
                tables.append({"table": name, "title": title, "millesime": found.millesime,
                               "json": f"{b}/stats/{code}/{found.millesime}/{name}.json",
                               "csv": f"{b}/stats/{code}/{found.millesime}/{name}.csv"})
        for found in finder.find(REPORT, departement=code):
            tables.append({"table": "a-verifier", "title": "Évolutions à vérifier localement",
                           "millesime": found.millesime,
                           "json": f"{b}/stats/{code}/{found.millesime}/a-verifier.json"})
        reports = [{"territoire": found.block, "millesime": found.millesime, "html": f"{b}/files/{found.key}"}
                   for found in finder.find(REPORT_HTML, departement=code)]
        tiles = [{"millesime": found.millesime, "pmtiles": f"{b}/files/{found.key}"}
                 for found in finder.find(TILES, departement=code)]
        return {"departement": code, "tables": sorted(tables, key=lambda t: (t["table"], t["millesime"])),
                "rapports": sorted(reports, key=lambda r: (r["millesime"], r["territoire"] or "")),
                "tuiles": sorted(tiles, key=lambda t: t["millesime"])}

    @router.get("/stats/{dep}/{millesime}/carte.json")
    def map_style(request: Request, dep: Annotated[str, Path()], millesime: Annotated[str, Path()]) -> dict[str, Any]:
        found = asset(TILES, dep, millesime)
        return analyses_style(f"{base(request)}/files/{found.key}", found.departement, millesime, found.bbox)

    @router.get("/stats/{dep}/{millesime}/a-verifier.json")
    def to_check(dep: Annotated[str, Path()], millesime: Annotated[str, Path()]) -> Response:
        found = asset(REPORT, dep, millesime)
        return Response(finder.storage.get_bytes(found.key), media_type="application/json")

    @router.get("/stats/{dep}/{millesime}/{table}.{ext}", response_class=Response)
    def table(dep: Annotated[str, Path()], millesime: Annotated[str, Path()], table: Annotated[str, Path()],
              ext: Annotated[str, Path()],
              niveau: Annotated[str | None, Query(description="commune, groupement or departement")] = None,
              territoire: Annotated[str | None, Query(description="INSEE, groupement or département code")] = None,
              ) -> Response:
        if table not in TABLES:
            raise HTTPException(404, f"no table {table!r}: choose among {', '.join(TABLES)}")
        if ext not in ("json", "csv"):
            raise HTTPException(400, f"unsupported format .{ext}: use .json or .csv")
        if niveau is not None and niveau not in LEVELS:
            raise HTTPException(400, f"niveau must be one of {', '.join(LEVELS)}")
        found = asset(TABLES[table][0], dep, millesime)
        text = finder.storage.get_bytes(found.key).decode("utf-8-sig")
        reader = csv.DictReader(io.StringIO(text))
        fields = list(reader.fieldnames or [])
        where = next((f for f in ("territoire", "idcar_200m", "insee_com") if f in fields), None)
        if niveau is not None and "niveau" not in fields:
            raise HTTPException(400, f"table {table!r} has no niveau")
        rows = [r for r in reader if (niveau is None or r.get("niveau") == niveau)
                and (territoire is None or (where is not None and r.get(where) == territoire))]
        if territoire is not None and not rows:
            raise HTTPException(404, f"no territory {territoire!r} in this table")
        if ext == "csv":
            return csv_response(fields, rows, found.name)
        body = {"departement": found.departement, "millesime": found.millesime, "table": table,
                "rows": [{k: (v if k in _TEXT else typed(v)) for k, v in r.items()} for r in rows]}
        return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")

    return router


# --- the map of the analyses ---------------------------------------------------------------------------

def _ramp(attribute: str, stops: list[tuple[float, str]]) -> list[Any]:
    return ["interpolate", ["linear"], ["coalesce", ["get", attribute], 0], *[v for s in stops for v in s]]


POTENTIAL = [(0, "#f7fcf5"), (50, "#74c476"), (100, "#00441b")]
CES = [(0, "#fff5eb"), (50, "#fd8d3c"), (100, "#7f2704")]
GREEN, BLUE, CORRIDOR, TACHE, PRIORITY = "#1a9850", "#4575b4", "#66bd63", "#7a0177", "#d7301f"
COMMUNE_LINE = "#444444"


def analyses_style(pmtiles_url: str, dep: str, millesime: str, bbox: tuple[float, ...] | None) -> dict[str, Any]:
    """A MapLibre style of the analyses' vector tiles (read with the pmtiles protocol) and its legend
    (``metadata.legend``), for a viewer or QGIS."""
    src = "analyses"

    def layer(ident: str, kind: str, source_layer: str, paint: dict[str, Any], flt: list[Any] | None = None
              ) -> dict[str, Any]:
        out = {"id": ident, "type": kind, "source": src, "source-layer": source_layer, "paint": paint}
        if flt is not None:
            out["filter"] = flt
        return out

    layers = [
        layer("renaturation", "fill", "renaturation",
              {"fill-color": _ramp("potentiel", POTENTIAL), "fill-opacity": 0.55}),
        layer("renaturation-prioritaire", "line", "renaturation", {"line-color": PRIORITY, "line-width": 2},
              ["==", ["get", "prioritaire"], True]),
        layer("zae", "fill", "zae", {"fill-color": _ramp("ces_pct", CES), "fill-opacity": 0.7,
                                     "fill-outline-color": "#7f2704"}),
        layer("tvb-reservoirs", "fill", "tvb",
              {"fill-color": ["match", ["get", "nature"], "reservoir_bleu", BLUE, GREEN], "fill-opacity": 0.5},
              ["in", ["get", "nature"], ["literal", ["reservoir_vert", "reservoir_bleu"]]]),
        layer("tvb-corridors", "line", "tvb", {"line-color": CORRIDOR, "line-width": 2, "line-dasharray": [2, 1]},
              ["==", ["get", "nature"], "corridor"]),
        layer("tache-urbaine", "line", "tache_urbaine",
              {"line-color": TACHE, "line-width": 1.5, "line-dasharray": [3, 2]}),
        layer("communes", "line", "communes", {"line-color": COMMUNE_LINE, "line-width": 1, "line-opacity": 0.8}),
    ]
    legend = [
        {"layer": "renaturation", "title": "Potentiel de renaturation (carreaux INSEE 200 m)",
         "items": [{"label": f"{v:g}", "color": c} for v, c in POTENTIAL]},
        {"layer": "renaturation-prioritaire", "title": "Secteur prioritaire",
         "items": [{"label": "", "color": PRIORITY}]},
        {"layer": "zae", "title": "Zones d'activité : coefficient d'emprise au sol (%)",
         "items": [{"label": f"{v:g}", "color": c} for v, c in CES]},
        {"layer": "tvb-reservoirs", "title": "Réservoirs de biodiversité",
         "items": [{"label": "trame verte", "color": GREEN}, {"label": "trame bleue", "color": BLUE}]},
        {"layer": "tvb-corridors", "title": "Corridors (moindre coût)", "items": [{"label": "", "color": CORRIDOR}]},
        {"layer": "tache-urbaine", "title": "Tâche urbaine", "items": [{"label": "", "color": TACHE}]},
        {"layer": "communes", "title": "Limites communales", "items": [{"label": "", "color": COMMUNE_LINE}]},
    ]
    style: dict[str, Any] = {
        "version": 8,
        "name": f"OCS GE analyses {dep} {millesime}",
        "sources": {src: {"type": "vector", "url": f"pmtiles://{pmtiles_url}",
                          "attribution": "OCS GE — IGN / OCS GE cloud"}},
        "layers": layers,
        "metadata": {"legend": legend},
    }
    if bbox:
        style["center"] = [(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2]
        style["zoom"] = 12
    return style
