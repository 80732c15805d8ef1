"""The interface every catalogue backend offers (embedded index, pgstac), and how to open one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from catalog.search.request import SearchRequest


@dataclass
class SearchPage:
    items: list[dict[str, Any]]
    matched: int | None  # None when the backend does not count (pgstac without context)
    next_token: str | None = None
    prev_token: str | None = None


class CatalogBackend(Protocol):
    """Read-only access to the published catalogue. Items come back with absolute asset hrefs and
    without links (the API adds its own)."""

    def collections(self) -> list[dict[str, Any]]: ...
    def collection(self, collection_id: str) -> dict[str, Any] | None: ...
    def search(self, request: SearchRequest) -> SearchPage: ...
    def item(self, collection_id: str, item_id: str) -> dict[str, Any] | None: ...
    def version(self) -> str: ...
    def close(self) -> None: ...


def open_backend(
    kind: str | None = None, *, root: str | None = None, dsn: str | None = None, asset_base_url: str | None = None
) -> CatalogBackend:
    """The backend named by the settings (``OCSGE_CATALOG_BACKEND``, ``OCSGE_PGSTAC_DSN``) unless given."""
    from ocsge.settings import get_settings

    settings = get_settings()
    kind = kind or settings.catalog_backend
    if kind == "pgstac":
        from catalog.search.pgstac import PgstacBackend

        dsn = dsn or settings.pgstac_dsn
        if not dsn:
            from ocsge.errors import OcsgeError

            raise OcsgeError("catalog backend pgstac needs a DSN: set OCSGE_PGSTAC_DSN or pass --pgstac-dsn")
        return PgstacBackend(dsn)
    from catalog.search.embedded import EmbeddedBackend
    from ocsge.storage import open_storage

    return EmbeddedBackend(open_storage(root), asset_base_url=asset_base_url)
