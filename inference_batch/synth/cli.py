"""``ocsge synth``: generate the synthetic territory (or, with ``--vector-only``, a département-sized pair
of truths for scale tests)."""

from __future__ import annotations

import click

from ocsge.errors import OcsgeError
from ocsge.settings import get_settings


def _millesimes(value: str) -> tuple[int, int]:
    try:
        years = tuple(int(v) for v in value.replace(" ", "").split(","))
    except ValueError:
        raise OcsgeError(f"--millesimes {value!r}: expected two years such as 2021,2024") from None
    if len(years) != 2:
        raise OcsgeError(f"--millesimes {value!r}: expected two years such as 2021,2024")
    return years  # type: ignore[return-value]


def _placement(footprint: str | None, bounds: str | None) -> tuple[float, float, float, float] | None:
    """The Lambert-93 box asked for by ``--footprint`` or ``--bounds`` (not both), else None."""
    if footprint is not None and bounds is not None:
        raise OcsgeError("--footprint and --bounds both place the pair: give one of them")
    if footprint is not None:
        from inference_batch.synth.footprints import footprint as footprint_of

        return footprint_of(footprint)
    if bounds is None:
        return None
    try:
        box = tuple(float(v) for v in bounds.replace(" ", "").split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
        raise OcsgeError(f"--bounds {bounds!r}: expected xmin,ymin,xmax,ymax in Lambert-93 metres, min < max")
    return box  # type: ignore[return-value]


@click.command("synth")
@click.option("--root", default=None, help="Storage root (folder or s3://bucket/prefix); default OCSGE_STORAGE_ROOT.")
@click.option("--departement", default=None,
              help="Synthetic département code (S01…S99); default S01, or S02 with --vector-only so that a "
                   "scale pair never overwrites the territory's truth.")
@click.option("--width-m", type=float, default=2000.0, show_default=True, help="Territory width (m).")
@click.option("--height-m", type=float, default=1500.0, show_default=True, help="Territory height (m).")
@click.option("--seed", type=int, default=None, help="Random seed (default OCSGE_SEED, 42).")
@click.option("--millesimes", default="2021,2024", show_default=True, help="The two millésimes, earlier first.")
@click.option("--resolution", type=float, default=0.2, show_default=True, help="Imagery resolution (m).")
@click.option("--no-imagery", is_flag=True, help="Vectors and deliveries only, no COGs.")
@click.option("--vector-only", is_flag=True, help="Département-sized pair of truths (no imagery, no ancillary).")
@click.option("--polygons", type=int, default=200_000, show_default=True,
              help="With --vector-only: polygons per millésime.")
@click.option("--footprint", default=None,
              help="With --vector-only: lay the pair on the (approximate) bounding box of this real metropolitan "
                   "département, e.g. 77 (inference_batch/synth/footprints.py).")
@click.option("--bounds", default=None,
              help="With --vector-only: lay the pair on this Lambert-93 box, 'xmin,ymin,xmax,ymax' in metres.")
@click.option("--realistic", is_flag=True,
              help="With --vector-only: realistic geometry — tens to hundreds of vertices a polygon (--vertices), "
                   "wiggly boundaries shared exactly by neighbours, islands, and an update with splits, merges "
                   "and moved boundaries (inference_batch/synth/vector_realistic.py).")
@click.option("--vertices", default=None,
              help="With --vector-only: range of vertices per polygon of the realistic geometry, e.g. 20-200 "
                   "(implies --realistic; default 20-200).")
@click.option("--force", is_flag=True, help="Regenerate even if the same territory is already there.")
def synth(root: str | None, departement: str | None, width_m: float, height_m: float, seed: int | None,
          millesimes: str, resolution: float, no_imagery: bool, vector_only: bool, polygons: int,
          footprint: str | None, bounds: str | None, realistic: bool, vertices: str | None,
          force: bool) -> None:
    """Generate a seeded synthetic territory: truth, ancillary, imagery COGs, IGN-like deliveries."""
    from ocsge.storage import open_storage
    from ocsge.territory import departement as get_departement

    if departement is None:
        departement = "S02" if vector_only else "S01"
    dep = get_departement(departement)  # unknown code → error naming it, before anything is written
    if not dep.synthetic:
        raise OcsgeError(f"département {departement!r} is a real one: synthetic territories use S01…S99")
    years = _millesimes(millesimes)
    seed = get_settings().seed if seed is None else seed
    storage = open_storage(root)
    box = _placement(footprint, bounds)
    if box is not None and not vector_only:
        raise OcsgeError("--footprint and --bounds place a --vector-only pair: add --vector-only")
    if (realistic or vertices) and not vector_only:
        raise OcsgeError("--realistic and --vertices shape a --vector-only pair: add --vector-only")
    if realistic and vertices is None:
        from inference_batch.synth.vector_realistic import DEFAULT_VERTICES

        vertices = DEFAULT_VERTICES
    if vector_only:
        from inference_batch.synth.vector_scale import generate_vector_pair

        generate_vector_pair(storage, dep.code, n_polygons=polygons, seed=seed, millesimes=years, force=force,
                             bounds=box, vertices=vertices)
        return
    from inference_batch.synth.generate import generate

    generate(storage, dep.code, width_m=width_m, height_m=height_m, seed=seed, millesimes=years,
             imagery=not no_imagery, resolution=resolution, force=force)
