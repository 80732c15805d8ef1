"""Difference between two millésimes: ours (identical polygons paired first, the rest by spatial chunks)
vs. one plain ``geopandas.overlay``.

Both methods run on the same generated pair, each in its own subprocess that reports its wall time and
its peak RSS (``VmHWM``), and produce the same outputs: the evolution layer (changed parts,
GeoParquet), the artificialisation ±1 parts and the CS×CS / US×US flows. The run checks that both
agree on the changed area, the net artificialisation and every cell of the CS×CS flows, then prints a
JSON summary (and appends it to ``benchmarks/out/bench_difference.jsonl``). ``--scaling`` adds ours
alone at other sizes (the anchor too at sizes up to ``--anchor-max``). PMTiles timings are in
``bench_pmtiles.py``.

The default generator is the realistic one (``ocsge synth --vector-only --realistic``: 20–200 vertices
a polygon, wiggly boundaries shared exactly, islands; the update keeps most polygons identical and
recodes, splits, merges and reshapes a few %):

    python benchmarks/bench_difference.py --polygons 200000 --scaling 50000,500000,1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import peak_rss_mb

OUT = Path(__file__).resolve().parent / "out"


def generate(folder: Path, polygons: int, densify: float, seed: int, generator: str = "realistic",
             vertices: str = "20-200") -> tuple[Path, Path]:
    """The pair, written as our canonical GeoParquet: by default the realistic generator
    (``inference_batch.synth.vector_realistic``); ``synth``: the 4-vertex jittered parcels of
    ``inference_batch.synth.vector_scale`` (~2 % changes incl. splits); ``samples``: Voronoi partitions
    of ``inference_batch.synth.partitions`` (~4 % code changes, 3 % splits)."""
    import numpy as np
    import shapely

    from inference_batch.products.artifacts import to_geoparquet

    if generator == "realistic":
        from inference_batch.synth.vector_scale import build_vector_pair

        pair = build_vector_pair(polygons, seed=seed, vertices=vertices)
        a, b = folder / "before.parquet", folder / "after.parquet"
        years = sorted(pair["truth"])
        for year, path in zip(years, (a, b), strict=True):  # one layer at a time: 10⁶ polygons fit
            write_by_row_groups(pair["truth"].pop(year), path)
        return a, b
    if generator == "synth":
        from inference_batch.synth.vector_scale import build_vector_pair

        pair = build_vector_pair(polygons, seed=seed)
        before, after = (pair["truth"][y] for y in sorted(pair["truth"]))
        if densify:
            before = before.set_geometry(shapely.segmentize(before.geometry.to_numpy(), densify))
            after = after.set_geometry(shapely.segmentize(after.geometry.to_numpy(), densify))
    else:
        from inference_batch.synth.partitions import evolve, partition

        side = float(np.sqrt(polygons * 2_000.0))  # ~2 000 m² a polygon
        bounds = (700_000.0, 6_600_000.0, 700_000.0 + side, 6_600_000.0 + side)
        before = partition(polygons, bounds, millesime=2021, seed=seed, densify=densify or None)
        after = evolve(before, 2024, seed=seed + 1)
    a, b = folder / "before.parquet", folder / "after.parquet"
    to_geoparquet(before, a)
    to_geoparquet(after, b)
    return a, b


def write_by_row_groups(frame: object, path: Path) -> None:
    """``to_geoparquet`` (Hilbert order, bbox covering, row groups of 10 000) converted one row group at
    a time, so that the WKB of a 10⁶-polygon layer is never all in memory."""
    import json

    import pyarrow.parquet as pq
    from geopandas.io.arrow import _geopandas_to_arrow

    from inference_batch.products.artifacts import ROW_GROUP_SIZE, hilbert_sorted

    frame = hilbert_sorted(frame)
    writer = None
    types: set[str] = set()
    for start in range(0, len(frame), ROW_GROUP_SIZE):
        part = frame.iloc[start:start + ROW_GROUP_SIZE].reset_index(drop=True)
        table = _geopandas_to_arrow(part, index=False, write_covering_bbox=True)
        geo = json.loads(table.schema.metadata[b"geo"])
        types.update(geo["columns"]["geometry"]["geometry_types"])
        if writer is None:
            schema = table.schema
            writer = pq.ParquetWriter(path, schema.remove_metadata(), compression="zstd", store_schema=False)
        writer.write_table(table.replace_schema_metadata(None).cast(writer.schema))
    geo["columns"]["geometry"]["geometry_types"] = sorted(types)
    geo["columns"]["geometry"]["bbox"] = [float(v) for v in frame.total_bounds]
    writer.add_key_value_metadata({"geo": json.dumps(geo)})
    writer.close()


def run_chunked(a: Path, b: Path, out: Path, target: int) -> dict[str, float]:
    from inference_batch.products.difference import compute_difference
    from inference_batch.products.inputs import open_source
    from ocsge import schema
    from ocsge.storage import LocalStorage

    store = LocalStorage(a.parent)
    cols = [schema.CODE_CS, schema.CODE_US, schema.ARTIF]
    with open_source(store, a.name, cols) as sa, open_source(store, b.name, cols) as sb:
        result = compute_difference(sa, sb, out / "chunked_diff.parquet", out / "chunked_artif.parquet",
                                    target=target, quiet=True)
    flows = result.flows_cs.set_index("cs_avant")
    return {"changed_ha": result.report["changed_ha"], "artif_net_ha": result.report["artif_net_ha"],
            "flows_cs_total_ha": float(flows.to_numpy().sum()), "flows_cs_json": flows.round(3).to_json(),
            "chunks": result.report["chunks"], "identical_pairs": result.report["identical_pairs"]}


def run_overlay(a: Path, b: Path, out: Path) -> dict[str, float]:
    """The anchor: read both layers, one global overlay, then the same outputs."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd

    from inference_batch.products.difference import FlowAccumulator
    from inference_batch.products.inputs import with_artif
    from ocsge.nomenclature import CS_LEAVES

    cols = ["code_cs", "code_us", "artif", "geometry"]
    before = with_artif(gpd.read_parquet(a))[cols]
    after = with_artif(gpd.read_parquet(b))[cols]
    pieces = gpd.overlay(before, after, how="intersection", keep_geom_type=True)
    pieces["area"] = pieces.area
    pieces = pieces[pieces["area"] >= 0.01]
    changed = (pieces.code_cs_1 != pieces.code_cs_2) | (pieces.code_us_1 != pieces.code_us_2)
    evo = pieces[changed].rename(columns={"code_cs_1": "cs_avant", "code_us_1": "us_avant",
                                          "code_cs_2": "cs_apres", "code_us_2": "us_apres"})
    evo[["cs_avant", "us_avant", "cs_apres", "us_apres", "geometry"]].to_parquet(out / "overlay_diff.parquet")
    flip = pieces.artif_1 != pieces.artif_2
    art = pieces[flip].assign(artificialisation=np.where(pieces.artif_2[flip] == "artif", 1, -1))
    art[["artificialisation", "geometry"]].to_parquet(out / "overlay_artif.parquet")
    acc = FlowAccumulator()
    acc.add(pd.DataFrame({"code_cs_a": pieces.code_cs_1, "code_cs_b": pieces.code_cs_2, "code_us_a": pieces.code_us_1,
                          "code_us_b": pieces.code_us_2, "area": pieces["area"]}))
    flows = FlowAccumulator.matrix(acc.cs, CS_LEAVES, "cs").set_index("cs_avant")
    net = art["area"][art.artificialisation == 1].sum() - art["area"][art.artificialisation == -1].sum()
    return {"changed_ha": round(float(evo["area"].sum()) / 1e4, 4), "artif_net_ha": round(float(net) / 1e4, 4),
            "flows_cs_total_ha": float(flows.to_numpy().sum()), "flows_cs_json": flows.round(3).to_json()}


