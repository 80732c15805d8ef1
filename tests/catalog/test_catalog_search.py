"""Conformance of the catalogue backends: the same searches give the same answers on the embedded index
and on pgstac (a real PostgreSQL + PostGIS)."""

from __future__ import annotations

import pytest

from catalog.search.request import InvalidSearch, SearchRequest, UnknownCollection, parse_filter

MELUN = (2.4, 48.4, 2.8, 48.6)
AUCH = (0.3, 43.5, 0.6, 43.8)


def ids(backend, **kwargs) -> list[str]:  # type: ignore[no-untyped-def]
    return [it["id"] for it in backend.search(SearchRequest(limit=1000, **kwargs)).items]


def test_everything_in_the_default_order(backend) -> None:  # type: ignore[no-untyped-def]
    found = ids(backend)
    assert len(found) == 34 == len(set(found))
    # pgstac's default order: datetime (or start_datetime) descending, then id descending
    assert found[:3] == ["prediction_D077_2024_r000c001", "prediction_D077_2024_r000c000", "usage_D032_2022"]


def test_collections_ids_and_items(backend) -> None:  # type: ignore[no-untyped-def]
    assert sorted(ids(backend, collections=["ocsge-couverture"])) == [
        "couverture_D032_2019", "couverture_D032_2022", "couverture_D077_2017", "couverture_D077_2021"]
    assert ids(backend, ids=["usage_D077_2017", "nope"]) == ["usage_D077_2017"]
    item = backend.item("ocsge-usage", "usage_D077_2017")
    assert item["id"] == "usage_D077_2017" and item["assets"]["data"]["href"].endswith(
        "usage/D077/2017/usage_D077_2017.tif")
    assert backend.item("ocsge-usage", "nope") is None
    assert {c["id"] for c in backend.collections()} >= {"ocsge-couverture", "ocsge-prediction"}
    assert backend.collection("ocsge-couverture")["license"] == "etalab-2.0"
    assert backend.collection("nope") is None


def test_spatial_and_temporal(backend) -> None:  # type: ignore[no-untyped-def]
    melun = ids(backend, bbox=MELUN)
    auch = ids(backend, bbox=AUCH)
    assert melun and auch and not set(melun) & set(auch)
    assert all("D077" in i for i in melun) and all("D032" in i for i in auch)
    point = {"type": "Point", "coordinates": [2.68, 48.52]}  # inside the second prediction block only
    assert ids(backend, intersects=point, collections=["ocsge-prediction"]) == ["prediction_D077_2024_r000c001"]
    in_2021 = ids(backend, datetime="2021-06-01T00:00:00Z")
    assert in_2021 and all(i.endswith("2021") or i.endswith(("2017-2021", "2019-2022")) for i in in_2021)
    assert "difference_D077_2017-2021" in in_2021  # the difference spans 2017–2021
    open_end = ids(backend, datetime="2022-01-01T00:00:00Z/..")
    assert set(open_end) == set(ids(backend, datetime="2022-01-01T00:00:00Z/2030-01-01T00:00:00Z"))
    assert ids(backend, datetime="../2016-12-31T00:00:00Z") == []


@pytest.mark.parametrize(("cql2", "expected"), [
    ("\"ocsge:departement\" = '32' AND \"ocsge:millesime\" = 2019", 7),
    ("\"ocsge:millesime\" IN (2017, 2019)", 14),
    ("\"ocsge:millesime\" >= 2022", 11),
    ("\"ocsge:source\" <> 'official'", 2),
    ("NOT (\"ocsge:departement\" = '77') AND \"ocsge:millesime\" BETWEEN 2019 AND 2020", 7),
    ("\"ocsge:block\" IS NULL AND \"ocsge:departement\" = '77'", 16),
    ("title LIKE '%Gers%' AND \"ocsge:product\" = 'couverture_cog'", 2),
    ("S_INTERSECTS(geometry, POINT(0.45 43.63)) AND \"ocsge:millesime\" = 2022", 9),
    ("\"ocsge:millesime\" = 2017 OR \"ocsge:block\" = 'r000c000'", 8),
    ("collection = 'ocsge-archives'", 4),
])
def test_cql2_filters(backend, cql2: str, expected: int) -> None:  # type: ignore[no-untyped-def]
    assert len(ids(backend, filter=parse_filter(cql2))) == expected


def test_same_answers_on_both_backends(sample_root: str, pgstac_dsn: str) -> None:
    from catalog.search.embedded import EmbeddedBackend
    from catalog.search.pgstac import PgstacBackend
    from ocsge.storage import open_storage

    embedded, pg = EmbeddedBackend(open_storage(sample_root)), PgstacBackend(pgstac_dsn)
    try:
        for req in (dict(), dict(bbox=MELUN), dict(filter=parse_filter("\"ocsge:millesime\" = 2021")),
                    dict(collections=["ocsge-occupation", "ocsge-usage"], datetime="2019-01-01T00:00:00Z/..")):
            assert ids(embedded, **req) == ids(pg, **req), req
    finally:
        pg.close()


def test_sort_fields_and_paging(backend) -> None:  # type: ignore[no-untyped-def]
    page = backend.search(SearchRequest(collections=["ocsge-couverture"], sortby=[("ocsge:millesime", "asc")],
                                        limit=10))
    years = [it["properties"]["ocsge:millesime"] for it in page.items]
    assert years == sorted(years) and years[0] == 2017
    page = backend.search(SearchRequest(collections=["ocsge-couverture"], sortby=[("id", "desc")], limit=10))
    assert [it["id"] for it in page.items] == sorted((it["id"] for it in page.items), reverse=True)

    slim = backend.search(SearchRequest(ids=["usage_D077_2017"], include={"properties.ocsge:millesime"})).items[0]
    assert slim["properties"] == {"ocsge:millesime": 2017} and "assets" not in slim and slim["id"]
    no_assets = backend.search(SearchRequest(ids=["usage_D077_2017"], exclude={"assets"})).items[0]
    assert "assets" not in no_assets and "ocsge:campaign" in no_assets["properties"]

    seen, token = [], None
    for _ in range(20):
        page = backend.search(SearchRequest(limit=7, token=token))
        seen += [it["id"] for it in page.items]
        token = page.next_token
        if not token:
            break
    assert len(seen) == 34 == len(set(seen))
    assert seen == ids(backend)


def test_bad_requests(backend) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownCollection, match="nope"):
        backend.search(SearchRequest(collections=["nope"]))
    with pytest.raises(InvalidSearch, match="over the maximum"):
        SearchRequest(limit=5000)
    with pytest.raises(InvalidSearch, match="CQL2"):
        parse_filter("ocsge:departement = ")
    with pytest.raises(InvalidSearch, match="bbox"):
        SearchRequest(bbox=(10, 50, 0, 40))
    with pytest.raises(InvalidSearch, match="RFC 3339"):
        SearchRequest(datetime="yesterday")


def test_sql_injection_through_a_filter_is_inert(backend) -> None:  # type: ignore[no-untyped-def]
    # a literal that looks like SQL is just a string that matches nothing
    hostile = "77'; DROP TABLE pgstac.items; --"
    assert ids(backend, filter={"op": "=", "args": [{"property": "ocsge:departement"}, hostile]}) == []
    # a property name that looks like SQL is refused or matches nothing, never executed
    try:
        found = ids(backend, filter={"op": "=", "args": [{"property": "x\"); DROP TABLE items; --"}, "1"]})
    except InvalidSearch:
        found = []
    assert found == []
    assert len(ids(backend)) == 34  # nothing was dropped
