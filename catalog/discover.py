"""Find the published artifacts in a storage root by listing each product's folder and parsing its keys.

A key is accepted only when ``ocsge.products.product_key`` gives it back from the parsed parts, so stray
files (temporary writes, a file renamed by hand) are never catalogued under a wrong identity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ocsge.errors import OcsgeError
from ocsge.products import PRODUCTS, product_key
from ocsge.storage import Storage
from ocsge.territory import Departement, departement


@dataclass(frozen=True)
class Artifact:
    product: str
    key: str
    departement: Departement
    millesime: int | tuple[int, int]
    block: str | None = None

    @property
    def year(self) -> int:
        """The millésime, or the later one of a pair."""
        return self.millesime[1] if isinstance(self.millesime, tuple) else self.millesime

    @property
    def slot(self) -> tuple[str, int | tuple[int, int]]:
        """What companion artifacts share: the département and the millésime (or pair)."""
        return (self.departement.code, self.millesime)


def _pattern(product: str) -> re.Pattern[str]:
    ps = PRODUCTS[product]
    stem = re.escape(ps.folder.replace("/", "_"))
    mill = r"(?P<mill>\d{4}-\d{4})" if ps.pair else r"(?P<mill>\d{4})"
    block = r"blocks/" if ps.per_block else ""
    suffix = r"_(?P<block>[A-Za-z0-9_-]{1,64})" if ps.per_block else ""
    return re.compile(
        rf"^{re.escape(ps.folder)}/(?P<token>D[0-9A-Z]{{3}})/{mill}/{block}{stem}_(?P=token)_(?P=mill){suffix}"
        rf"{re.escape(ps.ext)}$"
    )


def parse_key(product: str, key: str) -> Artifact | None:
    """The artifact a key names for a product, or None when the key is not one of its canonical keys."""
    m = _pattern(product).match(key)
    if m is None:
        return None
    try:
        dep = departement(m["token"])
        mill: int | tuple[int, int]
        if "-" in m["mill"]:
            first, second = m["mill"].split("-")
            mill = (int(first), int(second))
        else:
            mill = int(m["mill"])
        block = m.groupdict().get("block")
        if product_key(product, dep.code, mill, block=block) != key:
            return None
    except OcsgeError:
        return None
    return Artifact(product, key, dep, mill, block)


def discover(storage: Storage, products: Iterable[str]) -> Iterator[Artifact]:
    """Every canonical artifact of these products under the root, in key order."""
    by_folder: dict[str, list[str]] = {}
    for product in products:
        by_folder.setdefault(PRODUCTS[product].folder, []).append(product)
    for folder, names in sorted(by_folder.items()):
        for obj in storage.list(folder + "/"):
            for product in names:
                artifact = parse_key(product, obj.key)
                if artifact is not None:
                    yield artifact
                    break
