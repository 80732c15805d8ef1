"""The search index queried in place (embedded backend) against the in-memory index it replaced, on random
requests over a small catalogue built to exercise every path: typed, mixed-type and missing properties,
timestamps and intervals, footprints that are and are not their bbox, several collections. Then the life of
the index: built by publish atomically and once, kept for the previous snapshot, rebuilt with a warning
when it is missing, stale or damaged. Last, stac-fastapi-pgstac's own app over the test pgstac."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from catalog import snapshot
from catalog.search import item_index
from catalog.search.embedded import EmbeddedBackend
from catalog.search.indexed import IndexedBackend
from catalog.search.request import InvalidSearch, SearchRequest, parse_filter
from ocsge.storage import open_storage

COLLECTIONS = ["alpha", "beta", "gamma"]
BASE = "/assets"


def _collection(cid: str) -> dict[str, Any]:
    return {
        "type": "Collection",
        "id": cid,
        "stac_version": "1.1.0",
        "description": cid,
        "license": "etalab-2.0",
        "links": [],
        "extent": {"spatial": {"bbox": [[-5, 41, 10, 52]]}, "temporal": {"interval": [["2015-01-01T00:00:00Z", None]]}},
    }


def _items(n: int, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lon, lat = rng.uniform(-4, 8), rng.uniform(42, 51)
        size = rng.choice([0.05, 0.2, 1.0])
        if i % 3 == 0:  # a tilted square: the bbox test is not exact
            ring = [
                [lon, lat],
                [lon + size, lat + size / 2],
                [lon + size / 2, lat + 1.5 * size],
                [lon - size / 2, lat + size],
                [lon, lat],
            ]
        else:
            ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
        year = rng.choice([2017, 2019, 2021, 2023])
        props: dict[str, Any] = {"ocsge:millesime": year, "ocsge:departement": rng.choice(["01", "2A", "77", "974"])}
        if i % 4:
            props["datetime"] = f"{year}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T00:00:00Z"
        else:  # an interval item (datetime null)
            props.update(
                datetime=None, start_datetime=f"{year}-01-01T00:00:00Z", end_datetime=f"{year + 2}-12-31T23:59:59Z"
            )
        if i % 5:
            props["score"] = rng.choice([1, 2.5, 3, 7, 10])  # ints and floats: one numeric column
        if i % 2:
            props["title"] = rng.choice(["Bloc nord", "bloc sud", "Zone_A", "100%", "Est"])
        props["flag"] = rng.choice([True, False])
        props["mixed"] = rng.choice([1, "1", "x", None, 2])  # several JSON types: the evaluator's job
        if i % 7 == 0:
            props["updated"] = f"20{rng.randint(10, 24)}-06-01T12:00:00Z"
        out.append(
            {
                "type": "Feature",
                "stac_version": "1.1.0",
                "stac_extensions": [],
                "id": f"item-{i:03d}",
                "collection": COLLECTIONS[i % 3],
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "bbox": [
                    min(p[0] for p in ring),
                    min(p[1] for p in ring),
                    max(p[0] for p in ring),
                    max(p[1] for p in ring),
                ],
                "properties": props,
                "links": [],
                "assets": {"data": {"href": f"../../data/{i}.tif", "type": "image/tiff"}},
            }
        )
    out.append({**out[0], "id": "no-geometry", "geometry": None, "bbox": None})
    out.append({**out[1], "id": "item-001", "collection": "beta"})  # the same id in two collections
    return out


@pytest.fixture(scope="module", params=["never", "now"])
def catalogue(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> tuple[IndexedBackend, EmbeddedBackend, list[str]]:
    """Every test below twice: every search through SQL ("never"), then with the index's columns in memory
    ("now"), where the searches without filter, ids or sort take the in-memory path."""
    root = tmp_path_factory.mktemp("index-root")
    storage = open_storage(root)
    items = _items(240)
    snapshot.write(storage, [_collection(c) for c in COLLECTIONS], items)
    return (
        IndexedBackend(storage, asset_base_url=BASE, load_columns=request.param),
        EmbeddedBackend(storage, asset_base_url=BASE),
        [it["id"] for it in items],
    )


def _random_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth < 2 and rng.random() < 0.3:
        op = rng.choice(["and", "or", "not"])
        if op == "not":
            return {"op": "not", "args": [_random_filter(rng, depth + 1)]}
        return {"op": op, "args": [_random_filter(rng, depth + 1) for _ in range(rng.randint(2, 3))]}
    prop = rng.choice(
        [
            "ocsge:millesime",
            "ocsge:departement",
            "score",
            "title",
            "flag",
            "mixed",
            "nothere",
            "datetime",
            "updated",
            "id",
            "collection",
            "properties.score",
        ]
    )
    literal = rng.choice([2019, 2021, 3, 2.5, "77", "2A", "Bloc nord", True, 1, "1"])
    choice = rng.randrange(11)
    if choice == 0:
        return {"op": rng.choice(["=", "<>", "<", "<=", ">", ">="]), "args": [{"property": prop}, literal]}
    if choice == 1:
        return {"op": rng.choice(["=", "<", ">="]), "args": [literal, {"property": prop}]}  # literal first
    if choice == 2:
        values = rng.sample([2019, 2021, 3, "77", "01", "x", 1, 2.5], rng.randint(1, 3))
        return {"op": "in", "args": [{"property": prop}, values]}
    if choice == 3:
        return {"op": "between", "args": [{"property": prop}, rng.choice([0, 2, 2018]), rng.choice([5, 2021])]}
    if choice == 4:
        pattern = rng.choice(["Bloc%", "%sud", "%o%", "Zone_A", "Zone\\_A", "100\\%", "b%", "%"])
        return {"op": "like", "args": [{"property": rng.choice(["title", "id", "score", "nothere"])}, pattern]}
    if choice == 5:
        return {"op": "isNull", "args": [{"property": prop}]}
    if choice == 6:
        stamp = rng.choice(["2019-05-01T00:00:00Z", "2021-01-01T00:00:00Z", "2016-01-01T00:00:00Z"])
        return {
            "op": rng.choice(["<", ">=", "="]),
            "args": [{"property": rng.choice(["datetime", "updated", "title"])}, {"timestamp": stamp}],
        }
    if choice == 7:
        lon, lat = rng.uniform(-3, 7), rng.uniform(43, 50)
        return {
            "op": "s_intersects",
            "args": [
                {"property": "geometry"},
                {"type": "Polygon", "coordinates": [[[lon, lat], [lon + 2, lat], [lon + 1, lat + 2], [lon, lat]]]},
            ],
        }
    if choice == 8:  # a temporal operator: not translated, the evaluator runs it
        return {"op": "t_intersects", "args": [{"property": "datetime"}, {"interval": ["2019-01-01", "2020-01-01"]}]}
    if choice == 9:
        return {
            "op": "=",
            "args": [{"op": "casei", "args": [{"property": "title"}]}, {"op": "casei", "args": ["bloc sud"]}],
        }
    return {"op": "=", "args": [{"property": "ocsge:millesime"}, {"property": "ocsge:millesime"}]}


def _random_request(rng: random.Random, ids: list[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"limit": rng.choice([1, 5, 20, 500])}
    if rng.random() < 0.4:
        kwargs["collections"] = rng.sample(COLLECTIONS, rng.randint(1, 2))
    if rng.random() < 0.1:
        kwargs["ids"] = [*rng.sample(ids, 8), "unknown"]
    spatial = rng.random()
    lon, lat = rng.uniform(-4, 7), rng.uniform(42, 50)
    if spatial < 0.35:
        kwargs["bbox"] = (lon, lat, lon + rng.choice([0.3, 2, 6]), lat + rng.choice([0.3, 2, 5]))
    elif spatial < 0.5:
        kwargs["intersects"] = {
            "type": "Polygon",
            "coordinates": [[[lon, lat], [lon + 3, lat + 1], [lon + 1, lat + 3], [lon, lat]]],
        }
    if rng.random() < 0.4:
        kwargs["datetime"] = rng.choice(
            [
                "2019-06-01T00:00:00Z",
                "2020-01-01T00:00:00Z/..",
                "../2018-12-31T00:00:00Z",
                "2018-01-01T00:00:00Z/2021-12-31T00:00:00Z",
            ]
        )
    if rng.random() < 0.6:
        kwargs["filter"] = parse_filter(_random_filter(rng))
    if rng.random() < 0.4:
        kwargs["sortby"] = [
            (
                rng.choice(
                    [
                        "score",
                        "title",
                        "ocsge:millesime",
                        "id",
                        "datetime",
                        "flag",
                        "nothere",
                        "mixed",
                        "properties.ocsge:departement",
                    ]
                ),
                rng.choice(["asc", "desc"]),
            )
            for _ in range(rng.randint(1, 2))
        ]
    return kwargs


def test_random_requests_answer_as_the_in_memory_index(catalogue) -> None:  # type: ignore[no-untyped-def]
    indexed, memory, ids = catalogue
    rng = random.Random(11)
    nonempty = 0
    for _ in range(400):
        kwargs = _random_request(rng, ids)
        token = None
        for _page in range(3):  # the first pages, following the sealed tokens
            req_a, req_b = SearchRequest(**kwargs, token=token), SearchRequest(**kwargs, token=token)
            try:
                expected = memory.search(req_b)
            except InvalidSearch as exc:
                with pytest.raises(InvalidSearch):
                    indexed.search(req_a)
                assert str(exc)
                break
            got = indexed.search(req_a)
            assert got.matched == expected.matched, kwargs
            assert [i["id"] for i in got.items] == [i["id"] for i in expected.items], kwargs
            assert got.items == expected.items, kwargs  # the same documents, hrefs resolved alike
            assert (got.next_token, got.prev_token) == (expected.next_token, expected.prev_token)
            nonempty += bool(got.items)
            token = got.next_token
            if token is None:
                break
    assert nonempty > 150  # the requests are not all empty: the comparison says something


def _simple_requests(rng: random.Random) -> list[dict[str, Any]]:
    """The searches the in-memory columns answer: collections, bbox or intersects, datetime, fields, paging."""
    out = []
    for _ in range(300):
        kwargs: dict[str, Any] = {"limit": rng.choice([1, 3, 20, 500])}
        if rng.random() < 0.6:
            kwargs["collections"] = rng.sample(COLLECTIONS, rng.randint(1, 3))
        lon, lat = rng.uniform(-4, 7), rng.uniform(42, 50)
        spatial = rng.random()
        if spatial < 0.5:
            kwargs["bbox"] = (lon, lat, lon + rng.choice([0.1, 0.3, 2, 6]), lat + rng.choice([0.1, 0.3, 2, 5]))
        elif spatial < 0.75:
            kwargs["intersects"] = {
                "type": "Polygon",
                "coordinates": [[[lon, lat], [lon + 3, lat + 1], [lon + 1, lat + 3], [lon, lat]]],
            }
        if rng.random() < 0.5:
            kwargs["datetime"] = rng.choice(
                ["2019-06-01T00:00:00Z", "2020-01-01T00:00:00Z/..", "../2018-12-31T00:00:00Z",
                 "2018-01-01T00:00:00Z/2021-12-31T00:00:00Z", "2017-01-01T00:00:00Z/2017-12-31T23:59:59Z"]
            )
        if rng.random() < 0.2:
            kwargs["sortby"] = [("datetime", "desc")]  # the default order, said explicitly
        if rng.random() < 0.2:
            kwargs["exclude"] = {"assets"}
        out.append(kwargs)
    return out


def _pages(backend: Any, kwargs: dict[str, Any]) -> list[tuple[Any, ...]]:
    pages, token = [], None
    for _page in range(3):
        page = backend.search(SearchRequest(**kwargs, token=token))
        pages.append((page.matched, page.items, page.next_token, page.prev_token))
        token = page.next_token
        if token is None:
            break
    return pages


@pytest.mark.parametrize("max_wkb", [4096, 0])
def test_in_memory_columns_answer_as_sql_and_the_in_memory_index(
    catalogue, monkeypatch: pytest.MonkeyPatch, max_wkb: int
) -> None:  # type: ignore[no-untyped-def]
    """The in-memory path (footprints tested from memory, or, when too large to keep, read from Parquet)
    gives the pages of the SQL path and of the in-memory index, and is the path these searches take."""
    from catalog.search import indexed as indexed_module

    monkeypatch.setattr(indexed_module, "MAX_WKB_IN_MEMORY", max_wkb)
    _, memory, _ = catalogue
    storage = memory.storage
    with_columns = IndexedBackend(storage, asset_base_url=BASE, load_columns="now")
    sql_only = IndexedBackend(storage, asset_base_url=BASE, load_columns="never")
    columns = with_columns.index().columns
    assert columns is not None and (columns.wkb_offset == -2).any() == (max_wkb == 0)
    taken = []
    original = indexed_module.IndexedIndex._from_columns

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        taken.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(indexed_module.IndexedIndex, "_from_columns", spy)
    nonempty = 0
    requests = _simple_requests(random.Random(5))
    for kwargs in requests:
        got = _pages(with_columns, kwargs)
        assert got == _pages(sql_only, kwargs), kwargs
        assert got == _pages(memory, kwargs), kwargs
        nonempty += bool(got[0][1])
    assert len(taken) >= len(requests)  # every first page (and the next ones) answered from the columns
    assert nonempty > 150
    with_columns.close()
    sql_only.close()


def test_columns_load_in_the_background_and_sql_answers_meanwhile(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    snapshot.write(storage, [_collection(c) for c in COLLECTIONS], _items(30))
    backend = IndexedBackend(storage, asset_base_url=BASE)  # the default: a thread loads the columns
    req = {"collections": ["alpha"], "bbox": (-5.0, 41.0, 10.0, 52.0), "limit": 4}
    first = backend.search(SearchRequest(**req))  # whichever path: the same answer
    index = backend.index()
    for _ in range(200):
        if index.columns is not None:
            break
        import time

        time.sleep(0.05)
    assert index.columns is not None
    again = backend.search(SearchRequest(**req))
    assert (again.items, again.matched) == (first.items, first.matched) and first.items
    backend.close()


@pytest.mark.parametrize(
    "cql2",
    [
        "title LIKE 'b%'",
        "title LIKE 'Bloc%'",
        "title LIKE '%o%' AND NOT (title LIKE '%sud')",
        "title LIKE 'Zone_A'",
        "title LIKE '100\\%'",
        "score LIKE '%'",
        "nothere LIKE '%'",
        "id LIKE 'item-00%'",
        "score = 3",
        "score = 2.5",
        "score < 3",
        "score <> 'x'",
        "title <> 3",
        "title = 'Est'",
        "title > 'Bloc'",
        "score IN (3, 10, 'x')",
        "title IN ('Est', 1)",
        "score BETWEEN 2 AND 7",
        "title BETWEEN 1 AND 5",
        "flag = true",
        "flag <> false",
        "flag = 1",
        "mixed = 1",
        "mixed = '1'",
        "mixed IS NULL",
        "nothere IS NULL",
        "score IS NULL OR title IS NULL",
        'NOT ("ocsge:millesime" IN (2019, 2021))',
        "nothere = 1",
        "nothere <> 1",
        "datetime < TIMESTAMP('2020-01-01T00:00:00Z')",
        "updated >= DATE('2018-01-01')",
        "title = TIMESTAMP('2020-01-01T00:00:00Z')",
        "collection = 'beta' AND \"ocsge:departement\" = '2A'",
        "datetime IS NULL",
        "datetime = '2019-01-01T00:00:00Z'",
    ],
)
def test_each_translated_predicate_answers_as_the_evaluator(catalogue, cql2: str) -> None:  # type: ignore[no-untyped-def]
    indexed, memory, _ = catalogue
    req = {"filter": parse_filter(cql2), "limit": 500}
    expected = [i["id"] for i in memory.search(SearchRequest(**req)).items]  # type: ignore[arg-type]
    assert [i["id"] for i in indexed.search(SearchRequest(**req)).items] == expected  # type: ignore[arg-type]


def test_fields_and_items(catalogue) -> None:  # type: ignore[no-untyped-def]
    indexed, memory, _ = catalogue
    req = {"include": {"id", "properties.score"}, "exclude": {"assets"}, "limit": 30}
    assert indexed.search(SearchRequest(**req)).items == memory.search(SearchRequest(**req)).items
    for cid, iid in (("beta", "item-001"), ("alpha", "item-000"), ("alpha", "item-001"), ("gamma", "none")):
        assert indexed.item(cid, iid) == memory.item(cid, iid)
    found = indexed.item("beta", "item-001")
    assert found is not None and found["assets"]["data"]["href"] == f"{BASE}/data/1.tif"


def _index_files(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in (root / "stac/snapshot").rglob("*") if p.is_file()
    }


def test_publish_builds_the_index_once_and_keeps_the_previous_one(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    collections = [_collection(c) for c in COLLECTIONS]
    first = snapshot.write(storage, collections, _items(30))
    files = _index_files(tmp_path)
    assert f"stac/snapshot/index-{first[:16]}/items.parquet" in files
    assert not [f for f in files if ".tmp" in f]
    assert snapshot.write(storage, collections, _items(30)) == first
    assert _index_files(tmp_path) == files  # unchanged: nothing rewritten
    second = snapshot.write(storage, collections, _items(31))
    third = snapshot.write(storage, collections, _items(32))
    folders = {f.split("/")[2] for f in _index_files(tmp_path) if "/index-" in f}
    # the current index and the previous one (servers may still read it); older ones are removed
    assert folders == {f"index-{second[:16]}", f"index-{third[:16]}"}
    assert json.loads(storage.get_bytes(snapshot.INDEX_KEY))["search_index"]["prefix"].endswith(f"index-{third[:16]}/")
    backend = IndexedBackend(storage, reload_interval_s=0)
    assert backend.search(SearchRequest(limit=100)).matched == 34  # 32 items + the two extra ones
    assert backend.rebuilds == 0


def test_an_index_that_was_deleted_is_rebuilt_on_a_publish_rerun(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    etag = snapshot.write(storage, [_collection(c) for c in COLLECTIONS], _items(20))
    prefix = f"stac/snapshot/index-{etag[:16]}/"
    storage.delete(prefix + item_index.PARQUET_NAME)
    assert snapshot.write(storage, [_collection(c) for c in COLLECTIONS], _items(20)) == etag
    assert storage.exists(prefix + item_index.PARQUET_NAME)


@pytest.mark.parametrize("damage", ["missing", "stale", "garbage", "old-snapshot"])
def test_a_missing_stale_or_damaged_index_is_rebuilt_with_a_warning(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = open_storage(tmp_path)
    collections = [_collection(c) for c in COLLECTIONS]
    etag = snapshot.write(storage, collections, _items(25))
    folder = tmp_path / f"stac/snapshot/index-{etag[:16]}"
    if damage == "missing":
        (folder / item_index.PARQUET_NAME).unlink()
    elif damage == "stale":  # an index built for other items under this snapshot's name
        item_index.build([json.dumps(it).encode() for it in _items(5)], "0" * 64, folder)
    elif damage == "garbage":
        (folder / item_index.PARQUET_NAME).write_bytes(b"not parquet at all")
    else:  # published by a version without the index
        doc = json.loads(storage.get_bytes(snapshot.INDEX_KEY))
        del doc["search_index"]
        storage.put_bytes(snapshot.INDEX_KEY, json.dumps(doc).encode())
    backend = IndexedBackend(storage)
    reference = EmbeddedBackend(storage)
    with caplog.at_level(logging.WARNING, logger="catalog.search.indexed"):
        got = backend.search(SearchRequest(limit=100))
    assert backend.rebuilds == 1
    assert "ocsge publish" in caplog.text
    assert [i["id"] for i in got.items] == [i["id"] for i in reference.search(SearchRequest(limit=100)).items]
    rebuilt = backend.index().folder
    backend.close()
    assert not rebuilt.exists()  # a folder the backend built for itself goes with it


def test_no_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(snapshot.SnapshotError, match="ocsge publish"):
        IndexedBackend(open_storage(tmp_path)).search(SearchRequest())


def test_the_index_is_geoparquet_sorted_in_row_groups_with_statistics(catalogue) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    indexed, _, _ = catalogue
    path = indexed.index().folder / item_index.PARQUET_NAME
    parquet = pq.ParquetFile(path)
    geo = json.loads(parquet.schema_arrow.metadata[b"geo"])
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    table = parquet.read(columns=["collection", "row", "xmin"])
    collections = table.column("collection").to_pylist()
    assert collections == sorted(collections)  # collection first, then the Hilbert order
    assert table.column("row").to_pylist() == list(range(table.num_rows))
    stats = parquet.metadata.row_group(0).column(parquet.schema_arrow.get_field_index("xmin")).statistics
    assert stats is not None and stats.has_min_max


def test_stac_fastapi_pgstac_app_serves_the_test_pgstac(
    pgstac_dsn: str, sample_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stac-fastapi-pgstac's own application (as benchmarks/bench_search.py serves it) over the pgstac the
    conformance suite uses: it answers the same ids as our app's pgstac backend and as the embedded index."""
    from fastapi.testclient import TestClient
    from psycopg.conninfo import conninfo_to_dict

    from catalog.search.pgstac import PgstacBackend

    parts = conninfo_to_dict(pgstac_dsn)
    for name, value in (
        ("PGUSER", parts.get("user", "postgres")),
        ("PGPASSWORD", parts.get("password", "")),
        ("PGHOST", parts["host"]),
        ("PGPORT", str(parts["port"])),
        ("PGDATABASE", parts["dbname"]),
    ):
        monkeypatch.setenv(name, str(value))
    from stac_fastapi.pgstac.app import create_app

    body = {
        "collections": ["ocsge-couverture", "ocsge-prediction"],
        "limit": 100,
        "filter-lang": "cql2-json",
        "filter": {"op": ">=", "args": [{"property": "ocsge:millesime"}, 2019]},
    }
    with TestClient(create_app()) as client:
        answer = client.post("/search", json=body)
        assert answer.status_code == 200, answer.text
        theirs = [f["id"] for f in answer.json()["features"]]
        assert client.get("/collections/ocsge-couverture").status_code == 200
    request = SearchRequest(
        collections=body["collections"],
        limit=100,  # type: ignore[arg-type]
        filter=parse_filter(body["filter"]),
    )
    pg = PgstacBackend(pgstac_dsn)
    try:
        ours = [i["id"] for i in pg.search(request).items]
    finally:
        pg.close()
    embedded = [i["id"] for i in IndexedBackend(open_storage(sample_root)).search(request).items]
    assert theirs and theirs == ours == embedded


