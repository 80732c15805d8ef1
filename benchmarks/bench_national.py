"""The national rehearsal: N synthetic départements (default 96) laid on the footprints of the real
metropolitan départements, taken through the public verbs, then raster tiles measured over all of France.

    python benchmarks/bench_national.py [--departements 96] [--polygons 2000] [--jobs 2]

Build (each département in its own processes, ``--jobs`` at a time):

1. ``ocsge synth --vector-only --footprint <real code> -d S<nn> --polygons P`` — a small pair laid on the
   approximate Lambert-93 bounding box of a real département (``inference_batch/synth/footprints.py``): the
   geometry of France is real (sizes, neighbours, the overlap of bounding boxes), the content is not;
2. *delivery* — this script writes both millésimes as IGN-shaped folders (OCCUPATION_SOL, ZONE_CONSTRUITE);
3. ``ocsge ingest`` of each millésime, then ``ocsge render --layers couverture,usage --resolution R``
   (``--full-products``: ``ocsge products``, every product, ≈ 3× slower): class COGs at ``R`` m, default
   25 m, so that 96 départements build in about 20 minutes on 2 idle cores — the per-département COG count
   and layout, which is what a low-zoom tile pays for, are real; their pixel count is not;

then the national path, each verb timed (``national_path_steps``): ``ocsge national-tiles`` (``--pmtiles``:
the national vector tiles of the measured millésime), ``ocsge publish --no-overviews`` (the catalogue) and
``ocsge overviews`` (the national overview slabs of every raster layer, which ``ocsge publish`` runs by
default); then S01 re-rendered (``--force``) and the same verbs again: what republishing one département costs
the national path. The storage size per top-level folder is recorded.

Measure: the server of ``ocsge serve`` (its uvicorn configuration, ``services/server.py``) over the root, with
``--workers`` processes (``1,2``: each count in turn, same tiles; several: pre-fork, as ``ocsge serve --workers``);
per zoom 6–18 (``--zooms``), random tiles whose centre falls in
a département's footprint (anywhere in France), each requested as WMTS KVP GetTile (PM), XYZ
(``/tiles/…/WebMercatorQuad``) and WMS GetMap (256×256, EPSG:3857, the tile's bbox); one warm-up pass,
then concurrency 1 and 4; the server CPU per tile is the CPU time of every server process over the run
divided by the tiles. ``--compare`` measures the same tiles once more with the national path off
(``OCSGE_NATIONAL=off`` in the server), the per-département mosaic at every zoom.

Results: ``benchmarks/out/bench_national.json`` and Markdown tables on stdout (RESULTS_national.md).

A quick run of the dynamic zooms on a few départements (each z13–18 tile reads one or two COGs, so a few
départements on real footprints measure them as well as 96)::

    python benchmarks/bench_national.py --departements 8 --root /tmp/nat8 --zooms 13-18 --workers 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_tiles import free_port, http_client, run_load, start  # noqa: E402

OUT = REPO / "benchmarks" / "out"
YEARS = (2021, 2024)
LAYER = "OCSGE.COUVERTURE.2021-2023"
ZOOMS = list(range(6, 19))
KINDS = ("wmts", "xyz", "wms")


# --- build -------------------------------------------------------------------------------------------


def synthetic_code(i: int) -> str:
    return f"S{i + 1:02d}"


def write_deliveries(root: str, dep_code: str, folder: Path) -> None:
    """Both millésimes of a generated pair as IGN-shaped folder deliveries (run in a child process)."""
    import geopandas as gpd

    from inference_batch.synth import delivery
    from inference_batch.synth.truth import zone_construite
    from ocsge.products import product_key
    from ocsge.storage import open_storage
    from ocsge.territory import departement

    store = open_storage(root)
    dep = departement(dep_code)
    for year in YEARS:
        with store.local_copy(product_key("truth", dep.code, year)) as path:
            truth = gpd.read_parquet(path)
        data = folder / str(year) / "OCS-GE" / f"1_DONNEES_LIVRAISON_{delivery.DELIVERY_TAG}"
        data = data / delivery.inner_folder(dep.code, year)
        data.mkdir(parents=True, exist_ok=True)
        desc = f"national rehearsal {dep.code}, millésime {year}"
        delivery._write_gpkg(
            delivery.ign_occupation(truth, year),
            data / "OCCUPATION_SOL.gpkg",
            "OCCUPATION_SOL",
            f"OCCUPATION_SOL — {desc}",
        )
        zc = zone_construite(truth, dep.code, year, dep.crs, tuple(truth.total_bounds))
        delivery._write_gpkg(
            delivery.ign_zone_construite(zc, year),
            data / "ZONE_CONSTRUITE.gpkg",
            "ZONE_CONSTRUITE",
            f"ZONE_CONSTRUITE — {desc}",
        )


def run_output(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run a verb; its wall time and its standard output (a failure stops the rehearsal, saying where)."""
    t0 = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(args)}\n{(proc.stdout + proc.stderr)[-4000:]}")
    return time.perf_counter() - t0, proc.stdout


