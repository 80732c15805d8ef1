"""Tile serving throughput and latency, each against its anchor in the same run on the same machine.

1. Raster: WMTS KVP ``GetTile`` (PM, PNG, official palette) on our tile service vs stock titiler
   (``titiler.application``, ``/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png?url=…``) serving the same COG
   (4096² uint8, 5 m, EPSG:2154, embedded palette, ``mode`` overviews).
2. Vector: ``/vector/…/{z}/{x}/{y}.mvt`` on our vector service vs reading the PMTiles file directly,
   (a) with HTTP range requests on the raw ``.pmtiles`` (what pmtiles.js does in a browser: header and
   directories cached client-side, then one range per tile) and (b) in-process with the ``pmtiles``
   package's own reader on a memory map (no HTTP at all: the floor).

Each server runs as its own uvicorn process (one worker) on 127.0.0.1; the client is a thread pool
of httpx clients at concurrency 1, 4 and 16, after one warm-up pass over the same tiles. Results go to
``benchmarks/out/bench_tiles.json`` and are printed as a Markdown table (see RESULTS_services.md).

    python benchmarks/bench_tiles.py [--tiles 240] [--polygons 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
ORIGIN = (640_000.0, 6_870_000.0)  # upper-left corner (EPSG:2154), near Paris
PIXEL = 5.0
SIZE = 4096
DEP = "S01"


# --- data ----------------------------------------------------------------------------------------

def make_cog(path: Path, seed: int) -> None:
    """Blocky class patches (like a rasterised OCS GE) with the official palette and mode overviews."""
    import numpy as np
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    from ocsge.nomenclature import Kind, palette

    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 15, size=(SIZE // 32, SIZE // 32), dtype="uint8")
    data = np.kron(coarse, np.ones((32, 32), dtype="uint8"))
    noise = rng.random((SIZE, SIZE)) < 0.02
    data[noise] = rng.integers(1, 15, size=int(noise.sum()), dtype="uint8")
    profile = {"driver": "GTiff", "dtype": "uint8", "count": 1, "height": SIZE, "width": SIZE, "crs": "EPSG:2154",
               "transform": from_origin(ORIGIN[0], ORIGIN[1], PIXEL, PIXEL), "nodata": 0}
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data, 1)
            dst.write_colormap(1, palette(Kind.COUVERTURE))
        with mem.open() as src:
            cog_translate(src, str(path), cog_profiles.get("deflate"), overview_resampling="mode", quiet=True,
                          in_memory=True)


def make_pmtiles(path: Path, polygons: int, seed: int, tmp: Path) -> None:
    """A grid of square polygons with OCS GE codes over the COG's extent, tiled by tippecanoe (z8–15)."""
    from pyproj import Transformer

    from ocsge.nomenclature import CS_LEAVES, US_LEAVES

    rng = random.Random(seed)
    side = int(polygons ** 0.5)
    cell = SIZE * PIXEL / side
    t = Transformer.from_crs(2154, 4326, always_xy=True)
    src = tmp / "polygons.geojsonl"
    with src.open("w") as f:
        for i in range(side):
            for j in range(side):
                x0 = ORIGIN[0] + j * cell
                y1 = ORIGIN[1] - i * cell
                ring = [t.transform(x, y) for x, y in ((x0, y1), (x0 + cell, y1), (x0 + cell, y1 - cell),
                                                        (x0, y1 - cell), (x0, y1))]
                f.write(json.dumps({"type": "Feature", "properties": {
                    "id": f"{i}-{j}", "code_cs": rng.choice(CS_LEAVES), "code_us": rng.choice(US_LEAVES),
                    "millesime": 2021, "source": "bench"},
                    "geometry": {"type": "Polygon", "coordinates": [ring]}}) + "\n")
    exe = Path(sys.executable).parent / "tippecanoe"
    subprocess.run([str(exe), "-o", str(path), "-l", "occupation", "-Z", "8", "-z", "15", "--force", "--quiet",
                    "--read-parallel", "--no-tile-size-limit", "--coalesce-densest-as-needed", str(src)], check=True)


