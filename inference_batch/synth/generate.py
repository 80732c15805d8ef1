"""``generate``: build the scene and write every artifact of the territory through storage writers.

Written per millésime (keys from ``ocsge.products.product_key``):

- ``truth``: ground truth OCS GE polygons, canonical schema (GeoParquet, ``source="synthetic"``); the
  first millésime is published with the deliberate errors listed in the manifest;
- ``communes``, ``bdtopo_batiment``, ``bdtopo_route``, ``bdtopo_voie_ferree``, ``bdtopo_hydro``, ``rpg``,
  ``bdforet``, ``fichiers_fonciers``: ancillary layers of that year (GeoParquet);
- ``delivery``: the IGN-like ``.7z`` (OCCUPATION_SOL, ZONE_CONSTRUITE, and for the second millésime the
  PATCH_CORR layer correcting the first);
- ``imagery_rgb``, ``imagery_irc``, ``imagery_dsm``, ``imagery_dtm``: COGs (unless ``imagery=False``);

and, last, the manifest under ``product_key("synth_manifest", dep, first millésime)``. A run whose
manifest already exists with the same parameters (and whose listed objects all exist) is skipped; any
other run overwrites everything with identical bytes for identical parameters.
"""

from __future__ import annotations

import json
from typing import Any

import geopandas as gpd

from inference_batch.products.artifacts import write_vector
from inference_batch.synth.scene import Scene, build_scene, check_millesimes
from ocsge.errors import OcsgeError, StorageError
from ocsge.products import product_key
from ocsge.progress import done, progress, step
from ocsge.storage import Storage, open_storage
from ocsge.territory import departement as get_departement

GENERATOR_VERSION = "1"
ANCILLARY_PRODUCTS = ("bdtopo_batiment", "bdtopo_route", "bdtopo_voie_ferree", "bdtopo_hydro", "rpg", "bdforet",
                      "fichiers_fonciers")
Manifest = dict[str, Any]
NOTES = {
    "truth": "truth keys hold the OCS GE polygons of each millésime in the canonical schema; the first "
             "millésime is published with the deliberate errors listed under 'errors'",
    "zone_construite": "ZONE_CONSTRUITE is in the deliveries (ZONE_CONSTRUITE.gpkg); ingesting them writes the "
                       "zone_construite product",
    "changes": "each change lists its transitions (codes before/after, area, a point inside) and every truth "
               "polygon it affects (ids_before, ids_after); polygons listed nowhere are identical in both "
               "millésimes (same id, codes and geometry)",
    "ancillary": "ancillary layers are consistent with the truth but imperfect on purpose (see 'imperfections')",
}


def write_geoparquet(storage: Storage, key: str, frame: gpd.GeoDataFrame) -> None:
    """GeoParquet 1.1 through the project's one writer (covering bbox, row groups; deterministic bytes for
    identical frames). Rows keep the generator's order (by id), on which manifests and tests rely."""
    write_vector(storage, key, frame, sort=False)


def write_json(storage: Storage, key: str, data: Any) -> None:
    storage.put_bytes(key, json.dumps(data, ensure_ascii=False, indent=1, sort_keys=False).encode(),
                      content_type="application/json")


def _params(departement: str, width_m: float, height_m: float, seed: int, millesimes: tuple[int, int],
            imagery: bool, resolution: float, origin: tuple[float, float]) -> dict[str, Any]:
    return {"generator_version": GENERATOR_VERSION, "departement": departement, "width_m": float(width_m),
            "height_m": float(height_m), "seed": int(seed), "millesimes": list(millesimes),
            "imagery": bool(imagery), "resolution": float(resolution), "origin": [float(origin[0]), float(origin[1])]}


def _up_to_date(storage: Storage, key: str, params: dict[str, Any]) -> Manifest | None:
    if not storage.exists(key):
        return None
    try:
        manifest = json.loads(storage.get_bytes(key))
    except (ValueError, StorageError):
        return None
    if manifest.get("parameters") != params:
        return None
    keys = [k for per_year in manifest.get("keys", {}).values() for k in per_year.values()]
    return manifest if keys and all(storage.exists(k) for k in keys) else None


def generate(
    storage: Storage | str | None = None,
    departement: str = "S01",
    width_m: float = 2000,
    height_m: float = 1500,
    seed: int = 42,
    millesimes: tuple[int, int] = (2021, 2024),
    imagery: bool = True,
    resolution: float = 0.2,
    origin: tuple[float, float] = (700000.0, 6600000.0),
    force: bool = False,
) -> Manifest:
    """Generate the territory and write it; returns the manifest (a JSON-able dict)."""
    store = storage if storage is not None and not isinstance(storage, str) else open_storage(storage)
    dep = get_departement(departement)
    if not dep.synthetic:
        raise OcsgeError(f"département {departement!r} is a real one: synthetic territories use S01…S99")
    years = check_millesimes(millesimes)
    if not 0.05 <= float(resolution) <= 5:
        raise OcsgeError(f"imagery resolution {resolution!r} m is out of range (0.05–5 m)")
    params = _params(dep.code, width_m, height_m, seed, years, imagery, resolution, origin)
    manifest_key = product_key("synth_manifest", dep.code, years[0])
    if not force:
        existing = _up_to_date(store, manifest_key, params)
        if existing is not None:
            done(f"synthetic territory {dep.code} already generated with these parameters ({store.root})")
            return existing
    try:
        store.check_writable()
    except OSError as exc:
        raise StorageError(f"storage root {store.root} cannot be written: {exc}") from exc

    step(f"planning synthetic territory {dep.code} ({width_m:g} m × {height_m:g} m, seed {seed})")
    scene = build_scene(dep.code, width_m, height_m, seed, years, origin)
    keys = write_vectors(store, scene)
    extra: dict[str, Any] = {}
    if imagery:
        from inference_batch.synth.imagery import imagery_settings, write_imagery

        for year, imagery_keys in write_imagery(store, scene, resolution=float(resolution)).items():
            keys[str(year)].update(imagery_keys)
        extra["imagery"] = imagery_settings(float(resolution))
    manifest = scene.manifest(parameters=params, keys=keys, manifest_key=manifest_key, notes=NOTES, **extra)
    write_json(store, manifest_key, manifest)
    done(f"synthetic territory {dep.code} written under {store.root} (manifest {manifest_key})")
    return manifest


def write_vectors(store: Storage, scene: Scene) -> dict[str, dict[str, str]]:
    """Truth, communes, ancillary layers and deliveries of both millésimes; returns the keys by year."""
    from inference_batch.synth.delivery import write_delivery

    keys: dict[str, dict[str, str]] = {}
    n_items = len(scene.millesimes) * (3 + len(ANCILLARY_PRODUCTS))
    with progress(f"writing vector layers of {scene.departement}", total=n_items) as advance:
        for k, year in enumerate(scene.millesimes):
            per_year: dict[str, str] = {}
            key = product_key("truth", scene.departement, year)
            write_geoparquet(store, key, scene.truth[year])
            per_year["truth"] = key
            advance(info=key)
            key = product_key("communes", scene.departement, year)
            write_geoparquet(store, key, scene.communes)
            per_year["communes"] = key
            advance(info=key)
            for product in ANCILLARY_PRODUCTS:
                key = product_key(product, scene.departement, year)
                write_geoparquet(store, key, scene.ancillary[year][product])
                per_year[product] = key
                advance(info=key)
            per_year["delivery"] = write_delivery(store, scene, k)
            advance(info=per_year["delivery"])
            keys[str(year)] = per_year
    return keys