def run(args: list[str], env: dict[str, str]) -> float:
    return run_output(args, env)[0]


def build_departement(
    i: int, real: str, root: Path, tmp: Path, opts: argparse.Namespace, env: dict[str, str]
) -> dict[str, object]:
    ocsge = str(Path(sys.executable).with_name("ocsge"))
    code = synthetic_code(i)
    common = ["--root", str(root)]
    t0 = time.perf_counter()
    run(
        [
            ocsge,
            "synth",
            *common,
            "--vector-only",
            "--departement",
            code,
            "--footprint",
            real,
            "--polygons",
            str(opts.polygons),
            "--seed",
            str(opts.seed + i),
        ],
        env,
    )
    folder = tmp / f"delivery-{code}"
    shutil.rmtree(folder, ignore_errors=True)
    run([sys.executable, __file__, "--child-deliveries", str(root), code, str(folder)], env)
    for year in YEARS:
        run([ocsge, "ingest", str(folder / str(year)), "-d", code, "-m", str(year), *common], env)
    if opts.full_products:
        products = [ocsge, "products", "-d", code, "--resolution", str(opts.resolution), *common]
    else:  # the class COGs the measured layers read, through the standalone verb
        products = [
            ocsge,
            "render",
            "-d",
            code,
            "--layers",
            "couverture,usage",
            "--resolution",
            str(opts.resolution),
            *common,
        ]
    run(products + ([] if opts.pmtiles else ["--no-tiles"]), env)
    shutil.rmtree(folder, ignore_errors=True)
    wall = time.perf_counter() - t0
    print(f"  {code} on the footprint of {real:<3} {wall:6.1f} s", flush=True)
    return {"departement": code, "footprint": real, "wall_s": round(wall, 1)}


def built_departements(root: Path) -> list[dict[str, object]]:
    """The synthetic départements with both couverture COGs under ``root``, and their footprints."""
    from inference_batch.synth.footprints import metropolitan_codes
    from ocsge.products import product_key

    reals = metropolitan_codes()
    return [
        {"departement": synthetic_code(i), "footprint": real}
        for i, real in enumerate(reals)
        if all((root / product_key("couverture_cog", synthetic_code(i), y)).exists() for y in YEARS)
    ]


