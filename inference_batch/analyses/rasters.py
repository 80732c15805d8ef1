"""The map analyses as class rasters, for the WMTS/WMS/XYZ layers ``OCSGE.TACHE_URBAINE.{campaign}`` and
``OCSGE.RENATURATION.{campaign}`` (services/tiles/layers.py): uint8 COGs in Lambert-93 with a colour table
and ``CLASS_<value>`` band tags, values from :mod:`ocsge.rasters` (0 = nodata).

- ``tache_urbaine_cog``: 1 inside the tâche urbaine (``tache_urbaine`` polygons);
- ``renaturation_cog``: the INSEE 200 m cells (``renaturation``, reprojected from EPSG:3035) by potential
  in five classes of 20 points (1…5), priority sectors as 6.

Burnt at ``resolution`` m (default 10 m: the 200 m cells and the 25 m tâche urbaine margins stay sharp;
our choice) on a grid aligned on multiples of it, by windows of 4096 pixels (polygons looked up with the
spatial index), so that a whole département never sits in memory; overviews by ``mode`` like the other
class rasters, through the batch's one COG writer (:mod:`inference_batch.writers.cog`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import key, read_vector, step_outputs
from ocsge import rasters
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import departement

L93 = 2154
WINDOW = 4096


def tache_values(frame: gpd.GeoDataFrame) -> np.ndarray:
    return np.full(len(frame), rasters.value_of("tache_urbaine", "tache urbaine"), dtype="uint8")


def renaturation_values(frame: gpd.GeoDataFrame) -> np.ndarray:
    """Potential 0–100 in five classes of 20 points (100 in the last), 6 for a priority sector."""
    potential = frame["potentiel"].fillna(0).to_numpy(dtype=float)
    values = (np.clip(np.floor(potential / 20), 0, 4) + 1).astype("uint8")
    if "prioritaire" in frame:
        values[frame["prioritaire"].fillna(False).to_numpy(dtype=bool)] = rasters.value_of("renaturation",
                                                                                            "prioritaire")
    return values


# raster product → (vector product, encoding in ocsge.rasters, polygon values)
RASTERS: dict[str, tuple[str, str, Callable[[gpd.GeoDataFrame], np.ndarray]]] = {
    "tache_urbaine_cog": ("tache_urbaine", "tache_urbaine", tache_values),
    "renaturation_cog": ("renaturation", "renaturation", renaturation_values),
}


def burn_class_cog(frame: gpd.GeoDataFrame, values: np.ndarray, encoding: str, path: Path, resolution: float
                   ) -> None:
    """Polygons burnt with their values (later over earlier) into a class COG with its palette at ``path``."""
    import rasterio
    from rasterio.features import rasterize
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    from inference_batch.writers.cog import copy_to_cog

    frame = frame.to_crs(L93) if frame.crs is not None and frame.crs.to_epsg() != L93 else frame
    keep = ~(frame.geometry.isna() | frame.geometry.is_empty).to_numpy()
    frame, values = frame[keep], values[keep]
    if len(frame):
        b = frame.total_bounds
        x0, y0 = np.floor(b[0] / resolution) * resolution, np.floor(b[1] / resolution) * resolution
        x1, y1 = np.ceil(b[2] / resolution) * resolution, np.ceil(b[3] / resolution) * resolution
    else:  # nothing to draw: one transparent pixel, so that the product exists and says so
        x0, y0, x1, y1 = 0.0, 0.0, resolution, resolution
    width, height = max(1, round((x1 - x0) / resolution)), max(1, round((y1 - y0) / resolution))
    transform = from_origin(x0, y1, resolution, resolution)
    geoms = frame.geometry.to_numpy()
    index = frame.sindex
    with contextlib.ExitStack() as stack:
        raw = Path(str(path) + ".raw.tif")
        stack.callback(lambda: raw.unlink(missing_ok=True))
        profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint8",
                   "crs": f"EPSG:{L93}", "transform": transform, "nodata": 0, "tiled": True,
                   "blockxsize": 512, "blockysize": 512, "compress": "ZSTD", "zstd_level": 1}
        with rasterio.open(raw, "w", **profile) as dst:
            for row in range(0, height, WINDOW):
                for col in range(0, width, WINDOW):
                    win = Window(col, row, min(WINDOW, width - col), min(WINDOW, height - row))
                    wt = window_transform(win, transform)
                    wx0, wy1 = wt.c, wt.f
                    box = (wx0, wy1 - win.height * resolution, wx0 + win.width * resolution, wy1)
                    idx = np.sort(index.query(shapely.box(*box)))
                    if not len(idx):
                        continue
                    out = rasterize(zip(geoms[idx], values[idx].astype(int), strict=True),
                                    out_shape=(int(win.height), int(win.width)), transform=wt, fill=0,
                                    dtype="uint8")
                    dst.write(out, 1, window=win)
            dst.write_colormap(1, rasters.palette(encoding))
            dst.update_tags(1, **{f"CLASS_{v}": label for v, label in rasters.labels(encoding).items()})
        copy_to_cog(raw, path, resampling="MODE")


def run_analyses_rasters(storage: Storage, dep: object, millesimes: list[int], *, resolution: float = 10.0,
                         force: bool = False) -> dict[str, str]:
    """Step: the class COGs of the map analyses present for each millésime (see the module docstring)."""
    d = departement(dep)
    keys: dict[str, str] = {}
    for year in sorted(millesimes):
        for product, (vector, encoding, valuer) in RASTERS.items():
            src = key(vector, d.code, year)
            if not storage.exists(src):
                continue
            out = key(product, d.code, year)
            keys[f"{product}_{year}"] = out
            digest = fingerprint(storage, [src], params={"resolution": resolution, "encoding": encoding})
            if not force and is_up_to_date(storage, out, digest):
                continue
            step(f"{product} {d.code} {year}: {vector} burnt at {resolution:g} m")
            frame = read_vector(storage, src)
            with refreshing(storage, out, digest), step_outputs(storage) as outputs, storage.writer(out) as tmp:
                outputs.add(out)
                burn_class_cog(frame, valuer(frame), encoding, Path(tmp), resolution)
            done(f"{product} {d.code} {year}: {len(frame)} polygons")
    return keys
