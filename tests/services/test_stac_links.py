"""Links are never poisoned by a header: forwarding headers (``Forwarded``, ``X-Forwarded-Host``…) rewrite
no link unless ``OCSGE_TRUST_FORWARDED_HEADERS`` says a proxy that writes them is in front (CloudFront on
AWS), and even then only ``X-Forwarded-Host``/``-Proto`` are read; ``OCSGE_PUBLIC_URL`` wins over all.
Checked on the STAC API and on every service that writes absolute links (WMTS capabilities, vector
TileJSON, downloads), through ``ocsge serve``'s app over the published test territory."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from svc_territory import DEP, LiveServer

from ocsge.settings import Settings, get_settings
from services.urls import public_origin, valid_host

POISON = {"Forwarded": "for=1.2.3.4;host=evil.example;proto=https", "X-Forwarded-Host": "evil.example",
          "X-Forwarded-Proto": "https", "X-Forwarded-Port": "8443", "X-Original-Host": "evil.example"}

# every page that writes absolute links (STAC: landing, collections, search GET/POST, item, items, queryables)
PAGES = ("/stac/", "/stac/collections", "/stac/collections/ocsge-couverture", "/stac/search?limit=2",
         "/stac/collections/ocsge-couverture/items?limit=1", "/stac/queryables",
         "/wmts?SERVICE=WMTS&REQUEST=GetCapabilities", "/wms?SERVICE=WMS&REQUEST=GetCapabilities",
         f"/vector/occupation/{DEP}/2021/tilejson.json", "/downloads/", f"/downloads/{DEP}")


@pytest.fixture
def app_with(tiles_server: LiveServer, territory, monkeypatch):  # type: ignore[no-untyped-def]
    """An ``ocsge serve`` app over the (published) territory with the given settings, as the process's."""
    from services.app import AppContext, create_app

    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        for name in ("OCSGE_PUBLIC_URL", "OCSGE_TRUST_FORWARDED_HEADERS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in overrides.items():
            monkeypatch.setenv(f"OCSGE_{name.upper()}", str(value))
        get_settings.cache_clear()
        client = TestClient(create_app(AppContext(settings=get_settings(), root=str(territory.root))))
        clients.append(client)
        return client.__enter__()

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    get_settings.cache_clear()


def _texts(client: TestClient, headers: dict[str, str]) -> Iterator[tuple[str, str]]:
    for page in PAGES:
        resp = client.get(page, headers=headers)
        assert resp.status_code == 200, (page, resp.text[:300])
        yield page, resp.text
    resp = client.post("/stac/search", json={"limit": 1}, headers=headers)
    assert resp.status_code == 200
    yield "POST /stac/search", resp.text


def test_forwarding_headers_are_ignored_by_default(app_with) -> None:  # type: ignore[no-untyped-def]
    client = app_with()
    for page, text in _texts(client, POISON):
        assert "evil" not in text and "8443" not in text, page
    landing = client.get("/stac/", headers=POISON).json()
    assert {link["href"] for link in landing["links"]} <= {
        "http://testserver/stac/", "http://testserver/stac/collections", "http://testserver/stac/conformance",
        "http://testserver/stac/search", "http://testserver/stac/queryables", "http://testserver/stac/api",
        "http://testserver/stac/api.html"}


def test_a_host_header_that_is_not_a_host_is_not_written(app_with) -> None:  # type: ignore[no-untyped-def]
    client = app_with()
    for host in ("evil.example/<script>", "evil.example@x", "a b", "evil.example:80/x?"):
        body = client.get("/stac/", headers={"Host": host}).text
        assert "evil" not in body and "<script>" not in body and "a b" not in body


def test_trusted_proxy_forwarded_host(app_with) -> None:  # type: ignore[no-untyped-def]
    """Behind CloudFront (trust on): X-Forwarded-Host and -Proto build the links; Forwarded still does not,
    nor a forwarded value that is not a host name."""
    client = app_with(trust_forwarded_headers="1")
    headers = {"X-Forwarded-Host": "ocsge.example.org", "X-Forwarded-Proto": "https",
               "Forwarded": "host=evil.example;proto=http"}
    for page, text in _texts(client, headers):
        assert "evil" not in text, page
        assert "https://ocsge.example.org/" in text or "://" not in text, page  # /downloads/ lists no link
    landing = client.get("/stac/", headers=headers).json()
    assert landing["links"][0]["href"] == "https://ocsge.example.org/stac/"
    only_forwarded = client.get("/stac/", headers={"Forwarded": "host=evil.example"}).json()
    assert only_forwarded["links"][0]["href"] == "http://testserver/stac/"
    bad = client.get("/stac/", headers={"X-Forwarded-Host": "evil.example/x"}).json()
    assert bad["links"][0]["href"] == "http://testserver/stac/"


def test_public_url_wins_over_every_header(app_with) -> None:  # type: ignore[no-untyped-def]
    client = app_with(public_url="https://cdn.example.org", trust_forwarded_headers="1")
    for page, text in _texts(client, {**POISON, "X-Forwarded-Host": "other.example"}):
        assert "evil" not in text and "other.example" not in text, page
    item = client.get("/stac/collections/ocsge-couverture/items?limit=1").json()["features"][0]
    assert item["links"][0]["href"].startswith("https://cdn.example.org/stac/collections/ocsge-couverture/items/")
    tilejson = client.get(f"/vector/occupation/{DEP}/2021/tilejson.json").json()
    assert all(t.startswith("https://cdn.example.org/vector/") for t in tilejson["tiles"])


@pytest.mark.parametrize(("settings", "scope", "headers", "expected"), [
    ({}, {"scheme": "http"}, {"host": "a.example:8000"}, "http://a.example:8000"),
    ({}, {"scheme": "https"}, {"host": "a.example", "x-forwarded-host": "b.example"}, "https://a.example"),
    ({"trust_forwarded_headers": True}, {"scheme": "http"},
     {"host": "api.internal", "x-forwarded-host": "b.example", "x-forwarded-proto": "https"}, "https://b.example"),
    ({"trust_forwarded_headers": True}, {"scheme": "http"},
     {"host": "api.internal", "x-forwarded-host": "evil.example, b.example"}, "http://b.example"),
    ({"trust_forwarded_headers": True}, {"scheme": "http"},
     {"host": "api.internal", "x-forwarded-host": "b.example", "x-forwarded-proto": "gopher"}, "http://b.example"),
    ({"public_url": "https://cdn.example.org/"}, {"scheme": "http"}, {"host": "a.example"},
     "https://cdn.example.org"),
    ({}, {"scheme": "http", "server": ("10.0.0.1", 8000)}, {"host": "bad host"}, "http://10.0.0.1:8000"),
    ({}, {"scheme": "http", "server": ("::1", 80)}, {}, "http://[::1]"),
])
def test_public_origin(settings: dict[str, object], scope: dict[str, object], headers: dict[str, str],
                       expected: str) -> None:
    assert public_origin(scope, headers, Settings(**settings)) == expected  # type: ignore[arg-type]


def test_valid_host() -> None:
    assert valid_host("ocsge.example.org") and valid_host("127.0.0.1:8000") and valid_host("[::1]:8080")
    assert valid_host("stac_api:8000")  # a container name
    for bad in ("", "a/b", "a b", "a@b", "a.example:80/x", "<x>", "a" * 300, "a.example:123456", json.dumps("x")):
        assert not valid_host(bad), bad
