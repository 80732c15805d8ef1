"""Catalogue search latency: embedded index vs pgstac, same catalogue, same queries, same HTTP client.

Generates N items (default 100 000, prediction-block-like: footprint, datetime, ocsge: properties, a COG
asset with file/raster/classification fields), writes the snapshot and loads pgstac (a throwaway local
PostgreSQL + PostGIS), then serves each backend through the real STAC app (uvicorn on 127.0.0.1) and
measures the latency of a mix of searches at 1, 8 and 32 concurrent clients. Also the snapshot load time.

    python benchmarks/bench_search.py                  # 100 000 items, writes benchmarks/RESULTS_catalog.md
    python benchmarks/bench_search.py --items 5000 --requests 60 --no-write   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from catalog import snapshot, stac
from catalog.collections import BY_ID, class_list
from catalog.items import build_collection
from ocsge.nomenclature import Kind
from ocsge.territory import all_departements

COLLECTION = "ocsge-prediction"
YEARS = (2018, 2019, 2020, 2021, 2022, 2023, 2024)
CLASSES = class_list(Kind.COUVERTURE)


def make_items(n: int, seed: int = 42) -> list[dict[str, Any]]:
    """n block items spread over metropolitan France (lon -4.5…8, lat 42.5…51)."""
    rng = random.Random(seed)
    deps = [d for d in all_departements() if len(d.code) == 2]
    items = []
    for i in range(n):
        dep = deps[i % len(deps)]
        year = YEARS[(i // len(deps)) % len(YEARS)]
        lon, lat = rng.uniform(-4.5, 7.9), rng.uniform(42.5, 50.9)
        size = 0.02
        ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
        block = f"r{i // 1000:03d}c{i % 1000:03d}"
        items.append({
            "type": "Feature", "stac_version": stac.STAC_VERSION,
            "stac_extensions": sorted([stac.FILE, stac.PROJECTION, stac.RASTER, stac.CLASSIFICATION]),
            "id": f"prediction_D0{dep.code}_{year}_{block}", "collection": COLLECTION,
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "bbox": [lon, lat, lon + size, lat + size],
            "properties": {
                "datetime": f"{year}-01-01T00:00:00Z", "start_datetime": f"{year}-01-01T00:00:00Z",
                "end_datetime": f"{year}-12-31T23:59:59Z", "ocsge:departement": dep.code,
                "ocsge:millesime": year, "ocsge:source": "auto", "ocsge:block": block,
                "ocsge:product": "prediction", "proj:code": "EPSG:2154", "proj:shape": [2048, 2048],
            },
            "links": [],
            "assets": {"data": {
                "href": f"../../prediction/D0{dep.code}/{year}/blocks/prediction_D0{dep.code}_{year}_{block}.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data", "visual"],
                "file:size": 1_000_000 + i, "file:checksum": "1220" + f"{i:064x}",
                "raster:bands": [{"data_type": "uint8", "nodata": 0, "spatial_resolution": 1.0}],
                "classification:classes": CLASSES,
            }},
        })
    return items


def queries(rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """The mix: bbox of ~a département, a département × millésime filter, bbox + datetime, ids."""
    out: list[tuple[str, dict[str, Any]]] = []
    deps = [d.code for d in all_departements() if len(d.code) == 2]
    for _ in range(400):
        lon, lat = rng.uniform(-4, 7), rng.uniform(43, 50)
        kind = rng.randrange(4)
        if kind == 0:
            out.append(("bbox", {"collections": [COLLECTION], "bbox": [lon, lat, lon + 1, lat + 0.7], "limit": 50}))
        elif kind == 1:
            out.append(("filter", {"collections": [COLLECTION], "limit": 50, "filter-lang": "cql2-json",
                                   "filter": {"op": "and", "args": [
                                       {"op": "=", "args": [{"property": "ocsge:departement"}, rng.choice(deps)]},
                                       {"op": "=", "args": [{"property": "ocsge:millesime"}, rng.choice(YEARS)]}]}}))
        elif kind == 2:
            year = rng.choice(YEARS)
            out.append(("bbox+datetime", {"bbox": [lon, lat, lon + 1, lat + 0.7], "limit": 50,
                                          "datetime": f"{year}-03-01T00:00:00Z/{year}-09-30T00:00:00Z"}))
        else:
            out.append(("ids", {"ids": [f"prediction_D0{rng.choice(deps)}_{rng.choice(YEARS)}_r000c00{k}"
                                        for k in range(5)], "limit": 50}))
    return out


class Server:
    """``ocsge serve`` in its own process, as in production: clients never share its interpreter (GIL)."""

    def __init__(self, root: str, *extra: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.cmd = [sys.executable, "-m", "ocsge.cli", "serve", "--root", root, "--port", str(self.port), *extra]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, "OCSGE_QUIET": "1"})
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        return f"http://127.0.0.1:{self.port}/stac"

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=30)


def measure(url: str, mix: list[tuple[str, dict[str, Any]]], clients: int, requests: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    work = [mix[i % len(mix)] for i in range(requests)]

    def run(chunk: list[tuple[str, dict[str, Any]]]) -> None:
        nonlocal errors
        with httpx.Client(timeout=60) as http:
            for _, body in chunk:
                started = time.perf_counter()
                resp = http.post(f"{url}/search", json=body)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors += resp.status_code != 200

    chunks = [work[i::clients] for i in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, chunks))
    wall = time.perf_counter() - started
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "errors": errors,
            "median_ms": statistics.median(latencies) * 1000,
            "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000, "throughput_rps": len(latencies) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=240, help="requests per concurrency level")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--no-pgstac", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite benchmarks/RESULTS_catalog.md")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    from catalog.search.embedded import EmbeddedBackend
    from ocsge.storage import open_storage

    results: dict[str, Any] = {"items": args.items, "machine": f"{platform.machine()}, "
                               f"{__import__('os').cpu_count()} CPUs, Python {platform.python_version()}"}
    t = time.perf_counter()
    items = make_items(args.items)
    results["generate_s"] = time.perf_counter() - t
    collection = build_collection(BY_ID[COLLECTION], items[:1000])
    mix = queries(random.Random(7))
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as tmp:
        storage = open_storage(tmp)
        t = time.perf_counter()
        snapshot.write(storage, [collection], items)
        results["snapshot_write_s"] = time.perf_counter() - t
        results["snapshot_mb"] = (Path(tmp) / snapshot.ITEMS_KEY).stat().st_size / 1e6
        backend = EmbeddedBackend(storage)
        t = time.perf_counter()
        backend.index()
        results["snapshot_load_s"] = time.perf_counter() - t
        runs: dict[str, list[dict[str, Any]]] = {}
        with Server(tmp) as url:
            httpx.post(f"{url}/search", json={"limit": 1}).raise_for_status()
            runs["embedded"] = [measure(url, mix, c, args.requests) for c in levels]
            print("embedded", json.dumps(runs["embedded"], indent=1))
        if not args.no_pgstac:
            from catalog.pglocal import LocalPostgres, pgstac_database
            from catalog.publish import with_hrefs
            from catalog.search.pgstac import load

            with LocalPostgres() as pg:
                dsn = pgstac_database(pg)
                t = time.perf_counter()
                load(dsn, [collection], [with_hrefs(it, "s3://bucket/root/stac/snapshot/") for it in items])
                results["pgstac_load_s"] = time.perf_counter() - t
                with Server(tmp, "--backend", "pgstac", "--pgstac-dsn", dsn) as url:
                    httpx.post(f"{url}/search", json={"limit": 1}).raise_for_status()
                    runs["pgstac"] = [measure(url, mix, c, args.requests) for c in levels]
                    print("pgstac", json.dumps(runs["pgstac"], indent=1))
    results["runs"] = runs
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "bench_search.json").write_text(json.dumps(results, indent=1))
    table = render(results)
    print(table)
    if not args.no_write:
        (Path(__file__).parent / "RESULTS_catalog.md").write_text(table)


def render(r: dict[str, Any]) -> str:
    lines = [
        "# Catalogue search: embedded index vs pgstac",
        "",
        f"`python benchmarks/bench_search.py` — {r['items']:,} generated prediction-block items, one collection; "
        f"{r['machine']}; `ocsge serve` (uvicorn, one worker) in its own process, clients (httpx, one thread "
        "each) on the same machine over 127.0.0.1.",
        "",
        "Query mix (POST /stac/search, limit 50, rotating): bbox of about a département; CQL2-JSON filter "
        "`ocsge:departement = X AND ocsge:millesime = Y`; bbox + datetime interval; 5 ids.",
        "",
        "| backend | clients | requests | errors | median (ms) | p95 (ms) | throughput (req/s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, runs in r["runs"].items():
        for run in runs:
            lines.append(f"| {backend} | {run['clients']} | {run['requests']} | {run['errors']} | "
                         f"{run['median_ms']:.1f} | {run['p95_ms']:.1f} | {run['throughput_rps']:.1f} |")
    lines += [
        "",
        f"- Snapshot: {r['snapshot_mb']:.1f} MB gzip ndjson, written in {r['snapshot_write_s']:.1f} s; "
        f"**loaded into the embedded index in {r['snapshot_load_s']:.2f} s** (read, gunzip, parse, STRtree).",
    ]
    if "pgstac_load_s" in r:
        lines.append(f"- pgstac: {r['items']:,} items loaded with pypgstac (upsert) in {r['pgstac_load_s']:.1f} s.")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
