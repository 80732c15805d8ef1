"""Offline validation of STAC objects against the STAC 1.1.0 schemas and every declared extension.

pystac's own validation downloads extension schemas, which a batch job or CI without network cannot do.
The core schemas come from the installed pystac package, the extension schemas from ``catalog/schemas``;
a ``referencing`` registry resolves every ``$ref`` locally, and an unknown extension URI is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from catalog.stac import EXTENSIONS, STAC_VERSION
from ocsge.errors import OcsgeError

_CORE_NAMES = ("item", "catalog", "collection")
_ITEM_SPEC_PARTS = ("bands", "basics", "common", "data-values", "datetime", "instrument", "licensing", "provider")


class CatalogValidationError(OcsgeError):
    """A STAC object that does not validate; the message names the object and each failing path."""


def _read(package: str, name: str) -> dict[str, Any]:
    return json.loads(resources.files(package).joinpath(name).read_text(encoding="utf-8"))


def _core_uri(kind: str, name: str) -> str:
    return f"https://schemas.stacspec.org/v{STAC_VERSION}/{kind}-spec/json-schema/{name}.json"


@lru_cache(maxsize=1)
def _registry() -> Registry:
    pystac_schemas = "pystac.validation.jsonschemas"
    resources_by_uri: dict[str, dict[str, Any]] = {}
    for name in _CORE_NAMES:
        resources_by_uri[_core_uri(name, name)] = _read(pystac_schemas, f"stac-spec/v{STAC_VERSION}/{name}.json")
    for name in _ITEM_SPEC_PARTS:
        resources_by_uri[_core_uri("item", name)] = _read(pystac_schemas, f"stac-spec/v{STAC_VERSION}/{name}.json")
    for name in ("Feature", "Geometry"):
        resources_by_uri[f"https://geojson.org/schema/{name}.json"] = _read(pystac_schemas, f"geojson/{name}.json")
    for uri, filename in EXTENSIONS.items():
        resources_by_uri[uri] = _read("catalog.schemas", filename)
    return Registry().with_resources(
        (uri, Resource.from_contents(schema, default_specification=DRAFT7))
        for uri, schema in resources_by_uri.items()
    )


@lru_cache(maxsize=32)
def _validator(uri: str) -> Draft7Validator:
    schema = _registry().contents(uri)
    return Draft7Validator(schema, registry=_registry())


def _schema_uris(obj: Mapping[str, Any]) -> list[str]:
    kind = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}.get(str(obj.get("type")))
    if kind is None:
        raise CatalogValidationError(f"{obj.get('id', '?')!r}: not a STAC object (type {obj.get('type')!r})")
    if obj.get("stac_version") != STAC_VERSION:
        raise CatalogValidationError(
            f"{obj.get('id', '?')!r}: stac_version {obj.get('stac_version')!r}, expected {STAC_VERSION}"
        )
    uris = [_core_uri(kind, kind)]
    for ext in obj.get("stac_extensions", []):
        if ext not in EXTENSIONS:
            raise CatalogValidationError(
                f"{obj.get('id', '?')!r}: extension {ext} has no vendored schema (catalog/schemas/); "
                "add it there to validate offline"
            )
        uris.append(ext)
    return uris


def errors(obj: Mapping[str, Any]) -> list[str]:
    """Every validation error of one STAC object, as ``schema: path: message`` lines (empty when valid)."""
    found: list[str] = []
    for uri in _schema_uris(obj):
        for err in _validator(uri).iter_errors(obj):
            path = "/".join(str(p) for p in err.absolute_path) or "(root)"
            found.append(f"{uri.rsplit('/', 3)[-3] if 'stac-extensions' in uri else 'core'}: {path}: {err.message}")
    return found


def validate(obj: Mapping[str, Any]) -> None:
    """Raise :class:`CatalogValidationError` naming the object and its errors when it does not validate."""
    found = errors(obj)
    if found:
        shown = "\n  ".join(found[:10])
        more = f"\n  … and {len(found) - 10} more" if len(found) > 10 else ""
        raise CatalogValidationError(f"STAC {obj.get('type')} {obj.get('id')!r} is invalid:\n  {shown}{more}")


def validate_all(objects: Iterable[Mapping[str, Any]]) -> int:
    """Validate many objects; returns how many, raises on the first invalid one."""
    n = 0
    for obj in objects:
        validate(obj)
        n += 1
    return n
