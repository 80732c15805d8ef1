// The viewer's national view: it opens on France at zoom 6 with the national layers (raster layers of the
// layer list, mosaics of every département; the national vector tiles /vector/{kind}/FR/{millésime}/…), and
// the départements are a filter: choosing one zooms to it and shows only its data (WMTS DEPARTEMENT=… when
// the layer list says the layer takes it, the département's own vector tiles).
export const NATIONAL = "";  // the filter's value for the whole of France
export const FRANCE = { center: [2.35, 46.6], zoom: 6 };

// the filter's options: France first, then every département that some layer or tileset holds
export function departementOptions(layers, datasets) {
  const codes = new Set([...layers.flatMap((l) => l.departements || []),
                         ...datasets.filter((d) => !d.national).map((d) => d.departement)]);
  return [[NATIONAL, "France entière"], ...[...codes].sort().map((c) => [c, c])];
}

// the layers of a kind shown under the filter: all of them for France, those holding the département else
export function layersUnder(layers, dep, kind) {
  return layers.filter((l) => l.kind === kind && (dep === NATIONAL || (l.departements || []).includes(dep)));
}

// the vector tileset of a layer under the filter: the national one for France, the département's own else
export function vectorTileset(datasets, dep, layer, kind = "occupation") {
  if (!layer || !["COUVERTURE", "USAGE"].includes(layer.kind)) return null;
  const [first, last] = layer.campaign.split("-").map(Number);
  const wanted = dep === NATIONAL ? "FR" : dep;
  return datasets.find((d) => d.kind === kind && d.departement === wanted
    && Number(d.millesime) >= first && Number(d.millesime) <= last) || null;
}

// a MapLibre source of a vector tileset: the national one through the MVT endpoint (TileJSON: its zooms,
// bounds and tiles as served), a département's by ranges on its PMTiles (one file, no server work)
export function vectorSource(dataset) {
  return dataset.national ? { type: "vector", url: dataset.tilejson }
                          : { type: "vector", url: "pmtiles://" + dataset.pmtiles };
}

// the WMTS parameter that restricts a raster layer to one département, when the layer takes it
export function departementParameter(layer, dep) {
  return dep !== NATIONAL && layer.departement_filter ? `&DEPARTEMENT=${encodeURIComponent(dep)}` : "";
}

// where a département lies: the bounds of its tilesets, else the union of its catalogue items' boxes
export async function departementBounds(dep, datasets, getJSON) {
  const own = datasets.filter((d) => d.departement === dep && d.bounds);
  const boxes = own.map((d) => d.bounds);
  if (!boxes.length) {
    const filter = encodeURIComponent(`"ocsge:departement" = '${dep}'`);
    const found = await getJSON(`stac/search?filter-lang=cql2-text&filter=${filter}&limit=100`).catch(() => null);
    for (const item of (found && found.features) || []) if (item.bbox) boxes.push(item.bbox);
  }
  if (!boxes.length) return null;
  return [Math.min(...boxes.map((b) => b[0])), Math.min(...boxes.map((b) => b[1])),
          Math.max(...boxes.map((b) => b[2])), Math.max(...boxes.map((b) => b[3]))];
}

// France at zoom 6, or the département's extent (``fallback``: the bounds of what the view shows)
export async function showPlace(map, dep, datasets, getJSON, fallback) {
  if (dep === NATIONAL) { map.jumpTo(FRANCE); return; }
  const bounds = (await departementBounds(dep, datasets, getJSON)) || fallback;
  if (bounds) map.fitBounds(bounds, { padding: 20, animate: false, maxZoom: 15 });
}
