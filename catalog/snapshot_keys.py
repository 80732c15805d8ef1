"""Where the catalogue snapshot lives in the storage and how its relative hrefs resolve to keys: shared by
the snapshot writer (:mod:`catalog.snapshot`) and the search index it builds (:mod:`catalog.search.item_index`),
which must not import each other."""

from __future__ import annotations

PREFIX = "stac/snapshot/"


def resolve_key(base: str, href: str) -> str | None:
    """Storage key of an href relative to the key prefix ``base`` (None when absolute or outside the root)."""
    if "://" in href or href.startswith("/"):
        return None
    parts = [p for p in base.split("/") if p]
    for part in href.split("/"):
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts) or None
