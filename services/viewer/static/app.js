// OCS GE viewer: MapLibre GL (ES module) + pmtiles, both vendored by services/viewer/build.sh.
// Every URL is relative to this page, so the viewer works under any prefix (local server or CloudFront).
import * as maplibregl from "./vendor/maplibre-gl.mjs";
import { FRANCE, NATIONAL, departementOptions, departementParameter, layersUnder, showPlace, vectorSource,
         vectorTileset } from "./national.js";

const BASE = location.origin + location.pathname.replace(/[^/]*$/, "");
const KIND_TITLES = {
  COUVERTURE: "Couverture du sol", USAGE: "Usage du sol", ARTIF: "Artificialisation",
  CONSTRUCTION: "Zone construite", PREDICTION: "Prédiction du modèle", DIFFERENCE: "Évolutions",
  TACHE_URBAINE: "Tâche urbaine (raster)", RENATURATION: "Potentiel de renaturation (raster)",
  // the photos (ORTHOIMAGERY.ORTHOPHOTOS[.IRC].{campaign}): "Comparer (volet)" swipes between two millésimes
  ORTHO: "Orthophotographie", ORTHO_IRC: "Orthophotographie IRC",
};
// the analyses' map layers (source layers of the analyses' PMTiles, /vector/analyses/…), each a check box
const ANALYSES = {
  tache_urbaine: "Tâche urbaine", zae: "Zones d'activité : densification",
  renaturation: "Renaturation (carreaux INSEE 200 m)", tvb: "Trame verte et bleue",
};
const HIT = "communes-hit";  // an invisible fill of the communes: the commune under a click
const $ = (id) => document.getElementById(id);
const state = { layers: [], datasets: [], nomenclature: null, maps: [], analyses: [], analysisStyle: null,
                wanted: new Set(), reports: [] };

function status(text) { $("status").textContent = text || ""; }

