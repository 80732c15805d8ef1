"""Soak: mixed traffic against ``ocsge serve`` for N minutes, watching latency, errors and the server's memory.

    python benchmarks/soak.py --minutes 3                      # demo data under benchmarks/out/soak-demo
    python benchmarks/soak.py --minutes 10 --root /data/demo   # an existing published root
    python benchmarks/soak.py --minutes 1 --tiny               # the tests' tiny territory (seconds to build)

The server is the real ``ocsge serve`` (a subprocess, one uvicorn worker, the configuration users get);
``--clients`` threads (16 by default) each keep one HTTP connection and send, at random, the requests a
map client and a catalogue client make: STAC search (GET with bbox/datetime/filter, POST with CQL2 JSON,
sortby and fields), items and collections; WMTS KVP and RESTful tiles, XYZ tiles, WMS GetMap (EPSG:3857
and 2154, 256–1024 px) and GetFeatureInfo, MVT tiles, capabilities, legends; file reads by HTTP Range
(COGs, PMTiles) and HEAD; the download listing. Request values vary the way many distinct clients make them
vary (every tile of several zoom levels, random windows, sortby/filter on several property names, a
cache-buster parameter), so that any cache keyed by request values shows up as growth.

Printed at start, every minute and at the end: requests, errors (5xx, connection errors, timeouts; 4xx are
counted apart), p50/p95 latency overall and per kind, and the server's RSS; at the end, the RSS after a
warm-up (``--warmup`` minutes, while bounded caches fill), its peak and its least-squares trend in MB/min
(flat ≈ 0). Everything, with the RSS sampled every 5 s, is also written to ``benchmarks/out/soak-*.json``.
A root without demo data is made first with ``ocsge demo --no-serve`` (about 3 minutes on 2 cores, longer
on a loaded machine). ``--url``/``--pid`` soak a server started elsewhere.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
sys.path.insert(0, str(REPO))

# Weights of the request kinds in the mix (a map client sends mostly tiles; a few catalogue requests).
MIX = {
    "stac": 12, "wmts": 18, "xyz": 18, "wms": 10, "featureinfo": 4, "mvt": 18, "files": 12, "capabilities": 3,
    "legend": 2, "downloads": 3,
}
RANGE_READ_TYPES = ("image/tiff", "application/vnd.pmtiles")  # files clients read by HTTP Range
PROPERTIES = ["ocsge:departement", "ocsge:millesime", "ocsge:campaign", "ocsge:source", "ocsge:product",
              "datetime", "id", "collection", "proj:code", "ocsge:millesime_index"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- data ---------------------------------------------------------------------------------------------

def ensure_root(root: Path, tiny: bool) -> Path:
    """A published root: the given one, else demo data made now (or the tests' tiny territory)."""
    if (root / "stac").is_dir():
        return root
    if tiny:
        sys.path.insert(0, str(REPO / "tests" / "services"))
        from svc_territory import build_territory  # type: ignore[import-not-found]

        from catalog.publish import publish
        from ocsge.storage import LocalStorage

        print(f"building the tests' tiny territory under {root} …", flush=True)
        build_territory(root)
        publish(LocalStorage(root))
        return root
    print(f"no published data under {root}: running `ocsge demo --no-serve` (a few minutes) …", flush=True)
    subprocess.run([sys.executable, "-m", "ocsge.cli", "demo", "--root", str(root), "--no-serve"], cwd=REPO,
                   env={**os.environ, "OCSGE_QUIET": "1"}, check=True)
    return root


# --- server -------------------------------------------------------------------------------------------

class Server:
    def __init__(self, root: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(OUT / "soak-server.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ocsge.cli", "serve", "--root", str(root), "--host", "127.0.0.1", "--port",
             str(port)], cwd=REPO, env={**os.environ, "OCSGE_QUIET": "1"}, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"ocsge serve exited with {self.proc.returncode}: see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("ocsge serve did not answer within 180 s")
            time.sleep(0.3)
        self.ps = psutil.Process(self.proc.pid)

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class External:
    """A server this script did not start (``--url``): measured, never stopped."""

    def __init__(self, url: str, pid: int | None) -> None:
        self.url = url.rstrip("/")
        self.ps = psutil.Process(pid) if pid else None
        self.proc = type("Alive", (), {"poll": staticmethod(lambda: None), "returncode": None})()

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20 if self.ps else float("nan")

    def stop(self) -> None:
        pass


# --- traffic ------------------------------------------------------------------------------------------

def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def to_3857(lon: float, lat: float) -> tuple[float, float]:
    r = 6378137.0
    return math.radians(lon) * r, math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * r


@dataclass
class Inventory:
    layers: list[dict[str, Any]]
    datasets: list[dict[str, Any]]
    files: list[tuple[str, int]]  # (path, size)
    items: list[tuple[str, str]]  # (collection, item id)
    departements: list[str]
    bbox: tuple[float, float, float, float]


def discover(base: str) -> Inventory:
    with httpx.Client(base_url=base, timeout=60) as c:
        layers = c.get("/tiles/layers").raise_for_status().json()
        datasets = c.get("/vector/datasets").raise_for_status().json()
        files: list[tuple[str, int]] = []
        items: list[tuple[str, str]] = []
        url: str | None = "/stac/search?limit=200"
        while url:
            page = c.get(url).raise_for_status().json()
            for it in page["features"]:
                items.append((it["collection"], it["id"]))
                for asset in it["assets"].values():
                    href = asset["href"]
                    if "/files/" in href and asset.get("type", "").startswith(RANGE_READ_TYPES):
                        files.append(("/files/" + href.split("/files/", 1)[1], int(asset.get("file:size") or 0)))
            url = next((lk["href"] for lk in page.get("links", []) if lk["rel"] == "next"), None)
        deps = c.get("/downloads").raise_for_status().json()
    boxes = [lay["bounds"] for lay in layers] or [[2.0, 48.0, 3.0, 49.0]]
    bbox = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    return Inventory(layers, datasets, files, items, deps, bbox)


class Traffic:
    """Random requests of each kind, drawn from what the server publishes."""

    def __init__(self, inv: Inventory, rng: random.Random) -> None:
        self.inv = inv
        self.rng = rng

    def _point(self, bounds: list[float] | tuple[float, ...]) -> tuple[float, float]:
        w, s, e, n = bounds
        return self.rng.uniform(w, e), self.rng.uniform(s, n)

    def _tile(self, layer: dict[str, Any] | None = None, zooms: tuple[int, int] = (12, 18)) -> tuple[int, int, int]:
        bounds = layer["bounds"] if layer else self.inv.bbox
        lo = max(zooms[0], layer.get("minzoom", 0) if layer else 0)
        hi = min(zooms[1], layer.get("maxzoom", 22) if layer else 22)
        z = self.rng.randint(lo, max(lo, hi))
        x, y = lonlat_to_tile(*self._point(bounds), z)
        return z, x, y

    def request(self, kind: str) -> tuple[str, str, dict[str, Any]]:
        """(method, path with query, httpx keyword arguments)."""
        r = self.rng
        if kind == "stac":
            choice = r.random()
            prop = r.choice(PROPERTIES)
            if choice < 0.35:
                x, y = self._point(self.inv.bbox)
                d = r.uniform(0.001, 0.05)
                return "GET", (f"/stac/search?bbox={x - d:.5f},{y - d:.5f},{x + d:.5f},{y + d:.5f}"
                               f"&limit={r.randint(1, 50)}&datetime={r.randint(2015, 2023)}-01-01T00:00:00Z/.."), {}
            if choice < 0.55:
                dep = r.choice(self.inv.departements or ["S01"])
                return "GET", (f"/stac/search?filter=ocsge:departement='{dep}' AND "
                               f"ocsge:millesime>={r.randint(2015, 2024)}&sortby={r.choice('+-')}{prop}&limit=10"), {}
            if choice < 0.75:
                body = {"limit": r.randint(1, 20), "filter-lang": "cql2-json",
                        "filter": {"op": "and", "args": [
                            {"op": "=", "args": [{"property": "ocsge:departement"},
                                                 r.choice(self.inv.departements or ["S01"])]},
                            {"op": ">=", "args": [{"property": "ocsge:millesime"}, r.randint(2015, 2024)]}]},
                        "sortby": [{"field": f"properties.{prop}", "direction": r.choice(["asc", "desc"])}],
                        "fields": {"include": ["id", "properties.ocsge:millesime"]}}
                return "POST", "/stac/search", {"json": body}
            if choice < 0.9 and self.inv.items:
                coll, item = r.choice(self.inv.items)
                return "GET", f"/stac/collections/{coll}/items/{item}", {}
            return "GET", r.choice(["/stac/", "/stac/collections", "/stac/conformance", "/stac/queryables"]), {}
        if kind in ("wmts", "xyz", "wms", "featureinfo", "legend") and not self.inv.layers:
            kind = "stac"
            return self.request(kind)
        layer = r.choice(self.inv.layers) if self.inv.layers else None
        if kind == "wmts":
            z, x, y = self._tile(layer)
            if r.random() < 0.5:
                return "GET", (f"/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={layer['id']}&STYLE=normal"
                               f"&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}"), {}
            return "GET", f"/wmts/1.0.0/{layer['id']}/normal/PM/{z}/{y}/{x}.png", {}
        if kind == "xyz":
            z, x, y = self._tile(layer)
            fmt = r.choice(["png", "png", "webp", "jpg"])
            return "GET", f"/tiles/{layer['id']}/tiles/WebMercatorQuad/{z}/{x}/{y}.{fmt}", {}
        if kind in ("wms", "featureinfo"):
            lon, lat = self._point(layer["bounds"])
            d = r.uniform(0.0005, 0.01)
            size = r.choice([256, 256, 512, 1024]) if kind == "wms" else 101
            if r.random() < 0.5:
                x0, y0 = to_3857(lon - d, lat - d)
                x1, y1 = to_3857(lon + d, lat + d)
                crs, bbox = "EPSG:3857", f"{x0:.2f},{y0:.2f},{x1:.2f},{y1:.2f}"
            else:
                crs, bbox = "CRS:84", f"{lon - d:.6f},{lat - d:.6f},{lon + d:.6f},{lat + d:.6f}"
            q = (f"/wms?SERVICE=WMS&VERSION=1.3.0&LAYERS={layer['id']}&STYLES=&CRS={crs}&BBOX={bbox}"
                 f"&WIDTH={size}&HEIGHT={size}&FORMAT=image/png")
            if kind == "wms":
                return "GET", q + "&REQUEST=GetMap&TRANSPARENT=TRUE", {}
            return "GET", (q + f"&REQUEST=GetFeatureInfo&QUERY_LAYERS={layer['id']}&I={r.randint(0, 100)}"
                           f"&J={r.randint(0, 100)}&INFO_FORMAT=application/json"), {}
        if kind == "legend":
            return "GET", f"/tiles/{layer['id']}/legend.{r.choice(['png', 'json'])}", {}
        if kind == "capabilities":
            return "GET", r.choice([
                "/wmts?SERVICE=WMTS&REQUEST=GetCapabilities", "/wms?SERVICE=WMS&REQUEST=GetCapabilities",
                "/wms?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetCapabilities", "/wmts/1.0.0/WMTSCapabilities.xml",
                "/tiles/layers", "/vector/datasets"]), {}
        if kind == "mvt" and self.inv.datasets:
            ds = r.choice(self.inv.datasets)
            z = r.randint(max(ds["minzoom"], 10), ds["maxzoom"])
            x, y = lonlat_to_tile(*self._point(ds["bounds"]), z)
            return "GET", f"/vector/{ds['kind']}/{ds['departement']}/{ds['millesime']}/{z}/{x}/{y}.mvt", {}
        if kind == "files" and self.inv.files:
            path, size = r.choice(self.inv.files)
            if r.random() < 0.15:
                return "HEAD", path, {}
            start = r.randint(0, max(0, size - 1))
            return "GET", path, {"headers": {"Range": f"bytes={start}-{start + r.choice([16383, 65535, 262143])}"}}
        if kind == "downloads":
            dep = r.choice(self.inv.departements or ["S01"])
            return "GET", r.choice(["/downloads", f"/downloads/{dep}", f"/stats/{dep}"]), {}
        return "GET", "/healthz", {}


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    client_errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: list[str] = field(default_factory=list)
    window: list[float] = field(default_factory=list)  # latencies since the last progress line

    def add(self, kind: str, seconds: float, status: int | None, what: str) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            self.window.append(seconds)
            if status is None or status >= 500:
                self.errors[kind] += 1
                if len(self.samples) < 20:
                    self.samples.append(f"{status} {what}")
            elif status >= 400:
                self.client_errors[kind] += 1
                if len(self.samples) < 20:
                    self.samples.append(f"{status} {what}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def worker(base: str, inv: Inventory, seed: int, stop: threading.Event, stats: Stats) -> None:
    rng = random.Random(seed)
    traffic = Traffic(inv, rng)
    kinds, weights = zip(*MIX.items(), strict=True)
    with httpx.Client(base_url=base, timeout=60) as client:
        while not stop.is_set():
            kind = rng.choices(kinds, weights)[0]
            method, path, kwargs = traffic.request(kind)
            if rng.random() < 0.3 and method == "GET" and kind != "files":  # distinct URLs, as many clients
                path += ("&" if "?" in path else "?") + f"_={rng.getrandbits(32):x}"
            started = time.perf_counter()
            try:
                resp = client.request(method, path, **kwargs)
                status: int | None = resp.status_code
            except httpx.HTTPError as exc:
                status = None
                path += f" ({type(exc).__name__})"
            stats.add(kind, time.perf_counter() - started, status, f"{method} {path[:160]}")


def report(label: str, stats: Stats, rss: float, elapsed: float) -> dict[str, Any]:
    """One progress line: totals since the start, p50/p95 overall and over the last interval, RSS."""
    with stats.lock:
        all_lat = [v for vals in stats.latencies.values() for v in vals]
        errors = sum(stats.errors.values())
        client_errors = sum(stats.client_errors.values())
        window, stats.window = stats.window, []
    p50, p95 = percentile(all_lat, 0.5) * 1e3, percentile(all_lat, 0.95) * 1e3
    w95 = percentile(window, 0.95) * 1e3
    print(f"[{label:>7}] t={elapsed:5.0f}s requests={len(all_lat):6d} ({len(all_lat) / max(elapsed, 1e-9):5.1f}/s) "
          f"errors={errors} 4xx={client_errors} p50={p50:6.1f}ms p95={p95:6.1f}ms (last interval p95 {w95:6.1f}ms) "
          f"rss={rss:6.1f}MB load={os.getloadavg()[0]:.1f}", flush=True)
    return {"label": label, "t": round(elapsed, 1), "requests": len(all_lat), "errors": errors, "4xx": client_errors,
            "p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "interval_p95_ms": round(w95, 1),
            "rss_mb": round(rss, 1), "load": round(os.getloadavg()[0], 1)}


def rss_summary(samples: list[tuple[float, float]], warmup_s: float) -> dict[str, float]:
    """RSS once the bounded caches have filled (after ``warmup_s``), at the end, its peak, and the slope of a
    least-squares line through the samples after warm-up: a flat RSS has a slope near 0."""
    after = [(t, m) for t, m in samples if t >= warmup_s]
    if len(after) < 2:
        return {}
    n = len(after)
    mt = sum(t for t, _ in after) / n
    mm = sum(m for _, m in after) / n
    var = sum((t - mt) ** 2 for t, _ in after)
    slope = sum((t - mt) * (m - mm) for t, m in after) / var if var else 0.0
    return {"after_warmup_mb": after[0][1], "end_mb": after[-1][1], "peak_mb": max(m for _, m in samples),
            "slope_mb_per_min": slope * 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--root", type=Path, default=OUT / "soak-demo")
    parser.add_argument("--tiny", action="store_true", help="build the tests' tiny territory if --root is empty")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="minutes after which bounded caches are taken as filled (for the RSS trend)")
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds between progress lines")
    parser.add_argument("--url", default=None,
                        help="soak a server already running at this URL (no RSS unless --pid names its process)")
    parser.add_argument("--pid", type=int, default=None, help="process of the server given by --url")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    if args.url:
        server: Server | External = External(args.url, args.pid)
        root = Path(args.url)
    else:
        root = ensure_root(args.root.resolve(), args.tiny)
        server = Server(root, free_port())
    timeline: list[dict[str, Any]] = []
    stats = Stats()
    try:
        inv = discover(server.url)
        print(f"soak: {server.url} on {root}; {len(inv.layers)} raster layers, {len(inv.datasets)} vector datasets, "
              f"{len(inv.files)} files, {len(inv.items)} items; {args.clients} clients for {args.minutes} min; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        start = time.monotonic()
        timeline.append(report("start", stats, server.rss_mb(), 0.0))
        stop = threading.Event()
        threads = [threading.Thread(target=worker, args=(server.url, inv, args.seed * 1000 + i, stop, stats),
                                    daemon=True) for i in range(args.clients)]
        for t in threads:
            t.start()
        end = start + args.minutes * 60
        next_report = start + args.report_every
        rss_samples: list[tuple[float, float]] = []  # (seconds, MB) every 5 s
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            if server.proc.poll() is not None:
                raise SystemExit(f"the server died (exit {server.proc.returncode}): see benchmarks/out/soak-server.log")
            if not rss_samples or time.monotonic() - start - rss_samples[-1][0] >= 5:
                rss_samples.append((time.monotonic() - start, server.rss_mb()))
            if time.monotonic() >= next_report:
                timeline.append(report(f"{(time.monotonic() - start) / 60:.1f} min", stats, server.rss_mb(),
                                       time.monotonic() - start))
                next_report += args.report_every
        stop.set()
        for t in threads:
            t.join(timeout=120)
        elapsed = time.monotonic() - start
        timeline.append(report("end", stats, server.rss_mb(), elapsed))
        print(f"{'kind':<13}{'requests':>9}{'errors':>8}{'4xx':>6}{'p50 ms':>9}{'p95 ms':>9}")
        per_kind = {}
        for kind in sorted(stats.latencies):
            lat = stats.latencies[kind]
            per_kind[kind] = {"requests": len(lat), "errors": stats.errors[kind], "4xx": stats.client_errors[kind],
                              "p50_ms": round(percentile(lat, 0.5) * 1e3, 1),
                              "p95_ms": round(percentile(lat, 0.95) * 1e3, 1)}
            print(f"{kind:<13}{len(lat):>9}{stats.errors[kind]:>8}{stats.client_errors[kind]:>6}"
                  f"{percentile(lat, 0.5) * 1e3:>9.1f}{percentile(lat, 0.95) * 1e3:>9.1f}")
        if stats.samples:
            print("first errors / 4xx:\n  " + "\n  ".join(stats.samples))
        memory = rss_summary(rss_samples, args.warmup * 60)
        if memory:
            print(f"RSS after {args.warmup:g} min of warm-up {memory['after_warmup_mb']:.0f} MB, end "
                  f"{memory['end_mb']:.0f} MB, peak {memory['peak_mb']:.0f} MB; trend after warm-up "
                  f"{memory['slope_mb_per_min']:+.1f} MB/min")
        result = {"minutes": args.minutes, "clients": args.clients, "root": str(root), "timeline": timeline,
                  "per_kind": per_kind, "samples": stats.samples, "memory": memory, "rss_samples": rss_samples,
                  "loadavg_end": os.getloadavg()}
        out = OUT / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(result, indent=1))
        print(f"written {out.relative_to(REPO)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
