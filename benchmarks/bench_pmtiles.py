"""PMTiles build time per 100 000 polygons: GeoJSONSeq export + tippecanoe (z6–14, the flags of
``inference_batch.products.tiles``), on a generated occupation layer.

    python benchmarks/bench_pmtiles.py --polygons 200000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polygons", type=int, default=200_000)
    parser.add_argument("--generator", choices=["synth", "samples"], default="synth")
    parser.add_argument("--densify", type=float, default=0.0,
                        help="max segment length of the polygons (m; 0: as generated)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

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
