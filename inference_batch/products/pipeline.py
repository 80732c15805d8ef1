"""Every per-département product of a département and its millésimes, in dependency order. Each step
decides for itself, by the fingerprints of its own inputs (``inference_batch.freshness``), whether its
outputs are up to date: a rerun after a failure resumes where it stopped, a re-delivered layer redoes
exactly the steps that read it (as a standalone verb would), and a delivered official layer is never
replaced. ``force`` redoes every computed output.

Per millésime: artificialisation, COGs, PMTiles, commune stocks, download archive. Per consecutive
pair: difference (evolution, artif ±1, flows), corrections (when a patch or corrections layer is
there), change grid, commune flows, difference PMTiles.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

from inference_batch.products.archive import run_archive
from inference_batch.products.artif import run_artif
from inference_batch.products.artifacts import StepError, key
from inference_batch.products.corrections import run_corrections
from inference_batch.products.difference import run_difference
from inference_batch.products.grid import run_grid
from inference_batch.products.ign_qa import run_artif_qa, run_difference_qa
from inference_batch.products.render import DEFAULT_RESOLUTION, LAYERS, run_render, run_render_difference
from inference_batch.products.stats import run_stats
from inference_batch.products.tiles import run_difference_tiles, run_occupation_tiles
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
    """All per-département products for ``millesimes`` (default: every ingested millésime)."""
    d = departement(dep)
    years = sorted(check_year(y) for y in millesimes) if millesimes else available_millesimes(storage, d.code)
    if not years:
        raise StepError(f"no occupation layer for département {d.code} under {storage.root}: "
                        "run `ocsge ingest` first")
    report_key = key("products_report", d.code, years[-1])
    result = ProductsResult()
    for year in years:
        result.keys.update({f"{k}_{year}": v for k, v in run_artif(storage, d.code, year, force=force).items()})
        result.keys.update({f"{k}_{year}": v for k, v in run_artif_qa(storage, d.code, year, force=force).items()})
    for before, after in itertools.pairwise(years):
        tag = f"{before}_{after}"
        # corrections first: the difference, artif ±1 and flows come from the corrected previous millésime
        if storage.exists(key("patch_corr", d.code, (before, after))):
            result.keys.update({f"{k}_{tag}": v for k, v in
                                run_corrections(storage, d.code, before, after, force=force).items()})
        else:
            result.skipped_steps.append(f"corrections {before}-{after}: no patch layer")
        result.keys.update({f"{k}_{tag}": v for k, v in
                            run_difference(storage, d.code, before, after, force=force).items()})
        result.keys.update({f"{k}_{tag}": v for k, v in
                            run_difference_qa(storage, d.code, before, after, force=force).items()})
        result.keys.update({f"{k}_{tag}": v for k, v in run_grid(
            storage, d.code, before, after, cell=grid_cell, threshold=grid_threshold, force=force).items()})
        if tiles:
            result.keys.update({f"{k}_{tag}": v for k, v in
                                run_difference_tiles(storage, d.code, before, after, force=force).items()})
        result.keys.update({f"{k}_{tag}": v for k, v in run_render_difference(
            storage, d.code, before, after, resolution=resolution, force=force).items()})
    layers = cog_layers
    for year in years:
        year_layers = tuple(layer for layer in layers if layer != "construction"
                            or storage.exists(key("zone_construite", d.code, year)))
        result.keys.update({f"{k}_cog_{year}": v for k, v in run_render(
            storage, d.code, year, resolution=resolution, layers=year_layers, force=force).items()})
        if tiles:
            result.keys.update({f"{k}_{year}": v for k, v in
                                run_occupation_tiles(storage, d.code, year, force=force).items()})
    from inference_batch.products.ingest import communes_key

    if communes_key(storage, d, years[-1]) is not None:
        result.keys.update(run_stats(storage, d.code, years, force=force))
    else:
        result.skipped_steps.append("stats: no communes layer")
    for year in years:
        result.keys.update({f"{k}_{year}": v for k, v in run_archive(storage, d.code, year, force=force).items()})
    report = {"departement": d.code, "millesimes": years, "keys": result.keys, "skipped": result.skipped_steps}
    data = json.dumps(report, indent=1, sort_keys=True).encode()
    if not (storage.exists(report_key) and storage.get_bytes(report_key) == data):
        storage.put_bytes(report_key, data, "application/json")  # a rerun with nothing to do rewrites nothing
    result.keys["products_report"] = report_key
    return result
