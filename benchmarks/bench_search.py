"""Catalogue search at national size: the embedded index queried in place, the previous in-memory index,
pgstac behind our STAC app and behind stac-fastapi-pgstac's own app — same catalogue, same queries, same
HTTP client.

Generates about N items at the national layout (101 départements × 3 millésimes × 30 product items plus
prediction blocks on a grid over each département: ≈ 2 000 per département and millésime at 6·10⁵), writes
the snapshot and its search index as ``ocsge publish`` does, loads pgstac (a throwaway local PostgreSQL +
PostGIS), then serves each backend in its own process and measures two mixes of POST /search at 1, 8 and 32
concurrent clients (p50, p95, req/s, ratios to the embedded backend), the cold start of each backend in a
fresh interpreter (process start → first answer, and backend open → first answer) and resident memory.

    python benchmarks/bench_search.py                  # 100 000 items, writes benchmarks/RESULTS_catalog.md
    python benchmarks/bench_search.py --items 500000   # national size
    python benchmarks/bench_search.py --items 5000 --requests 60 --no-write   # quick look
    python benchmarks/bench_search.py --root /tmp/cat-1e5 --server-workers 2 --limits 10,50 --backends embedded
        # keeps the published catalogue in /tmp/cat-1e5 (a rerun skips the index build), serves the embedded
        # backend as `ocsge serve --workers 2`, and measures pages of 10 (the API's default) and 50 items
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
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
from catalog.collections import BY_ID, COLLECTIONS, class_list
from catalog.items import build_collection
from ocsge.errors import OcsgeError
from ocsge.nomenclature import Kind
from ocsge.storage import open_storage

COLLECTION = "ocsge-prediction"
MILLESIMES = 3  # per département: one per campaign (2017-2020, 2021-2023, 2024-2026)
PRODUCTS_PER_SLOT = 30  # product items per département and millésime (one per collection)
CLASSES = class_list(Kind.COUVERTURE)
# approximate lon/lat boxes of the overseas départements (the metropolitan ones come from real footprints)
OVERSEAS = {"971": (-61.8, 15.8, -61.0, 16.5), "972": (-61.25, 14.4, -60.8, 14.9), "973": (-54.6, 2.1, -51.6, 5.8),
            "974": (55.2, -21.4, 55.85, -20.85), "976": (45.0, -13.0, 45.3, -12.6)}


def departement_boxes() -> dict[str, tuple[float, float, float, float]]:
    """lon/lat bounding box of each of the 101 départements."""
    from pyproj import Transformer

    from inference_batch.synth.footprints import footprint, metropolitan_codes

    to_wgs84 = Transformer.from_crs(2154, 4326, always_xy=True)
    boxes = {code: to_wgs84.transform_bounds(*footprint(code)) for code in metropolitan_codes()}
    return {**boxes, **OVERSEAS}


def _years(k: int) -> list[int]:
    return [2018 + k % 3, 2021 + k % 3, 2024 + k % 3][:MILLESIMES]


def _item(cid: str, product: str, dep: str, year: int, key: str, ring: list[list[float]], n: int,
          block: str | None = None) -> dict[str, Any]:
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    props: dict[str, Any] = {
        "datetime": f"{year}-01-01T00:00:00Z", "start_datetime": f"{year}-01-01T00:00:00Z",
        "end_datetime": f"{year}-12-31T23:59:59Z", "ocsge:departement": dep, "ocsge:millesime": year,
        "ocsge:source": "auto" if block else "official", "ocsge:product": product, "proj:code": "EPSG:2154",
        "proj:shape": [8192, 8192],
    }
    if block:
        props["ocsge:block"] = block
    return {
        "type": "Feature", "stac_version": stac.STAC_VERSION,
        "stac_extensions": sorted([stac.FILE, stac.PROJECTION, stac.RASTER, stac.CLASSIFICATION]),
        "id": key, "collection": cid, "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [min(xs), min(ys), max(xs), max(ys)], "properties": props, "links": [],
        "assets": {"data": {
            "href": f"../../{product}/D{dep.zfill(3)}/{year}/{key}.tif",
            "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data", "visual"],
            "file:size": 1_000_000 + n, "file:checksum": "1220" + f"{n:064x}",
            "raster:bands": [{"data_type": "uint8", "nodata": 0, "spatial_resolution": 0.2}],
            "classification:classes": CLASSES,
        }},
    }


def make_items(n: int) -> list[dict[str, Any]]:
    """About ``n`` items at the national layout: 101 départements × 3 millésimes × (30 product items on the
    département's footprint + prediction blocks on a grid over it, as many as ``n`` asks: ≈ 2 000 per
    département and millésime at 6·10⁵). Blocks are squares in Lambert-93 reprojected to lon/lat (not
    axis-aligned there: the exact footprint test runs, as on real data)."""
    from pyproj import Transformer

    from inference_batch.synth.footprints import footprint

    to_wgs84 = Transformer.from_crs(2154, 4326, always_xy=True)
    boxes = departement_boxes()
    products = [c.id for c in COLLECTIONS if c.id != COLLECTION][:PRODUCTS_PER_SLOT]
    slots = len(boxes) * MILLESIMES
    blocks = max(0, round(n / slots) - len(products))
    items: list[dict[str, Any]] = []
    for k, (dep, (w, s, e, nn)) in enumerate(boxes.items()):
        ring = [[w, s], [e, s], [e, nn], [w, nn], [w, s]]
        try:
            x0, y0, x1, y1 = footprint(dep)
        except OcsgeError:  # overseas: blocks laid in lon/lat directly
            x0, y0, x1, y1 = w, s, e, nn
            project = None
        else:
            project = to_wgs84
        cols = max(1, math.ceil(math.sqrt(blocks * (x1 - x0) / (y1 - y0)))) if blocks else 1
        rows = math.ceil(blocks / cols) if blocks else 0
        dx, dy = (x1 - x0) / cols, (y1 - y0) / max(rows, 1)
        corners = []
        for b in range(blocks):
            r, c = divmod(b, cols)
            bx, by = x0 + c * dx, y0 + r * dy
            corners.append([(bx, by), (bx + dx, by), (bx + dx, by + dy), (bx, by + dy)])
        flat = [pt for quad in corners for pt in quad]
        if project is not None and flat:
            lons, lats = project.transform([p[0] for p in flat], [p[1] for p in flat])
            flat = list(zip(lons, lats, strict=True))
        for year in _years(k):
            for cid in products:
                product = BY_ID[cid].product
                items.append(_item(cid, product, dep, year, f"{product}_D{dep.zfill(3)}_{year}", ring, len(items)))
            for b in range(blocks):
                quad = [[round(x, 7), round(y, 7)] for x, y in flat[4 * b: 4 * b + 4]]
                block = f"r{b // cols:03d}c{b % cols:03d}"
                items.append(_item(COLLECTION, "prediction", dep, year, f"prediction_D{dep.zfill(3)}_{year}_{block}",
                                   [*quad, quad[0]], len(items), block))
    return items


def target_queries(rng: random.Random, boxes: dict[str, tuple[float, float, float, float]],
                   limit: int = 50) -> list[dict[str, Any]]:
    """The target search: prediction blocks in a bbox of ~25 × 35 km inside a département, one year."""
    out = []
    for _ in range(400):
        k, (w, s, e, n) = rng.choice(list(enumerate(boxes.values())))
        lon, lat = rng.uniform(w, max(w, e - 0.3)), rng.uniform(s, max(s, n - 0.3))
        year = rng.choice(_years(k))
        out.append({"collections": [COLLECTION], "bbox": [lon, lat, lon + 0.3, lat + 0.3], "limit": limit,
                    "datetime": f"{year}-01-01T00:00:00Z/{year}-12-31T23:59:59Z"})
    return out


def mixed_queries(rng: random.Random, boxes: dict[str, tuple[float, float, float, float]],
                  ids: list[str], limit: int = 50) -> list[dict[str, Any]]:
    """The mix: a département's bbox over every collection; a département × millésime CQL2 filter; bbox +
    datetime over every collection; 5 ids; and the target search."""
    out: list[dict[str, Any]] = []
    deps = list(boxes)
    targets = target_queries(rng, boxes, limit)
    for i in range(400):
        k = rng.randrange(len(deps))
        w, s, e, n = boxes[deps[k]]
        year = rng.choice(_years(k))
        kind = i % 5
        if kind == 0:
            out.append({"bbox": [w, s, e, n], "limit": limit})
        elif kind == 1:
            out.append({"collections": [COLLECTION], "limit": limit, "filter-lang": "cql2-json", "filter": {
                "op": "and", "args": [{"op": "=", "args": [{"property": "ocsge:departement"}, deps[k]]},
                                      {"op": "=", "args": [{"property": "ocsge:millesime"}, year]}]}})
        elif kind == 2:
            out.append({"bbox": [w, s, (w + e) / 2, (s + n) / 2], "limit": limit,
                        "datetime": f"{year}-03-01T00:00:00Z/{year}-09-30T00:00:00Z"})
        elif kind == 3:
            out.append({"ids": rng.sample(ids, 5), "limit": limit})
        else:
            out.append(targets[i])
    return out


class Server:
    """A STAC server in its own process, as in production: clients never share its interpreter (GIL)."""

    def __init__(self, cmd: list[str], health: str, prefix: str, env: dict[str, str] | None = None,
                 postmaster: Path | None = None) -> None:
        self.port = free_port()
        self.cmd_template = cmd
        self.postmaster = postmaster  # postmaster.pid of the database it queries: its CPU is the server's too
        self.cmd = [c.replace("{port}", str(self.port)) for c in cmd]
        self.health, self.prefix, self.env = health, prefix, env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, "OCSGE_QUIET": "1", **self.env})
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{self.health}", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.2)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def cpu_s(self) -> float:
        """CPU seconds used so far by the server process (its threads included) and, for pgstac, by
        PostgreSQL (the postmaster, its live backends, and those it reaped)."""
        assert self.proc is not None
        # the server and its worker processes (`ocsge serve --workers N` forks them), live or reaped
        total = _cpu_of(self.proc.pid, reaped=True) + sum(_cpu_of(pid) for pid in _children(self.proc.pid))
        if self.postmaster is not None and self.postmaster.exists():
            master = int(self.postmaster.read_text().split()[0])
            total += _cpu_of(master, reaped=True)
            for stat in Path("/proc").glob("[0-9]*/stat"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                    if int(fields[1]) == master:
                        total += _cpu_of(int(stat.parent.name))
        return total

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident memory of the server process, summed over its worker processes (each
        counts the pages it shares with the others: an upper bound)."""
        assert self.proc is not None
        current = peak = 0.0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            with contextlib.suppress(OSError):
                fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                              if ":" in line)
                current += int(fields["VmRSS"].split()[0]) / 1024
                peak += int(fields["VmHWM"].split()[0]) / 1024
        return current, peak

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
    return out


