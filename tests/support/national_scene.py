"""Three synthetic départements side by side (S01 | S02 | S03, west to east, each 0.3° × 0.3° near Paris),
each with its occupation vector tiles (zooms 6–14, tippecanoe) under the canonical product keys, for the
tests of the national vector tiles. Each département is a 3 × 3 grid of squares; every square carries
the département's own couverture code, so that a decoded tile says which départements it holds:

    S01: CS1.1.1.1 (bâti)   S02: CS2.2.1 (herbacé)   S03: CS1.2.2 (eau)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ocsge.products import product_key
from ocsge.storage import LocalStorage

TIPPECANOE = Path(sys.executable).parent / "tippecanoe"
WEST, SOUTH, WIDTH = 2.0, 48.5, 0.3
CODES = {"S01": "CS1.1.1.1", "S02": "CS2.2.1", "S03": "CS1.2.2"}
USAGE = "US1.1"
MILLESIME = 2021


def bounds_of(dep: str) -> tuple[float, float, float, float]:
    i = sorted(CODES).index(dep)
    west = WEST + i * WIDTH
    return west, SOUTH, west + WIDTH, SOUTH + WIDTH


def border_lon(west_dep: str) -> float:
    """Longitude of the border between ``west_dep`` and the département east of it."""
    return bounds_of(west_dep)[2]


def _features(dep: str, code: str, n: int = 3) -> list[dict]:
    west, south, east, _north = bounds_of(dep)
    step = (east - west) / n
    out = []
    for row in range(n):
        for col in range(n):
            x0, y0 = west + col * step, south + row * step
            ring = [[x0, y0], [x0 + step, y0], [x0 + step, y0 + step], [x0, y0 + step], [x0, y0]]
            out.append(
                {
                    "type": "Feature",
                    "properties": {"code_cs": code, "code_us": USAGE, "id": f"{dep}-{row}{col}"},
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                }
            )
    return out


def write_departement(root: Path, dep: str, code: str | None = None, millesime: int = MILLESIME) -> str:
    """(Re)write the occupation PMTiles of one département; returns its key."""
    storage = LocalStorage(root)
    key = product_key("occupation_pmtiles", dep, millesime)
    src = root.parent / f"{dep}-{millesime}.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": _features(dep, code or CODES[dep])}))
    with storage.writer(key) as tmp:
        subprocess.run(
            [
                str(TIPPECANOE),
                "-o",
                str(tmp),
                "-l",
                "occupation",
                "-Z",
                "6",
                "-z",
                "14",
                "--force",
                "--quiet",
                "--no-tile-size-limit",
                str(src),
            ],
            check=True,
        )
    return key


def write_couverture_cog(root: Path, dep: str, millesime: int = MILLESIME, pixel: float = 100.0) -> str:
    """A couverture class COG (Lambert-93, official palette, ``mode`` overviews) over the département's
    square, every pixel of its code: the raster layer OCSGE.COUVERTURE of the viewer's tests."""
    import numpy as np
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin
    from rasterio.warp import transform_bounds
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    from ocsge.nomenclature import Kind, palette, raster_value

    west, south, east, north = transform_bounds("EPSG:4326", "EPSG:2154", *bounds_of(dep))
    width, height = int((east - west) // pixel), int((north - south) // pixel)
    data = np.full((height, width), raster_value(Kind.COUVERTURE, CODES[dep]), dtype="uint8")
    profile = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": 1,
        "height": height,
        "width": width,
        "crs": "EPSG:2154",
        "transform": from_origin(west, north, pixel, pixel),
        "nodata": 0,
    }
    key = product_key("couverture_cog", dep, millesime)
    with LocalStorage(root).writer(key) as tmp, MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data, 1)
            dst.write_colormap(1, palette(Kind.COUVERTURE))
        with mem.open() as src:
            cog_translate(
                src,
                str(tmp),
                cog_profiles.get("deflate"),
                overview_resampling="mode",
                overview_level=3,
                quiet=True,
                in_memory=True,
            )
    with rasterio.open(root / key) as check:
        assert check.colormap(1)
    return key


def build_scene(root: Path, deps: tuple[str, ...] = ("S01", "S02", "S03"), *, rasters: bool = False) -> LocalStorage:
    """The départements' vector tiles (and their couverture COGs with ``rasters``)."""
    root.mkdir(parents=True, exist_ok=True)
    for dep in deps:
        write_departement(root, dep)
        if rasters:
            write_couverture_cog(root, dep)
    return LocalStorage(root)
