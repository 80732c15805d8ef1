"""PMTiles build time per 100 000 polygons: GeoJSONSeq export + tippecanoe (z6–14, the flags of
``inference_batch.products.tiles``), on a generated occupation layer.

    python benchmarks/bench_pmtiles.py --polygons 200000

``--national N``: the national vector tiles (``inference_batch.products.national_tiles``) over N synthetic
départements laid on the footprints of real metropolitan ones (``inference_batch.synth.footprints``), each a
grid of ``--polygons`` squares tiled z6–14 with the production flags; measures the first build (every
département's low-zoom part + the join), a rerun without change, one département republished (its part +
the rejoin of all N), and MVT latency per zoom 6–14 through the vector tile service (one uvicorn worker,
concurrency 1 and 4). :func:`bench_national_vector` runs the measures on any root holding per-département
occupation PMTiles (``benchmarks/bench_national.py --pmtiles`` builds one).

    python benchmarks/bench_pmtiles.py --national 96 --polygons 400
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
sys.path.insert(0, str(REPO))  # benchmarks.bench_tiles, when run as a script


# --- national vector tiles ---------------------------------------------------------------------------


def make_departement_tiles(root: Path, dep: str, footprint_code: str, polygons: int, seed: int) -> str:
    """A département's occupation PMTiles: a grid of squares with random codes over a real footprint."""
    import random
    import subprocess

    from pyproj import Transformer

    from inference_batch.products.tiles import MAX_ZOOM, MIN_ZOOM, TIPPECANOE_FLAGS, tippecanoe_binary
    from inference_batch.synth.footprints import footprint
    from ocsge.nomenclature import CS_LEAVES, US_LEAVES
    from ocsge.products import product_key
    from ocsge.storage import LocalStorage

    rng = random.Random(seed)
    west, south, east, north = footprint(footprint_code)
    side = max(1, int(polygons**0.5))
    dx, dy = (east - west) / side, (north - south) / side
    to_wgs84 = Transformer.from_crs(2154, 4326, always_xy=True)
    key = product_key("occupation_pmtiles", dep, 2021)
    with tempfile.TemporaryDirectory(prefix="bench-national-") as tmp:
        src = Path(tmp) / "occupation.geojsons"
        with src.open("w") as f:
            for i in range(side):
                for j in range(side):
                    x0, y0 = west + j * dx, south + i * dy
                    ring = [to_wgs84.transform(x, y) for x, y in
                            ((x0, y0), (x0 + dx, y0), (x0 + dx, y0 + dy), (x0, y0 + dy), (x0, y0))]
                    props = {"code_cs": rng.choice(CS_LEAVES), "code_us": rng.choice(US_LEAVES)}
                    f.write(json.dumps({"type": "Feature", "properties": props,
                                        "geometry": {"type": "Polygon", "coordinates": [ring]}}) + "\n")
        with LocalStorage(root).writer(key) as out:
            subprocess.run([tippecanoe_binary(), "-o", str(out), "-Z", str(MIN_ZOOM), "-z", str(MAX_ZOOM),
                            *TIPPECANOE_FLAGS, "-L", f"occupation:{src}"], check=True)
    return key


def _national_tiles_per_zoom(path: Path, zooms: range, per_zoom: int, seed: int) -> list[tuple[int, int, int]]:
    """Random addressed tiles of the national file, ``per_zoom`` at each zoom (what a user panning gets)."""
    import random

    from pmtiles.tile import tileid_to_zxy

    from inference_batch.products.national_tiles import _entries, _open_archive

    rng = random.Random(seed)
    archive = _open_archive(path)
    out = []
    with path.open("rb") as f:
        for z in zooms:
            ids = [t for t, _o, _l in _entries(archive, f, range(z, z + 1))]
            out += [tileid_to_zxy(t) for t in rng.sample(ids, min(per_zoom, len(ids)))]
    return out


