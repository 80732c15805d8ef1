// Photo-interpretation and contributions page (issue 17): OpenLayers' full build (global `ol`, vendored by
// services/viewer/build.sh) over the consolidation API (/consolidation/…, services/consolidation/API.md) and
// the orthophoto layers (ORTHOIMAGERY.ORTHOPHOTOS[.IRC].{campaign}, services/tiles/ortho.py).
// Every URL is relative to this page, so it works under any prefix. No inline script: the viewer's CSP holds.
/* global ol */

const BASE = location.origin + location.pathname.replace(/[^/]*$/, "");
const API = "consolidation/";
const ROLES = ["contributor", "interpreter", "reviewer", "admin"];
const CAMPAIGNS = [["2017-2020", 2017, 2020], ["2021-2023", 2021, 2023], ["2024-2026", 2024, 2026]];
const CONFLICT = "Quelqu'un d'autre a modifié cette cellule entre-temps : elle a été rechargée, refaites votre "
  + "modification sur la version à jour.";
const $ = (id) => document.getElementById(id);
const state = {
  user: null, role: null, csrf: sessionStorage.getItem("ocsge-csrf"), windows: [], window: null,
  task: null, selected: null, layers: [], nomenclature: null, divider: 0.5, drawing: null,
  contributionGeometry: null,
};

// --- messages and the API ------------------------------------------------------------------------------

function say(text, kind = "") {
  const box = $("message");
  box.textContent = text || "";
  box.className = kind;
}