def _stac_client(storage: Any, asset_base_url: str, settings_asset_base: str | None) -> tuple[Any, IndexedBackend]:
    from fastapi.testclient import TestClient

    from ocsge.settings import get_settings
    from services.stac.app import create_stac_app

    backend = IndexedBackend(storage, asset_base_url=asset_base_url, load_columns="now")
    settings = get_settings().model_copy(update={"asset_base_url": settings_asset_base})
    return TestClient(create_stac_app(backend, settings)), backend


@pytest.mark.parametrize(
    ("asset_base_url", "settings_asset_base"),
    [("https://cdn.example/data/", None), ("/data/", "/data")],  # a CDN, and a path made absolute per request
)
def test_search_pages_from_item_templates_are_the_bytes_of_the_dict_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asset_base_url: str, settings_asset_base: str | None
) -> None:
    """The page assembled from item templates (no parse of the items) is byte for byte the page the dict path
    serialises, over POST and GET searches, the items of a collection, paging links, with and without the
    in-memory columns; the fields extension takes the dict path."""
    storage = open_storage(tmp_path)
    snapshot.write(storage, [_collection(c) for c in COLLECTIONS], _items(120))
    client, backend = _stac_client(storage, asset_base_url, settings_asset_base)
    assert backend.index().meta.templates
    calls: list[bool] = []
    original = IndexedBackend.search_encoded

    def encoded_spy(self, request):  # type: ignore[no-untyped-def]
        page = original(self, request)
        calls.append(page is not None)
        return page

    monkeypatch.setattr(IndexedBackend, "search_encoded", encoded_spy)
    posts = [
        {"collections": ["alpha"], "bbox": [-4, 42, 8, 51], "datetime": "2018-01-01T00:00:00Z/..", "limit": 7},
        {"bbox": [0, 44, 3, 47], "limit": 50},
        {"intersects": {"type": "Polygon", "coordinates": [[[0, 44], [4, 45], [2, 48], [0, 44]]]}, "limit": 5},
        {"limit": 3},
        {"ids": ["item-001", "item-004", "nothere"], "collections": ["beta"]},
        {"filter": {"op": "=", "args": [{"property": "ocsge:departement"}, "2A"]}, "limit": 4},
        {"filter": {"op": "t_intersects", "args": [{"property": "datetime"}, {"interval": ["2019-01-01", ".."]}]},
         "limit": 4},  # a residual filter: the in-memory evaluator, then the dict path
        {"sortby": [{"field": "ocsge:millesime", "direction": "asc"}], "limit": 6},
    ]
    gets = ["/search?collections=beta&bbox=-4,42,8,51&limit=4", "/collections/gamma/items?limit=5",
            "/collections/alpha/items?bbox=0,44,5,49&datetime=2019-01-01T00:00:00Z/..&limit=2"]

    def answers() -> list[bytes]:
        out = []
        for body in posts:
            first = client.post("/search", json=body)
            assert first.status_code == 200, first.text
            out.append(first.content)
            follow = [link for link in first.json()["links"] if link["rel"] == "next"]
            if follow:  # the next page, with its prev link
                out.append(client.post("/search", json={**body, **follow[0]["body"]}).content)
        for url in gets:
            first = client.get(url)
            assert first.status_code == 200, first.text
            out.append(first.content)
            follow = [link for link in first.json()["links"] if link["rel"] == "next"]
            if follow:
                out.append(client.get(follow[0]["href"]).content)
        return out

    encoded = answers()
    assert sum(calls) >= 8  # most of them took the template path
    monkeypatch.setattr(IndexedBackend, "search_encoded", lambda self, request: None)
    assert answers() == encoded  # the same bytes through parse, dict and orjson
    backend.index().columns = None  # and through SQL, not the in-memory columns
    assert answers() == encoded
    page = json.loads(encoded[0])
    assert page["features"] and all(f["assets"]["data"]["href"].startswith(
        "http://testserver/data/" if settings_asset_base else asset_base_url) for f in page["features"])
    fields = client.post("/search", json={**posts[0], "fields": {"include": ["id"]}})
    assert set(fields.json()["features"][0]) <= {"id", "type", "geometry", "bbox", "links", "assets", "properties",
                                                 "stac_version", "stac_extensions", "collection"}
    backend.close()


