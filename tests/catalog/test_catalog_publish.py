"""Publishing: a self-contained static catalogue, an idempotent snapshot, refusals, pgstac loading, S3."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from catalog import snapshot
from catalog.publish import PublishError, publish, verify_item, verify_published
from catalog.search.embedded import EmbeddedBackend
from catalog.search.indexed import IndexedBackend
from catalog.search.request import SearchRequest
from ocsge.storage import open_storage
from support.catalog_samples import build_samples


@pytest.fixture
def root(tmp_path: Path) -> Path:
    build_samples(open_storage(tmp_path), with_predictions=False)
    return tmp_path


def _hrefs(doc: dict) -> list[str]:
    return [link["href"] for link in doc.get("links", []) if link["rel"] != "license"] + [
        a["href"] for a in doc.get("assets", {}).values()
    ]


def test_static_catalogue_is_self_contained(root: Path) -> None:
    publish(open_storage(root))
    for path in (root / "stac").rglob("*.json"):
        if "snapshot" in path.parts or path.name == "publish-state.json":
            continue
        doc = json.loads(path.read_text())
        for href in _hrefs(doc):
            assert "://" not in href and not href.startswith("/"), (path, href)
            assert (path.parent / href).resolve().exists(), (path, href)
        assert not any(link["rel"] == "self" for link in doc.get("links", []))


def test_published_catalogue_with_a_public_url_has_a_root_self_link(root: Path) -> None:
    """With the public URL of the root known, the static catalogue is a *relative published* one: pystac
    reads it, the root's ``self`` is absolute under the public URL, and every other link stays relative."""
    import pystac

    publish(open_storage(root), asset_base_url="https://cdn.example.org/data")
    doc = json.loads((root / "stac" / "catalog.json").read_text())
    selfs = [link["href"] for link in doc["links"] if link["rel"] == "self"]
    assert selfs == ["https://cdn.example.org/data/stac/catalog.json"]
    catalog = pystac.Catalog.from_file(str(root / "stac" / "catalog.json"))  # read from a copy: links relative
    collection = next(iter(catalog.get_children()))
    assert next(iter(collection.get_items())).assets
    for path in (root / "stac").rglob("*.json"):
        if path.name == "catalog.json" or "snapshot" in path.parts or path.name == "publish-state.json":
            continue
        links = json.loads(path.read_text()).get("links", [])
        assert not any(link["rel"] == "self" for link in links), path
    # a path base (resolved per request by the services) is no public URL: the catalogue stays self-contained
    publish(open_storage(root), asset_base_url="/data")
    doc = json.loads((root / "stac" / "catalog.json").read_text())
    assert not any(link["rel"] == "self" for link in doc["links"])


def test_republish_is_idempotent_and_follows_changes(root: Path) -> None:
    storage = open_storage(root)
    first = publish(storage)
    snap_bytes = (root / snapshot.ITEMS_KEY).read_bytes()
    again = publish(storage)
    assert again.written == 0 and again.removed == 0
    assert again.snapshot_etag == first.snapshot_etag
    assert (root / snapshot.ITEMS_KEY).read_bytes() == snap_bytes

    # a changed artifact changes its item (checksum, version) and the snapshot etag
    csv = root / "stats/commune/D077/2021/stats_commune_D077_2021.csv"
    csv.write_bytes(csv.read_bytes() + b"77288,CS2.2.1,1.0\n")
    changed = publish(storage)
    assert changed.snapshot_etag != first.snapshot_etag and changed.written >= 1
    item = json.loads((root / "stac/ocsge-statistics/items/stats_commune_D077_2021.json").read_text())
    assert item["assets"]["csv"]["file:checksum"] == "1220" + hashlib.sha256(csv.read_bytes()).hexdigest()

    # a removed artifact leaves the catalogue
    (root / "couverture/D032/2022/couverture_D032_2022.tif").unlink()
    removed = publish(storage)
    assert removed.removed == 1 and removed.items == changed.items - 1
    assert not (root / "stac/ocsge-couverture/items/couverture_D032_2022.json").exists()


def test_items_whose_assets_are_missing_or_altered_are_refused(root: Path) -> None:
    storage = open_storage(root)
    publish(storage)
    item = json.loads((root / "stac/ocsge-couverture/items/couverture_D077_2021.json").read_text())
    for asset in item["assets"].values():
        asset["href"] = asset["href"].removeprefix("../../../")
    item["id"] = "couverture_D077_2021_v2"

    missing = json.loads(json.dumps(item))
    missing["assets"]["data"]["href"] = "couverture/D077/2021/absent.tif"
    with pytest.raises(PublishError, match=r"couverture_D077_2021_v2.*'data'.*absent\.tif.*refusing"):
        publish(storage, extra_items=[missing])

    altered = json.loads(json.dumps(item))
    altered["assets"]["data"]["file:checksum"] = "1220" + "0" * 64
    with pytest.raises(PublishError, match=r"checksum of 'couverture/D077/2021/couverture_D077_2021.tif'"):
        publish(storage, extra_items=[altered])

    verify_item(storage, item)  # the untouched copy verifies
    result = publish(storage, extra_items=[item])
    assert result.per_collection["ocsge-couverture"] == 5


def test_verify_detects_a_file_altered_after_publishing(root: Path) -> None:
    storage = open_storage(root)
    publish(storage)
    assert verify_published(storage) == []
    tif = root / "usage/D077/2017/usage_D077_2017.tif"
    data = bytearray(tif.read_bytes())
    data[-1] ^= 0xFF
    tif.write_bytes(bytes(data))
    problems = verify_published(storage)
    assert len(problems) == 1 and "usage_D077_2017" in problems[0] and "checksum" in problems[0]


