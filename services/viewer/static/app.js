// OCS GE viewer: MapLibre GL (ES module) + pmtiles, both vendored by services/viewer/build.sh.
// Every URL is relative to this page, so the viewer works under any prefix (local server or CloudFront).
import * as maplibregl from "./vendor/maplibre-gl.mjs";

const BASE = location.origin + location.pathname.replace(/[^/]*$/, "");
const KIND_TITLES = {
  COUVERTURE: "Couverture du sol", USAGE: "Usage du sol", ARTIF: "Artificialisation",
  CONSTRUCTION: "Zone construite", PREDICTION: "Prédiction du modèle", DIFFERENCE: "Évolutions",
};
const $ = (id) => document.getElementById(id);
const state = { layers: [], datasets: [], nomenclature: null, maps: [] };

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

function layersFor(dep, kind) {
  return state.layers.filter((l) => l.kind === kind && l.departements.includes(dep));
}

function campaignOf(layer) { return layer.previous ? `${layer.previous}_${layer.campaign}` : layer.campaign; }

function selectedLayer(campaign) {
  const id = campaign.includes("_") ? `OCSGE.DIFFERENCE.${campaign}` : `OCSGE.${$("kind").value}.${campaign}`;
  return state.layers.find((l) => l.id === id);
}

function vectorDataset(dep, layer) {
  if (!layer || !["COUVERTURE", "USAGE"].includes(layer.kind)) return null;
  const [first, last] = layer.campaign.split("-").map(Number);
  return state.datasets.find((d) => d.kind === "occupation" && d.departement === dep
    && Number(d.millesime) >= first && Number(d.millesime) <= last) || null;
}

function rasterSource(layer) {
  const tiles = `${BASE}wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=${layer.id}&STYLE=normal`
    + "&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}";
  return { type: "raster", tiles: [tiles], tileSize: 256, bounds: layer.bounds,
           minzoom: layer.minzoom, maxzoom: layer.maxzoom, attribution: "OCS GE — IGN / OCS GE cloud" };
}

async function styleFor(layer, dep) {
  const style = { version: 8, sources: {}, layers: [
    { id: "background", type: "background", paint: { "background-color": "#e8ecef" } }] };
  if (!layer) return style;
  const dataset = $("mode").value === "vector" ? vectorDataset(dep, layer) : null;
  if (dataset) {
    const attribute = layer.kind === "USAGE" ? "code_us" : "code_cs";
    const vstyle = await getJSON(`vector/occupation/${dataset.departement}/${dataset.millesime}/style.json?attribute=${attribute}`);
    style.sources.ocsge = { type: "vector", url: "pmtiles://" + dataset.pmtiles };
    for (const l of vstyle.layers) if (l.type !== "background") style.layers.push({ ...l, source: "ocsge" });
  } else {
    style.sources.ocsge = rasterSource(layer);
    style.layers.push({ id: "raster", type: "raster", source: "ocsge", paint: { "raster-resampling": "nearest" } });
  }
  return style;
}

async function showLegend(layer) {
  const list = $("legend-items");
  list.innerHTML = "";
  $("legend-title").textContent = layer ? layer.title : "Aucune couche disponible";
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
  add(`${BASE}stats/${dep}`, "Statistiques par commune");
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
  if (!layer) return;
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
                                   center: [2.35, 46.6], zoom: 5, attributionControl: { compact: true },
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

let fitted = false;
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
  status(layer ? "" : "Pas de données pour cette couche dans ce département.");
  try {
    state.maps[0].setStyle(await styleFor(layer, dep));
    state.maps[1].setStyle(await styleFor(other, dep));
    if (layer && !fitted) {
      state.maps[0].fitBounds(layer.bounds, { padding: 20, animate: false, maxZoom: 15 });
      fitted = true;
    }
    await showLegend(layer);
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
  const deps = [...new Set(state.layers.flatMap((l) => l.departements))].sort();
  fill($("dep"), deps.map((d) => [d, d]));
  const kinds = Object.keys(KIND_TITLES).filter((k) => state.layers.some((l) => l.kind === k));
  fill($("kind"), kinds.map((k) => [k, KIND_TITLES[k]]));
  const params = new URLSearchParams(location.search);
  for (const name of ["dep", "kind", "mode"]) if (params.get(name)) $(name).value = params.get(name);
  await refresh();
  if (params.get("campaign")) { $("campaign").value = params.get("campaign"); await refresh(); }
  if (params.get("compare")) {
    $("campaign2").value = params.get("compare");
    $("swipe").checked = true;
    await refresh();
  }
  for (const id of ["dep", "kind", "campaign", "campaign2", "mode"]) $(id).addEventListener("change", refresh);
  $("swipe").addEventListener("change", applySwipe);
  $("slider").addEventListener("input", applySwipe);
  state.maps.forEach((map, i) => map.on("click", (e) => {
    const campaign = i === 0 ? $("campaign").value : $("campaign2").value;
    showInfo(map, e, selectedLayer(campaign)).catch((err) => status(String(err)));
  }));
}

main();