def sample_tiles(bounds: tuple[float, float, float, float], zooms: list[int], count: int, seed: int,
                 ) -> list[tuple[int, int, int]]:
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    rng = random.Random(seed)
    per_zoom = max(1, count // len(zooms))
    tiles: list[tuple[int, int, int]] = []
    west, south, east, north = bounds
    for z in zooms:
        inside = []
        for t in tms.tiles(*bounds, [z]):  # tiles fully inside the data, as a user panning over it requests
            b = tms.bounds(t)
            if b.left >= west and b.right <= east and b.bottom >= south and b.top <= north:
                inside.append((t.z, t.x, t.y))
        tiles += rng.sample(inside, min(per_zoom, len(inside))) if len(inside) > per_zoom else inside
    rng.shuffle(tiles)
    return tiles[:count]


# --- servers -------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    import httpx

    proc = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("server did not start")


def serve_ours(root: str, port: int) -> None:
    """Run by the subprocess: tiles (+ OGC) and vector apps over the benchmark root, one uvicorn worker."""
    import uvicorn

    from services.assets import StorageAssetFinder
    from services.site import create_services_app

    uvicorn.run(create_services_app(StorageAssetFinder(root, ttl_s=3600)), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


# --- load ----------------------------------------------------------------------------------------

def run_load(fetch: Callable[[object, tuple[int, int, int]], int], make_client: Callable[[], object],
             tiles: list[tuple[int, int, int]], concurrency: int) -> dict[str, float]:
    local = threading.local()
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def one(tile: tuple[int, int, int]) -> None:
        nonlocal errors
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = make_client()
        t0 = time.perf_counter()
        status = fetch(client, tile)
        dt = time.perf_counter() - t0
        with lock:
            latencies.append(dt)
            if status not in (200, 204):
                errors += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, tiles))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "concurrency": concurrency,
        "tiles": len(tiles),
        "errors": errors,
        "tiles_per_s": round(len(tiles) / wall, 1),
        "median_ms": round(statistics.median(latencies) * 1e3, 1),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1e3, 1),
    }


def http_client():  # type: ignore[no-untyped-def]
    import httpx

    return httpx.Client(timeout=60, limits=httpx.Limits(max_keepalive_connections=4))


Target = tuple[str, Callable[[object, tuple[int, int, int]], int], Callable[[], object]]