def child(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    out = Path(args.out)
    if args.method == "chunked":
        result = run_chunked(Path(args.a), Path(args.b), out, args.target)
    else:
        result = run_overlay(Path(args.a), Path(args.b), out)
    result["wall_s"] = time.perf_counter() - t0
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def measure(method: str, a: Path, b: Path, out: Path, target: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", method, "--a", str(a), "--b", str(b), "--out", str(out),
           "--target", str(target)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "OCSGE_QUIET": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polygons", type=int, default=200_000)
    parser.add_argument("--generator", choices=["realistic", "synth", "samples"], default="realistic")
    parser.add_argument("--vertices", default="20-200", help="with --generator realistic: vertices per polygon")
    parser.add_argument("--anchor-max", type=int, default=200_000,
                        help="in --scaling, run geopandas.overlay too up to this size (above: ours only; the "
                        "overlay of 200 000 realistic polygons already holds ~5.6 GB)")
    parser.add_argument("--densify", type=float, default=0.0,
                        help="max segment length of the polygons (m; 0: as generated)")
    parser.add_argument("--target", type=int, default=20_000, help="polygons per chunk")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-overlay", action="store_true")
    parser.add_argument("--scaling", default="", help="also run the chunked method alone at these sizes, e.g. "
                        "100000,400000, to show its peak memory does not grow with the layer")
    parser.add_argument("--child", dest="method", default=None)
    parser.add_argument("--a")
    parser.add_argument("--b")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.method:
        child(args)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    # numba compiles the WKB digest once and caches it beside the module (in a container image, at build
    # time): warm the cache here, so that the children measure the difference, not the compiler
    import pyarrow as pa

    from inference_batch.products.wkb_digest import digest

    digest(pa.array([], type=pa.binary()))
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-diff-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        a, b = generate(folder, args.polygons, args.densify, args.seed, args.generator, args.vertices)
        import pyarrow.parquet as pq

        summary: dict[str, object] = {
            "polygons_before": pq.read_metadata(a).num_rows, "polygons_after": pq.read_metadata(b).num_rows,
            "generator": args.generator, "vertices": args.vertices if args.generator == "realistic" else None,
            "densify_m": args.densify, "target": args.target,
            "generate_s": round(time.perf_counter() - t0, 1)}
        chunked = measure("chunked", a, b, folder, args.target)
        summary["chunked"] = {k: v for k, v in chunked.items() if k != "flows_cs_json"}
        print(f"ours: {chunked['wall_s']:.1f} s, {chunked['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
        if not args.skip_overlay:
            overlay = measure("overlay", a, b, folder, args.target)
            summary["overlay"] = {k: v for k, v in overlay.items() if k != "flows_cs_json"}
            same_flows = json.loads(chunked["flows_cs_json"]) == json.loads(overlay["flows_cs_json"])
            summary["agree"] = {
                "changed_ha": abs(chunked["changed_ha"] - overlay["changed_ha"]) < 0.01,
                "artif_net_ha": abs(chunked["artif_net_ha"] - overlay["artif_net_ha"]) < 0.01,
                "flows_cs": same_flows,
            }
            summary["ratio_wall"] = round(overlay["wall_s"] / chunked["wall_s"], 2)
            summary["ratio_peak_rss"] = round(overlay["peak_rss_mb"] / chunked["peak_rss_mb"], 2)
        if args.scaling:
            summary["scaling"] = []
            for n in (int(v) for v in args.scaling.split(",") if v.strip()):
                sub = folder / f"n{n}"
                sub.mkdir()
                sa, sb = generate(sub, n, args.densify, args.seed, args.generator, args.vertices)
                run = measure("chunked", sa, sb, sub, args.target)
                row = {"polygons": n, "wall_s": round(run["wall_s"], 2), "peak_rss_mb": round(run["peak_rss_mb"])}
                if n <= args.anchor_max and n != args.polygons:
                    anchor = measure("overlay", sa, sb, sub, args.target)
                    row.update(overlay_wall_s=round(anchor["wall_s"], 2),
                               overlay_peak_rss_mb=round(anchor["peak_rss_mb"]),
                               agree=abs(anchor["changed_ha"] - run["changed_ha"]) < 0.01)
                elif n == args.polygons and "overlay" in summary:
                    row.update(overlay_wall_s=round(overlay["wall_s"], 2),
                               overlay_peak_rss_mb=round(overlay["peak_rss_mb"]))
                else:
                    row["overlay"] = f"not run (--anchor-max {args.anchor_max})"
                summary["scaling"].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                for path in sub.iterdir():
                    path.unlink()
    summary["load_average_1m"] = {"start": load_start, "end": os.getloadavg()[0]}
    print(json.dumps(summary, indent=2))
    with (OUT / "bench_difference.jsonl").open("a") as f:
        f.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
