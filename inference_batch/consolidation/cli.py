"""``ocsge consolidation``: open a window from the command line, and export its results.

    ocsge consolidation open --departement 77 --millesime 2024 --previous 2021 --closes 2027-06-30
    ocsge consolidation export --departement 77 --millesime 2024      # errors layer + corrected millésime
    ocsge consolidation export --departement 77 --millesime 2024 --errors-only
    ocsge products --departement 77                                    # then derive everything from it

The store is ``OCSGE_CONSOLIDATION_DSN`` (PostgreSQL) if set, else ``{root}/consolidation/consolidation.sqlite``.
"""

from __future__ import annotations

from datetime import date

import click

from ocsge.progress import console

root_option = click.option(
    "--root", default=None, help="Storage root (folder or s3://bucket/prefix); default OCSGE_STORAGE_ROOT."
)
dep_option = click.option("--departement", "-d", required=True, help="Département code (77, 2A, S01…).")
year_option = click.option("--millesime", "-m", required=True, type=int, help="The new millésime of the window.")
dsn_option = click.option(
    "--dsn",
    default=None,
    help="PostgreSQL DSN of the store (default OCSGE_CONSOLIDATION_DSN, else SQLite under the root).",
)


def _open(root: str | None, dsn: str | None):  # type: ignore[no-untyped-def]
    import os

    from ocsge.consolidation.store import open_store
    from ocsge.settings import get_settings
    from ocsge.storage import open_storage

    storage = open_storage(root or get_settings().storage_root)
    return storage, open_store(dsn or os.environ.get("OCSGE_CONSOLIDATION_DSN") or None, storage.root)


@click.group("consolidation")
def consolidation() -> None:
    """Consolidation windows: photo-interpretation of the change cells, contributions, corrected millésime."""


@consolidation.command("open")
@dep_option
@year_option
@click.option("--previous", "previous", required=True, type=int, help="The previous (controlled) millésime.")
@click.option("--closes", required=True, type=click.DateTime(formats=["%Y-%m-%d"]), help="Last day (YYYY-MM-DD).")
@root_option
@dsn_option
def open_cmd(
    departement: str, millesime: int, previous: int, closes: object, root: str | None, dsn: str | None
) -> None:
    """Open a window: one task per flagged 65 m cell of the change grid (admin's verb, as POST /windows)."""
    from ocsge.consolidation.model import NotFound
    from ocsge.consolidation.store import window_id
    from ocsge.consolidation.windows import open_window
    from ocsge.territory import departement as find_departement

    storage, store = _open(root, dsn)
    day: date = closes.date()  # type: ignore[attr-defined]
    try:  # a rerun finds the window open and leaves it as it is (its tasks may be under way)
        window = store.get_window(window_id(find_departement(departement).code, millesime))
        console.print(f"window {window.id} is already open until {window.closes}: {window.tasks} tasks")
        return
    except NotFound:
        pass
    window = open_window(store, storage, departement, millesime, previous, day, "cli")
    console.print(
        f"window {window.id} open until {window.closes}: {window.tasks} tasks, {window.polygons} "
        f"polygons to review (grid {window.grid_key})"
    )


@consolidation.command("export")
@dep_option
@year_option
@click.option("--errors-only", is_flag=True, help="Only the errors layer (PATCH_CORR GeoPackage), no new millésime.")
@click.option("--force", is_flag=True, help="Ingest again even if the delivery is unchanged.")
@root_option
@dsn_option
def export(departement: str, millesime: int, errors_only: bool, force: bool, root: str | None, dsn: str | None) -> None:
    """Errors layer of the previous millésime and the corrected millésime, ingested like a delivery."""
    from inference_batch.consolidation.export import export_window

    storage, store = _open(root, dsn)
    result = export_window(storage, store, departement, millesime, errors_only=errors_only, force=force)
    console.print(f"errors layer   {result.errors_key} ({result.corrections} corrected parts)")
    if result.delivery_key:
        console.print(f"delivery       {result.delivery_key}")
        console.print(f"provenance     {result.provenance}")
        for role, k in result.ingested.items():
            console.print(f"  {role:<16} {k}")
        console.print(f"next: ocsge products --departement {departement}  (then ocsge publish)")
    else:
        console.print(
            f"next: ocsge corrections --departement {departement} --corrections {storage.url(result.errors_key)}"
        )