def build(root: Path, tmp: Path, opts: argparse.Namespace, env: dict[str, str]) -> dict[str, object]:
    from inference_batch.synth.footprints import metropolitan_codes

    reals = metropolitan_codes()[: opts.departements]
    ocsge = str(Path(sys.executable).with_name("ocsge"))
    done_file = root / "bench_national_chain.json"
    if opts.skip_chain:  # what an earlier (maybe interrupted) run built
        chained = json.loads(done_file.read_text()) if done_file.exists() else {}
        deps, chain = chained.get("per_departement") or built_departements(root), chained.get("chain_s", 0.0)
    else:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=opts.jobs) as pool:
            deps = list(pool.map(lambda a: build_departement(a[0], a[1], root, tmp, opts, env), enumerate(reals)))
        chain = time.perf_counter() - t0
        done_file.write_text(
            json.dumps({"per_departement": deps, "chain_s": chain, "load_average": os.getloadavg()[0]})
        )
        print(
            f"chain of {len(deps)} départements: {chain / 60:.1f} min (load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    if opts.chain_only:
        return {"departements": len(deps), "chain_wall_min": round(chain / 60, 1), "per_departement": deps}
    first_build = national_path(ocsge, root, opts.pmtiles, env)
    # one département republished: its COGs (and PMTiles) rewritten, then the national path brought up to date
    first = synthetic_code(0)
    render = [ocsge, "render", "-d", first, "--layers", "couverture,usage", "--resolution", str(opts.resolution)]
    render_one = run(render + ([] if opts.pmtiles else ["--no-tiles"]) + ["--force", "--root", str(root)], env)
    republish = national_path(ocsge, root, opts.pmtiles, env)
    summary = {
        "departements": len(deps),
        "chain_wall_min": round(chain / 60, 1),
        "first_build_s": first_build,
        "render_one_departement_s": round(render_one, 1),
        "republish_one_departement_s": republish,
        "storage_mb": storage_mb(root),
        "per_departement": deps,
    }
    print(
        f"built {len(deps)} départements in {chain / 60:.1f} min (jobs {opts.jobs}); national path, first build: "
        f"{first_build}; after {first} re-rendered ({render_one:.1f} s): {republish}; storage {summary['storage_mb']}",
        flush=True,
    )
    return summary


def national_path_steps(ocsge: str, root: Path, vector: bool) -> list[tuple[str, list[str]]]:
    """The verbs that bring the national path up to date after départements changed, in order, each timed
    on its own: the national vector tiles (``vector``: the measured layer's product and millésime), then the
    catalogue (after them: it lists the national files), then the national overview slabs. ``ocsge publish``
    runs the slabs after its catalogue by default; here ``--no-overviews`` and ``ocsge overviews`` time the
    two apart (the slabs' step would otherwise find nothing left to do)."""
    common = ["--root", str(root)]
    steps = []
    if vector:
        tiles = [ocsge, "national-tiles", "--kind", "occupation", "-m", str(YEARS[0]), *common]
        steps.append(("national_tiles", tiles))
    steps.append(("publish", [ocsge, "publish", "--no-overviews", *common]))
    steps.append(("overviews", [ocsge, "overviews", *common]))
    return steps


def national_path(ocsge: str, root: Path, vector: bool, env: dict[str, str]) -> dict[str, object]:
    """Seconds per step of :func:`national_path_steps`, their total, and the slab files the overviews wrote."""
    timings: dict[str, object] = {}
    for name, args in national_path_steps(ocsge, root, vector):
        started = time.time() - 1.0  # file times come from a coarser clock; the steps before write no slab
        seconds, _ = run_output(args, env)
        timings[f"{name}_s"] = round(seconds, 1)
        if name == "overviews":  # the files, not the verb's "N rebuilt": that counts the slabs it looked at
            timings["slabs_written"] = files_written_since(root / "overviews", started)
    timings["total_s"] = round(sum(v for k, v in timings.items() if k.endswith("_s")), 1)  # type: ignore[misc]
    return timings


def files_written_since(folder: Path, since: float) -> int:
    """Slab files (``.tif``) under ``folder`` written at or after ``since`` (a ``time.time()``)."""
    return sum(1 for p in folder.rglob("*.tif") if p.stat().st_mtime >= since) if folder.exists() else 0


def storage_mb(root: Path) -> dict[str, float]:
    """Megabytes under ``root`` per top-level folder (what the rehearsal stored, national files included)."""
    sizes: dict[str, float] = {}
    for path in root.rglob("*"):
        if path.is_file():
            top = path.relative_to(root).parts[0]
            sizes[top] = sizes.get(top, 0.0) + path.stat().st_size / 1e6
    return {k: round(v, 1) for k, v in sorted(sizes.items())} | {"total": round(sum(sizes.values()), 1)}


# --- measure -----------------------------------------------------------------------------------------


def france_tiles(root: Path, zooms: list[int], per_zoom: int, seed: int) -> list[tuple[int, int, int]]:
    """Random tiles per zoom whose centre lies in the footprint of a built département (anywhere in France)."""
    import morecantile
    from pyproj import Transformer

    from inference_batch.synth.footprints import footprint

    tms = morecantile.tms.get("WebMercatorQuad")
    to_ll = Transformer.from_crs(2154, 4326, always_xy=True)
    boxes = [footprint(str(d["footprint"])) for d in built_departements(root)]
    rng = random.Random(seed)
    tiles = []
    for z in zooms:
        for _ in range(per_zoom):
            x0, y0, x1, y1 = rng.choice(boxes)
            lon, lat = to_ll.transform(rng.uniform(x0, x1), rng.uniform(y0, y1))
            t = tms.tile(lon, lat, z)
            tiles.append((t.z, t.x, t.y))
    return tiles


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the server has used, its worker processes included: what tiles cost
    whatever else runs on the machine (on a shared machine, latency is mostly waiting for a core)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue  # a process that ended meanwhile
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(child for child, parent in parents.items() if parent == p)
    total = 0.0
    for p in tree:
        try:
            fields = _stat(p)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def fetchers(base: str) -> dict[str, object]:
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")

    def wmts(client, tile):  # type: ignore[no-untyped-def]
        z, x, y = tile
        return client.get(
            f"{base}/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={LAYER}&STYLE=normal"
            f"&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}"
        ).status_code

    def xyz(client, tile):  # type: ignore[no-untyped-def]
        z, x, y = tile
        return client.get(f"{base}/tiles/{LAYER}/tiles/WebMercatorQuad/{z}/{x}/{y}.png").status_code

    def wms(client, tile):  # type: ignore[no-untyped-def]
        z, x, y = tile
        b = tms.xy_bounds(morecantile.Tile(x, y, z))
        return client.get(
            f"{base}/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS={LAYER}&STYLES="
            f"&CRS=EPSG:3857&BBOX={b.left},{b.bottom},{b.right},{b.top}&WIDTH=256&HEIGHT=256"
            "&FORMAT=image/png&TRANSPARENT=TRUE"
        ).status_code

    return {"wmts": wmts, "xyz": xyz, "wms": wms}


def _tcp_sockets() -> None:
    """Stream sockets made with protocol 0 made with IPPROTO_TCP instead, in this (server) process only.

    asyncio sets TCP_NODELAY on an accepted connection only when its socket says IPPROTO_TCP
    (``asyncio.base_events._set_nodelay``); ``services.server.run_workers`` binds its listening socket as
    ``socket.socket(family, SOCK_STREAM)`` (protocol 0), so its connections keep Nagle's algorithm and each
    response waits ≈ 40 ms for the client's delayed ACK (measured: c=1 p50 56 ms → 17 ms with this). The
    workaround (``--workers 2n``) measures what the one-argument fix in services/server.py will give."""
    import socket

    plain = socket.socket

    class TcpSocket(plain):  # type: ignore[misc,valid-type]
        def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None) -> None:
            if fileno is None and type == socket.SOCK_STREAM and proto in (-1, 0):
                proto = socket.IPPROTO_TCP
            super().__init__(family, type, proto, fileno)

    socket.socket = TcpSocket  # type: ignore[misc]


