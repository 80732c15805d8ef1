"""A département rehearsal: a generated pair of N polygons per millésime (default 10⁶, ≈ 14 300 km²) taken
through the public verbs as a user would, each verb in its own process, with a table of wall time, CPU
time and peak memory per step and an extrapolation to a département and to France on AWS Batch.

    python benchmarks/bench_departement.py --polygons 1000000

The chain, in order (`ocsge …` unless said otherwise):

1. ``synth --vector-only`` — the pair of truths and the communes (S02);
2. *delivery* — this script writes each millésime as an IGN-shaped folder delivery (OCCUPATION_SOL,
   ZONE_CONSTRUITE built by the dilation–erosion of the buildings, and with the second millésime a
   PATCH_CORR of the first correcting ``--corrections`` of its polygons): what a user brings;
3. ``ingest`` of each delivery, then the standalone product verbs ``artif``, ``diff --no-tiles``,
   ``corrections``, ``grid``, ``render --no-tiles`` (class COGs of both millésimes), ``stats``,
   ``archive``;
4. ``products`` — what the standalone verbs left: the PMTiles and the difference COG; then ``products``
   once more, which must find everything up to date (the rerun cost);
5. ``publish`` — the STAC catalogue with every artifact hashed.

``--root DIR`` keeps the store; ``--chain-only --root DIR`` then reruns steps 3–5 on it without the ingests
(the earlier products removed first), e.g. to measure a change of the product steps without the setup.

"Vector chain" is steps 3–4 without the ingests: every product of the département. The target of issue 14
is ≤ 20 minutes and ≤ 4 GB peak on the 2-core machine at 10⁶ polygons.

The extrapolation is an estimate, stated with its assumptions: cost scales with the number of polygons
(measured linear in ``bench_difference.py --scaling``), one département per AWS Batch job with the
measured peak memory, on-demand price per vCPU-hour given by ``--price-vcpu-hour``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

OUT = Path(__file__).parent / "out"
DEPARTEMENT = "S02"
YEARS = (2021, 2024)
FRANCE_DEPARTEMENTS = 101
# mean OCS GE polygons per département (IGN deliveries: 0.5–2 × 10⁶) — an assumption of the estimate
FRANCE_MEAN_POLYGONS = 1_000_000


@dataclass
class StepRun:
    step: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    vector_chain: bool
    load_1m_end: float = 0.0  # other work on the machine: wall time inflates with it, CPU time does not
    tree_peak_mb: float = 0.0  # the most the step's whole process tree held at once (sum of PSS), sampled


class TreeMemory:
    """Samples, every ``every_s``, the proportional set size (PSS) summed over a process and all its
    descendants: what a Batch job's memory limit sees when a step forks workers (``ru_maxrss`` is the
    largest single process). PSS, not RSS, so that pages a forked worker still shares with its parent
    are counted once."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        import threading

        self.pid, self.every_s, self.peak_kb = pid, every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(self.every_s):
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            total = 0
            for p in procs:
                try:
                    with open(f"/proc/{p.pid}/smaps_rollup") as f:
                        total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
                except (OSError, StopIteration, ValueError):
                    continue
            self.peak_kb = max(self.peak_kb, total)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kb / 1024


