"""``ocsge serve``: every service in one ASGI server (uvicorn) on this machine."""

from __future__ import annotations

import click


@click.command("serve")
@click.option("--root", default=None, help="Storage root (folder or s3://bucket/prefix); default OCSGE_STORAGE_ROOT.")
@click.option("--host", default=None, help="Interface to listen on (default OCSGE_HOST, 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default OCSGE_PORT, 8000).")
@click.option("--backend", type=click.Choice(["embedded", "pgstac"]), default=None,
              help="Catalogue backend (default OCSGE_CATALOG_BACKEND, embedded).")
@click.option("--pgstac-dsn", default=None, help="PostgreSQL DSN of pgstac (default OCSGE_PGSTAC_DSN).")
@click.option("--request-timeout", default=None, type=click.FloatRange(min=1.0),
              help="Seconds a client has to send a whole request before its connection is closed (default 10).")
@click.option("--limit-concurrency", default=None, type=click.IntRange(min=1),
              help="Open connections or running requests beyond which new requests get 503 (default 512).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1, max=64),
              help="Server processes sharing the port (one per core serves up to that many times the requests).")
def serve(root: str | None, host: str | None, port: int | None, backend: str | None,
          pgstac_dsn: str | None, request_timeout: float | None, limit_concurrency: int | None,
          workers: int) -> None:
    """Serve the STAC API (and the other services) from the published catalogue."""
    import os

    import uvicorn

    from services import server

    # GDAL's block cache is process-wide and defaults to 5 % of the machine's RAM (1.2 GB on 24 GB): a soak
    # saw the server's memory follow it up. Bounded here unless the environment says otherwise.
    os.environ.setdefault("GDAL_CACHEMAX", str(server.GDAL_CACHEMAX_MB))
    server.tune_malloc()  # a flat RSS under load: see services/server.py

    from ocsge.progress import console
    from ocsge.settings import get_settings
    from services.app import AppContext, create_app

    # Command-line choices override the environment in this one settings object, which every service
    # then receives (nothing is passed through os.environ).
    overrides = {name: value for name, value in (("catalog_backend", backend), ("pgstac_dsn", pgstac_dsn)) if value}
    settings = get_settings().model_copy(update=overrides)
    host = host or settings.host
    port = port or settings.port
    base = (settings.public_url or f"http://{host}:{port}").rstrip("/")
    # STAC asset hrefs point at this server's /files route unless a CDN base is configured
    asset_base_url = settings.asset_base_url or f"{base}/files"

    def build_config() -> uvicorn.Config:
        """The application and its server configuration (built in each worker, after the fork)."""
        ctx = AppContext(settings=settings, root=root, asset_base_url=asset_base_url)
        if settings.catalog_backend == "embedded":
            ctx.backend.version()  # load the snapshot now: a missing catalogue is an error at start, not per request
        # Slow clients are cut off, heads and concurrency bounded: see services/server.py for each limit.
        return server.server_config(create_app(ctx), host, port,
                                    request_read_timeout_s=request_timeout or server.REQUEST_READ_TIMEOUT_S,
                                    limit_concurrency=limit_concurrency or server.LIMIT_CONCURRENCY)

    config = build_config() if workers == 1 else None
    storage_root = root if root is not None else settings.storage_root
    console.print(f"serving {storage_root} — Ctrl-C to stop"
                  + (f" ({workers} worker processes)" if workers > 1 else "") + "\n"
                  f"  viewer           {base}/\n"
                  f"  STAC API         {base}/stac/\n"
                  f"  WMTS (KVP)       {base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities\n"
                  f"  WMS 1.3.0        {base}/wms?SERVICE=WMS&REQUEST=GetCapabilities\n"
                  f"  raster layers    {base}/tiles/layers\n"
                  f"  vector datasets  {base}/vector/datasets\n"
                  f"  downloads        {base}/downloads/", soft_wrap=True)
    if config is not None:
        uvicorn.Server(config).run()
    else:
        raise SystemExit(server.run_workers(build_config, host, port, workers))