@pytest.mark.parametrize("backend_class", [IndexedBackend, EmbeddedBackend])
def test_embedded_backend_reloads_when_the_snapshot_changes(root: Path, backend_class: type) -> None:
    storage = open_storage(root)
    publish(storage)
    backend = backend_class(storage, reload_interval_s=0)
    before = backend.search(SearchRequest(limit=100)).matched
    (root / "archives/D077/2017/archives_D077_2017.zip").unlink()
    publish(storage)
    assert backend.search(SearchRequest(limit=100)).matched == before - 1
    assert backend.loads == 2


def test_publish_and_search_on_s3(s3_root: str) -> None:
    storage = open_storage(s3_root)
    build_samples(storage, with_predictions=False)
    result = publish(storage)
    assert result.items == 32
    for backend_class in (IndexedBackend, EmbeddedBackend):  # the index is downloaded once from S3
        backend = backend_class(open_storage(s3_root))
        page = backend.search(SearchRequest(collections=["ocsge-couverture"], limit=10))
        assert page.matched == 4
        assert page.items[0]["assets"]["data"]["href"].startswith(s3_root + "/couverture/")
        assert getattr(backend, "rebuilds", 0) == 0  # the published index itself, not a rebuild
        backend.close()


def test_pgstac_load_upserts_and_mirrors(root: Path, postgres) -> None:  # type: ignore[no-untyped-def]
    from catalog.pglocal import pgstac_database
    from catalog.search.pgstac import PgstacBackend

    dsn = pgstac_database(postgres, "pgstac_publish")
    storage = open_storage(root)
    publish(storage, pgstac_dsn=dsn)
    publish(storage, pgstac_dsn=dsn)  # same content again: upsert, no duplicates
    backend = PgstacBackend(dsn)
    try:
        assert len(backend.search(SearchRequest(limit=1000)).items) == 32
        (root / "archives/D077/2017/archives_D077_2017.zip").unlink()
        publish(storage, pgstac_dsn=dsn, asset_base_url="https://cdn.example.org/ocsge")
        items = backend.search(SearchRequest(limit=1000)).items
        assert len(items) == 31
        assert all(a["href"].startswith("https://cdn.example.org/ocsge/") for it in items
                   for a in it["assets"].values())
    finally:
        backend.close()


# --- a file cut short is never catalogued -----------------------------------------------------------------

def _stac(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "stac").rglob("*")) if p.is_file()}


def _truncate(path: Path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


def test_a_truncated_cog_is_refused_with_its_key_and_the_catalogue_is_untouched(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A COG cut to half keeps a header GDAL opens (and a checksum of its own): publish reads the image
    directories, finds tiles past the end of the file and refuses, before anything is written."""
    from ocsge.cli import main

    storage = open_storage(root)
    publish(storage)
    published = _stac(root)
    _truncate(root / "couverture/D077/2021/couverture_D077_2021.tif")
    with pytest.raises(PublishError, match=r"^'couverture/D077/2021/couverture_D077_2021\.tif' is truncated: tile \d+ "
                                           r"of image \d+ ends at byte \d+, the file has \d+ bytes; refusing"):
        publish(storage)
    assert _stac(root) == published
    with pytest.raises(SystemExit) as exit_:
        main(["publish", "--root", str(root)])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_.value.code == 2 and "couverture_D077_2021.tif' is truncated" in err and "Traceback" not in err
    assert _stac(root) == published


@pytest.mark.parametrize(("product", "year", "message"), [
    ("occupation_pmtiles", 2021, r"is truncated: its (tile data|metadata) ends at byte \d+, the file has \d+ bytes"),
    ("archive", 2017, r"is not a complete zip archive"),
])
def test_a_truncated_pmtiles_or_zip_is_refused(root: Path, product: str, year: int, message: str) -> None:
    from ocsge.products import product_key

    storage = open_storage(root)
    publish(storage)
    published = _stac(root)
    key = product_key(product, "77", year)
    _truncate(root / key, keep=(root / key).stat().st_size - 5)  # the PMTiles header stays whole
    with pytest.raises(PublishError, match=rf"^'{key}' {message}"):
        publish(storage)
    assert _stac(root) == published


def test_verify_finds_a_cog_that_was_catalogued_truncated(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A COG truncated before an older publisher catalogued it (size and checksum are those of the truncated
    bytes; only its header was read): ``publish --verify`` reads its structure and names it."""
    from catalog import fileinfo
    from ocsge.cli import main

    storage = open_storage(root)
    _truncate(root / "couverture/D077/2021/couverture_D077_2021.tif")
    with monkeypatch.context() as m:
        m.setattr(fileinfo, "check_complete", lambda *args, **kwargs: None)
        publish(storage)
    problems = verify_published(storage)
    assert len(problems) == 1
    assert "asset 'data'" in problems[0]
    assert "'couverture/D077/2021/couverture_D077_2021.tif' is truncated" in problems[0]
    with pytest.raises(SystemExit) as exit_:
        main(["publish", "--root", str(root), "--verify"])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_.value.code == 2 and "couverture_D077_2021.tif' is truncated" in err


def test_a_killed_publication_leaves_nothing_and_two_never_run_at_once(root: Path) -> None:
    """A publication killed while it wrote leaves a hidden temporary file beside a catalogue document: the
    next one removes it. Two publications on one root never interleave (a lock the kernel drops on kill)."""
    import fcntl
    import os

    storage = open_storage(root)
    publish(storage)
    stray = root / "stac/ocsge-couverture/.collection.json.tmp-0123abcd.json"
    stray.write_bytes(b'{"type": "Coll')
    publish(storage)
    assert not stray.exists()
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a publication in progress holds it
        with pytest.raises(PublishError, match="another publication is running on"):
            publish(storage)
    finally:
        os.close(fd)
    assert publish(storage).written == 0
