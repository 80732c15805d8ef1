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


def build_scene(root: Path, deps: tuple[str, ...] = ("S01", "S02", "S03")) -> LocalStorage:
    root.mkdir(parents=True, exist_ok=True)
    for dep in deps:
        write_departement(root, dep)
    return LocalStorage(root)
