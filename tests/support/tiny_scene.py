"""Small synthetic rasters in IGN's file layout (RGB, IRC, DSM at 0.2 m, DTM at 1 m) for tests and benchmarks.

A few rectangles of known couverture with class-typical colours, NIR and heights — enough for a model
to learn something in seconds and for the tiling, seams, resume and vectorisation paths to be checked
against a known truth. The generated territory (``ocsge synth``) is the realistic data set; this one is
for when seconds matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from inference_batch.production.inputs import ImagerySources
from ocsge.nomenclature import raster_value

# couverture → (R, G, B, NIR, height m)
SIGNATURES: dict[str, tuple[int, int, int, int, float]] = {
    "CS1.1.1.1": (170, 90, 80, 70, 9.0),  # roofs
    "CS1.1.1.2": (110, 110, 115, 60, 0.0),  # asphalt
    "CS2.1.1.1": (60, 110, 50, 200, 18.0),  # deciduous
    "CS2.2.1": (120, 170, 80, 170, 0.2),  # grass
    "CS1.2.2": (40, 70, 110, 20, 0.0),  # water
}


@dataclass
class TinyScene:
    sources: ImagerySources
    truth: np.ndarray  # couverture raster values on the imagery grid
    transform: Affine
    crs: CRS


def tiny_truth(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Background grass, a forest, a lake, a road across, and buildings along the road."""
    rng = np.random.default_rng(seed)
    v = {k: raster_value("couverture", k) for k in SIGNATURES}
    t = np.full((height, width), v["CS2.2.1"], dtype=np.uint8)
    t[: height // 2, : width // 3] = v["CS2.1.1.1"]
    t[height * 2 // 3 :, width * 2 // 3 :] = v["CS1.2.2"]
    road = slice(height // 2 - max(2, height // 40), height // 2 + max(2, height // 40))
    t[road, :] = v["CS1.1.1.2"]
    size = max(6, height // 12)
    for x in range(width // 3 + size, width - size, 3 * size):
        y = height // 2 - max(2, height // 40) - size - int(rng.integers(1, 4))
        if y > 0:
            t[y : y + size, x : x + size] = v["CS1.1.1.1"]
    return t


def write_tiny_scene(folder: str | Path, height: int = 400, width: int = 400, seed: int = 0,
                     origin: tuple[float, float] = (700000.0, 6600000.0)) -> TinyScene:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = tiny_truth(height, width, seed)
    by_value = {raster_value("couverture", k): s for k, s in SIGNATURES.items()}
    bands = np.zeros((5, height, width), dtype=np.float32)
    for value, sig in by_value.items():
        mask = truth == value
        for b in range(5):
            bands[b][mask] = sig[b]
    bands[:4] += rng.normal(0, 8, (4, height, width))
    bands[4] += np.abs(rng.normal(0, 0.3, (height, width))) * (bands[4] > 1)
    img = np.clip(np.rint(bands[:4]), 0, 254).astype(np.uint8)  # 255 is nodata
    crs = CRS.from_epsg(2154)
    res = 0.2
    transform = Affine(res, 0, origin[0], 0, -res, origin[1] + height * res)
    common = {"driver": "GTiff", "crs": crs, "tiled": True, "blockxsize": 256, "blockysize": 256}
    rgb, irc = folder / "rgb.tif", folder / "irc.tif"
    with rasterio.open(rgb, "w", **common, dtype="uint8", count=3, width=width, height=height, transform=transform,
                       nodata=255) as dst:
        dst.write(img[:3])
    with rasterio.open(irc, "w", **common, dtype="uint8", count=3, width=width, height=height, transform=transform,
                       nodata=255) as dst:
        dst.write(np.stack([img[3], img[0], img[1]]))
    # DTM at 1 m: a gentle slope; DSM at 0.2 m: DTM + heights
    k = 5
    hc, wc = -(-height // k), -(-width // k)
    yy, xx = np.mgrid[0:hc, 0:wc].astype(np.float32)
    dtm = 100 + 0.05 * xx + 0.02 * yy
    dtm_t = Affine(res * k, 0, origin[0], 0, -res * k, origin[1] + height * res)
    dsm = np.repeat(np.repeat(dtm, k, 0), k, 1)[:height, :width] + bands[4]
    dsm_path, dtm_path = folder / "dsm.tif", folder / "dtm.tif"
    with rasterio.open(dsm_path, "w", **common, dtype="float32", count=1, width=width, height=height,
                       transform=transform, nodata=-9999) as dst:
        dst.write(dsm.astype(np.float32), 1)
    with rasterio.open(dtm_path, "w", driver="GTiff", crs=crs, dtype="float32", count=1, width=wc, height=hc,
                       transform=dtm_t, nodata=-9999) as dst:
        dst.write(dtm.astype(np.float32), 1)
    sources = ImagerySources(rgb=str(rgb), irc=str(irc), dsm=str(dsm_path), dtm=str(dtm_path))
    return TinyScene(sources, truth, transform, crs)
