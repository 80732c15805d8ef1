"""Keys of the national artifacts: one file for all of France per product and millésime, beside the
per-département ones in the same folder, under the token ``FR`` instead of a ``Dddd`` one:

    pmtiles/occupation/FR/2021/pmtiles_occupation_FR_2021.pmtiles            the national tileset
    pmtiles/occupation/FR/2021/parts/pmtiles_occupation_D077_2021.pmtiles    a département's low zooms

``FR`` is not a département code (``ocsge.territory`` refuses it), so the per-département key parsers
(:func:`ocsge.products.parse_key`, ``catalog.discover``) never take a national file for a département's;
:func:`parse_national_key` is the one way back from a key to (product, millésime).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocsge.errors import OcsgeError, UnknownProductError
from ocsge.products import PRODUCTS, millesime_token, spec
from ocsge.territory import departement

NATIONAL = "FR"
# products that have a national file (the vector tiles; the raster layers have their own national path)
NATIONAL_PRODUCTS = ("occupation_pmtiles", "difference_pmtiles")


def _check(product: str) -> None:
    if product not in NATIONAL_PRODUCTS:
        raise UnknownProductError(f"product {product!r} has no national file (only {', '.join(NATIONAL_PRODUCTS)})")
    if PRODUCTS[product].per_block:
        raise UnknownProductError(f"product {product!r} is per block")


def national_key(product: str, millesime: int | str | tuple[int, int]) -> str:
    """The national file of a product and millésime (or pair of millésimes)."""
    _check(product)
    ps = spec(product)
    mill = millesime_token(millesime)
    return f"{ps.folder}/{NATIONAL}/{mill}/{ps.folder.replace('/', '_')}_{NATIONAL}_{mill}{ps.ext}"


def national_part_key(product: str, departement_code: object, millesime: int | str | tuple[int, int]) -> str:
    """A département's contribution to the national file kept between rebuilds (its generalised low zooms),
    so that republishing one département re-tiles that département only."""
    _check(product)
    ps = spec(product)
    mill = millesime_token(millesime)
    token = departement(departement_code).token
    return f"{ps.folder}/{NATIONAL}/{mill}/parts/{ps.folder.replace('/', '_')}_{token}_{mill}{ps.ext}"


@dataclass(frozen=True)
class NationalKey:
    product: str
    millesime: int | tuple[int, int]

    @property
    def token(self) -> str:
        return millesime_token(self.millesime)


_KEY = re.compile(
    rf"^(?P<folder>.+)/{NATIONAL}/(?P<mill>\d{{4}}(?:-\d{{4}})?)/(?P<stem>[^/]+)_{NATIONAL}_(?P=mill)"
    r"(?P<ext>\.[a-z0-9]+)$"
)


def parse_national_key(key: str) -> NationalKey | None:
    """(product, millésime) of a national file's key, or None for any other key (parts included): only keys
    that :func:`national_key` gives back exactly."""
    m = _KEY.match(key)
    if m is None:
        return None
    text = m["mill"]
    millesime: int | tuple[int, int] = (int(text[:4]), int(text[5:])) if "-" in text else int(text)
    for product in NATIONAL_PRODUCTS:
        if PRODUCTS[product].pair != isinstance(millesime, tuple):
            continue
        try:
            if national_key(product, millesime) == key:
                return NationalKey(product, millesime)
        except OcsgeError:
            continue
    return None
