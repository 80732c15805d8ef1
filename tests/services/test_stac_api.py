"""The STAC API over both catalogue backends: core, collections, item search, extensions, bad input."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.app import AppContext, create_app


@pytest.fixture
def client(backend) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    ctx = AppContext()
    ctx.__dict__["backend"] = backend  # the parametrised backend (embedded or pgstac) instead of the settings'
    with TestClient(create_app(ctx)) as c:
        yield c


def _ids(resp) -> list[str]:  # type: ignore[no-untyped-def]
    assert resp.status_code == 200, resp.text
    return [f["id"] for f in resp.json()["features"]]


def test_landing_and_conformance(client: TestClient) -> None:
    landing = client.get("/stac/").json()
    rels = {link["rel"]: link["href"] for link in landing["links"]}
    assert rels["self"] == "http://testserver/stac/"
    assert rels["search"] == "http://testserver/stac/search"
    assert rels["data"] == "http://testserver/stac/collections"
    conforms = set(client.get("/stac/conformance").json()["conformsTo"])
    for needed in ("https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
                   "https://api.stacspec.org/v1.0.0/collections", "https://api.stacspec.org/v1.0.0/ogcapi-features",
                   "https://api.stacspec.org/v1.0.0/item-search#fields",
                   "https://api.stacspec.org/v1.1.0/item-search#sort",
                   "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
                   "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
                   "https://api.stacspec.org/v1.0.0-rc.1/collection-search"):
        assert needed in conforms
    assert not any("transaction" in c for c in conforms)  # read-only
    assert client.get("/healthz").json()["status"] == "ok"


def test_collections_items_and_item(client: TestClient) -> None:
    colls = client.get("/stac/collections").json()
    assert colls["numberMatched"] == 10
    coll = client.get("/stac/collections/ocsge-couverture").json()
    assert coll["license"] == "etalab-2.0"
    assert {link["rel"] for link in coll["links"]} >= {"self", "root", "items", "license"}
    assert sorted(_ids(client.get("/stac/collections/ocsge-couverture/items"))) == [
        "couverture_D032_2019", "couverture_D032_2022", "couverture_D077_2017", "couverture_D077_2021"]
    item = client.get("/stac/collections/ocsge-couverture/items/couverture_D077_2021").json()
    assert item["links"][0] == {"rel": "self", "type": "application/geo+json",
                                "href": "http://testserver/stac/collections/ocsge-couverture/items/couverture_D077_2021"}
    assert item["properties"]["ocsge:departement"] == "77"
    assert client.get("/stac/collections/ocsge-couverture/queryables").json()["properties"]["ocsge:millesime"]


def test_collection_search(client: TestClient) -> None:
    found = client.get("/stac/collections", params={"q": "prédiction"}).json()["collections"]
    assert [c["id"] for c in found] == ["ocsge-prediction"]
    page = client.get("/stac/collections", params={"limit": 3}).json()
    assert len(page["collections"]) == 3 and any(link["rel"] == "next" for link in page["links"])
    assert client.get("/stac/collections", params={"bbox": "-10,10,-9,11"}).json()["collections"] == []


def test_search_get_and_post(client: TestClient) -> None:
    by_dep = _ids(client.get("/stac/search", params={
        "collections": "ocsge-couverture", "filter": "\"ocsge:departement\" = '77'", "filter-lang": "cql2-text"}))
    assert sorted(by_dep) == ["couverture_D077_2017", "couverture_D077_2021"]
    assert _ids(client.get("/stac/search", params={"collections": "ocsge-couverture", "bbox": "2.4,48.4,2.8,48.6",
                                                   "datetime": "2021-01-01T00:00:00Z/2021-12-31T23:59:59Z"})) == [
        "couverture_D077_2021"]
    post = client.post("/stac/search", json={
        "collections": ["ocsge-usage"], "intersects": {"type": "Point", "coordinates": [0.45, 43.63]},
        "filter": {"op": "=", "args": [{"property": "ocsge:millesime"}, 2019]}, "filter-lang": "cql2-json",
        "sortby": [{"field": "id", "direction": "desc"}], "fields": {"include": ["properties.ocsge:millesime"]}})
    assert _ids(post) == ["usage_D032_2019"]
    assert post.json()["features"][0]["properties"] == {"ocsge:millesime": 2019}
    assert _ids(client.get("/stac/search", params={"ids": "usage_D077_2017,archives_D032_2019"})) == [
        "archives_D032_2019", "usage_D077_2017"]  # datetime descending


def test_next_links_walk_every_item(client: TestClient) -> None:
    seen: list[str] = []
    url, body = "/stac/search?limit=8", None
    for _ in range(10):
        resp = client.post("/stac/search", json=body) if body is not None else client.get(url)
        seen += _ids(resp)
        nxt = next((link for link in resp.json()["links"] if link["rel"] == "next"), None)
        if nxt is None:
            break
        if nxt.get("method") == "POST":
            body = {**body, **nxt["body"]} if nxt.get("merge") else nxt["body"]
        else:
            url = nxt["href"].removeprefix("http://testserver")
    assert len(seen) == 34 == len(set(seen))
    seen_post: list[str] = []
    body = {"limit": 10}
    for _ in range(10):
        resp = client.post("/stac/search", json=body)
        seen_post += _ids(resp)
        nxt = next((link for link in resp.json()["links"] if link["rel"] == "next"), None)
        if nxt is None:
            break
        assert nxt["method"] == "POST" and nxt["merge"] is True
        assert set(nxt["body"]) == {"token"}  # the request body is never echoed back, only a token
        body = {**body, **nxt["body"]}
    assert seen_post == seen
    # a token is bound to its search: replayed with another one, it is refused (not silently misapplied)
    token = body["token"]
    replay = client.post("/stac/search", json={"limit": 10, "collections": ["ocsge-usage"], "token": token})
    assert replay.status_code == 400 and "token" in replay.json()["description"]


def test_what_stac_api_validator_found(client: TestClient) -> None:
    """Each defect stac-api-validator and pystac-client reported, as the request that showed it."""
    landing = client.get("/stac/").json()
    assert landing["stac_version"] == "1.1.0"
    links = {link["rel"]: link for link in landing["links"]}
    assert links["service-desc"]["href"] == "http://testserver/stac/api"  # not /stac/stac/api
    assert links["service-doc"]["href"] == "http://testserver/stac/api.html"
    desc = client.get("/stac/api", headers={"Accept": links["service-desc"]["type"]})
    assert desc.status_code == 200 and desc.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    assert client.get("/stac/api.html").status_code == 200
    bare = client.get("/stac", follow_redirects=False)
    assert bare.status_code == 308 and bare.headers["location"] == "/stac/"
    assert client.get("/stac").json()["id"] == "ocsge"
    conforms = client.get("/stac/conformance").json()["conformsTo"]
    assert {"https://api.stacspec.org/v1.0.0/item-search#sort",
            "https://api.stacspec.org/v1.1.0/item-search#sort"} <= set(conforms)  # pystac-client 0.9.1 and 1.1
    # datetime filters with interval items (datetime: null) among the candidates
    for op in ("=", "<>", "<", "<=", ">", ">="):
        text = f"datetime {op} TIMESTAMP('2021-04-08T04:39:23Z')"
        assert client.get("/stac/search", params={"filter": text, "filter-lang": "cql2-text"}).status_code == 200
        body = {"filter": {"op": op, "args": [{"property": "datetime"}, {"timestamp": "2021-04-08T04:39:23Z"}]}}
        assert client.post("/stac/search", json=body).status_code == 200
    # a limit above the maximum is the maximum
    for resp in (client.get("/stac/search", params={"limit": 100000}), client.post("/stac/search",
                                                                                  json={"limit": 10**6})):
        assert resp.status_code == 200 and resp.json()["numberReturned"] == 34
    # nested includes of the fields extension
    nested = client.get("/stac/search", params={"fields": "-properties,+properties.ocsge:departement",
                                                "collections": "ocsge-couverture", "limit": 1}).json()
    assert nested["features"][0]["properties"] == {"ocsge:departement": nested["features"][0]["properties"][
        "ocsge:departement"]}
    # POST with a CQL2 text filter, and collections as one string
    post = client.post("/stac/search", json={"filter": "\"ocsge:departement\" = '77'", "filter-lang": "cql2-text",
                                            "collections": "ocsge-couverture"})
    assert sorted(_ids(post)) == ["couverture_D077_2017", "couverture_D077_2021"]
    # every collection by default, pages with next/prev links when asked
    everything = client.get("/stac/collections").json()
    assert everything["numberReturned"] == everything["numberMatched"] == len(everything["collections"]) == 10
    assert not [link for link in everything["links"] if link["rel"] == "next"]
    seen, url = [], "/stac/collections?limit=4"
    while url:
        page = client.get(url).json()
        seen += [c["id"] for c in page["collections"]]
        url = next((link["href"].removeprefix("http://testserver") for link in page["links"]
                    if link["rel"] == "next"), None)
    assert seen == [c["id"] for c in everything["collections"]]
    assert client.get("/stac/collections/nope/queryables").status_code == 404


LEAKS = ("Traceback", "psycopg", "asyncpg", "SELECT", "pgstac.", "/work/", "File \"")


@pytest.mark.parametrize(("method", "url", "body", "status", "says"), [
    ("GET", "/stac/search?bbox=1,2,3", None, 400, "bbox"),
    ("GET", "/stac/search?bbox=a,b,c,d", None, 400, "bbox"),
    ("GET", "/stac/search?datetime=yesterday", None, 400, "datetime"),
    ("GET", "/stac/search?datetime=2021-01-01T00:00:00Z/2020-01-01T00:00:00Z", None, 400, "datetime"),
    ("GET", "/stac/search?collections=nope", None, 400, "nope"),
    ("GET", "/stac/search?filter=ocsge%3Adepartement%20%3D", None, 400, "CQL2"),
    ("GET", "/stac/search?filter=%7B%22op%22%3A", None, 400, "CQL2"),
    ("GET", "/stac/search?limit=-1", None, 400, "limit"),
    ("GET", "/stac/search?token=garbage", None, 400, "token"),
    ("GET", "/stac/search?intersects=%7Bnot%20json", None, 400, "intersects"),
    ("POST", "/stac/search", {"bbox": [0, 0, 1]}, 400, "bbox"),
    ("POST", "/stac/search", {"limit": 0}, 400, "limit"),
    ("POST", "/stac/search", {"filter": "ocsge:departement = ", "filter-lang": "cql2-text"}, 400, "CQL2"),
    ("POST", "/stac/search", {"filter": {"op": "=", "args": [{"property": "id"}, "x"]}, "filter-lang": "cql2-text"},
     400, "filter-lang"),
    ("POST", "/stac/search", {"fields": None}, 400, "fields"),
    ("POST", "/stac/search", [1, 2], 400, "object"),
    ("POST", "/stac/search", "x", 400, "object"),
    ("POST", "/stac/search", {"token": "garbage"}, 400, "token"),
    ("POST", "/stac/search", {"filter": {"op": "nonsense", "args": []}}, 400, ""),
    ("POST", "/stac/search", {"intersects": {"type": "Polygon", "coordinates": [[1, 2]]}}, 400, "intersects"),
    ("POST", "/stac/search", {"filter": {"op": "=", "args": [{"property": "x\"; DROP TABLE items; --"}, 1]}},
     200, ""),
    ("GET", "/stac/collections/nope", None, 404, "nope"),
    ("GET", "/stac/collections/nope/items", None, 404, "nope"),
    ("GET", "/stac/collections/ocsge-couverture/items/nope", None, 404, "nope"),
    ("GET", "/stac/collections?bbox=1,2", None, 400, "bbox"),
])
def test_bad_input_is_a_4xx_with_a_message(client: TestClient, method: str, url: str, body: object,
                                           status: int, says: str) -> None:
    resp = client.request(method, url, json=body)
    if status == 200 and resp.status_code == 400:  # pgstac may refuse a hostile property name: also fine
        status = 400
    assert resp.status_code == status, resp.text
    if status >= 400:
        doc = resp.json()
        assert set(doc) == {"code", "description"}
        assert says.lower() in doc["description"].lower()
    assert not any(leak in resp.text for leak in LEAKS), resp.text
    assert client.get("/stac/search?limit=1").status_code == 200  # and the catalogue is intact