def _cpu_of(pid: int, reaped: bool = False) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_memory(root: str, port: int) -> None:
    """The previous embedded backend (whole snapshot in memory) behind the same STAC app, for comparison:
    ``ocsge serve`` only opens the current one."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    from catalog.search.backends import open_backend
    from services.stac.app import create_stac_app

    backend = open_backend("memory", root=root, asset_base_url=f"http://127.0.0.1:{port}/files")
    backend.version()  # loaded before the first request, as ocsge serve does
    app = Starlette(routes=[Route("/healthz", lambda request: PlainTextResponse("ok")),
                           Mount("/stac", app=create_stac_app(backend))])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


COLD_START_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
from catalog.search.backends import open_backend
from catalog.search.request import SearchRequest
kind, root, dsn, body = sys.argv[1], sys.argv[2], sys.argv[3] or None, json.loads(sys.argv[4])
t1, c1 = time.perf_counter(), cpu()
backend = open_backend(kind, root=root, dsn=dsn)
page = backend.search(SearchRequest(collections=body["collections"], bbox=tuple(body["bbox"]),
                                    datetime=body["datetime"], limit=body["limit"]))
t2, c2 = time.perf_counter(), cpu()
rss = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")][0] / 1024
print(json.dumps({"import_s": t1 - t0, "open_to_first_s": t2 - t1, "open_to_first_cpu_s": c2 - c1,
                  "process_cpu_s": c2, "returned": len(page.items), "rss_mb": rss}))
"""


