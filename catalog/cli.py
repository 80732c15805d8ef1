"""``ocsge publish``: describe every artifact under a storage root in STAC and publish the catalogue."""

from __future__ import annotations

import click


@click.command("publish")
@click.option("--root", default=None, help="Storage root (folder or s3://bucket/prefix); default OCSGE_STORAGE_ROOT.")
@click.option("--pgstac-dsn", default=None,
              help="Also load pgstac at this PostgreSQL DSN (default OCSGE_PGSTAC_DSN when the backend is pgstac).")
@click.option("--asset-base-url", default=None,
              help="Public URL of the storage root for asset hrefs loaded into pgstac (e.g. a CloudFront URL).")
@click.option("--verify", is_flag=True,
              help="Only check the published catalogue against the files (re-hash; check that each is complete).")
@click.option("--overviews/--no-overviews", default=True, show_default=True,
              help="Then bring the national overview slabs of the raster layers up to date (only the slabs whose "
                   "COGs changed are redrawn; the same as `ocsge overviews`).")
def publish(root: str | None, pgstac_dsn: str | None, asset_base_url: str | None, verify: bool,
            overviews: bool) -> None:
    """Publish the STAC catalogue: static catalogue, snapshot for the API, optionally pgstac."""
    from rich.markup import escape

    from catalog.publish import publish as run_publish
    from catalog.publish import verify_published
    from catalog.snapshot import PREFIX
    from ocsge.errors import OcsgeError
    from ocsge.progress import console, progress
    from ocsge.settings import get_settings
    from ocsge.storage import open_storage

    settings = get_settings()
    storage = open_storage(root)
    if verify:
        problems = verify_published(storage)
        for problem in problems:
            console.print(f"[red]✗[/] {escape(problem)}")
        if problems:
            raise OcsgeError(f"{len(problems)} published asset(s) do not match their files under {storage.root}")
        console.print(f"[green]✓[/] every published asset under {storage.root} matches its file")
        return
    dsn = pgstac_dsn or (settings.pgstac_dsn if settings.catalog_backend == "pgstac" else None)
    with progress("reading artifacts", None, "files") as advance:
        result = run_publish(storage, pgstac_dsn=dsn, asset_base_url=asset_base_url or settings.asset_base_url,
                             progress=advance)
    for collection, count in sorted(result.per_collection.items()):
        console.print(f"  {collection:<40} {count:>6} items")
    console.print(
        f"[green]published[/] {result.items} items in {result.collections} collections under "
        f"{storage.root}/stac ({result.written} files written, {result.removed} removed; snapshot "
        f"{PREFIX} etag {result.snapshot_etag[:12]})" + (" and into pgstac" if result.pgstac_loaded else "")
    )
    if overviews:  # after the catalogue: the server uses slabs only while they match the COGs it lists
        from catalog.raster_overviews import build_national

        build_national(storage)
