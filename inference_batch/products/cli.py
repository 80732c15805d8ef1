"""``ocsge`` verbs of the per-département products: ingest, artif, diff, corrections, grid, stats,
render, archive, and ``products`` (all of them for a département, skipping finished artifacts).

Every verb is one batch run (:func:`inference_batch.writers.transaction.batch_run`: it first sweeps what a
killed run left) and each of its steps a transaction: a step that fails leaves the stored artifacts as
they were, and its error names the step and its input.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from ocsge.errors import OcsgeError


def _storage(root: str | None) -> Any:
    from ocsge.storage import open_storage

    return open_storage(root)


def _batch(f: Callable[..., Any]) -> Callable[..., Any]:
    """The verb as one batch run."""

    @functools.wraps(f)
    def verb(*args: Any, **kwargs: Any) -> Any:
        from inference_batch.writers.transaction import batch_run

        with batch_run():
            return f(*args, **kwargs)

    return verb


def _step(storage: Any, label: str, fn: Callable[..., dict[str, str]], *args: Any, **kwargs: Any) -> dict[str, str]:
    from inference_batch.writers.transaction import run_step

    return run_step(storage, label, fn, *args, **kwargs)


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    f = _batch(f)
    f = click.option("--force", is_flag=True, help="Redo finished artifacts.")(f)
    f = click.option("--root", default=None,
                     help="Storage root (folder or s3://bucket/prefix); default OCSGE_STORAGE_ROOT.")(f)
    return f


def _dep(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-d", "--departement", required=True, help="Département code (33, 2A, 971, S01…).")(f)


def _millesimes(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-m", "--millesime", "millesimes", type=int, multiple=True,
                        help="Millésime(s); default: all ingested.")(f)


def _pair(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--after", type=int, default=None, help="Later millésime (default: the last ingested).")(f)
    f = click.option("--before", type=int, default=None, help="Earlier millésime (default: the one before).")(f)
    return f


def _years(storage: Any, dep: str, millesimes: tuple[int, ...]) -> list[int]:
    from inference_batch.products.pipeline import available_millesimes

    years = sorted(millesimes) if millesimes else available_millesimes(storage, dep)
    if not years:
        raise OcsgeError(f"no millésime given and none ingested for {dep}: pass -m YEAR or run `ocsge ingest`")
    return years


def _resolve_pair(storage: Any, dep: str, before: int | None, after: int | None) -> tuple[int, int]:
    if before is not None and after is not None:
        if before >= after:
            raise OcsgeError(f"--before {before} must be earlier than --after {after}")
        return before, after
    years = _years(storage, dep, ())
    after = after if after is not None else years[-1]
    earlier = [y for y in years if y < after]
    before = before if before is not None else (earlier[-1] if earlier else None)
    if before is None:
        raise OcsgeError(f"need two millésimes for {dep}: found {years}; pass --before and --after")
    return before, after


def _print_keys(keys: dict[str, str]) -> None:
    for name, value in keys.items():
        click.echo(f"{name}\t{value}")


@click.command("ingest")
@click.argument("source", type=click.Path(exists=True))
@click.option("-d", "--departement", default=None, help="Département (default: read from the archive name).")
@click.option("-m", "--millesime", type=int, default=None, help="Millésime (default: read from the archive).")
@click.option("--clip", "clip", flag_value="communes", default=None,
              help="Clip to the département (union of its communes in the storage).")
@click.option("--clip-to", "clip_to", type=click.Path(exists=True), default=None,
              help="Clip to the polygons of this vector file.")
@_common
def ingest(source: str, departement: str | None, millesime: int | None, clip: str | None, clip_to: str | None,
           root: str | None, force: bool) -> None:
    """Ingest an IGN OCS GE delivery (.7z, folder, .gpkg or .shp) into canonical GeoParquet + a report.

    What is repaired or dropped is counted in the report: invalid geometries, NaN/infinite coordinates,
    polygons outside the département's extent (its communes + 10 km when the storage has them, else the
    area of use of its CRS). A layer with more than half of its polygons outside is refused."""
    from inference_batch.products.ingest import ingest as run

    result = run(source, _storage(root), departement_code=departement, millesime=millesime,
                 clip=clip_to or clip, force=force)
    counts = result.report.get("anomaly_counts", {})
    click.echo(f"département {result.departement}, millésime {result.millesime}"
               + (f", pair {result.pair[0]}-{result.pair[1]}" if result.pair else ""))
    for issue, n in counts.items():
        click.echo(f"anomaly\t{issue}\t{n}")
    _print_keys(result.keys)


@click.command("artif")
@_dep
@_millesimes
@_common
def artif(departement: str, millesimes: tuple[int, ...], root: str | None, force: bool) -> None:
    """Artificialisation layer (matrix + thresholds of the décret) and totals, per millésime."""
    from inference_batch.products.artif import run_artif

    storage = _storage(root)
    for year in _years(storage, departement, millesimes):
        _print_keys(_step(storage, f"artif {departement} {year}", run_artif, departement, year, force=force))


@click.command("diff")
@_dep
@_pair
@click.option("--chunk", type=int, default=20_000, show_default=True, help="Target polygons per spatial chunk.")
@click.option("--tiles/--no-tiles", default=True, show_default=True, help="Also build the difference PMTiles.")
@_common
def diff(departement: str, before: int | None, after: int | None, chunk: int, tiles: bool, root: str | None,
         force: bool) -> None:
    """Evolution layer, artificialisation ±1, flows CS×CS and US×US between two millésimes."""
    from inference_batch.products.difference import run_difference
    from inference_batch.products.tiles import run_difference_tiles

    storage = _storage(root)
    b, a = _resolve_pair(storage, departement, before, after)
    _print_keys(_step(storage, f"diff {departement} {b}-{a}", run_difference, departement, b, a, force=force,
                      target=chunk))
    if tiles:
        _print_keys(run_difference_tiles(storage, departement, b, a, force=force))


@click.command("corrections")
@_dep
@_pair
@click.option("--corrections", "corrections", type=click.Path(exists=True), default=None,
              help="Corrections layer (cs_corr, us_corr); default: the ingested PATCH_CORR of the pair.")
@_common
def corrections(departement: str, before: int | None, after: int | None, corrections: str | None,
                root: str | None, force: bool) -> None:
    """Corrected previous millésime, corrections layer, and evolutions vs. false flows."""
    from inference_batch.products.corrections import run_corrections

    storage = _storage(root)
    b, a = _resolve_pair(storage, departement, before, after)
    label = f"corrections {departement} {b}-{a}" + (f" (input {corrections})" if corrections else "")
    _print_keys(_step(storage, label, run_corrections, departement, b, a, corrections=corrections, force=force))


@click.command("grid")
@_dep
@_pair
@click.option("--after-source", type=click.Choice(["occupation", "occupation_auto", "prediction_vector"]),
              default="occupation", show_default=True, help="Layer of the later millésime (a prediction works).")
@click.option("--cell", type=float, default=65.0, show_default=True, help="Cell size (m).")
@click.option("--threshold", type=float, default=50.0, show_default=True, help="Changed area that flags a cell (m²).")
@_common
def grid(departement: str, before: int | None, after: int | None, after_source: str, cell: float, threshold: float,
         root: str | None, force: bool) -> None:
    """65 m change grid between two millésimes (or a prediction and the previous millésime)."""
    from inference_batch.products.grid import run_grid

    storage = _storage(root)
    b, a = _resolve_pair(storage, departement, before, after)
    _print_keys(_step(storage, f"grid {departement} {b}-{a}", run_grid, departement, b, a, after_source=after_source,
                      cell=cell, threshold=threshold, force=force))


@click.command("stats")
@_dep
@_millesimes
@_common
def stats(departement: str, millesimes: tuple[int, ...], root: str | None, force: bool) -> None:
    """Stocks per commune and département per millésime, flows per consecutive pair (CSV + Parquet)."""
    from inference_batch.products.stats import run_stats

    storage = _storage(root)
    years = _years(storage, departement, millesimes)
    _print_keys(_step(storage, f"stats {departement} {', '.join(map(str, years))}", run_stats, departement, years,
                      force=force))


@click.command("render")
@_dep
@_millesimes
@click.option("--resolution", type=float, default=None,
              help="Pixel size of the COGs (m); default: zoom 16 of the served layers (1.5 m).")
@click.option("--layers", default="couverture,usage,artif,construction", show_default=True,
              help="COGs to render.")
@click.option("--tiles/--no-tiles", default=True, show_default=True, help="Also build the PMTiles.")
@_common
def render(departement: str, millesimes: tuple[int, ...], resolution: float | None, layers: str, tiles: bool,
           root: str | None, force: bool) -> None:
    """Categorical COGs (official palette, nearest overviews) and PMTiles of each millésime."""
    from inference_batch.products.render import DEFAULT_RESOLUTION, LAYERS, run_render

    resolution = resolution or DEFAULT_RESOLUTION
    from inference_batch.products.tiles import run_occupation_tiles

    chosen = tuple(x.strip() for x in layers.split(",") if x.strip())
    unknown = set(chosen) - set(LAYERS)
    if unknown:
        raise OcsgeError(f"unknown layer(s) {', '.join(sorted(unknown))}: choose among {', '.join(LAYERS)}")
    storage = _storage(root)
    for year in _years(storage, departement, millesimes):
        _print_keys(run_render(storage, departement, year, resolution=resolution, layers=chosen, force=force))
        if tiles:
            _print_keys(run_occupation_tiles(storage, departement, year, force=force))


@click.command("archive")
@_dep
@_millesimes
@_common
def archive(departement: str, millesimes: tuple[int, ...], root: str | None, force: bool) -> None:
    """Download archive (GeoPackage with IGN layer names, COGs, README, SHA256SUMS) per millésime."""
    from inference_batch.products.archive import run_archive

    storage = _storage(root)
    for year in _years(storage, departement, millesimes):
        _print_keys(run_archive(storage, departement, year, force=force))


@click.command("products")
@_dep
@_millesimes
@click.option("--resolution", type=float, default=None,
              help="Pixel size of the COGs (m); default: zoom 16 of the served layers (1.5 m).")
@click.option("--tiles/--no-tiles", default=True, show_default=True, help="Build the PMTiles.")
@_common
def products(departement: str, millesimes: tuple[int, ...], resolution: float | None, tiles: bool,
             root: str | None, force: bool) -> None:
    """Every per-département product of the département's millésimes, skipping up-to-date artifacts."""
    from inference_batch.products.pipeline import run_products
    from inference_batch.products.render import DEFAULT_RESOLUTION

    resolution = resolution or DEFAULT_RESOLUTION

    result = run_products(_storage(root), departement, list(millesimes) or None, resolution=resolution,
                          tiles=tiles, force=force)
    _print_keys(result.keys)
    for line in result.skipped_steps:
        click.echo(f"skipped\t{line}")