def serve(root: str, port: int, workers: int = 1, tcp_nodelay: bool = False) -> None:
    """Run by the server subprocess: the services app over the benchmark root, in ``ocsge serve``'s server
    configuration (GDAL cache, malloc options, uvicorn limits) with ``workers`` processes."""
    import uvicorn

    if tcp_nodelay:
        _tcp_sockets()

    from services import server
    from services.assets import StorageAssetFinder
    from services.site import create_services_app

    os.environ.setdefault("GDAL_CACHEMAX", str(server.GDAL_CACHEMAX_MB))
    server.tune_malloc()

    def build_config() -> uvicorn.Config:  # in each worker, after the fork (services/server.py)
        app = create_services_app(StorageAssetFinder(root, ttl_s=3600))
        return server.server_config(app, "127.0.0.1", port, access_log=False)

    if workers == 1:
        uvicorn.Server(build_config()).run()
    else:
        raise SystemExit(server.run_workers(build_config, "127.0.0.1", port, workers))


def measure(
    root: Path, opts: argparse.Namespace, national: bool, kinds: tuple[str, ...] = KINDS, workers: str = "1"
) -> list[dict[str, object]]:
    port = free_port()
    env = {"OCSGE_NATIONAL": "on" if national else "off", "PYTHONPATH": str(REPO)}
    proc = start([sys.executable, __file__, "--child-serve", str(root), str(port), workers], port, env)
    base = f"http://127.0.0.1:{port}"
    rows: list[dict[str, object]] = []
    zooms = opts.zoom_list
    try:
        tiles = france_tiles(root, zooms, opts.tiles, opts.seed)
        by_zoom = {z: [t for t in tiles if t[0] == z] for z in zooms}
        for kind, fetch in fetchers(base).items():
            if kind not in kinds:
                continue
            run_load(fetch, http_client, tiles, 4)  # warm-up: datasets opened, pages cached
            for z in zooms:
                for c in (1, 4):
                    cpu0 = server_cpu_s(proc.pid)
                    load = run_load(fetch, http_client, by_zoom[z], c)
                    cpu_ms = (server_cpu_s(proc.pid) - cpu0) * 1e3 / max(1, len(by_zoom[z]))
                    row = {
                        "path": "national" if national else "per-département",
                        "workers": workers,
                        "kind": kind,
                        "zoom": z,
                        **load,
                        "server_cpu_ms_per_tile": round(cpu_ms, 1),
                        "load_average": os.getloadavg()[0],
                    }
                    rows.append(row)
                    print(
                        f"  {row['path']:<15} w={workers} {kind:<4} z{z:<2} c={c} {row['tiles_per_s']:>7} tiles/s  "
                        f"p50 {row['median_ms']:>7} ms  p95 {row['p95_ms']:>7} ms  "
                        f"server CPU {cpu_ms:6.1f} ms/tile  errors {row['errors']}",
                        flush=True,
                    )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return rows


