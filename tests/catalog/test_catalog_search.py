"""Conformance of the catalogue backends: the same searches give the same answers on the embedded index
and on pgstac (a real PostgreSQL + PostGIS)."""

from __future__ import annotations

import json

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
                    dict(collections=["ocsge-occupation", "ocsge-usage"], datetime="2019-01-01T00:00:00Z/.."),
                    *(dict(filter=parse_filter(f"datetime {op} TIMESTAMP('2021-01-01T00:00:00Z')"))
                      for op in ("=", "<>", "<", "<=", ">", ">=")),
                    dict(filter=parse_filter("datetime IS NULL")),
                    dict(filter=parse_filter("title LIKE '%%%%%%%%%%%%%%#'")),
                    dict(filter=parse_filter("title LIKE '%Seine%(77)%2021'"))):
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
    assert SearchRequest(limit=5000).limit == 1000  # the STAC API spec: a larger limit gets the maximum
    with pytest.raises(InvalidSearch, match="limit"):
        SearchRequest(limit=0)
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


# --- interval items, fields, paging tokens (both backends) --------------------------------------------
def test_datetime_filters_answer_with_interval_items(backend) -> None:  # type: ignore[no-untyped-def]
    """Items with ``datetime: null`` (intervals: differences, flows) never fail a filter on ``datetime``: as
    pgstac indexes them, their ``datetime`` is their start; an item on which an expression cannot be
    evaluated does not match, and the search answers."""
    everything = set(ids(backend))
    for op in ("=", "<>", "<", "<=", ">", ">="):
        found = set(ids(backend, filter=parse_filter(f"datetime {op} TIMESTAMP('2021-01-01T00:00:00Z')")))
        assert found <= everything, op
    after = set(ids(backend, filter=parse_filter("datetime >= TIMESTAMP('2022-01-01T00:00:00Z')")))
    assert after and all("2022" in i or "2024" in i for i in after)
    assert "difference_D077_2017-2021" in ids(backend, filter=parse_filter(
        "datetime < TIMESTAMP('2018-01-01T00:00:00Z')"))  # the difference starts in 2017
    ids(backend, filter=parse_filter("T_INTERSECTS(datetime, INTERVAL('2020-11-11T00:00:00Z', "
                                     "'2020-11-12T00:00:00Z'))"))
    ids(backend, filter=parse_filter("\"ocsge:millesime\" > 2019 AND datetime > DATE('2021-06-01')"))


def test_fields_nested_includes_win_over_excludes(backend) -> None:  # type: ignore[no-untyped-def]
    from catalog.search.request import parse_fields

    def first(fields: object) -> dict:  # type: ignore[type-arg]
        include, exclude = parse_fields(fields)
        return backend.search(SearchRequest(ids=["usage_D077_2017"], include=include, exclude=exclude)).items[0]

    nested = first("-properties,+properties.ocsge:departement")
    assert nested["properties"] == {"ocsge:departement": "77"} and "geometry" not in nested
    assert first({"exclude": ["properties"], "include": ["properties.ocsge:departement"]}) == nested
    both = first("+geometry,-geometry")
    assert "geometry" in both and "assets" not in both
    default = first("")  # fields given empty: the default set
    assert {"type", "stac_version", "id", "geometry", "bbox", "assets"} <= set(default)
    assert set(default["properties"]) <= {"datetime", "start_datetime", "end_datetime"}
    every_but = first({"exclude": ["geometry"]})  # only excludes: every other field
    assert "geometry" not in every_but and "ocsge:departement" in every_but["properties"]
    default_but = first({"exclude": ["geometry"], "include": []})  # include given empty: from the default set
    assert "geometry" not in default_but and "ocsge:departement" not in default_but["properties"]


def test_a_paging_token_belongs_to_its_search(backend) -> None:  # type: ignore[no-untyped-def]
    token = backend.search(SearchRequest(collections=["ocsge-couverture"], limit=1)).next_token
    assert token
    assert backend.search(SearchRequest(collections=["ocsge-couverture"], limit=2, token=token)).items
    with pytest.raises(InvalidSearch, match="token"):
        backend.search(SearchRequest(collections=["ocsge-usage"], limit=1, token=token))


