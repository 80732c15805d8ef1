"""The interface every catalogue backend offers (embedded index, pgstac); :mod:`catalog.search.backends` opens one."""

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


@dataclass
class EncodedPage:
    """A page of item templates (:func:`catalog.search.item_index.template`) that the API completes in bytes:
    each item is (collection, id, template JSON); asset hrefs that resolve to a storage key are
    ``asset_base`` + key. A backend that offers ``search_encoded`` may answer None (then ``search``)."""

    items: list[tuple[str, str, bytes]]
    matched: int | None
    next_token: str | None = None
    prev_token: str | None = None
    asset_base: str = ""


class CatalogBackend(Protocol):
    """Read-only access to the published catalogue. Items come back with absolute asset hrefs and
    without links (the API adds its own)."""

    def collections(self) -> list[dict[str, Any]]: ...
    def collection(self, collection_id: str) -> dict[str, Any] | None: ...
    def search(self, request: SearchRequest) -> SearchPage: ...
    def item(self, collection_id: str, item_id: str) -> dict[str, Any] | None: ...
    def version(self) -> str: ...
    def close(self) -> None: ...