def parse_zooms(text: str) -> list[int]:
    """``13-18`` or ``6,13,18`` → the zooms, each within 6–18."""
    if "-" in text:
        first, last = (int(v) for v in text.split("-", 1))
        zooms = list(range(first, last + 1))
    else:
        zooms = [int(v) for v in text.split(",") if v]
    if not zooms or not all(z in ZOOMS for z in zooms):
        raise ValueError(f"{text!r}: zooms within {ZOOMS[0]}–{ZOOMS[-1]}")
    return zooms


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| path | workers | kind | zoom | p50 ms (c=1) | p95 ms (c=1) | tiles/s (c=1) | p50 ms (c=4) | p95 ms (c=4) "
        "| tiles/s (c=4) | server CPU ms/tile (c=1) | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keyed = {(r["path"], str(r.get("workers", "1")), r["kind"], r["zoom"], r["concurrency"]): r for r in rows}
    for path, workers, kind, z in sorted(
        {(r["path"], str(r.get("workers", "1")), r["kind"], r["zoom"]) for r in rows},
        key=lambda k: (k[0], k[1], KINDS.index(str(k[2])), k[3]),
    ):
        a, b = keyed[(path, workers, kind, z, 1)], keyed[(path, workers, kind, z, 4)]
        label = workers.rstrip("n") + " + TCP_NODELAY" if workers.endswith("n") else workers
        lines.append(
            f"| {path} | {label} | {kind} | {z} | {a['median_ms']} | {a['p95_ms']} | {a['tiles_per_s']} | "
            f"{b['median_ms']} | {b['p95_ms']} | {b['tiles_per_s']} | {a['server_cpu_ms_per_tile']} | "
            f"{a['errors'] + b['errors']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--departements", type=int, default=96, help="how many (1–96), in INSEE order")
    parser.add_argument("--polygons", type=int, default=2000, help="polygons per département and millésime")
    parser.add_argument("--resolution", type=float, default=25.0, help="pixel size of the class COGs (m)")
    parser.add_argument("--pmtiles", action="store_true", help="also build the per-département PMTiles")
    parser.add_argument(
        "--full-products",
        action="store_true",
        help="`ocsge products` (every product) instead of `ocsge render` of the couverture and "
        "usage COGs (≈ 3× the chain's time)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="départements built at once")
    parser.add_argument("--tiles", type=int, default=60, help="tiles per zoom and kind")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--root", default="", help="storage folder, kept (default: a temporary one, removed)")
    parser.add_argument("--skip-build", action="store_true", help="measure an already built --root")
    parser.add_argument(
        "--skip-chain",
        action="store_true",
        help="reuse the départements a previous run built under --root (publish, national, measure)",
    )
    parser.add_argument("--chain-only", action="store_true", help="build the départements only (no publish)")
    parser.add_argument("--compare", action="store_true", help="also measure with the national path off")
    parser.add_argument(
        "--workers",
        default="1",
        help="server processes, or a comma list measured in turn on the same tiles (e.g. 1,2); "
        "'2n': 2 with TCP_NODELAY on their connections (a workaround, see _tcp_sockets)",
    )
    parser.add_argument("--zooms", default="6-18", help="zooms measured: a range (13-18) or a comma list")
    parser.add_argument("--kinds", default=",".join(KINDS), help="requests measured (wmts,xyz,wms)")
    parser.add_argument(
        "--compare-kinds",
        default="wmts",
        help="kinds measured with the national path off (wmts,xyz,wms; the slow path: default wmts)",
    )
    parser.add_argument("--child-deliveries", nargs=3, metavar=("ROOT", "DEP", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--child-serve", nargs=3, metavar=("ROOT", "PORT", "WORKERS"), help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child_deliveries:
        root, dep, folder = opts.child_deliveries
        write_deliveries(root, dep, Path(folder))
        return
    if opts.child_serve:
        workers = opts.child_serve[2]
        serve(opts.child_serve[0], int(opts.child_serve[1]), int(workers.rstrip("n")), workers.endswith("n"))
        return
    if not 1 <= opts.departements <= 96:
        parser.error("--departements: between 1 and 96")
    try:
        opts.zoom_list = parse_zooms(opts.zooms)
        opts.worker_counts = [w for w in opts.workers.split(",") if int(w.rstrip("n")) > 0]
        opts.kind_list = tuple(k for k in opts.kinds.split(",") if k)
    except ValueError as exc:
        parser.error(f"--zooms / --workers: {exc}")
    if not all(1 <= int(w.rstrip("n")) <= 16 for w in opts.worker_counts) or not set(opts.kind_list) <= set(KINDS):
        parser.error("--workers: 1 to 16 each; --kinds: among wmts, xyz, wms")
    tmp = Path(tempfile.mkdtemp(prefix="bench-national-"))
    root = Path(opts.root) if opts.root else tmp / "store"
    # no PYTHONPATH to the repository: its stale ``*.egg-info`` (a build leftover) would hide the verbs that
    # the installed package's entry points add (``ocsge overviews``)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OCSGE_QUIET": "1"}
    result: dict[str, object] = {"load_average_start": os.getloadavg()[0], "options": vars(opts)}
    what = "reusing the départements built" if opts.skip_build or opts.skip_chain else (
        f"{opts.departements} départements × {opts.polygons} polygons")
    print(f"national rehearsal: {what} under {root} (load average {os.getloadavg()[0]:.1f})", flush=True)
    try:
        if not opts.skip_build:
            root.mkdir(parents=True, exist_ok=True)
            result["build"] = build(root, tmp, opts, env)
            if opts.chain_only:
                print(json.dumps(result["build"], indent=1))
                return
        result["load_average_measure"] = os.getloadavg()[0]
        rows = []
        for workers in opts.worker_counts:
            rows += measure(root, opts, national=True, kinds=opts.kind_list, workers=workers)
        if opts.compare:
            rows += measure(root, opts, national=False, kinds=tuple(opts.compare_kinds.split(",")))
        result["rows"] = rows
        result["load_average_end"] = os.getloadavg()[0]
    finally:
        if not opts.root:
            shutil.rmtree(tmp, ignore_errors=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_national.json").write_text(json.dumps(result, indent=1))
    print()
    print(table(result["rows"]))  # type: ignore[arg-type]
    print(
        f"\nload average: start {result['load_average_start']:.1f}, measure {result['load_average_measure']:.1f}, "
        f"end {result['load_average_end']:.1f}"
    )


if __name__ == "__main__":
    main()
