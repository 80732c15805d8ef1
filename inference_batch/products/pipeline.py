"""Every per-département product of a département and its millésimes, in dependency order. Each step
decides for itself, by the fingerprints of its own inputs (``inference_batch.freshness``), whether its
outputs are up to date, and lands its outputs together only once it succeeded
(``inference_batch.writers.transaction``): a failed step changes nothing, a rerun after a failure or a
kill resumes after the last step that completed, a re-delivered layer redoes
exactly the steps that read it (as a standalone verb would), and a delivered official layer is never
replaced. ``force`` redoes every computed output.

Per millésime: artificialisation, COGs, PMTiles, commune stocks, download archive. Per consecutive
pair: difference (evolution, artif ±1, flows), corrections (when a patch or corrections layer is
there), change grid, commune flows, difference PMTiles.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference_batch.products.archive import run_archive
from inference_batch.products.artif import run_artif
from inference_batch.products.artifacts import StepError, key
from inference_batch.products.corrections import run_corrections
from inference_batch.products.difference import run_difference
from inference_batch.products.grid import run_grid
from inference_batch.products.ign_qa import run_artif_qa, run_difference_qa
from inference_batch.products.render import (
    DEFAULT_RESOLUTION,
    LAYERS,
    input_label,
    run_render,
    run_render_difference,
)
from inference_batch.products.stats import run_stats
from inference_batch.products.tiles import run_difference_tiles, run_occupation_tiles
from inference_batch.writers.transaction import batch_run, run_step, transaction
from ocsge.millesimes import check_year
from ocsge.storage import Storage
from ocsge.territory import departement


def available_millesimes(storage: Storage, dep: object, product: str = "occupation") -> list[int]:
    """Millésimes that have an ``occupation`` layer for the département."""
    token = departement(dep).token
    years = set()
    for obj in storage.list(f"{product}/{token}/"):
        parts = obj.key.split("/")
        if len(parts) >= 3 and parts[2].isdigit():
            years.add(int(parts[2]))
    return sorted(years)


@dataclass
class ProductsResult:
    keys: dict[str, str] = field(default_factory=dict)
    skipped_steps: list[str] = field(default_factory=list)


def run_products(storage: Storage, dep: object, millesimes: list[int] | None = None, *,
                 resolution: float = DEFAULT_RESOLUTION, cog_layers: tuple[str, ...] = LAYERS,
                 tiles: bool = True, force: bool = False, grid_cell: float = 65.0,
                 grid_threshold: float = 50.0) -> ProductsResult:
    """All per-département products for ``millesimes`` (default: every ingested millésime).

    Each step is a transaction (:mod:`inference_batch.writers.transaction`): its outputs land together
    once it succeeded, so a step that fails leaves every artifact it would have replaced byte for byte as
    it was, and its error names the step and its input. The run sweeps first what a killed run left."""
    with batch_run():
        return _run_products(storage, dep, millesimes, resolution=resolution, cog_layers=cog_layers, tiles=tiles,
                             force=force, grid_cell=grid_cell, grid_threshold=grid_threshold)


def _run_products(storage: Storage, dep: object, millesimes: list[int] | None, *, resolution: float,
                  cog_layers: tuple[str, ...], tiles: bool, force: bool, grid_cell: float,
                  grid_threshold: float) -> ProductsResult:
    d = departement(dep)
    years = sorted(check_year(y) for y in millesimes) if millesimes else available_millesimes(storage, d.code)
    if not years:
        raise StepError(f"no occupation layer for département {d.code} under {storage.root}: "
                        "run `ocsge ingest` first")
    report_key = key("products_report", d.code, years[-1])
    result = ProductsResult()

    def run(label: str, fn: Callable[..., dict[str, str]], *args: Any, tag: str = "", **kwargs: Any) -> None:
        keys = run_step(storage, label, fn, *args, **kwargs)
        result.keys.update({f"{k}{tag}": v for k, v in keys.items()})

    def occupation(year: int) -> str:
        return key("occupation", d.code, year)

    for year in years:
        run(f"artif {d.code} {year} (input {occupation(year)})", run_artif, d.code, year, force=force, tag=f"_{year}")
        run(f"artif QA {d.code} {year} (input {key('artificialisation', d.code, year)})", run_artif_qa, d.code, year,
            force=force, tag=f"_{year}")
    for before, after in itertools.pairwise(years):
        tag, pair = f"_{before}_{after}", f"{before}-{after}"
        # corrections first: the difference, artif ±1 and flows come from the corrected previous millésime
        patch = key("patch_corr", d.code, (before, after))
        if storage.exists(patch):
            run(f"corrections {d.code} {pair} (input {patch})", run_corrections, d.code, before, after,
                force=force, tag=tag)
        else:
            result.skipped_steps.append(f"corrections {before}-{after}: no patch layer")
        run(f"diff {d.code} {pair} (inputs {input_label(storage, d.code, before)}, "
            f"{input_label(storage, d.code, after)})", run_difference, d.code, before, after, force=force, tag=tag)
        run(f"artif difference QA {d.code} {pair} (input {key('delivered_artif_difference', d.code, (before, after))})",
            run_difference_qa, d.code, before, after, force=force, tag=tag)
        run(f"grid {d.code} {pair} (inputs {occupation(before)}, {occupation(after)})", run_grid, d.code, before,
            after, cell=grid_cell, threshold=grid_threshold, force=force, tag=tag)
        changes = key("difference", d.code, (before, after))
        if tiles:
            run(f"pmtiles {d.code} {pair} (input {changes})", run_difference_tiles, d.code, before, after,
                force=force, tag=tag)
        run(f"render {d.code} {pair} difference (input {changes})", run_render_difference, d.code, before, after,
            resolution=resolution, force=force, tag=tag)
    for year in years:
        year_layers = tuple(layer for layer in cog_layers if layer != "construction"
                            or storage.exists(key("zone_construite", d.code, year)))
        layer = input_label(storage, d.code, year)
        run(f"render {d.code} {year} (input {layer})", run_render, d.code, year, resolution=resolution,
            layers=year_layers, force=force, tag=f"_cog_{year}")
        if tiles:
            run(f"pmtiles {d.code} {year} (input {layer})", run_occupation_tiles, d.code, year, force=force,
                tag=f"_{year}")
    from inference_batch.products.ingest import communes_key

    communes = communes_key(storage, d, years[-1])
    if communes is not None:
        run(f"stats {d.code} {', '.join(map(str, years))} (input {communes})", run_stats, d.code, years, force=force)
    else:
        result.skipped_steps.append("stats: no communes layer")
    for year in years:
        run(f"archive {d.code} {year} (input {occupation(year)})", run_archive, d.code, year, force=force,
            tag=f"_{year}")
    report = {"departement": d.code, "millesimes": years, "keys": result.keys, "skipped": result.skipped_steps}
    data = json.dumps(report, indent=1, sort_keys=True).encode()
    if not (storage.exists(report_key) and storage.get_bytes(report_key) == data):
        # a rerun with nothing to do rewrites nothing
        with transaction(storage, f"products report {d.code} ({report_key})") as staged:
            staged.put_bytes(report_key, data, "application/json")
    result.keys["products_report"] = report_key
    return result