function detailOf(data) {
  if (!data) return "";
  if (typeof data === "string") return data;
  if (typeof data.detail === "string") return data.detail;
  if (Array.isArray(data.detail)) {
    return data.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  return JSON.stringify(data);
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  // the session cookie is HttpOnly and SameSite=Strict; a write made with it carries the CSRF token
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const resp = await fetch(BASE + path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!resp.ok) {
    const err = new Error(detailOf(data) || `HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function hasRole(role) {
  return state.role !== null && ROLES.indexOf(state.role) >= ROLES.indexOf(role);
}

// --- nomenclature selects ------------------------------------------------------------------------------

function leaves(kind) {
  // leaf codes (those with a raster value) of couverture or usage, from /tiles/nomenclature.json
  const table = (state.nomenclature && state.nomenclature[kind]) || {};
  return Object.entries(table).filter(([, c]) => c.value !== null && c.value !== undefined)
    .map(([code, c]) => [code, `${code} — ${c.label}`]);
}

function fill(select, entries) {
  select.innerHTML = "";
  for (const [value, text] of entries) {
    const o = document.createElement("option");
    o.value = value; o.textContent = text; select.appendChild(o);
  }
}

function colourOf(code) {
  const c = state.nomenclature && state.nomenclature.couverture[code];
  return (c && c.colour) || "#888888";
}

function labelOf(kind, code) {
  const c = state.nomenclature && state.nomenclature[kind] && state.nomenclature[kind][code];
  return c ? c.label : "";
}

// --- the map: two photos with a swipe, the cells, the polygons, the previous millésime -------------------

const geojson = new ol.format.GeoJSON({ dataProjection: "EPSG:4326", featureProjection: "EPSG:3857" });
const sources = {
  cells: new ol.source.Vector(), polygons: new ol.source.Vector(), previous: new ol.source.Vector(),
  draw: new ol.source.Vector(),
};

function hexAlpha(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

const CELL_COLOURS = { todo: "#ff8f00", done: "#2e7d32", checked: "#1565c0" };
function cellStyle(feature) {
  const current = state.task && feature.getId() === state.task.id;
  const colour = CELL_COLOURS[feature.get("status")] || "#ff8f00";
  return new ol.style.Style({
    stroke: new ol.style.Stroke({ color: colour, width: current ? 4 : 2 }),
    fill: new ol.style.Fill({ color: current ? "rgba(0,0,0,0)" : hexAlpha(colour, 0.12) }),
  });
}

function polygonStyle(feature) {
  const selected = state.selected && feature.get("id") === state.selected.get("id");
  const colour = colourOf(feature.get("code_cs"));
  return new ol.style.Style({
    fill: new ol.style.Fill({ color: hexAlpha(colour, selected ? 0.55 : 0.3) }),
    stroke: new ol.style.Stroke({ color: selected ? "#ffeb3b" : colour, width: selected ? 3 : 1.5 }),
  });
}

const previousStyle = new ol.style.Style({
  stroke: new ol.style.Stroke({ color: "#00e5ff", width: 1.5, lineDash: [6, 4] }),
});
const drawStyle = new ol.style.Style({
  stroke: new ol.style.Stroke({ color: "#d500f9", width: 2.5 }),
  fill: new ol.style.Fill({ color: "rgba(213,0,249,0.15)" }),
  image: new ol.style.Circle({ radius: 6, fill: new ol.style.Fill({ color: "#d500f9" }) }),
});

const photoLeft = new ol.layer.Tile({ visible: false });   // previous millésime, the whole map
const photoRight = new ol.layer.Tile({ visible: false });  // new millésime, right of the divider
const layers = {
  cells: new ol.layer.Vector({ source: sources.cells, style: cellStyle }),
  previous: new ol.layer.Vector({ source: sources.previous, style: previousStyle }),
  polygons: new ol.layer.Vector({ source: sources.polygons, style: polygonStyle }),
  draw: new ol.layer.Vector({ source: sources.draw, style: drawStyle }),
};
const map = new ol.Map({
  target: "map",
  layers: [photoLeft, photoRight, layers.cells, layers.polygons, layers.previous, layers.draw],
  view: new ol.View({ center: ol.proj.fromLonLat([2.35, 46.6]), zoom: 6, maxZoom: 21 }),
});

// the swipe: the new millésime's photo is drawn only right of the divider (the divider is an element the user
// drags; OpenLayers' layer-swipe pattern clips the layer's canvas before it renders)
photoRight.on("prerender", (event) => {
  const ctx = event.context;
  const [width, height] = map.getSize();
  const x = width * state.divider;
  const tl = ol.render.getRenderPixel(event, [x, 0]);
  const tr = ol.render.getRenderPixel(event, [width, 0]);
  const bl = ol.render.getRenderPixel(event, [x, height]);
  const br = ol.render.getRenderPixel(event, [width, height]);
  ctx.save();
  ctx.beginPath();
  ctx.moveTo(tl[0], tl[1]);
  ctx.lineTo(bl[0], bl[1]);
  ctx.lineTo(br[0], br[1]);
  ctx.lineTo(tr[0], tr[1]);
  ctx.closePath();
  ctx.clip();
});
photoRight.on("postrender", (event) => event.context.restore());

function placeDivider(fraction) {
  state.divider = Math.min(1, Math.max(0, fraction));
  $("divider").style.left = `${state.divider * 100}%`;
  document.body.dataset.divider = state.divider.toFixed(3);
  map.render();
}

function setupDivider() {
  const divider = $("divider");
  let dragging = false;
  divider.addEventListener("pointerdown", (e) => { dragging = true; divider.setPointerCapture(e.pointerId); });
  divider.addEventListener("pointermove", (e) => {
    if (!dragging) return;
    const box = $("maps").getBoundingClientRect();
    placeDivider((e.clientX - box.left) / box.width);
  });
  divider.addEventListener("pointerup", () => { dragging = false; });
  divider.addEventListener("keydown", (e) => {
    if (e.key === "ArrowLeft") placeDivider(state.divider - 0.05);
    if (e.key === "ArrowRight") placeDivider(state.divider + 0.05);
  });
}

function campaignOf(year) {
  const found = CAMPAIGNS.find(([, first, last]) => first <= year && year <= last);
  return found ? found[0] : null;
}

function photoLayer(kind, dep, year) {
  const campaign = campaignOf(year);
  return state.layers.find((l) => l.kind === kind && l.campaign === campaign && l.departements.includes(dep)) || null;
}

function photoSource(layer) {
  const url = `${BASE}wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=${encodeURIComponent(layer.id)}`
    + "&STYLE=normal&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}";
  return new ol.source.XYZ({ url, minZoom: layer.minzoom, maxZoom: layer.maxzoom, transition: 0,
                             attributions: "Orthophotographies — IGN / OCS GE cloud" });
}

function showPhotos() {
  const w = state.window;
  const kind = $("photo-kind").value;
  const before = w ? photoLayer(kind, w.departement, w.previous_millesime) : null;
  const after = w ? photoLayer(kind, w.departement, w.millesime) : null;
  photoLeft.setSource(before ? photoSource(before) : null);
  photoLeft.setVisible(Boolean(before));
  photoRight.setSource(after ? photoSource(after) : null);
  photoRight.setVisible(Boolean(after));
  const swipe = Boolean(before && after);
  $("divider").classList.toggle("hidden", !swipe);
  $("labels").classList.toggle("hidden", !w);
  $("label-left").textContent = w ? `${w.previous_millesime}${before ? "" : " (pas de photo)"}` : "";
  $("label-right").textContent = w ? `${w.millesime}${after ? "" : " (pas de photo)"}` : "";
  document.body.dataset.photos = [before && before.id, after && after.id].filter(Boolean).join(" ");
}

// --- account -------------------------------------------------------------------------------------------

function showAccount() {
  const logged = Boolean(state.user);
  $("login-form").classList.toggle("hidden", logged);
  $("whoami").classList.toggle("hidden", !logged);
  $("user").textContent = logged ? `${state.user} (${state.role})` : "";
  document.body.dataset.user = state.user || "";
  $("contribution-box").classList.toggle("hidden", !(logged && state.window && hasRole("contributor")));
  const edit = logged && hasRole("interpreter");
  for (const id of ["reclassify", "split", "done"]) $(id).disabled = !edit;
}

async function login(event) {
  event.preventDefault();
  try {
    const answer = await api(API + "auth/login", { method: "POST",
      body: { username: $("username").value, password: $("password").value } });
    state.user = answer.username || $("username").value;
    state.role = answer.role;
    state.csrf = answer.csrf_token;
    sessionStorage.setItem("ocsge-csrf", state.csrf);
    $("password").value = "";
    say(`Connecté : ${state.user}.`, "ok");
  } catch (err) {
    say(err.status === 401 ? "Identifiant ou mot de passe incorrect." : `Connexion impossible : ${err.message}`,
        "error");
  }
  showAccount();
}

async function logout() {
  try { await api(API + "auth/logout", { method: "POST" }); } catch { /* the session may be gone already */ }
  state.user = state.role = state.csrf = null;
  sessionStorage.removeItem("ocsge-csrf");
  say("Déconnecté.");
  showAccount();
}

async function restoreSession() {
  if (!state.csrf) return;  // a write would need the token: log in again
  try {
    const me = await api(API + "me");
    state.user = me.username;
    state.role = me.role;
  } catch {
    state.csrf = null;
    sessionStorage.removeItem("ocsge-csrf");
  }
}

// --- windows, tasks, progress --------------------------------------------------------------------------

function windowPath() {
  const w = state.window;
  return `${API}${encodeURIComponent(w.departement)}/${w.millesime}/`;
}

async function loadWindows() {
  const answer = await api(API + "windows");
  state.windows = answer.windows || [];
  fill($("window"), state.windows.map((w) => [w.id, `${w.departement} — ${w.previous_millesime} → ${w.millesime}`
    + ` (${w.tasks} cellules)`]));
  if (!state.windows.length) say("Aucune fenêtre de consolidation ouverte.");
}

async function selectWindow() {
  state.window = state.windows.find((w) => w.id === $("window").value) || null;
  state.task = null;
  state.selected = null;
  $("task-box").classList.add("hidden");
  for (const s of ["polygons", "previous", "draw"]) sources[s].clear();
  showAccount();
  showPhotos();
  if (!state.window) return;
  if (state.window.bbox) {
    const [w, s, e, n] = state.window.bbox;
    map.getView().fit(ol.proj.transformExtent([w, s, e, n], "EPSG:4326", "EPSG:3857"),
                      { padding: [30, 30, 30, 30], maxZoom: 19 });
  }
  await Promise.all([loadTasks(), loadProgress()]);
}

async function loadTasks() {
  const status = $("status-filter").value;
  const cells = await api(windowPath() + "tasks" + (status ? `?status=${status}` : ""));
  sources.cells.clear();
  sources.cells.addFeatures(geojson.readFeatures(cells));
  const list = $("task-list");
  list.innerHTML = "";
  for (const f of cells.features) {
    const li = document.createElement("li");
    li.dataset.task = f.id;
    li.className = f.properties.status + (state.task && state.task.id === f.id ? " current" : "");
    li.textContent = `${f.id} — ${{ todo: "à faire", done: "terminée", checked: "contrôlée" }[f.properties.status]
      || f.properties.status}${f.properties.assignee ? ` (${f.properties.assignee})` : ""}`;
    li.addEventListener("click", () => openTask(f.id).catch((err) => say(err.message, "error")));
    list.appendChild(li);
  }
  document.body.dataset.tasks = String(cells.features.length);
}

async function loadProgress() {
  const p = await api(windowPath() + "progress");
  const done = (p.by_status.done || 0) + (p.by_status.checked || 0);
  const box = $("progress");
  box.innerHTML = "";
  const line = document.createElement("div");
  line.textContent = `${done} / ${p.tasks} cellules terminées (${p.by_status.todo || 0} à faire, `
    + `${p.by_status.checked || 0} contrôlées)`
    + (p.agreement_rate == null ? "" : `, accord de la recette ${Math.round(p.agreement_rate * 100)} %`);
  box.appendChild(line);
  const bar = document.createElement("div");
  bar.className = "bar";
  const fillBar = document.createElement("span");
  fillBar.style.width = `${p.tasks ? (100 * done) / p.tasks : 0}%`;
  bar.appendChild(fillBar);
  box.appendChild(bar);
  document.body.dataset.progress = `${done}/${p.tasks}`;
}

// --- one task: its polygons, selection, reclassify, split, done ------------------------------------------

async function openTask(id, { keepMessage = false } = {}) {
  stopDrawing();
  const answer = await api(`${windowPath()}tasks/${encodeURIComponent(id)}`);
  const task = answer.task;
  const another = !state.task || state.task.id !== task.id;  // a reload after a write keeps the view
  state.task = { ...task.properties, id: task.id };
  sources.polygons.clear();
  sources.previous.clear();
  sources.polygons.addFeatures(geojson.readFeatures(answer.polygons));
  sources.previous.addFeatures(geojson.readFeatures(answer.previous));
  const previousId = state.selected && state.selected.get("id");
  state.selected = sources.polygons.getFeatures().find((f) => f.get("id") === previousId) || null;
  $("task-box").classList.remove("hidden");
  $("task-id").textContent = task.id;
  const p = task.properties;
  $("task-meta").textContent = `état : ${p.status}, version ${p.version}`
    + (p.assignee ? `, ${p.assignee}` : "") + (p.changed_area_m2 ? `, ${Math.round(p.changed_area_m2)} m² changés` : "");
  if (another) {
    const cell = geojson.readFeature(task);
    map.getView().fit(cell.getGeometry().getExtent(), { padding: [60, 60, 60, 60], maxZoom: 20 });
  }
  showPolygons();
  showSelection();
  layers.cells.changed();
  for (const li of $("task-list").children) li.classList.toggle("current", li.dataset.task === task.id);
  if (!keepMessage) say("");
  document.body.dataset.task = task.id;
  document.body.dataset.taskVersion = String(p.version);
  document.body.dataset.taskStatus = p.status;
}

function showPolygons() {
  const body = $("polygon-list").tBodies[0];
  body.innerHTML = "";
  for (const f of sources.polygons.getFeatures()) {
    const tr = body.insertRow();
    tr.dataset.polygon = f.get("id");
    for (const text of [f.get("id"), f.get("code_cs"), f.get("code_us"), f.get("provenance")]) {
      tr.insertCell().textContent = text ?? "";
    }
    tr.title = `${labelOf("couverture", f.get("code_cs"))} / ${labelOf("usage", f.get("code_us"))}`;
    tr.addEventListener("click", () => select(f));
  }
}

function select(feature) {
  state.selected = feature;
  showSelection();
}

function showSelection() {
  const f = state.selected;
  $("edit-form").classList.toggle("hidden", !f);
  for (const tr of $("polygon-list").tBodies[0].rows) tr.classList.toggle("selected", Boolean(f) && tr.dataset.polygon === f.get("id"));
  layers.polygons.changed();
  document.body.dataset.selected = f ? f.get("id") : "";
  if (!f) return;
  $("selected-id").textContent = `${f.get("id")} (version ${f.get("version")})`;
  $("code-cs").value = f.get("code_cs");
  $("code-us").value = f.get("code_us");
  $("code-cs-right").value = f.get("code_cs");
  $("code-us-right").value = f.get("code_us");
}

async function afterWrite(promise, success) {
  try {
    await promise;
    await openTask(state.task.id, { keepMessage: true });
    say(success, "ok");
  } catch (err) {
    if (err.status === 409) {
      await openTask(state.task.id, { keepMessage: true });
      say(CONFLICT, "warning");
      document.body.dataset.conflict = String(Number(document.body.dataset.conflict || 0) + 1);
    } else if (err.status === 401) {
      say("Session expirée : reconnectez-vous.", "error");
      state.user = null;
      showAccount();
    } else {
      say(err.status === 403 ? `Refusé : ${err.message}` : `Erreur : ${err.message}`, "error");
    }
  }
  await Promise.all([loadTasks(), loadProgress()]).catch((err) => say(err.message, "error"));
}

function reclassify(event) {
  event.preventDefault();
  const f = state.selected;
  if (!f) return;
  const body = { polygon_id: f.get("id"), version: f.get("version"), action: "reclassify",
                 code_cs: $("code-cs").value, code_us: $("code-us").value };
  return afterWrite(api(`${windowPath()}tasks/${encodeURIComponent(state.task.id)}/edits`, { method: "POST", body }),
                    `Polygone ${body.polygon_id} reclassé en ${body.code_cs} / ${body.code_us}.`);
}

function stopDrawing() {
  if (state.drawing) map.removeInteraction(state.drawing);
  state.drawing = null;
  sources.draw.clear();
  document.body.dataset.drawing = "";
}

function startDrawing(type, done) {
  stopDrawing();
  const draw = new ol.interaction.Draw({ source: sources.draw, type, style: drawStyle });
  draw.on("drawend", (event) => {
    const geometry = event.feature.getGeometry().clone().transform("EPSG:3857", "EPSG:4326");
    map.removeInteraction(draw);
    state.drawing = null;
    document.body.dataset.drawing = "";
    done({ type, coordinates: geometry.getCoordinates() });
  });
  map.addInteraction(draw);
  state.drawing = draw;
  document.body.dataset.drawing = type;
}

function split() {
  const f = state.selected;
  if (!f) return;
  say("Tracez la ligne de découpe (un clic par sommet, double-clic pour finir).");
  startDrawing("LineString", (line) => {
    const body = { polygon_id: f.get("id"), version: f.get("version"), action: "split", line,
                   codes: [{ code_cs: $("code-cs").value, code_us: $("code-us").value },
                           { code_cs: $("code-cs-right").value, code_us: $("code-us-right").value }] };
    afterWrite(api(`${windowPath()}tasks/${encodeURIComponent(state.task.id)}/edits`, { method: "POST", body }),
               `Polygone ${body.polygon_id} découpé en deux.`);
  });
}

function markDone() {
  if (!state.task) return;
  return afterWrite(api(`${windowPath()}tasks/${encodeURIComponent(state.task.id)}/done`,
                        { method: "POST", body: { version: state.task.version } }),
                    `Cellule ${state.task.id} terminée.`);
}

// --- contributions on the previous millésime -----------------------------------------------------------

function drawContribution() {
  const type = $("contribution-geometry").value;
  say(type === "Point" ? "Cliquez sur la carte à l'endroit de l'erreur."
    : "Dessinez le polygone (double-clic pour finir).");
  startDrawing(type, (geometry) => {
    state.contributionGeometry = geometry;
    say("Géométrie placée : complétez et envoyez le signalement.");
  });
}

async function sendContribution(event) {
  event.preventDefault();
  if (!state.contributionGeometry) { say("Placez d'abord le signalement sur la carte.", "error"); return; }
  const body = { geometry: state.contributionGeometry, code_cs: $("contribution-cs").value,
                 code_us: $("contribution-us").value, comment: $("contribution-comment").value };
  try {
    const answer = await api(windowPath() + "contributions", { method: "POST", body });
    state.contributionGeometry = null;
    sources.draw.clear();
    $("contribution-comment").value = "";
    say(`Signalement ${answer.id} enregistré (${answer.status}).`, "ok");
    document.body.dataset.contribution = String(answer.id);
    await loadProgress();
  } catch (err) {
    say(err.status === 409 ? `La fenêtre n'accepte plus de signalement : ${err.message}` : `Erreur : ${err.message}`,
        "error");
  }
}

// --- clicks on the map ---------------------------------------------------------------------------------

map.on("singleclick", (event) => {
  if (state.drawing) return;
  const polygon = map.forEachFeatureAtPixel(event.pixel, (f) => f, { layerFilter: (l) => l === layers.polygons });
  if (polygon) { select(polygon); return; }
  const cell = map.forEachFeatureAtPixel(event.pixel, (f) => f, { layerFilter: (l) => l === layers.cells });
  if (cell) openTask(cell.getId()).catch((err) => say(err.message, "error"));
});

// for scripts and the browser test: where a point (longitude, latitude) is on the page
window.consolidation = {
  pixelOf(lon, lat) {
    const [x, y] = map.getPixelFromCoordinate(ol.proj.fromLonLat([lon, lat]));
    const box = $("map").getBoundingClientRect();
    return [box.left + x, box.top + y];
  },
};

async function main() {
  setupDivider();
  placeDivider(0.5);
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("window").addEventListener("change", () => selectWindow().catch((err) => say(err.message, "error")));
  $("status-filter").addEventListener("change", () => loadTasks().catch((err) => say(err.message, "error")));
  $("photo-kind").addEventListener("change", showPhotos);
  $("edit-form").addEventListener("submit", reclassify);
  $("split").addEventListener("click", split);
  $("done").addEventListener("click", markDone);
  $("contribution-draw").addEventListener("click", drawContribution);
  $("contribution-form").addEventListener("submit", sendContribution);
  try {
    [state.nomenclature, state.layers] = await Promise.all([
      fetch(BASE + "tiles/nomenclature.json").then((r) => r.json()),
      fetch(BASE + "tiles/layers").then((r) => (r.ok ? r.json() : [])).catch(() => []),
    ]);
    for (const id of ["code-cs", "code-cs-right", "contribution-cs"]) fill($(id), leaves("couverture"));
    for (const id of ["code-us", "code-us-right", "contribution-us"]) fill($(id), leaves("usage"));
    await restoreSession();
    showAccount();
    await loadWindows();
    const params = new URLSearchParams(location.search);
    if (params.get("window")) $("window").value = params.get("window");
    await selectWindow();
    if (params.get("task")) await openTask(params.get("task"));
  } catch (err) {
    say(`Service de consolidation indisponible : ${err.message}`, "error");
  }
  document.body.dataset.ready = "1";
}

main();
