"""stac-api-validator (the ecosystem's judge of STAC APIs, pinned in the dev extra) against ``ocsge serve``'s
app on 127.0.0.1, offline, for every conformance class the API declares.

The validator (through stac-validator, stac-check and pystac) fetches the JSON schemas of STAC and of every
extension an object declares. Here none of that leaves the machine: each schema URL is answered from a
copy already in the repository's environment — the STAC 1.1.0 core and GeoJSON schemas shipped in the
pinned ``pystac`` package, the extension schemas vendored in ``catalog/schemas`` (the ones publishing
validates against) — by patching the two HTTP stacks the validators use (urllib3, under ``requests`` and
pystac; ``urllib.request``, used by stac-validator to check links). Any other non-loopback URL gets a
connection error at once; the test fails if one of them was a schema (a new extension without a vendored
schema), so the run can never depend on the network.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import urllib.error
import urllib.request
import urllib.response
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from svc_territory import LiveServer

LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# conformance class URI (as declared) -> the stac-api-validator class that checks it
VALIDATED = (
    (re.compile(r"^https://api\.stacspec\.org/v1\.[01]\.\d+(-[\w.]+)?/core$"), "core"),
    (re.compile(r"^https://api\.stacspec\.org/v1\.[01]\.\d+(-[\w.]+)?/collections$"), "collections"),
    (re.compile(r"^https://api\.stacspec\.org/v1\.[01]\.\d+(-[\w.]+)?/ogcapi-features$"), "features"),
    (re.compile(r"^https://api\.stacspec\.org/v1\.[01]\.\d+(-[\w.]+)?/item-search$"), "item-search"),
    (re.compile(r"^https://api\.stacspec\.org/v1\.[01]\.\d+(-[\w.]+)?/item-search#fields$"), "item-search#fields"),
    (re.compile(r"^https://api\.stacspec\.org/v1\.[01]\.\d+(-[\w.]+)?/item-search#sort$"), "item-search#sort"),
    (re.compile(r"^https://api\.stacspec\.org/v1\.[01]\.\d+(-[\w.]+)?/item-search#filter$"), "item-search#filter"),
    (re.compile(r"^https://api\.stacspec\.org/v1\.[01]\.\d+(-[\w.]+)?/ogcapi-features#fields$"), "features#fields"),
    (re.compile(r"^https://api\.stacspec\.org/v1\.[01]\.\d+(-[\w.]+)?/ogcapi-features#sort$"), "features#sort"),
    (re.compile(r"^http://www\.opengis\.net/spec/ogcapi-features-3/1\.0/conf/features-filter$"), "features#filter"),
)
# declared STAC API classes stac-api-validator 0.6.8 has no check for (each one listed on purpose)
NOT_CHECKED_BY_THE_VALIDATOR = (
    re.compile(r"^https://api\.stacspec\.org/v1\.0\.0-rc\.1/collection-search(#free-text)?$"),
)


def schema_files() -> dict[str, Path]:
    """Schema URL -> local copy, for every schema the validators may fetch."""
    import jsonschema_specifications

    from catalog.stac import EXTENSIONS

    out: dict[str, Path] = {}
    pystac_dir = Path(str(resources.files("pystac.validation.jsonschemas")))
    for f in (pystac_dir / "stac-spec" / "v1.1.0").glob("*.json"):
        kind = f.stem if f.stem in ("catalog", "collection") else "item"
        out[f"https://schemas.stacspec.org/v1.1.0/{kind}-spec/json-schema/{f.name}"] = f
    for f in (pystac_dir / "geojson").glob("*.json"):
        out[f"https://geojson.org/schema/{f.name}"] = f
    catalog_schemas = Path(str(resources.files("catalog.schemas")))
    for uri, name in EXTENSIONS.items():
        out[uri] = catalog_schemas / name
    draft7 = Path(jsonschema_specifications.__file__).parent / "schemas" / "draft7" / "metaschema.json"
    out["http://json-schema.org/draft-07/schema"] = draft7
    return {url.rstrip("#"): path for url, path in out.items()}


class OfflineWeb:
    """What the patched HTTP stacks answered: schemas served from disk, other URLs refused."""

    def __init__(self) -> None:
        self.files = schema_files()
        self.served: set[str] = set()
        self.refused: set[str] = set()

    def get(self, url: str) -> bytes | None:
        key = url.split("#", 1)[0]
        path = self.files.get(key)
        if path is None:
            self.refused.add(url)
            return None
        self.served.add(key)
        return path.read_bytes()


@contextlib.contextmanager
def offline_schemas() -> Iterator[OfflineWeb]:
    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.response import HTTPResponse

    web = OfflineWeb()
    original = HTTPConnectionPool.urlopen

    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self.host in LOOPBACK:
            return original(self, method, url, *args, **kwargs)
        full = url if "://" in url else f"{self.scheme}://{self.host}{url}"
        data = web.get(full)
        if data is None:
            from urllib3.exceptions import NewConnectionError

            raise NewConnectionError(None, f"offline test: {full} is not reachable")  # type: ignore[arg-type]
        return HTTPResponse(body=io.BytesIO(data), headers={"Content-Type": "application/json"}, status=200,
                            reason="OK", preload_content=kwargs.get("preload_content", True),
                            decode_content=kwargs.get("decode_content", True), request_url=full)

    class LocalSchemas(urllib.request.BaseHandler):
        handler_order = 100  # before the real http/https handlers

        def _open(self, req: urllib.request.Request) -> Any:
            if urlsplit(req.full_url).hostname in LOOPBACK:
                return None  # the next handler (the real one) takes it
            data = web.get(req.full_url)
            if data is None:
                raise urllib.error.URLError(f"offline test: {req.full_url} is not reachable")
            return urllib.response.addinfourl(io.BytesIO(data), {"Content-Type": "application/json"},  # type: ignore[arg-type]
                                              req.full_url, 200)

        http_open = https_open = _open

    previous = urllib.request._opener  # type: ignore[attr-defined]
    HTTPConnectionPool.urlopen = urlopen  # type: ignore[method-assign]
    urllib.request.install_opener(urllib.request.build_opener(LocalSchemas()))
    try:
        yield web
    finally:
        HTTPConnectionPool.urlopen = original  # type: ignore[method-assign]
        urllib.request._opener = previous  # type: ignore[attr-defined]


def validator_classes(conforms_to: list[str]) -> list[str]:
    """The validator classes for what the API declares; a declared STAC class neither checked nor listed
    in :data:`NOT_CHECKED_BY_THE_VALIDATOR` fails the test (a new declaration needs a decision)."""
    classes: list[str] = []
    for uri in conforms_to:
        found = [name for pattern, name in VALIDATED if pattern.match(uri)]
        if found:
            classes += [c for c in found if c not in classes]
        elif uri.startswith("https://api.stacspec.org/"):
            assert any(p.match(uri) for p in NOT_CHECKED_BY_THE_VALIDATOR), f"{uri}: no validator class mapped"
    if "item-search#filter" in classes:
        classes.append("filter")
    return classes


def run_validator(root_url: str, collection: str) -> tuple[list[str], list[str], OfflineWeb]:
    from stac_api_validator.validations import QueryConfig, validate_api

    with offline_schemas() as web:
        conforms_to = requests.get(f"{root_url}conformance", timeout=30).json()["conformsTo"]
        classes = validator_classes(conforms_to)
        assert {"core", "collections", "features", "item-search", "item-search#filter", "item-search#fields",
                "item-search#sort"} <= set(classes)
        west, south, east, north = requests.get(f"{root_url}collections/{collection}", timeout=30).json()[
            "extent"]["spatial"]["bbox"][0]
        geometry = {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                        [west, north], [west, south]]]}
        warnings, errors = validate_api(
            root_url=root_url, ccs_to_validate=classes, collection=collection, geometry=json.dumps(geometry),
            auth_bearer_token=None, auth_query_parameter=None,
            fields_nested_property="properties.ocsge:departement", validate_pagination=True,
            query_config=QueryConfig(*[None] * 13), transaction_collection=None, headers={},
            open_assets_urls=False,
        )
    return list(warnings), list(errors), web


def _check(root_url: str, collection: str) -> None:
    _warnings, errors, web = run_validator(root_url, collection)
    assert errors == [], "\n".join(errors)
    # every schema was answered locally, and no schema was ever asked of the network
    assert web.served >= {"https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json",
                          "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json"}
    assert not [u for u in web.refused if u.endswith(".json") or "schema" in u], sorted(web.refused)


@pytest.mark.timeout(300)
def test_stac_api_validator_on_the_served_territory(tiles_server: LiveServer) -> None:
    """``ocsge serve`` over the published test territory, as real clients reach it."""
    _check(f"{tiles_server.url}/stac/", "ocsge-couverture")


@pytest.fixture
def sample_server(backend) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    from services.app import AppContext, create_app

    ctx = AppContext()
    ctx.__dict__["backend"] = backend  # the parametrised backend (embedded or pgstac)
    with LiveServer(create_app(ctx)) as server:
        yield server


@pytest.mark.timeout(300)
def test_stac_api_validator_on_both_backends(sample_server: LiveServer) -> None:
    """The sample catalogue (interval items with ``datetime: null`` among them) on the embedded index and on
    pgstac: the same conformance on both."""
    _check(f"{sample_server.url}/stac/", "ocsge-couverture")