async function getJSON(path) {
  const resp = await fetch(BASE + path);
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

function option(select, value, text) {
  const o = document.createElement("option");
  o.value = value; o.textContent = text; select.appendChild(o);
}

function fill(select, entries, keep) {
  const previous = keep ? select.value : null;
  select.innerHTML = "";
  for (const [value, text] of entries) option(select, value, text);
  if (previous && entries.some(([v]) => v === previous)) select.value = previous;
}

function layersFor(dep, kind) { return layersUnder(state.layers, dep, kind); }

function campaignOf(layer) { return layer.previous ? `${layer.previous}_${layer.campaign}` : layer.campaign; }

function selectedLayer(campaign) {
  // by kind and campaign, not by a built id: the photos' ids are not OCSGE.{kind}.{campaign}
  const kind = campaign.includes("_") ? "DIFFERENCE" : $("kind").value;
  return state.layers.find((l) => l.kind === kind && campaignOf(l) === campaign);
}

function vectorDataset(dep, layer) { return vectorTileset(state.datasets, dep, layer); }

function rasterSource(layer, dep) {
  const tiles = `${BASE}wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=${layer.id}&STYLE=normal`
    + "&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}" + departementParameter(layer, dep);
  return { type: "raster", tiles: [tiles], tileSize: 256, bounds: layer.bounds,
           minzoom: layer.minzoom, maxzoom: layer.maxzoom, attribution: "OCS GE — IGN / OCS GE cloud" };
}

function analysisVisible(sourceLayer) { return sourceLayer === "communes" || state.wanted.has(sourceLayer); }

function addAnalyses(style) {
  const a = state.analysisStyle;
  if (!a) return style;
  // the layers and legend of the service's style; the tiles read from the same PMTiles with the pmtiles
  // protocol (ranges on /vector/analyses/{dep}/{millesime}.pmtiles, fetched by this page like the occupation's)
  style.sources.analyses = { ...a.sources.analyses, url: "pmtiles://" + a.pmtiles };
  style.layers.push({ id: HIT, type: "fill", source: "analyses", "source-layer": "communes",
                      paint: { "fill-color": "#000000", "fill-opacity": 0 } });
  for (const l of a.layers) {
    style.layers.push({ ...l, layout: { ...(l.layout || {}),
                                        visibility: analysisVisible(l["source-layer"]) ? "visible" : "none" } });
  }
  return style;
}

async function styleFor(layer, dep) {
  const style = { version: 8, sources: {}, layers: [
    { id: "background", type: "background", paint: { "background-color": "#e8ecef" } }] };
  if (!layer) return addAnalyses(style);
  const dataset = $("mode").value === "vector" ? vectorDataset(dep, layer) : null;
  if (dataset) {
    const attribute = layer.kind === "USAGE" ? "code_us" : "code_cs";
    const vstyle = await getJSON(`vector/occupation/${dataset.departement}/${dataset.millesime}/style.json?attribute=${attribute}`);
    style.sources.ocsge = vectorSource(dataset);
    for (const l of vstyle.layers) if (l.type !== "background") style.layers.push({ ...l, source: "ocsge" });
  } else {
    style.sources.ocsge = rasterSource(layer, dep);
    style.layers.push({ id: "raster", type: "raster", source: "ocsge", paint: { "raster-resampling": "nearest" } });
  }
  return addAnalyses(style);
}

// --- the analyses: layers, legend, portrait reports ----------------------------------------------------

function analysisDataset(dep) {
  return state.analyses.find((d) => d.departement === dep && d.millesime === $("amillesime").value) || null;
}

async function loadAnalyses(dep) {
  const sets = state.analyses.filter((d) => d.departement === dep).sort((a, b) => b.millesime.localeCompare(a.millesime));
  fill($("amillesime"), sets.map((d) => [d.millesime, d.millesime]), true);
  $("analyses").classList.toggle("hidden", !sets.length);
  const dataset = analysisDataset(dep);
  state.analysisStyle = dataset ? await getJSON(`vector/analyses/${dep}/${dataset.millesime}/style.json`) : null;
  if (state.analysisStyle) state.analysisStyle.pmtiles = dataset.pmtiles;
  state.reports = sets.length ? (await getJSON(`stats/${dep}/analyses`).catch(() => ({ rapports: [] }))).rapports : [];
  const box = $("analysis-list");
  box.innerHTML = "";
  for (const [name, title] of Object.entries(ANALYSES)) {
    if (!dataset || !dataset.layers.includes(name)) continue;
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox"; input.dataset.layer = name; input.checked = state.wanted.has(name);
    if (input.checked) input.setAttribute("checked", "");
    input.addEventListener("change", () => toggleAnalysis(name, input.checked));
    label.appendChild(input);
    label.appendChild(document.createTextNode(title));
    box.appendChild(label);
  }
  return dataset;
}

function toggleAnalysis(name, on) {
  if (on) state.wanted.add(name); else state.wanted.delete(name);
  for (const map of state.maps) {
    for (const l of state.analysisStyle ? state.analysisStyle.layers : []) {
      if (l["source-layer"] === name && map.getLayer(l.id)) map.setLayoutProperty(l.id, "visibility", on ? "visible" : "none");
    }
  }
  showAnalysisLegend();
}

function showAnalysisLegend() {
  const box = $("analysis-legend");
  box.innerHTML = "";
  const a = state.analysisStyle;
  if (!a) return;
  const sourceLayer = Object.fromEntries(a.layers.map((l) => [l.id, l["source-layer"]]));
  for (const entry of a.metadata.legend) {
    if (!analysisVisible(sourceLayer[entry.layer])) continue;
    const title = document.createElement("div");
    title.className = "title"; title.textContent = entry.title; title.dataset.layer = entry.layer;
    box.appendChild(title);
    const ul = document.createElement("ul");
    if (entry.items.length > 1 && entry.items.every((i) => /^[0-9.]+$/.test(i.label))) ul.className = "ramp";
    for (const item of entry.items) {
      const li = document.createElement("li");
      li.innerHTML = `<span class="sw" style="background:${item.color}"></span>`;
      const text = document.createElement("span");
      text.textContent = item.label;
      li.appendChild(text);
      ul.appendChild(li);
    }
    box.appendChild(ul);
  }
}

function reportFor(code) {
  const found = state.reports.filter((r) => r.territoire === code).sort((a, b) => a.millesime.localeCompare(b.millesime));
  return found.length ? found[found.length - 1] : null;
}

function reportLink(parent, report, text) {
  const a = document.createElement("a");
  a.className = "report"; a.href = report.html; a.target = "_blank"; a.rel = "noopener";
  a.textContent = `${text} (${report.millesime.replace("-", " → ")})`;
  parent.appendChild(a);
}

function propertyTable(parent, props) {
  const table = document.createElement("table");
  for (const [k, v] of Object.entries(props)) {
    const tr = table.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = typeof v === "number" ? String(Math.round(v * 100) / 100) : String(v ?? "");
  }
  parent.appendChild(table);
}

function showAnalysisInfo(map, event) {
  const out = $("info-analyses");
  out.innerHTML = "";
  const a = state.analysisStyle;
  if (!a || !map.getLayer(HIT)) return;
  const shown = a.layers.filter((l) => l["source-layer"] !== "communes" && state.wanted.has(l["source-layer"])
                                       && map.getLayer(l.id)).map((l) => l.id);
  const features = map.queryRenderedFeatures(event.point, { layers: [...shown, HIT] });
  const feature = features.find((f) => f.layer.id !== HIT);
  if (feature) {
    const head = document.createElement("div");
    head.className = "title"; head.textContent = ANALYSES[feature.sourceLayer] || feature.sourceLayer;
    out.appendChild(head);
    propertyTable(out, feature.properties);
  }
  const commune = features.find((f) => f.layer.id === HIT);
  if (commune) {
    const { insee_com: code, nom } = commune.properties;
    const line = document.createElement("div");
    line.className = "commune"; line.textContent = `Commune : ${nom} (${code})`;
    out.appendChild(line);
    const report = reportFor(code);
    if (report) reportLink(out, report, `Portrait de territoire de ${nom}`);
  }
  const dep = reportFor($("dep").value);
  if (dep) reportLink(out, dep, `Portrait du département ${$("dep").value}`);
}

function waitIdle(map) {
  return new Promise((resolve) => {
    if (map.loaded()) resolve(); else map.once("idle", resolve);
  });
}

async function showLegend(layer) {
  const list = $("legend-items");
  list.innerHTML = "";
  $("legend-title").textContent = layer ? layer.title : state.analysisStyle ? "" : "Aucune couche disponible";
  if (!layer) return;
  const legend = await getJSON(`tiles/${layer.id}/legend.json`);
  for (const c of legend.classes) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="sw" style="background:${c.colour}"></span>`;
    const text = document.createElement("span");
    text.textContent = c.code !== c.label ? `${c.code} — ${c.label}` : c.label;
    li.appendChild(text);
    list.appendChild(li);
  }
}

async function showLinks(dep, layer) {
  const ul = $("link-list");
  ul.innerHTML = "";
  const add = (href, text) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = href; a.textContent = text; li.appendChild(a); ul.appendChild(li);
  };
  if (layer) {
    const b = layer.bounds.map((v) => v.toFixed(4)).join(",");
    add(`${BASE}stac/search?bbox=${b}&limit=50`, "Catalogue STAC (emprise)");
    add(`${BASE}wmts?SERVICE=WMTS&REQUEST=GetCapabilities`, "WMTS GetCapabilities");
    add(`${BASE}wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetCapabilities`, "WMS GetCapabilities");
  }
  if (dep === NATIONAL) {
    const national = vectorDataset(dep, layer);
    if (national) add(national.pmtiles, `Tuiles vectorielles France ${national.millesime} (PMTiles)`);
    return;
  }
  add(`${BASE}stats/${dep}`, "Statistiques par commune");
  if (state.analyses.some((d) => d.departement === dep)) {
    add(`${BASE}stats/${dep}/analyses`, "Analyses : tableaux, portraits, tuiles");
    const report = reportFor(dep);
    if (report) add(report.html, `Portrait du département (${report.millesime.replace("-", " → ")})`);
  }
  try {
    const downloads = await getJSON(`downloads/${dep}`);
    for (const a of downloads.archives) {
      add(a.href, `Télécharger ${a.name} (${(a.size / 1e6).toFixed(1)} Mo)`);
    }
  } catch (err) { /* no archive for this département */ }
}

function labelOf(kind, code) {
  const table = state.nomenclature && state.nomenclature[kind];
  return table && table[code] ? table[code].label : "";
}

async function showInfo(map, event, layer) {
  const body = $("info-body");
  if (!layer) { body.textContent = ""; return; }
  if (map.getLayer("occupation-fill")) {
    const features = map.queryRenderedFeatures(event.point, { layers: ["occupation-fill"] });
    if (!features.length) { body.textContent = "Aucun polygone ici."; return; }
    const p = features[0].properties;
    body.innerHTML = "<table></table>";
    const rows = [["couverture", `${p.code_cs} ${labelOf("couverture", p.code_cs)}`],
                  ["usage", `${p.code_us} ${labelOf("usage", p.code_us)}`],
                  ["millésime", p.millesime], ["source", p.source], ["id", p.id]];
    for (const [k, v] of rows) {
      const tr = body.firstChild.insertRow();
      tr.insertCell().textContent = k; tr.insertCell().textContent = v ?? "";
    }
    return;
  }
  const { lng, lat } = event.lngLat;
  const d = 1e-6 * Math.pow(2, 22 - map.getZoom());
  const url = `wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetFeatureInfo&LAYERS=${layer.id}&QUERY_LAYERS=${layer.id}`
    + `&STYLES=&CRS=CRS:84&BBOX=${lng - d},${lat - d},${lng + d},${lat + d}&WIDTH=3&HEIGHT=3&I=1&J=1`
    + "&FORMAT=image/png&INFO_FORMAT=application/json";
  const info = await getJSON(url);
  const p = info.features[0].properties;
  body.textContent = p.value == null ? "Aucune donnée ici."
    : `${p.code} — ${p.label} (département ${p.departement}, millésime ${p.millesime})`;
}

function makeMap(container) {
  const map = new maplibregl.Map({ container, style: { version: 8, sources: {}, layers: [] },
                                   center: FRANCE.center, zoom: FRANCE.zoom, attributionControl: { compact: true },
                                   preserveDrawingBuffer: true });
  map.addControl(new maplibregl.NavigationControl(), "top-right");
  return map;
}

function syncMaps(a, b) {
  let moving = false;
  const follow = (src, dst) => () => {
    if (moving) return;
    moving = true;
    dst.jumpTo({ center: src.getCenter(), zoom: src.getZoom(), bearing: src.getBearing(), pitch: src.getPitch() });
    moving = false;
  };
  a.on("move", follow(a, b));
  b.on("move", follow(b, a));
}

function applySwipe() {
  const on = $("swipe").checked && $("campaign2").value;
  $("map2").classList.toggle("hidden", !on);
  $("slider").classList.toggle("hidden", !on);
  $("map2").style.clipPath = `inset(0 0 0 ${$("slider").value}%)`;
  if (on) state.maps[1].resize();
}

let placed = null;  // the filter's value the view was last placed for
async function refresh() {
  const dep = $("dep").value;
  const kind = $("kind").value;
  const layers = layersFor(dep, kind);
  fill($("campaign"), layers.map((l) => [campaignOf(l), campaignOf(l).replace("_", " → ")]), true);
  fill($("campaign2"), layers.map((l) => [campaignOf(l), campaignOf(l).replace("_", " → ")]), true);
  if (layers.length > 1 && $("campaign2").value === $("campaign").value) {
    $("campaign2").value = campaignOf(layers.find((l) => campaignOf(l) !== $("campaign").value));
  }
  const layer = layers.length ? selectedLayer($("campaign").value) : null;
  const other = layers.length > 1 ? selectedLayer($("campaign2").value) : null;
  $("swipe-box").disabled = !other;
  try {
    const analyses = await loadAnalyses(dep);
    status(layer || analyses ? "" : "Pas de données pour cette couche dans ce département.");
    state.maps[0].setStyle(await styleFor(layer, dep));
    state.maps[1].setStyle(await styleFor(other, dep));
    if (placed !== dep) {
      await showPlace(state.maps[0], dep, state.datasets, getJSON, layer ? layer.bounds : analyses && analyses.bounds);
      placed = dep;
    }
    await showLegend(layer);
    showAnalysisLegend();
    await showLinks(dep, layer);
  } catch (err) {
    status(String(err));
  }
  applySwipe();
  document.body.dataset.ready = "1";
}

async function main() {
  const protocol = new pmtiles.Protocol();
  maplibregl.addProtocol("pmtiles", protocol.tile);
  state.maps = [makeMap("map"), makeMap("map2")];
  syncMaps(state.maps[0], state.maps[1]);
  try {
    [state.layers, state.datasets, state.nomenclature] = await Promise.all([
      getJSON("tiles/layers"), getJSON("vector/datasets").catch(() => []), getJSON("tiles/nomenclature.json"),
    ]);
  } catch (err) {
    status(`Services indisponibles: ${err}`);
    return;
  }
  state.analyses = state.datasets.filter((d) => d.kind === "analyses");
  fill($("dep"), departementOptions(state.layers, state.datasets));
  const kinds = Object.keys(KIND_TITLES).filter((k) => state.layers.some((l) => l.kind === k));
  fill($("kind"), kinds.map((k) => [k, KIND_TITLES[k]]));
  const params = new URLSearchParams(location.search);
  for (const name of ["dep", "kind", "mode"]) if (params.get(name)) $(name).value = params.get(name);
  for (const name of (params.get("analyses") || "").split(",")) if (name in ANALYSES) state.wanted.add(name);
  if (params.get("amillesime")) { await loadAnalyses($("dep").value); $("amillesime").value = params.get("amillesime"); }
  await refresh();
  if (params.get("campaign")) { $("campaign").value = params.get("campaign"); await refresh(); }
  if (params.get("compare")) {
    $("campaign2").value = params.get("compare");
    $("swipe").checked = true;
    await refresh();
  }
  for (const id of ["dep", "kind", "campaign", "campaign2", "mode", "amillesime"]) $(id).addEventListener("change", refresh);
  $("swipe").addEventListener("change", applySwipe);
  $("slider").addEventListener("input", applySwipe);
  const click = (map, i, e) => {
    const campaign = i === 0 ? $("campaign").value : $("campaign2").value;
    showAnalysisInfo(map, e);
    showInfo(map, e, selectedLayer(campaign)).catch((err) => status(String(err)));
  };
  state.maps.forEach((map, i) => map.on("click", (e) => click(map, i, e)));
  // ?point=lon,lat: what a click there shows (a link to share, and how the browser tests click)
  const point = (params.get("point") || "").split(",").map(Number);
  if (point.length === 2 && point.every(Number.isFinite)) {
    const map = state.maps[0];
    const lngLat = new maplibregl.LngLat(point[0], point[1]);
    // wait for the map to draw the tiles under the point (idle may come before the fitted view's tiles)
    for (let i = 0; i < 40; i++) {
      await waitIdle(map);
      if (!map.getLayer(HIT) || map.queryRenderedFeatures(map.project(lngLat), { layers: [HIT] }).length) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    click(map, 0, { point: map.project(lngLat), lngLat });
    document.body.dataset.clicked = "1";
  }
}

main();