# --- CQL2 input limits and LIKE (backend-independent) ----------------------------------------------------
@pytest.mark.parametrize(("text", "says"), [
    ("(" * 2000 + "id = 'x'" + ")" * 2000, "parentheses"),
    ("id = '" + "x" * 9000 + "'", "longer than"),
    ("(" * 33 + "id = 'x'" + ")" * 33, "parentheses"),
    ("NOT " * 33 + "id = 'x'", "prefix operators"),
    ("\"ocsge:millesime\" = " + "-" * 4000 + "1", "prefix operators"),
    ("\"ocsge:millesime\" = " + "- " * 40 + "1", "prefix operators"),
    ("\"ocsge:millesime\" = " + "1 + " * 40 + "1", "deeper"),
    ("sleep(1000) = 1", "unknown operator or function"),
    ("\"x;drop\" = 1", "property name"),
])
def test_filter_text_limits(text: str, says: str) -> None:
    with pytest.raises(InvalidSearch, match=says):
        parse_filter(text)


def test_filter_json_limits_and_validate_is_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    """cql2's ``validate()`` costs seconds and hundreds of MB on deep input: the filter is checked without it."""
    import cql2

    def forbidden(self: object) -> None:
        raise AssertionError("cql2 validate() called")

    monkeypatch.setattr(cql2.Expr, "validate", forbidden, raising=False)
    node: dict = {"op": "=", "args": [{"property": "id"}, "x"]}  # type: ignore[type-arg]
    for _ in range(31):
        node = {"op": "not", "args": [node]}
    checked = parse_filter(node)
    assert checked["op"] == "not"
    assert parse_filter(checked) is checked and SearchRequest(filter=checked).filter is checked  # checked once
    deeper = {"op": "not", "args": [{"op": "not", "args": [node]}]}
    with pytest.raises(InvalidSearch, match="deeper"):
        parse_filter(deeper)
    for bad, says in [({"op": "=", "args": [{"property": "id"}]}, "arguments"),
                      ({"op": "and", "args": [True]}, "at least 2"),
                      ({"op": "like", "args": [{"property": "title"}, 5]}, "pattern"),
                      ({"op": "=", "args": [{"property": "datetime"}, {"timestamp": "yesterday"}]}, "RFC 3339"),
                      ({"op": "s_intersects", "args": [{"property": "geometry"}, "x"]}, "geometry"),
                      ({"op": "in", "args": [{"property": "id"}, []]}, "non-empty"),
                      ({"op": "=", "args": [{"property": "id"}, float("nan")]}, "finite"),
                      ({"op": "+", "args": [1, 2]}, "not a boolean"),
                      ({"foo": 1}, "not a boolean")]:
        with pytest.raises(InvalidSearch, match=says):
            parse_filter(bad)
    with pytest.raises(InvalidSearch, match="cql2-text"):
        parse_filter({"op": "=", "args": [{"property": "id"}, "x"]}, "cql2-text")
    assert parse_filter("TRUE") == {"op": "=", "args": [1, 1]}


def _reference_like(pattern: str, value: str) -> bool:
    """The plain regex translation (exponential on hostile patterns, fine on these short ones)."""
    import re

    out, escaped = [], False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.fullmatch("".join(out), value, re.DOTALL) is not None


def test_like_matcher_agrees_with_the_regex_translation() -> None:
    import itertools

    from catalog.search.request import like_matcher, normalise_like

    values = ["", "a", "ab", "abc", "aXc", "a%c", "a_c", "banana", "Gers (32)", "%%", "ab\\c"]
    alphabet = ["a", "b", "c", "%", "_", "\\%", "\\_", "n"]
    for size in range(0, 5):
        for parts in itertools.product(alphabet, repeat=size):
            pattern = "".join(parts)
            matches = like_matcher(pattern)
            for value in values:
                assert matches(value) == _reference_like(pattern, value), (pattern, value)
    assert normalise_like("%%%a%%b\\%%") == "%a%b\\%%"


def test_like_matcher_is_fast_on_hostile_patterns() -> None:
    import time

    from catalog.search.request import like_matcher

    value = "Prédiction de couverture — Seine-et-Marne (77), 2024, bloc r000c001 " * 100
    for pattern in ("%" * 14 + "#", "%a" * 2000 + "#", "%_" * 2000 + "#", "%" * 5000 + "a%" * 500 + "#"):
        matches = like_matcher(pattern)
        started = time.perf_counter()
        assert not matches(value)
        assert time.perf_counter() - started < 0.5, pattern[:20]


