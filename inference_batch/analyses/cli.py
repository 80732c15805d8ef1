"""``ocsge analyse``: the analyses for planners, one sub-verb per use (portrait, origine, tache-urbaine).

Each reads the per-département products (run ``ocsge products`` first), writes its registered products
and skips them when they are up to date, like every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from inference_batch.products.cli import _common, _dep, _millesimes, _pair, _print_keys, _resolve_pair, _storage, _years


def _groupements(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--groupements", type=click.Path(exists=True, dir_okay=False), default=None,
        help="CSV commune → groupement (columns insee_com/code_insee, groupement/epci/scot, optional "
             "nom_groupement); default: the stored ancillary/groupements table of the département, if any.")(f)


@click.group("analyse")
def analyse() -> None:
    """Analyses for planners: portrait de territoire, origin of new artificialisation, tâche urbaine,
    densification of economic zones, renaturation on the INSEE 200 m grid, trame verte et bleue, HTML report."""


@analyse.command("portrait")
@_dep
@_millesimes
@_groupements
@click.option("--points", type=float, default=1.0, show_default=True,
              help="Change (points of percentage) of a natural couverture that flags an evolution to check.")
@click.option("--artif-points", type=float, default=None,
              help="…unless the artificialised share moves by this much or more (default: --points).")
@_common
def portrait(departement: str, millesimes: tuple[int, ...], groupements: str | None, points: float,
             artif_points: float | None, root: str | None, force: bool) -> None:
    """Stocks by couverture, usage and artificialisation per commune, groupement and département; their
    change between consecutive millésimes (ha, points) and the evolutions to check locally."""
    from inference_batch.analyses.portrait import FlagRule, run_portrait

    storage = _storage(root)
    _print_keys(run_portrait(storage, departement, _years(storage, departement, millesimes),
                             groupements=groupements, rule=FlagRule(points, artif_points), force=force))


@analyse.command("origine")
@_dep
@_pair
@_groupements
@_common
def origine(departement: str, before: int | None, after: int | None, groupements: str | None, root: str | None,
            force: bool) -> None:
    """New built land (CS1.1.1.1) and new artificialisation (+1) by couverture of origin (ha, %)."""
    from inference_batch.analyses.origin import run_origin

    storage = _storage(root)
    b, a = _resolve_pair(storage, departement, before, after)
    _print_keys(run_origin(storage, departement, b, a, groupements=groupements, force=force))


@analyse.command("tache-urbaine")
@_dep
@_millesimes
@click.option("--dilation", type=float, default=50.0, show_default=True, help="Dilation of built land (m).")
@click.option("--erosion", type=float, default=25.0, show_default=True, help="Erosion after the dilation (m).")
@click.option("--min-area", type=float, default=0.0, show_default=True, help="Smallest patch kept (m²).")
@click.option("--join", "join_style", type=click.Choice(["round", "mitre"]), default="round", show_default=True,
              help="Buffer corners.")
@_groupements
@_common
def tache_urbaine(departement: str, millesimes: tuple[int, ...], dilation: float, erosion: float, min_area: float,
                  join_style: str, groupements: str | None, root: str | None, force: bool) -> None:
    """Tâche urbaine per millésime (dilation–erosion of built and sealed land, GeoParquet, class COG for
    WMTS/WMS) and its extension per commune, groupement and département compared with the zone construite
    (CSV)."""
    from inference_batch.analyses.rasters import run_analyses_rasters
    from inference_batch.analyses.urban_footprint import FootprintParams, run_footprint

    storage = _storage(root)
    params = FootprintParams(dilation, erosion, min_area, join_style)
    years = _years(storage, departement, millesimes)
    _print_keys(run_footprint(storage, departement, years, params=params, groupements=groupements, force=force))
    _print_keys(run_analyses_rasters(storage, departement, years, force=force))


@analyse.command("densification")
@_dep
@_millesimes
@click.option("--zae", type=click.Path(exists=True, dir_okay=False), default=None,
              help="ZAE layer (GeoPackage, Shapefile, GeoJSON, GeoParquet); default: zones from economic usages.")
@click.option("--min-zone", type=float, default=5_000.0, show_default=True,
              help="Smallest zone built from usages (m²).")
@_common
def densification(departement: str, millesimes: tuple[int, ...], zae: str | None, min_zone: float,
                  root: str | None, force: bool) -> None:
    """Economic zones (ZAE) with built footprint, non-built artificialised and vegetated areas, emprise au
    sol ratio and optimisable surface: a map (GeoParquet) and an inventory (CSV) per millésime."""
    from inference_batch.analyses.densification import ZoneParams, run_densification

    storage = _storage(root)
    _print_keys(run_densification(storage, departement, _years(storage, departement, millesimes), zae=zae,
                                  params=ZoneParams(min_zone_m2=min_zone), force=force))


@analyse.command("renaturation")
@_dep
@_millesimes
@click.option("--population", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Population per INSEE 200 m cell (CSV: idcar_200m, ind); weights the health score.")
@click.option("--min-artif", type=float, default=50.0, show_default=True,
              help="Artificialised share (%) from which a cell can be a priority sector.")
@click.option("--quantile", type=float, default=0.8, show_default=True,
              help="Priority sectors: potential at least this quantile among artificialised cells.")
@_common
def renaturation(departement: str, millesimes: tuple[int, ...], population: str | None, min_artif: float,
                 quantile: float, root: str | None, force: bool) -> None:
    """Renaturation potential on the INSEE 200 m grid (EPSG:3035): shares, scores per sub-theme
    (biodiversity, climate, health) and priority sectors, as GeoParquet, CSV and class COG per millésime."""
    from inference_batch.analyses.rasters import run_analyses_rasters
    from inference_batch.analyses.renaturation import RenaturationParams, run_renaturation

    storage = _storage(root)
    years = _years(storage, departement, millesimes)
    _print_keys(run_renaturation(storage, departement, years, population=population,
                                 params=RenaturationParams(min_artif, quantile), force=force))
    _print_keys(run_analyses_rasters(storage, departement, years, force=force))


@analyse.command("rapport")
@_dep
@_pair
@click.option("-t", "--territoire", "territoires", multiple=True,
              help="Territory code(s): INSEE, groupement or département; default: every territory.")
@_groupements
@_common
def rapport(departement: str, before: int | None, after: int | None, territoires: tuple[str, ...],
            groupements: str | None, root: str | None, force: bool) -> None:
    """Printable HTML portrait per territory (stocks, flows, origin, map); runs portrait and origine first."""
    from inference_batch.analyses.report import run_report

    storage = _storage(root)
    b, a = _resolve_pair(storage, departement, before, after)
    _print_keys(run_report(storage, departement, b, a, territories=territoires, groupements=groupements,
                           force=force))


@analyse.command("tout")
@_dep
@_groupements
@click.option("--demo-inputs", is_flag=True,
              help="Write a synthetic grouping of the communes and population grid when none is stored (demo).")
@_common
def tout(departement: str, groupements: str | None, demo_inputs: bool, root: str | None, force: bool) -> None:
    """Every analysis of the département's millésimes: portrait, origine (per consecutive pair),
    tâche urbaine, densification, renaturation, trame verte et bleue, their vector tiles and class rasters
    (WMTS/WMS layers), and the HTML portraits of the last pair."""
    import itertools

    from inference_batch.analyses.demo_inputs import ensure_demo_inputs
    from inference_batch.analyses.densification import run_densification
    from inference_batch.analyses.origin import run_origin
    from inference_batch.analyses.portrait import run_portrait
    from inference_batch.analyses.rasters import run_analyses_rasters
    from inference_batch.analyses.renaturation import run_renaturation
    from inference_batch.analyses.report import run_report
    from inference_batch.analyses.tiles import run_analyses_tiles
    from inference_batch.analyses.tvb import run_tvb
    from inference_batch.analyses.urban_footprint import run_footprint

    storage = _storage(root)
    years = _years(storage, departement, ())
    if demo_inputs:
        for k in ensure_demo_inputs(storage, departement, years[-1]):
            click.echo(f"synthetic\t{k}")
    _print_keys(run_portrait(storage, departement, years, groupements=groupements, force=force))
    for b, a in itertools.pairwise(years):
        _print_keys(run_origin(storage, departement, b, a, groupements=groupements, force=force))
    _print_keys(run_footprint(storage, departement, years, groupements=groupements, force=force))
    _print_keys(run_densification(storage, departement, years, force=force))
    _print_keys(run_renaturation(storage, departement, years, force=force))
    _print_keys(run_tvb(storage, departement, years, groupements=groupements, force=force))
    for year in years:
        _print_keys(run_analyses_tiles(storage, departement, year, force=force))
    _print_keys(run_analyses_rasters(storage, departement, years, force=force))
    if len(years) >= 2:
        _print_keys(run_report(storage, departement, years[-2], years[-1], groupements=groupements, force=force))


@analyse.command("tvb")
@_dep
@_millesimes
@click.option("--cell", type=float, default=50.0, show_default=True, help="Resistance raster and corridor cell (m).")
@click.option("--min-reservoir", type=float, default=100_000.0, show_default=True,
              help="Smallest green reservoir (m²).")
@click.option("--min-water", type=float, default=10_000.0, show_default=True, help="Smallest blue reservoir (m²).")
@_groupements
@_common
def tvb(departement: str, millesimes: tuple[int, ...], cell: float, min_reservoir: float, min_water: float,
        groupements: str | None, root: str | None, force: bool) -> None:
    """Trame verte et bleue: reservoirs and least-cost corridors (GeoParquet), resistance raster (COG),
    fragmentation per territory (effective mesh size, CSV)."""
    from inference_batch.analyses.tvb import TvbParams, run_tvb

    storage = _storage(root)
    _print_keys(run_tvb(storage, departement, _years(storage, departement, millesimes),
                        params=TvbParams(cell, min_reservoir, min_water), groupements=groupements, force=force))