def test_an_item_holding_a_mark_is_indexed_without_templates(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    items = _items(12)
    items[3]["properties"]["title"] = "\x00L"  # the links mark's text, in an item: no templates anywhere
    snapshot.write(storage, [_collection(c) for c in COLLECTIONS], items)
    indexed, memory = IndexedBackend(storage, asset_base_url=BASE), EmbeddedBackend(storage, asset_base_url=BASE)
    assert not indexed.index().meta.templates
    assert indexed.search_encoded(SearchRequest(limit=20)) is None
    req = {"limit": 20}
    assert indexed.search(SearchRequest(**req)).items == memory.search(SearchRequest(**req)).items  # type: ignore[arg-type]
    indexed.close()


def test_a_process_that_exits_while_the_columns_load_exits_cleanly(tmp_path: Path) -> None:
    """The loader thread is stopped and waited for at exit: a daemon thread stopped inside DuckDB aborts the
    process ("FATAL: exception not rethrown"), which the first version did for a quick CLI search."""
    import subprocess
    import sys

    storage = open_storage(tmp_path)
    snapshot.write(storage, [_collection(c) for c in COLLECTIONS], _items(3000))
    script = (
        "import sys\n"
        "from catalog.search import indexed\n"
        "indexed.COLUMNS_CHUNK_ROWS = 16  # a slow load, in DuckDB: the process exits in the middle of it\n"
        "from ocsge.storage import open_storage\n"
        "from catalog.search.request import SearchRequest\n"
        "backend = indexed.IndexedBackend(open_storage(sys.argv[1]), asset_base_url='/a')\n"
        "print(len(backend.search(SearchRequest(limit=3)).items))\n"
        "print(backend.index().columns is None)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["3", "True"]  # it did exit while the columns were loading