def test_embedded_caches_are_bounded_and_keyed_by_known_names(sample_root: str) -> None:
    """Sorting or filtering on ever new property names builds nothing for unknown names and keeps at most
    COLUMN_CACHE_SIZE columns for known ones."""
    from catalog.search.embedded import COLUMN_CACHE_SIZE, EmbeddedBackend
    from ocsge.storage import open_storage

    backend = EmbeddedBackend(open_storage(sample_root))
    index = backend.index()
    for k in range(500):
        backend.search(SearchRequest(sortby=[(f"unknown_{k}", "asc")], limit=1))
        backend.search(SearchRequest(filter={"op": "=", "args": [{"property": f"nope_{k}"}, "x"]}, limit=1))
        backend.search(SearchRequest(filter={"op": "like", "args": [{"property": f"nope_{k}"}, "x%"]}, limit=1))
    assert not index._cache  # nothing built for names no item has
    for name in sorted(index.known):
        backend.search(SearchRequest(sortby=[(name, "asc")], limit=1))
        backend.search(SearchRequest(filter={"op": "=", "args": [{"property": name}, "x"]}, limit=1))
    assert 0 < len(index._cache) <= COLUMN_CACHE_SIZE


def test_json_shape_of_short_and_long_texts_agree() -> None:
    """A short body is measured by a loop, a long one with numpy: the same depth and array count (padding a
    text with spaces changes neither)."""
    from catalog.search.request import SMALL_JSON_BYTES, text_json_shape

    texts = [
        b'{"bbox": [1, 2, 3, 4], "collections": ["a[", "]]]"], "filter": {"op": "and", "args": [{"x": [[1]]}]}}',
        b'{"a": "\\"[[[", "b": [[[[[]]]]], "c": {}}',
        b"[]",
        b"{}",
        b'{"s": "{{{{"}',
    ]
    for text in texts:
        short = text_json_shape(text)
        long = text_json_shape(text + b" " * (SMALL_JSON_BYTES + 1))
        assert short == long
    assert text_json_shape(texts[1]) == (6, 5)


def _without_null_datetime(item: dict) -> dict:
    if "properties" not in item or item["properties"].get("datetime", "") is not None:
        return item
    return {**item, "properties": {k: v for k, v in item["properties"].items() if k != "datetime"}}


def test_pgstac_items_hydrated_in_python_are_those_hydrated_in_sql(sample_root: str, pgstac_dsn: str) -> None:
    """``nohydrate`` + hydraters gives, key for key, the embedded backend's items (links aside: each
    backend's API writes its own), and pgstac's own SQL merge up to the null ``datetime`` it drops."""
    from catalog.search.embedded import EmbeddedBackend
    from catalog.search.pgstac import PgstacBackend
    from ocsge.storage import open_storage

    fast, sql = PgstacBackend(pgstac_dsn), PgstacBackend(pgstac_dsn, hydrate_in_python=False)
    embedded = EmbeddedBackend(open_storage(sample_root))
    try:
        for req in (SearchRequest(limit=100), SearchRequest(collections=["ocsge-couverture"], bbox=MELUN),
                    SearchRequest(ids=["usage_D077_2017"], exclude={"assets"})):
            ours, theirs = fast.search(req).items, sql.search(req).items
            # pgstac's SQL merge drops a null ``datetime`` (an item with a start and an end), which STAC requires
            # present: the one difference, and Python's hydration keeps it as published
            assert ours and [_without_null_datetime(it) for it in ours] == theirs
            reference = {it["id"]: it for it in embedded.search(req).items}
            for item in ours:
                assert "pgstac:base_item" not in item
                assert {k: v for k, v in item.items() if k != "links"} == \
                    {k: v for k, v in reference[item["id"]].items() if k != "links"}, item["id"]
    finally:
        fast.close(), sql.close()


def test_pgstac_collection_ids_cached_but_a_new_collection_found_at_once(pgstac_dsn: str) -> None:
    import psycopg

    from catalog.search.pgstac import PgstacBackend

    pg = PgstacBackend(pgstac_dsn)
    new = {"type": "Collection", "id": "ocsge-test-late", "stac_version": "1.0.0", "description": "late",
           "license": "etalab-2.0", "links": [],
           "extent": {"spatial": {"bbox": [[0, 40, 10, 50]]}, "temporal": {"interval": [[None, None]]}}}
    try:
        assert pg.search(SearchRequest(collections=["ocsge-couverture"], limit=1)).items
        with pytest.raises(UnknownCollection, match="ocsge-test-late"):
            pg.search(SearchRequest(collections=["ocsge-test-late"]))
        with psycopg.connect(pgstac_dsn, autocommit=True) as conn:
            conn.execute("SELECT pgstac.create_collection(%s::text::jsonb)", (json.dumps(new),))
        # published after the ids were cached: found on its first search, not after the cache's lifetime
        assert pg.search(SearchRequest(collections=["ocsge-test-late"])).items == []
    finally:
        with psycopg.connect(pgstac_dsn, autocommit=True) as conn:
            conn.execute("SELECT pgstac.delete_collection('ocsge-test-late')")
        pg.close()