def bench(targets: list[Target], tiles: list[tuple[int, int, int]], levels: list[int], reps: int,
          ) -> list[dict[str, object]]:
    """Targets interleaved (A, B, A, B…) at each concurrency so that background load hits them alike;
    the row keeps the repetition with the median throughput."""
    for _, fetch, make_client in targets:
        run_load(fetch, make_client, tiles, 4)  # warm-up: open datasets, caches, connections
    rows = []
    for c in levels:
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in targets}
        for rep in range(reps):
            order = targets if rep % 2 == 0 else targets[::-1]
            for name, fetch, make_client in order:
                runs[name].append(run_load(fetch, make_client, tiles, c))
        for name, _, _ in targets:
            ranked = sorted(runs[name], key=lambda r: r["tiles_per_s"])
            row = {"target": name, **ranked[len(ranked) // 2],
                   "tiles_per_s_runs": [r["tiles_per_s"] for r in runs[name]]}
            print(f"  {name:<44} c={c:<3} {row['tiles_per_s']:>7} tiles/s  median {row['median_ms']:>7} ms  "
                  f"p95 {row['p95_ms']:>7} ms  errors {row['errors']}  (runs {row['tiles_per_s_runs']})", flush=True)
            rows.append(row)
    return rows


class HttpRangeStorage:
    """Just enough of ocsge.storage for PMTilesSource: range reads over HTTP on the raw .pmtiles URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.local = threading.local()

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = http_client()
        resp = client.get(self.url, headers={"Range": f"bytes={offset}-{offset + length - 1}"})
        resp.raise_for_status()
        return resp.content


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=240)
    parser.add_argument("--polygons", type=int, default=20_000)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions per concurrency level")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--serve-ours", nargs=2, metavar=("ROOT", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_ours:
        serve_ours(args.serve_ours[0], int(args.serve_ours[1]))
        return

    from pyproj import Transformer

    from ocsge.products import product_key
    from ocsge.storage import LocalStorage

    levels = [int(c) for c in args.concurrency.split(",")]
    results: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                              "loadavg_at_start": os.getloadavg()}}
    with tempfile.TemporaryDirectory(prefix="bench-tiles-") as tmpdir:
        tmp = Path(tmpdir)
        root = tmp / "root"
        storage = LocalStorage(root)
        t0 = time.perf_counter()
        cog_key = product_key("couverture_cog", DEP, 2021)
        with storage.writer(cog_key) as out:
            make_cog(out, args.seed)
        pm_key = product_key("occupation_pmtiles", DEP, 2021)
        with storage.writer(pm_key) as out:
            make_pmtiles(out, args.polygons, args.seed, tmp)
        print(f"data ready in {time.perf_counter() - t0:.1f} s: COG {storage.stat(cog_key).size / 1e6:.1f} MB, "
              f"PMTiles {storage.stat(pm_key).size / 1e6:.1f} MB", flush=True)

        t = Transformer.from_crs(2154, 4326, always_xy=True)
        west, north = t.transform(*ORIGIN)
        east, south = t.transform(ORIGIN[0] + SIZE * PIXEL, ORIGIN[1] - SIZE * PIXEL)
        raster_tiles = sample_tiles((west, south, east, north), [13, 14, 15, 16], args.tiles, args.seed)
        vector_tiles = sample_tiles((west, south, east, north), [12, 13, 14, 15], args.tiles, args.seed + 1)
        results["tiles"] = {"raster": len(raster_tiles), "vector": len(vector_tiles),
                            "raster_zooms": [13, 16], "vector_zooms": [12, 15]}

        ours_port, stock_port = free_port(), free_port()
        ours = start([sys.executable, __file__, "--serve-ours", str(root), str(ours_port)], ours_port)
        stock = start([sys.executable, "-m", "uvicorn", "titiler.application.main:app", "--host", "127.0.0.1",
                       "--port", str(stock_port), "--log-level", "warning", "--no-access-log"], stock_port,
                      env={"TITILER_API_DEBUG": "FALSE"})
        rows: list[dict[str, object]] = []
        try:
            ours_url = f"http://127.0.0.1:{ours_port}"
            stock_url = f"http://127.0.0.1:{stock_port}"
            cog_path = storage.gdal_path(cog_key)
            layer = "OCSGE.COUVERTURE.2021-2023"

            def wmts(client, tile):  # type: ignore[no-untyped-def]
                z, x, y = tile
                return client.get(f"{ours_url}/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={layer}"
                                  f"&STYLE=normal&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX={z}&TILEROW={y}"
                                  f"&TILECOL={x}").status_code

            def titiler(client, tile):  # type: ignore[no-untyped-def]
                z, x, y = tile
                return client.get(f"{stock_url}/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
                                  params={"url": cog_path}).status_code

            print("raster tiles (PNG 256 px, z13–16):", flush=True)
            rows += bench([("ours: WMTS KVP GetTile (PM)", wmts, http_client),
                           ("stock titiler.application /cog/tiles", titiler, http_client)],
                          raster_tiles, levels, args.reps)

            def mvt(client, tile):  # type: ignore[no-untyped-def]
                z, x, y = tile
                return client.get(f"{ours_url}/vector/occupation/{DEP}/2021/{z}/{x}/{y}.mvt").status_code

            from services.vector.pmtiles_source import PMTilesSource

            raw = PMTilesSource(HttpRangeStorage(f"{ours_url}/vector/occupation/{DEP}/2021.pmtiles"), pm_key)  # type: ignore[arg-type]

            def ranges(_client, tile):  # type: ignore[no-untyped-def]
                z, x, y = tile
                raw.get(z, x, y)
                return 200

            from pmtiles.reader import MmapSource, Reader

            handle = (root / pm_key).open("rb")
            reader = Reader(MmapSource(handle))

            def mmap_read(_client, tile):  # type: ignore[no-untyped-def]
                z, x, y = tile
                reader.get(z, x, y)
                return 200

            print("vector tiles (MVT, z12–15):", flush=True)
            rows += bench([("ours: /vector/…/{z}/{x}/{y}.mvt", mvt, http_client),
                           ("direct: HTTP range reads of the .pmtiles", ranges, lambda: None),
                           ("direct: pmtiles.Reader on mmap (no HTTP)", mmap_read, lambda: None)],
                          vector_tiles, levels, args.reps)
            handle.close()
            fetched = len(vector_tiles) * (1 + len(levels) * args.reps)
            results["direct_range_reads_per_tile"] = round(raw.reads / fetched, 3)
        finally:
            for proc in (ours, stock):
                proc.terminate()
                proc.wait(timeout=10)
    results["rows"] = rows
    results["machine"]["loadavg_at_end"] = os.getloadavg()  # type: ignore[index]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_tiles.json").write_text(json.dumps(results, indent=2))
    print("\n| target | concurrency | tiles/s | median ms | p95 ms | errors |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['target']} | {r['concurrency']} | {r['tiles_per_s']} | {r['median_ms']} | {r['p95_ms']} | "
              f"{r['errors']} |")


if __name__ == "__main__":
    main()