def run_step(name: str, args: list[str], *, vector_chain: bool, env: dict[str, str]) -> StepRun:
    """Run one command in its own process; its peak resident memory is its own ``ru_maxrss`` from
    ``wait4`` (children of the command included only once they are waited for, which is what a Batch job's
    memory limit sees for a single-process verb)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        tree = TreeMemory(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        tree_peak_mb = tree.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-4000:]
            raise SystemExit(f"step {name!r} failed (exit {proc.returncode}): {' '.join(args)}\n{tail}")
    run = StepRun(
        name,
        round(wall, 1),
        round(usage.ru_utime + usage.ru_stime, 1),
        round(usage.ru_maxrss / 1024),
        vector_chain,
        round(os.getloadavg()[0], 1),
        round(tree_peak_mb),
    )
    print(
        f"  {name:<34} {run.wall_s:>8.1f} s  {run.cpu_s:>8.1f} CPU s  {run.peak_rss_mb:>6.0f} MB"
        f"  tree {run.tree_peak_mb:>6.0f} MB  load {run.load_1m_end:.1f}",
        flush=True,
    )
    return run


def write_delivery(root: str, year: int, first_year: int, folder: Path, corrections: int, seed: int) -> None:
    """One millésime of the generated pair as an IGN-shaped folder delivery (run in a child process)."""
    import geopandas as gpd
    import numpy as np

    from inference_batch.synth import delivery
    from inference_batch.synth.truth import zone_construite
    from ocsge import schema
    from ocsge.products import product_key
    from ocsge.storage import open_storage
    from ocsge.territory import departement

    store = open_storage(root)
    dep = departement(DEPARTEMENT)
    with store.local_copy(product_key("truth", dep.code, year)) as path:
        truth = gpd.read_parquet(path)
    data = folder / "OCS-GE" / f"1_DONNEES_LIVRAISON_{delivery.DELIVERY_TAG}" / delivery.inner_folder(dep.code, year)
    data.mkdir(parents=True)
    desc = f"rehearsal pair {dep.code}, millésime {year}"
    delivery._write_gpkg(
        delivery.ign_occupation(truth, year), data / "OCCUPATION_SOL.gpkg", "OCCUPATION_SOL", f"OCCUPATION_SOL — {desc}"
    )
    zc = zone_construite(truth, dep.code, year, dep.crs, tuple(truth.total_bounds))
    delivery._write_gpkg(
        delivery.ign_zone_construite(zc, year),
        data / "ZONE_CONSTRUITE.gpkg",
        "ZONE_CONSTRUITE",
        f"ZONE_CONSTRUITE — {desc}",
    )
    if year != first_year:
        with store.local_copy(product_key("truth", dep.code, first_year)) as path:
            before = gpd.read_parquet(path)
        patch = delivery.ign_occupation(before, first_year).rename(columns={"id": "id_ocs"})
        cs_corr = np.full(len(patch), "RAS", dtype=object)
        # photo-interpreters' corrections: fields that were in fact shrubland, and the reverse
        rng = np.random.default_rng([seed, 2023])
        fields = np.flatnonzero(patch["code_cs"].to_numpy() == "CS2.2.1")
        shrubs = np.flatnonzero(patch["code_cs"].to_numpy() == "CS2.1.2")
        n_fields = min(len(fields), corrections * 3 // 4)
        cs_corr[rng.choice(fields, size=n_fields, replace=False)] = "CS2.1.2"
        cs_corr[rng.choice(shrubs, size=min(len(shrubs), corrections - n_fields), replace=False)] = "CS2.2.1"
        patch["cs_corr"] = cs_corr
        patch["us_corr"] = "RAS"
        patch["os_corr"] = "RAS"
        patch["decoup_geo"] = "RAS"
        name = f"PATCH_CORR_M1_{first_year}"
        cols = [
            "id_ocs",
            "code_cs",
            "code_us",
            "millesime",
            "source",
            "ossature",
            "id_origine",
            "code_or",
            "cs_corr",
            "us_corr",
            "os_corr",
            "decoup_geo",
            "the_geom",
        ]
        delivery._write_gpkg(patch[cols], data / f"{name}.gpkg", name, f"{name} — {desc}")
    print(
        json.dumps(
            {
                "year": year,
                "polygons": len(truth),
                "zone_construite": len(zc),
                schema.CODE_CS: int(truth[schema.CODE_CS].nunique()),
            }
        )
    )


def setup(
    args: argparse.Namespace, root: Path, tmp: Path, common: list[str], dep: list[str], env: dict[str, str], ocsge: str
) -> list[StepRun]:
    """Steps 1–3a: the generated pair, its IGN-shaped deliveries and their ingestion."""
    runs: list[StepRun] = []
    runs.append(
        run_step(
            "synth --vector-only",
            [ocsge, "synth", *common, "--vector-only", "--polygons", str(args.polygons), "--seed", str(args.seed)],
            vector_chain=False,
            env=env,
        )
    )
    for year in YEARS:
        folder = tmp / f"delivery-{year}"
        shutil.rmtree(folder, ignore_errors=True)
        runs.append(
            run_step(
                f"delivery {year} (GPKG + zone construite)",
                [
                    sys.executable,
                    __file__,
                    "--corrections",
                    str(args.corrections),
                    "--seed",
                    str(args.seed),
                    "--child-delivery",
                    str(root),
                    str(year),
                    str(YEARS[0]),
                    str(folder),
                ],
                vector_chain=False,
                env=env,
            )
        )
        runs.append(
            run_step(
                f"ingest {year}",
                [ocsge, "ingest", str(folder), *dep, "-m", str(year), *common],
                vector_chain=False,
                env=env,
            )
        )
    return runs


INPUTS = {"truth", "ancillary", "occupation", "zone_construite", "deliveries"}  # what synth and ingest write


def forget_products(root: Path) -> None:
    """Remove every product of an earlier run under ``root``, keeping what synth and ingest wrote, so
    that the chain redoes each product."""
    for folder in root.iterdir():
        if folder.is_dir() and folder.name == "reports":
            for report in folder.iterdir():
                if report.name != "ingest":
                    shutil.rmtree(report)
        elif folder.is_dir() and folder.name not in INPUTS:
            shutil.rmtree(folder)


def extrapolate(runs: list[StepRun], polygons: int, price_vcpu_hour: float, vcpus: int) -> dict[str, float]:
    chain = [r for r in runs if r.vector_chain]
    wall = sum(r.wall_s for r in chain)
    cpu = sum(r.cpu_s for r in chain)
    peak = max(max(r.peak_rss_mb, r.tree_peak_mb) for r in chain)
    scale = FRANCE_MEAN_POLYGONS / polygons
    job_hours = wall * scale / 3600  # one job per département on a `vcpus`-vCPU instance like this machine
    return {
        "vector_chain_wall_min": round(wall / 60, 1),
        "vector_chain_cpu_min": round(cpu / 60, 1),
        "vector_chain_peak_gb": round(peak / 1024, 2),
        "departement_job_hours": round(job_hours, 2),
        "france_jobs": FRANCE_DEPARTEMENTS,
        "france_vcpu_hours": round(job_hours * vcpus * FRANCE_DEPARTEMENTS, 1),
        "france_cost_usd": round(job_hours * vcpus * FRANCE_DEPARTEMENTS * price_vcpu_hour, 2),
        "france_wall_hours_all_parallel": round(job_hours, 2),
        # wall time inflates with the machine's load (helpers share the cores); CPU time does not: the same
        # estimate from CPU time, the job's vCPUs kept busy (a lower bound on wall time, cost as billed)
        "departement_job_hours_from_cpu": round(cpu * scale / vcpus / 3600, 2),
        "france_vcpu_hours_from_cpu": round(cpu * scale * FRANCE_DEPARTEMENTS / 3600, 1),
        "france_cost_usd_from_cpu": round(cpu * scale * FRANCE_DEPARTEMENTS / 3600 * price_vcpu_hour, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polygons", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--corrections", type=int, default=1000, help="polygons the PATCH_CORR corrects")
    parser.add_argument("--root", default="", help="storage folder (default: a temporary folder, removed)")
    parser.add_argument(
        "--price-vcpu-hour",
        type=float,
        default=0.048,
        help="on-demand USD per vCPU-hour assumed for the estimate (c6i in eu-west-3 ≈ 0.048)",
    )
    parser.add_argument(
        "--chain-only",
        action="store_true",
        help="reuse --root, synthesised and ingested by an earlier run, and run only the vector "
        "chain, the rerun and publish (the earlier run's products are removed first)",
    )
    parser.add_argument(
        "--child-delivery", nargs=4, metavar=("ROOT", "YEAR", "FIRST", "FOLDER"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child_delivery:
        root, year, first, folder = args.child_delivery
        write_delivery(root, int(year), int(first), Path(folder), args.corrections, args.seed)
        return
    ocsge = str(Path(sys.executable).with_name("ocsge"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-departement-"))
    root = Path(args.root) if args.root else tmp / "store"
    env = {**os.environ, "OCSGE_QUIET": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    common = ["--root", str(root)]
    dep = ["-d", DEPARTEMENT]
    runs: list[StepRun] = []
    print(
        f"rehearsal: {args.polygons:,} polygons per millésime under {root} (load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    try:
        if args.chain_only:
            if not (args.root and (root / "occupation").is_dir()):
                raise SystemExit("--chain-only needs a --root holding the ingested pair of an earlier run")
            forget_products(root)
        else:
            runs += setup(args, root, tmp, common, dep, env, ocsge)
        chain = [
            ("artif (2 millésimes)", ["artif", *dep, *common]),
            ("diff", ["diff", *dep, "--no-tiles", *common]),
            ("corrections", ["corrections", *dep, *common]),
            ("grid 65 m", ["grid", *dep, *common]),
            ("render COGs (2 millésimes)", ["render", *dep, "--no-tiles", *common]),
            ("stats (communes)", ["stats", *dep, *common]),
            ("archive (2 millésimes)", ["archive", *dep, *common]),
            ("products (PMTiles, diff COG)", ["products", *dep, *common]),
        ]
        for name, cmd in chain:
            runs.append(run_step(name, [ocsge, *cmd], vector_chain=True, env=env))
        runs.append(
            run_step("products rerun (up to date)", [ocsge, "products", *dep, *common], vector_chain=False, env=env)
        )
        runs.append(run_step("publish", [ocsge, "publish", *common], vector_chain=False, env=env))
        size_gb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e9
    finally:
        if not args.root:
            shutil.rmtree(tmp, ignore_errors=True)
    estimate = extrapolate(runs, args.polygons, args.price_vcpu_hour, os.cpu_count() or 2)
    summary = {
        "polygons": args.polygons,
        "storage_gb": round(size_gb, 2),
        "steps": [asdict(r) for r in runs],
        "estimate": estimate,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_1m_end": os.getloadavg()[0],
        "price_vcpu_hour": args.price_vcpu_hour,
    }
    print(json.dumps(estimate, indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "bench_departement.jsonl").open("a") as f:
        f.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