def bench_national_vector(root: Path, millesime: int = 2021, *, per_zoom: int = 40, seed: int = 7,
                          republish: str | None = None) -> dict[str, object]:
    """The national vector tiles of ``root``'s occupation PMTiles: first build (or update), a rerun without
    change, one département republished (``republish``, default the middle one: its file rewritten with the
    same bytes, as a new publication of it looks to the freshness stamps), then MVT latency per zoom."""
    import sys

    from benchmarks.bench_tiles import free_port, http_client, run_load, start
    from inference_batch.products.national_tiles import departement_tilesets, run_national_tiles
    from ocsge.national import national_key
    from ocsge.storage import LocalStorage

    storage = LocalStorage(root)
    product = "occupation_pmtiles"
    deps = list(departement_tilesets(storage, product, millesime))
    result: dict[str, object] = {"departements": len(deps), "load_average_1m_start": os.getloadavg()[0]}
    t0 = time.perf_counter()
    first = run_national_tiles(storage, product, millesime)
    result["first_build"] = {"wall_s": round(time.perf_counter() - t0, 2), "parts_rebuilt": len(first.parts_rebuilt),
                             **{k: round(v, 2) for k, v in first.timings.items()}, **first.stats}
    t0 = time.perf_counter()
    again = run_national_tiles(storage, product, millesime)
    result["rerun_unchanged"] = {"wall_s": round(time.perf_counter() - t0, 2), "rewritten": again.rewritten}
    dep = republish or deps[len(deps) // 2]
    key = departement_tilesets(storage, product, millesime)[dep]
    data = storage.get_bytes(key)
    with storage.writer(key) as tmp:
        tmp.write_bytes(data)
    t0 = time.perf_counter()
    one = run_national_tiles(storage, product, millesime)
    result["one_republished"] = {"departement": dep, "wall_s": round(time.perf_counter() - t0, 2),
                                 "parts_rebuilt": one.parts_rebuilt,
                                 **{k: round(v, 2) for k, v in one.timings.items()}, **one.stats}
    national = root / national_key(product, millesime)
    result["national_mb"] = round(national.stat().st_size / 1e6, 1)
    tiles = _national_tiles_per_zoom(national, range(6, 15), per_zoom, seed)
    port = free_port()
    code = ("import sys; from benchmarks.bench_tiles import serve_ours; serve_ours(sys.argv[1], int(sys.argv[2]))")
    server = start([sys.executable, "-c", code, str(root), str(port)], port, env={"PYTHONPATH": str(REPO)})
    base = f"http://127.0.0.1:{port}/vector/occupation/FR/{millesime}"

    def fetch(client, tile):  # type: ignore[no-untyped-def]
        z, x, y = tile
        return client.get(f"{base}/{z}/{x}/{y}.mvt", headers={"Accept-Encoding": "gzip"}).status_code

    rows = []
    try:
        run_load(fetch, http_client, tiles, 4)  # warm-up: directories cached, files in the page cache
        for z in range(6, 15):
            at = [t for t in tiles if t[0] == z]
            for concurrency in (1, 4):
                rows.append({"zoom": z, **run_load(fetch, http_client, at, concurrency)})
    finally:
        server.terminate()
        server.wait(timeout=30)
    result["mvt"] = rows
    result["load_average_1m_end"] = os.getloadavg()[0]
    return result


def national_table(result: dict[str, object]) -> str:
    lines = ["| zoom | concurrency | tiles | p50 ms | p95 ms | tiles/s | errors |", "|---|---|---|---|---|---|---|"]
    for row in result["mvt"]:  # type: ignore[attr-defined]
        lines.append(f"| {row['zoom']} | {row['concurrency']} | {row['tiles']} | {row['median_ms']} | "
                     f"{row['p95_ms']} | {row['tiles_per_s']} | {row['errors']} |")
    return "\n".join(lines)


def national_main(count: int, polygons: int, seed: int, per_zoom: int) -> None:
    from inference_batch.synth.footprints import metropolitan_codes

    codes = metropolitan_codes()[:count]
    with tempfile.TemporaryDirectory(prefix="bench-national-root-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        t0 = time.perf_counter()
        for i, code in enumerate(codes):
            make_departement_tiles(root, f"S{i + 1:02d}", code, polygons, seed + i)
        build_s = time.perf_counter() - t0
        result = bench_national_vector(root, per_zoom=per_zoom, seed=seed)
    result = {"polygons_per_departement": polygons, "departement_tilesets_s": round(build_s, 1), **result}
    print(json.dumps({k: v for k, v in result.items() if k != "mvt"}, indent=2))
    print(national_table(result))
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "bench_pmtiles_national.jsonl").open("a") as f:
        f.write(json.dumps(result) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polygons", type=int, default=200_000)
    parser.add_argument("--national", type=int, default=0, metavar="N",
                        help="national vector tiles over N synthetic départements (--polygons each)")
    parser.add_argument("--per-zoom", type=int, default=40, help="MVT tiles measured per zoom (--national)")
    parser.add_argument("--generator", choices=["synth", "samples"], default="synth")
    parser.add_argument("--densify", type=float, default=0.0,
                        help="max segment length of the polygons (m; 0: as generated)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.national:
        national_main(args.national, args.polygons, args.seed, args.per_zoom)
        return

    import numpy as np
    import shapely

    from inference_batch.products.artif import artificialisation
    from inference_batch.products.spatial import SpatialSource
    from inference_batch.products.tiles import MAX_ZOOM, MIN_ZOOM, OCCUPATION_ATTRS, build_pmtiles
    from inference_batch.synth.partitions import partition

    if args.generator == "synth":  # the project's vector-only generator (jittered parcels, every CS leaf)
        from inference_batch.synth.vector_scale import build_vector_pair

        pair = build_vector_pair(args.polygons, seed=args.seed)
        layer = pair["truth"][min(pair["truth"])]
        if args.densify:
            layer = layer.set_geometry(shapely.segmentize(layer.geometry.to_numpy(), args.densify))
    else:
        side = float(np.sqrt(args.polygons * 2_000.0))
        layer = partition(args.polygons, (700_000.0, 6_600_000.0, 700_000.0 + side, 6_600_000.0 + side),
                          seed=args.seed, densify=args.densify or None)
    layer, _ = artificialisation(layer)
    with tempfile.TemporaryDirectory(prefix="bench-pmtiles-") as tmp:
        out = Path(tmp) / "bench.pmtiles"
        t0 = time.perf_counter()
        stats = build_pmtiles({"occupation": (SpatialSource(layer, columns=OCCUPATION_ATTRS), OCCUPATION_ATTRS)}, out)
        wall = time.perf_counter() - t0
        size = out.stat().st_size
    per = 100_000 / stats["features"]
    summary = {
        "polygons": int(stats["features"]), "zooms": [MIN_ZOOM, MAX_ZOOM], "generator": args.generator,
        "densify_m": args.densify,
        "total_s": round(wall, 2), "per_100k_s": round(wall * per, 2),
        "export_per_100k_s": round(stats["export_s"] * per, 2),
        "tippecanoe_per_100k_s": round(stats["tippecanoe_s"] * per, 2),
        "size_mb": round(size / 1e6, 1),
        "peak_rss_mb_python": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_average_1m": os.getloadavg()[0],
    }
    print(json.dumps(summary, indent=2))
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "bench_pmtiles.jsonl").open("a") as f:
        f.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
