"""The map layers of the analyses as one PMTiles file per département × millésime (vector tiles), built
with the tippecanoe of the product tiles: ``tache_urbaine``, ``zae`` (densification), ``renaturation``
(INSEE 200 m cells) and ``tvb`` (reservoirs and corridors), each with the attributes a legend or a popup
needs. Layers whose product is missing for the millésime are left out. A ``communes`` layer (``insee_com``,
``nom``, from the département's communes) goes with them: the viewer finds the commune under a click in it
and links to its portrait report. Served by key under ``/files`` (HTTP ranges, what the pmtiles protocol
reads) and through the vector tile service (``/vector/analyses/{dep}/{millesime}/…``), and catalogued with
the other analyses."""

from __future__ import annotations

from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import key, read_vector, step_outputs
from inference_batch.products.ingest import communes_key
from inference_batch.products.spatial import SpatialSource
from inference_batch.products.stats import normalise_communes
from inference_batch.products.tiles import build_pmtiles
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import departement

LAYERS: dict[str, tuple[str, list[str]]] = {
    "tache_urbaine": ("tache_urbaine", ["id", "surface_ha"]),
    "zae": ("densification", ["zae_id", "nom", "surface_ha", "ces_pct", "surface_optimisable_ha",
                              "ces_potentiel_pct"]),
    "renaturation": ("renaturation", ["idcar_200m", "artificialise_pct", "impermeable_pct", "vegetation_pct",
                                      "vegetation_prediction_pct", "score_biodiversite", "score_climat",
                                      "score_sante", "potentiel", "prioritaire"]),
    "tvb": ("tvb", ["id", "nature", "surface_ha", "reservoir_a", "reservoir_b", "cout"]),
}
COMMUNES = ("communes", ["insee_com", "nom"])  # layer name, attributes


def run_analyses_tiles(storage: Storage, dep: object, millesime: int, *, force: bool = False,
                       min_zoom: int = 8, max_zoom: int = 15) -> dict[str, str]:
    """Step: the PMTiles of the analyses' map layers of a millésime (none when no layer exists)."""
    d = departement(dep)
    out = key("analyses_pmtiles", d.code, millesime)
    present = {name: (key(product, d.code, millesime), attrs) for name, (product, attrs) in LAYERS.items()
               if storage.exists(key(product, d.code, millesime))}
    if not present:
        return {}
    ckey = communes_key(storage, d, millesime)
    inputs = [k for k, _ in present.values()] + ([ckey] if ckey else [])
    digest = fingerprint(storage, inputs, params={"zooms": [min_zoom, max_zoom]})
    if not force and is_up_to_date(storage, out, digest):
        return {f"analyses_pmtiles_{millesime}": out}
    step(f"pmtiles analyses {d.code} {millesime}: {', '.join(present)}")
    layers = {}
    for name, (k, attrs) in present.items():
        frame = read_vector(storage, k)
        layers[name] = (SpatialSource(frame, columns=[a for a in attrs if a in frame]), attrs)
    if ckey:
        name, attrs = COMMUNES
        layers[name] = (SpatialSource(normalise_communes(read_vector(storage, ckey)), columns=attrs), attrs)
    with refreshing(storage, out, digest), step_outputs(storage) as outputs, storage.writer(out) as tmp:
        outputs.add(out)
        stats = build_pmtiles(layers, tmp, min_zoom=min_zoom, max_zoom=max_zoom,
                              name=f"OCS GE analyses {d.code} {millesime}")
    done(f"pmtiles analyses {d.code} {millesime}: {int(stats['features'])} features")
    return {f"analyses_pmtiles_{millesime}": out}
