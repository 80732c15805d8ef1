"""The all-in-one ASGI app (``ocsge serve``): each service is a sub-app mounted under its path.

Adding a service is one line in :data:`MOUNTS`: a path and a factory that builds the sub-app from the
shared :class:`AppContext` (settings, storage root, the catalogue backend every service searches).
Sub-app lifespans are run by this app, since Starlette does not run the lifespan of mounted apps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property

from fastapi import FastAPI
from starlette.types import ASGIApp

from catalog.search.backends import open_backend
from catalog.search.base import CatalogBackend
from ocsge import __version__
from ocsge.settings import Settings, get_settings
from ocsge.storage import Storage, open_storage
from services.security import SecurityHeadersMiddleware
from services.urls import add_trailing_slash


@dataclass
class AppContext:
    """What the services share: one settings object, one storage root, one catalogue backend."""

    settings: Settings = field(default_factory=get_settings)
    root: str | None = None  # storage root; default OCSGE_STORAGE_ROOT
    asset_base_url: str | None = None  # public base of the root for STAC asset hrefs

    @cached_property
    def storage(self) -> Storage:
        return open_storage(self.root if self.root is not None else self.settings.storage_root)

    @cached_property
    def backend(self) -> CatalogBackend:
        return open_backend(root=self.storage.root, asset_base_url=self.asset_base_url, settings=self.settings)


def _stac(ctx: AppContext) -> ASGIApp:
    from services.stac.app import create_stac_app

    return create_stac_app(ctx.backend, ctx.settings)


def _services(ctx: AppContext) -> ASGIApp:
    from services.catalog_finder import CatalogAssetFinder
    from services.site import create_services_app

    return create_services_app(CatalogAssetFinder(ctx.backend, ctx.storage))


def _consolidation(ctx: AppContext) -> ASGIApp:
    from services.consolidation.app import create_app_for_storage

    return create_app_for_storage(ctx.storage)


@dataclass(frozen=True)
class Mount:
    path: str
    factory: Callable[[AppContext], ASGIApp]


MOUNTS: tuple[Mount, ...] = (
    Mount("/stac", _stac),
    Mount("/consolidation", _consolidation),  # the write side: photo-interpretation, contributions
    Mount("", _services),  # tiles, WMTS/WMS, vector, downloads, stats, and the viewer at / (last: catch-all)
)


def create_app(ctx: AppContext | None = None, mounts: tuple[Mount, ...] = MOUNTS) -> FastAPI:
    ctx = ctx or AppContext()
    subs = [(m.path, m.factory(ctx)) for m in mounts]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for _, sub in subs:
                router = getattr(sub, "router", None)
                if router is not None and getattr(router, "lifespan_context", None) is not None:
                    await stack.enter_async_context(router.lifespan_context(sub))
            yield

    app = FastAPI(title="OCS GE cloud", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.context = ctx

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for path, sub in subs:
        if path:  # the bare mount path ("/stac", what people type) redirects to the service's root
            app.add_route(path, add_trailing_slash, include_in_schema=False)
        app.mount(path, sub)
    app.add_middleware(SecurityHeadersMiddleware, public_url=ctx.settings.public_url)  # every service, once
    return app
