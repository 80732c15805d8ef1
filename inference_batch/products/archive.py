"""Download archive of a département × millésime: one zip with a GeoPackage using IGN's layer names
(OCCUPATION_SOL, ZONE_CONSTRUITE, ARTIFICIALISATION; geometry column ``the_geom``, multipolygons),
the class COGs, a README and SHA-256 checksums (``sha256sum -c SHA256SUMS`` works on the unzipped
folder). Layers are copied into the GeoPackage a chunk at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import StepError, key, step_outputs
from inference_batch.products.render import COG_PRODUCT, CONSTRUCTION_LABELS
from inference_batch.products.spatial import SpatialSource
from inference_batch.scratch import scratch
from inference_batch.writers.transaction import transaction
from ocsge import schema
from ocsge.nomenclature import legend
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import departement

GPKG_LAYERS = {  # IGN layer name → (product, columns)
    "OCCUPATION_SOL": ("occupation", [schema.ID, schema.CODE_CS, schema.CODE_US, schema.MILLESIME, schema.SOURCE]),
    "ZONE_CONSTRUITE": ("zone_construite", [schema.ID, schema.MILLESIME]),
    "ARTIFICIALISATION": ("artificialisation", [schema.ID, schema.CODE_CS, schema.CODE_US, schema.MILLESIME,
                                                schema.ARTIF, schema.CRIT_SEUIL]),
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_gpkg(layers: dict[str, tuple[SpatialSource, list[str]]], path: Path) -> dict[str, int]:
    """The GeoPackage, its ``last_change`` dates those of the day of production (GDAL's
    ``OGR_CURRENT_DATE``), so that the same layers give the same bytes all day long."""
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": f"{datetime.now(UTC):%Y-%m-%d}T00:00:00.000Z"})
    try:
        return _write_gpkg(layers, path)
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": None})


def _write_gpkg(layers: dict[str, tuple[SpatialSource, list[str]]], path: Path) -> dict[str, int]:
    counts = {}
    for name, (source, columns) in layers.items():
        n = 0
        for frame in source.iter_chunks(50_000):
            frame = frame[[c for c in columns if c in frame] + [frame.geometry.name]]
            pyogrio.write_dataframe(frame, path, layer=name, driver="GPKG", promote_to_multi=True,
                                    append=n > 0, layer_options={"GEOMETRY_NAME": "the_geom"} if n == 0 else None)
            n += len(frame)
        if n == 0:  # an empty layer still exists, with its schema
            empty = gpd.GeoDataFrame({c: pd.Series(dtype=str) for c in columns},
                                     geometry=gpd.GeoSeries([], crs=source.crs), crs=source.crs)
            pyogrio.write_dataframe(empty, path, layer=name, driver="GPKG", geometry_type="MultiPolygon")
        counts[name] = n
    return counts


# zlib level of the archive's deflated members (the GeoPackage, README, SHA256SUMS); the COGs are stored, being
# compressed already. On a 52.6 MB GeoPackage of 10⁵ polygons: level 6 (zlib's default) 1.9 CPU-s → 10.6 MB,
# level 4 0.6 CPU-s → 11.3 MB, levels 1–2 0.35 CPU-s → 12.0–12.6 MB. Level 4 takes most of the gain for a
# zip 7 % larger; the members' bytes are the same at any level.
ZIP_LEVEL = 4


def write_zip(path: Path, folder: str, files: list[tuple[str, Path]], sums: str) -> None:
    """The archive, reproducible: members in a fixed order, each stamped with the day of production (not
    the modification time of a scratch file), so that the same inputs on the same day give the same bytes."""
    stamp = (*datetime.now(UTC).timetuple()[:3], 0, 0, 0)
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        for name, p in files:
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".tif") else zipfile.ZIP_DEFLATED
            info._compresslevel = ZIP_LEVEL  # what ZipFile.open(info, "w") reads (no public name before 3.13)
            info.external_attr = 0o644 << 16
            with p.open("rb") as src, zf.open(info, "w", force_zip64=p.stat().st_size > 1 << 31) as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
        info = zipfile.ZipInfo(f"{folder}/SHA256SUMS", date_time=stamp)
        info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
        info._compresslevel = ZIP_LEVEL
        zf.writestr(info, sums)


def readme(dep: object, millesime: int, counts: dict[str, int], cogs: list[str]) -> str:
    d = departement(dep)
    lines = [
        f"OCS GE — {d.name} ({d.code}) — millésime {millesime}",
        "=" * 60,
        "",
        f"Produit le {datetime.now(UTC):%Y-%m-%d} par ocsge-cloud. Système de coordonnées : {d.crs}.",
        "",
        f"OCSGE_{d.token}_{millesime}.gpkg (GeoPackage, colonne géométrique the_geom) :",
    ]
    for name, n in counts.items():
        lines.append(f"  - {name} : {n} polygones")
    lines += [
        "",
        "  OCCUPATION_SOL    : id, code_cs (couverture), code_us (usage), millesime, source",
        "  ZONE_CONSTRUITE   : id, millesime",
        "  ARTIFICIALISATION : id, code_cs, code_us, millesime, artif ('artif' / 'non artif'),",
        "                      crit_seuil (vrai si la classe vient des seuils du décret n° 2023-1096 :",
        "                      2 500 m², 50 m² pour le bâti, plutôt que de la matrice CS × US)",
        "",
        "Rasters (COG, uint8, palette officielle intégrée, 0 = pas de donnée) :",
    ]
    lines += [f"  - {c}" for c in cogs]
    lines += ["", "Couverture (valeur raster, code, libellé) :"]
    lines += [f"  {e['value']:>3}  {e['code']:<10} {e['label']}" for e in legend("couverture")]
    lines += ["", "Usage (valeur raster, code, libellé) :"]
    lines += [f"  {e['value']:>3}  {e['code']:<10} {e['label']}" for e in legend("usage")]
    lines += ["", "Artificialisation : 1 = artificialisé, 2 = non artificialisé",
              "Construction : " + ", ".join(f"{k} = {v}" for k, v in CONSTRUCTION_LABELS.items()),
              "", "Vérifier l'intégrité : sha256sum -c SHA256SUMS", ""]
    return "\n".join(lines)


def run_archive(storage: Storage, dep: object, millesime: int, *, force: bool = False) -> dict[str, str]:
    """Step: the download archive of one département × millésime (a transaction: see
    ``writers.transaction``)."""
    label = f"archive {dep} {millesime} (input {key('occupation', dep, millesime)})"
    with transaction(storage, label) as staged:
        return _archive(staged, dep, millesime, force=force)


def _archive(storage: Storage, dep: object, millesime: int, *, force: bool) -> dict[str, str]:
    out = key("archive", dep, millesime)
    bundled = [key(product, dep, millesime) for product, _ in GPKG_LAYERS.values()]
    bundled += [key(product, dep, millesime) for product in COG_PRODUCT.values()]
    digest = fingerprint(storage, bundled)
    if not force and is_up_to_date(storage, out, digest):
        done(f"archive {dep} {millesime}: already done")
        return {"archive": out}
    d = departement(dep)
    if not storage.exists(key("occupation", dep, millesime)):
        raise StepError(f"archive {dep} {millesime}: no occupation layer ({key('occupation', dep, millesime)})")
    folder = f"OCSGE_{d.token}_{millesime}"
    step(f"archive {dep} {millesime}")
    with scratch("archive") as tmp, contextlib.ExitStack() as stack:
        gpkg = tmp / f"{folder}.gpkg"
        layers = {}
        for name, (product, columns) in GPKG_LAYERS.items():
            k = key(product, dep, millesime)
            if storage.exists(k):
                layers[name] = (SpatialSource(path=stack.enter_context(storage.local_copy(k)), columns=None), columns)
        counts = write_gpkg(layers, gpkg)
        files: list[tuple[str, Path]] = [(gpkg.name, gpkg)]
        cogs = []
        for layer, product in COG_PRODUCT.items():
            k = key(product, dep, millesime)
            if storage.exists(k):
                name = f"{folder}_{layer.upper()}.tif"
                files.append((name, stack.enter_context(storage.local_copy(k))))
                cogs.append(f"{name} ({layer})")
        readme_path = tmp / "README.txt"
        readme_path.write_text(readme(dep, millesime, counts, cogs), encoding="utf-8")
        files.append(("README.txt", readme_path))
        sums = "".join(f"{sha256_file(p)}  {n}\n" for n, p in files)
        with refreshing(storage, out, digest), step_outputs(storage) as outputs, outputs.writer(out) as zpath:
            write_zip(zpath, folder, files, sums)
    done(f"archive {dep} {millesime}: {', '.join(f'{k} {v}' for k, v in counts.items())}, {len(cogs)} COGs")
    return {"archive": out}
