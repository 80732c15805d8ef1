"""Path parameters the apps share, checked before anything reads storage."""

from __future__ import annotations

from fastapi import HTTPException

from ocsge.errors import OcsgeError
from ocsge.territory import departement


def dep_code(dep: str) -> str:
    """A département code from the URL, or 404 (the URL never becomes a path)."""
    try:
        return departement(dep).code
    except OcsgeError as exc:
        raise HTTPException(404, str(exc)) from None