def cold_start(kind: str, root: str, body: dict[str, Any], dsn: str = "") -> dict[str, Any]:
    """A fresh interpreter: process start → first answer (the target search, in process), and the part from
    opening the backend to the first answer; the resident memory after it."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", COLD_START_CHILD, kind, root, dsn, json.dumps(body)],
                         capture_output=True, text=True, env={**os.environ, "OCSGE_QUIET": "1"})
    if out.returncode:
        raise RuntimeError(f"cold start of {kind} failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_to_first_s"] = time.perf_counter() - started
    return result


def measure(server: Server, mix: list[dict[str, Any]], clients: int, requests: int) -> dict[str, Any]:
    url = server.url
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    work = [mix[i % len(mix)] for i in range(requests)]

    def run(chunk: list[dict[str, Any]]) -> None:
        nonlocal errors
        with httpx.Client(timeout=120) as http:
            for body in chunk:
                started = time.perf_counter()
                resp = http.post(f"{url}/search", json=body)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors += resp.status_code != 200

    chunks = [work[i::clients] for i in range(clients)]
    cpu_before = server.cpu_s()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, chunks))
    wall = time.perf_counter() - started
    cpu = server.cpu_s() - cpu_before
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "errors": errors, "limit": mix[0].get("limit", 10),
            "server_cpu_ms": cpu / max(len(latencies), 1) * 1000,
            "median_ms": statistics.median(latencies) * 1000,
            "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000, "throughput_rps": len(latencies) / wall}


# TCP_NODELAY on listening sockets, then `ocsge` (or uvicorn) as usual: see --listener-nodelay
_NODELAY = (
    "import socket, sys\n"
    "_listen = socket.socket.listen\n"
    "def listen(self, *args):\n"
    "    if self.family in (socket.AF_INET, socket.AF_INET6):\n"
    "        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n"
    "    return _listen(self, *args)\n"
    "socket.socket.listen = listen\n"
)
NODELAY_SHIM = _NODELAY + "from ocsge.cli import main\nmain(sys.argv[1:])\n"
NODELAY_SHIM_UVICORN = _NODELAY + "import uvicorn.main\nsys.argv[0] = 'uvicorn'\nuvicorn.main.main()\n"

PARTITION_BY_YEAR_ITEMS = 10_000


def tune_pgstac(dsn: str) -> list[str]:
    """pgstac settings that make a search cheaper: ``readonly`` (search() no longer records every search in
    ``searches``: a write per request), the collections of more than :data:`PARTITION_BY_YEAR_ITEMS` items
    partitioned by year (a one-year search reads one partition), fresh planner statistics."""
    import psycopg

    done = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("INSERT INTO pgstac_settings (name, value) VALUES ('readonly', 'true') "
                     "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value")
        done.append("readonly=true")
        big = [r[0] for r in conn.execute("SELECT collection FROM items GROUP BY collection HAVING count(*) > %s",
                                          (PARTITION_BY_YEAR_ITEMS,)).fetchall()]
        for cid in big:
            conn.execute("UPDATE collections SET partition_trunc = 'year' WHERE id = %s", (cid,))
            done.append(f"{cid}: partition_trunc=year")
        conn.execute("ANALYZE")
    return done


def check_same_answers(urls: dict[str, str], mix: list[dict[str, Any]]) -> dict[str, int]:
    """Every server answers the first queries of the mix with the same ids in the same order (and the same
    count where it counts): the comparison is between equals."""
    differences = {name: 0 for name in urls}
    with httpx.Client(timeout=120) as http:
        for body in mix[:40]:
            answers = {name: http.post(f"{url}/search", json=body).json() for name, url in urls.items()}
            reference = [f["id"] for f in answers["embedded"]["features"]]
            for name, answer in answers.items():
                differences[name] += [f["id"] for f in answer.get("features", [])] != reference
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=240, help="requests per mix and concurrency level")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--backends", default="embedded,memory,pgstac,stac-fastapi-pgstac",
                        help="servers to measure (embedded: the index in place; memory: the previous in-memory "
                             "index; pgstac: our STAC app over pgstac; stac-fastapi-pgstac: its own app)")
    parser.add_argument("--limits", default="50",
                        help="page sizes measured (10 is the API's default: what pystac-client and a plain search "
                             "get unless they ask; 50 a client that asks for more)")
    parser.add_argument("--server-workers", default="1",
                        help="worker processes of the embedded and pgstac servers (`ocsge serve --workers N`) and "
                             "of stac-fastapi-pgstac's (uvicorn --workers N); a list (1,2) serves the embedded "
                             "backend once per count (rows `embedded wN`; `embedded` is the last count, which the "
                             "other servers use)")
    parser.add_argument("--listener-nodelay", action="store_true",
                        help="start every server with TCP_NODELAY on its listening socket (inherited by the "
                             "accepted ones). A listening socket made with protocol 0 — `ocsge serve --workers N` "
                             "and uvicorn --workers N make theirs so — gets no TCP_NODELAY from asyncio, and each "
                             "response then waits ≈ 40 ms for the client's delayed ACK (Nagle)")
    parser.add_argument("--root", default=None,
                        help="publish the catalogue into this folder and keep it (a rerun with the same --items "
                             "reuses its search index instead of rebuilding it); default a temporary folder")
    parser.add_argument("--mixes", default="target,mix", help="query mixes measured (target, mix)")
    parser.add_argument("--pgstac-tuning", action="store_true",
                        help="after the pgstac servers, tune the database (pgstac readonly: no search bookkeeping "
                             "writes; collections over 10 000 items partitioned by year; ANALYZE) and measure both "
                             "pgstac servers again (rows `… +tuned`; `… +api-hydrate`: stac-fastapi-pgstac with "
                             "USE_API_HYDRATE too; `… +response-models`: and ENABLE_RESPONSE_MODELS=true, whose "
                             "pydantic serialisation replaces FastAPI's jsonable_encoder walk of the page)")
    parser.add_argument("--pgstac-workers", type=int, default=None,
                        help="worker processes of the two pgstac servers (default: the last --server-workers)")
    parser.add_argument("--warmup", type=int, default=0,
                        help="requests sent to each server at the highest client count before its measured rows, "
                             "not counted (taken from the end of the mix: none of them is measured), so every "
                             "worker, connection pool and PostgreSQL backend is warm — pgstac compiles its PL/pgSQL "
                             "once per backend, 20–40 ms of CPU on a backend's first search")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite benchmarks/RESULTS_catalog.md")
    parser.add_argument("--serve-memory", nargs=2, metavar=("ROOT", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_memory:
        serve_memory(args.serve_memory[0], int(args.serve_memory[1]))
        return
    levels = [int(c) for c in args.clients.split(",")]
    limits = [int(k) for k in args.limits.split(",")]
    wanted = args.backends.split(",")
    worker_counts = [max(1, int(w)) for w in args.server_workers.split(",")]
    workers = worker_counts[-1]
    pg_workers = args.pgstac_workers or workers
    launcher = ([sys.executable, "-c", NODELAY_SHIM] if args.listener_nodelay
                else [sys.executable, "-m", "ocsge.cli"])

    results: dict[str, Any] = {"items": args.items, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                               f"Python {platform.python_version()}", "loadavg_start": _loadavg(),
                               "server_workers": workers, "limits": limits, "listener_nodelay": args.listener_nodelay,
                               "worker_counts": worker_counts, "pgstac_workers": pg_workers,
                               "warmup": args.warmup, "warmup_clients": max(levels)}
    t = time.perf_counter()
    items = make_items(args.items)
    results["items"] = len(items)
    results["generate_s"] = time.perf_counter() - t
    by_collection: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_collection.setdefault(item["collection"], []).append(item)
    collections = [build_collection(BY_ID[cid], its[:1000]) for cid, its in sorted(by_collection.items())]
    boxes = departement_boxes()
    sample_ids = [it["id"] for it in items[:: max(1, len(items) // 5000)]]
    first_target: list[dict[str, Any]] = []
    mixes: dict[str, list[dict[str, Any]]] = {}
    for limit in limits:
        rng = random.Random(7)  # the same searches at every page size
        suffix = "" if len(limits) == 1 else f" {limit}"
        target = target_queries(rng, boxes, limit)
        mixed = mixed_queries(rng, boxes, sample_ids, limit)
        if "target" in args.mixes.split(","):
            mixes[f"target{suffix}"] = target
        if "mix" in args.mixes.split(","):
            mixes[f"mix{suffix}"] = mixed
        first_target = first_target if limit != limits[0] else target
    results["collections"] = len(collections)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    rss: dict[str, tuple[float, float]] = {}
    cold: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as keep:
        if args.root:
            tmp = str(Path(args.root).resolve())
            Path(tmp).mkdir(parents=True, exist_ok=True)
        else:
            tmp = keep.enter_context(tempfile.TemporaryDirectory(prefix="bench-catalog-"))
        storage = open_storage(tmp)
        t = time.perf_counter()
        snapshot.write(storage, collections, items)
        results["snapshot_write_s"] = time.perf_counter() - t
        results["snapshot_mb"] = (Path(tmp) / snapshot.ITEMS_KEY).stat().st_size / 1e6
        etag = json.loads((Path(tmp) / snapshot.INDEX_KEY).read_text())["etag"]
        index_dir = Path(tmp) / snapshot.PREFIX / f"index-{etag[:16]}"
        results["index_mb"] = {p.name: p.stat().st_size / 1e6 for p in index_dir.iterdir()}
        del items, by_collection  # the snapshot holds them now: a national-size list is gigabytes
        first = first_target[0]
        for kind in ("embedded", "memory"):
            if kind in wanted:
                cold[kind] = cold_start(kind, tmp, first)
                print(kind, "cold start", cold[kind], flush=True)
        servers: dict[str, Server] = {}
        if "embedded" in wanted:
            for count in worker_counts:
                name = "embedded" if count == workers else f"embedded w{count}"
                servers[name] = Server([*launcher, "serve", "--root", tmp, "--port", "{port}", "--workers",
                                        str(count)], "/healthz", "/stac")
            servers["embedded"] = servers.pop("embedded")  # after the other worker counts
        if "memory" in wanted:
            servers["memory"] = Server([sys.executable, __file__, "--serve-memory", tmp, "{port}"], "/healthz", "/stac")
        pg = None
        if {"pgstac", "stac-fastapi-pgstac"} & set(wanted):
            from catalog.pglocal import LocalPostgres, pgstac_database
            from catalog.publish import with_hrefs
            from catalog.search.pgstac import load

            pg = LocalPostgres().start()
            dsn = pgstac_database(pg)
            snap = snapshot.read(storage)
            t = time.perf_counter()
            load(dsn, snap.collections, [with_hrefs(json.loads(line), "s3://bucket/root/stac/snapshot/")
                                         for line in snapshot.iter_items(snap.items_ndjson)])
            results["pgstac_load_s"] = time.perf_counter() - t
            del snap
            if "pgstac" in wanted:
                cold["pgstac"] = cold_start("pgstac", tmp, first, dsn)
                servers["pgstac"] = Server([*launcher, "serve", "--root", tmp, "--port",
                                            "{port}", "--backend", "pgstac", "--pgstac-dsn", dsn, "--workers",
                                            str(pg_workers)], "/healthz", "/stac",
                                           postmaster=Path(pg.dir) / "data" / "postmaster.pid")
            if "stac-fastapi-pgstac" in wanted:
                servers["stac-fastapi-pgstac"] = Server(
                    [*([sys.executable, "-c", NODELAY_SHIM_UVICORN] if args.listener_nodelay
                       else [sys.executable, "-m", "uvicorn"]), "stac_fastapi.pgstac.app:create_app", "--factory",
                     "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning", "--workers",
                     str(pg_workers)], "/_mgmt/ping", "",
                    env={"PGUSER": pg.user, "PGPASSWORD": "", "PGHOST": pg.host, "PGPORT": str(pg.port),
                         "PGDATABASE": "pgstac", "ENABLE_RESPONSE_MODELS": "false"},
                    postmaster=Path(pg.dir) / "data" / "postmaster.pid")
            if args.pgstac_tuning:
                for name in ("stac-fastapi-pgstac", "pgstac"):
                    if name in servers:
                        server = servers[name]
                        servers[f"{name} +tuned"] = Server(server.cmd_template, server.health, server.prefix,
                                                           server.env, server.postmaster)
                        if name == "stac-fastapi-pgstac":  # its own lever: items hydrated in Python, not in SQL
                            servers[f"{name} +tuned +api-hydrate"] = Server(
                                server.cmd_template, server.health, server.prefix,
                                {**server.env, "USE_API_HYDRATE": "true"}, server.postmaster)
                            # and its response models: the page serialised by pydantic instead of FastAPI's
                            # jsonable_encoder, which walks every value (≈ 2/3 of its Python CPU at limit 50)
                            servers[f"{name} +tuned +api-hydrate +response-models"] = Server(
                                server.cmd_template, server.health, server.prefix,
                                {**server.env, "USE_API_HYDRATE": "true", "ENABLE_RESPONSE_MODELS": "true"},
                                server.postmaster)
        try:
            if len(servers) > 1 and "embedded" in servers:
                with contextlib.ExitStack() as stack:
                    urls = {name: stack.enter_context(server).url for name, server in servers.items()
                            if not name.endswith("+tuned")}
                    results["answer_differences"] = check_same_answers(urls, first_target)
            tuned = False
            for name, server in servers.items():
                if name.endswith("+tuned") and not tuned:
                    t = time.perf_counter()
                    results["pgstac_tuning"] = tune_pgstac(dsn)
                    results["pgstac_tuning_s"] = time.perf_counter() - t
                    tuned = True
                with server:
                    httpx.post(f"{server.url}/search", json={"limit": 1}, timeout=120).raise_for_status()
                    if args.warmup:
                        warm = next(iter(mixes.values()))[::-1][:args.warmup]
                        measure(server, warm, max(levels), len(warm))
                    runs[name] = {mix: [measure(server, queries, c, args.requests) for c in levels]
                                  for mix, queries in mixes.items()}
                    rss[name] = server.rss_mb()
                print(name, json.dumps(runs[name]), flush=True)
        finally:
            if pg is not None:
                pg.stop()
    results.update(runs=runs, rss_mb=rss, cold=cold, loadavg_end=_loadavg())
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "bench_search.json").write_text(json.dumps(results, indent=1))
    table = render(results, " ".join(sys.argv[1:]))
    print(table)
    if not args.no_write:
        path = Path(__file__).parent / "RESULTS_catalog.md"
        previous = path.read_text() if path.exists() else ""
        path.write_text(table + ("\n" + previous.split("\n", 1)[1] if previous.startswith("# ") else previous))


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" 1/")[0].rsplit(" ", 2)[0] if Path("/proc/loadavg").exists() \
        else "n/a"


def _workers_text(workers: int) -> str:
    return "one worker" if workers == 1 else f"{workers} worker processes: `ocsge serve --workers {workers}`, " \
        f"uvicorn --workers {workers} for stac-fastapi-pgstac"


def render(r: dict[str, Any], argv: str) -> str:
    runs = r["runs"]
    lines = [
        f"# Catalogue search at {r['items']:,} items: embedded index in place vs in memory vs pgstac",
        "",
        f"`python benchmarks/bench_search.py {argv}`".replace(" `", "`") + f" — {r['items']:,} generated items in "
        f"{r['collections']} collections (101 départements × {MILLESIMES} millésimes × ({PRODUCTS_PER_SLOT} product "
        f"items + prediction blocks)); {r['machine']}; load average {r['loadavg_start']} at start, "
        f"{r['loadavg_end']} at the end (the machine is shared). Each server in its own process (uvicorn, "
        f"{_workers_text(r.get('server_workers', 1))}"
        + "".join(f"; `embedded w{w}`: {w} worker(s)" for w in r.get("worker_counts", [])[:-1])
        + f"); clients (httpx, one thread each) on the same machine over "
        f"127.0.0.1; POST /search, limit {' and '.join(str(k) for k in r.get('limits', [50]))} (the mix names "
        "end with the limit when several are measured; 10 is the API's default page)"
        + ("; every server's listening socket with TCP_NODELAY (`--listener-nodelay`)." if r.get("listener_nodelay")
           else "."),
        "",
        "Mixes: **target** = prediction blocks, bbox ≈ 25 × 33 km inside a département, one year "
        "(bbox + collection + datetime); **mix** = a département's bbox over every collection, "
        "`ocsge:departement = X AND ocsge:millesime = Y` (CQL2 JSON), bbox + datetime over every collection, "
        "5 ids, the target search.",
        "",
        "Server CPU per request: CPU time of the server process (and of PostgreSQL for pgstac) over the run, "
        "divided by the requests — what a request costs whatever else the machine runs.",
        "",
        "| backend | mix | clients | requests | errors | p50 (ms) | p95 (ms) | req/s | p95 / embedded | "
        "req/s / embedded | server CPU / request (ms) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = runs.get("embedded", {})
    for backend, by_mix in runs.items():
        for mix, levels in by_mix.items():
            for k, run in enumerate(levels):
                ref = base.get(mix, [None] * (k + 1))[k]
                ratio_p95 = f"{run['p95_ms'] / ref['p95_ms']:.2f}" if ref else "—"
                ratio_rps = f"{run['throughput_rps'] / ref['throughput_rps']:.2f}" if ref else "—"
                lines.append(f"| {backend} | {mix} | {run['clients']} | {run['requests']} | {run['errors']} | "
                             f"{run['median_ms']:.1f} | {run['p95_ms']:.1f} | {run['throughput_rps']:.1f} | "
                             f"{ratio_p95} | {ratio_rps} | {run.get('server_cpu_ms', float('nan')):.1f} |")
    lines += ["", "Cold start, in a fresh interpreter (the target search, in process): wall time, and CPU time in "
              "brackets (what the wall time would be on an idle machine, less I/O).", "",
              "| backend | process start → first answer (s) | backend open → first answer (s) | "
              "RSS after it (MB) | server RSS after the runs (MB) | server peak RSS (MB) |",
              "|---|---:|---:|---:|---:|---:|"]
    for backend in sorted(runs.keys() | r["cold"].keys()):
        c = r["cold"].get(backend)
        mem = r["rss_mb"].get(backend)
        lines.append(f"| {backend} | {c['process_to_first_s']:.2f} ({c['process_cpu_s']:.2f}) | "
                     f"{c['open_to_first_s']:.2f} ({c['open_to_first_cpu_s']:.2f}) | {c['rss_mb']:.0f} | "
                     if c else f"| {backend} | — | — | — | ")
        lines[-1] += f"{mem[0]:.0f} | {mem[1]:.0f} |" if mem else "— | — |"
    index = ", ".join(f"{name} {mb:.1f} MB" for name, mb in sorted(r["index_mb"].items()))
    lines += [
        "",
        f"- Snapshot {r['snapshot_mb']:.1f} MB (gzip ndjson) and search index ({index}) written in "
        f"{r['snapshot_write_s']:.1f} s (what `ocsge publish` adds).",
    ]
    if "pgstac_load_s" in r:
        lines.append(f"- pgstac: loaded with pypgstac (upsert) in {r['pgstac_load_s']:.1f} s.")
    if "pgstac_tuning" in r:
        lines.append(f"- `+tuned`: pgstac tuned after the first pgstac rows ({'; '.join(r['pgstac_tuning'])}) in "
                     f"{r['pgstac_tuning_s']:.1f} s, then the pgstac servers measured again; `+api-hydrate`: "
                     "stac-fastapi-pgstac with `USE_API_HYDRATE=true` (items hydrated in Python, not in SQL); "
                     "`+response-models`: and `ENABLE_RESPONSE_MODELS=true` (pages serialised by pydantic, not walked "
                     "by FastAPI's jsonable_encoder; same JSON).")
    if r.get("warmup"):
        lines.append(f"- Warm-up: {r['warmup']} requests per server at {r['warmup_clients']} clients before its "
                     "rows, not counted (queries from the end of the mix, none of them measured).")
    if r.get("pgstac_workers") and r["pgstac_workers"] != r.get("server_workers"):
        lines.append(f"- pgstac servers with {r['pgstac_workers']} worker processes.")
    if "answer_differences" in r:
        lines.append("- Same answers: of the first 40 target searches, pages whose ids differ from the embedded "
                     f"backend's: {r['answer_differences']}.")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
