"""Only published artifacts are reachable by URL (issue 18, item 4): an inventory of every file in a storage
root that holds, besides the published products, what a real root holds too — restricted inputs
(fichiers fonciers, ground truth, raw IGN deliveries, imagery), internal reports, temporary writes, a
link out of the root — requested through ``/files/{key}`` and ``/downloads/{dep}/{name}``: exactly the
assets of the catalogue answer 200, everything else 404."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from svc_territory import build_territory

from ocsge.products import parse_key, product_key
from ocsge.storage import LocalStorage
from support.inventory import catalogued_keys, every_file, reachable

RESTRICTED = [
    product_key("fichiers_fonciers", "S01", 2021),
    product_key("truth", "S01", 2021),
    product_key("synth_manifest", "S01", 2021),
    product_key("delivery", "S01", 2021),
    product_key("imagery_dtm", "S01", 2021),  # (the RGB and IRC photos are published since issue 17)
    product_key("imagery_dsm", "S01", 2021),
    product_key("bdtopo_batiment", "S01", 2021),
    product_key("products_report", "S01", 2021),
    product_key("artif_totals", "S01", 2021),
    product_key("difference_report", "S01", (2021, 2024)),
    product_key("ingest_report", "S01", 2021),  # a companion of occupation items: none is published here
    product_key("qa_report", "S01", 2024),
    "notes/internal.txt",
    "_tmp/0123abcd/" + product_key("couverture_cog", "S01", 2021),
    product_key("couverture_cog", "S01", 2021) + ".aux.xml",
]
LINK_OUT = product_key("usage_cog", "S01", 2024)  # a canonical key, but a link to a file outside the root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from catalog.publish import publish

    base = tmp_path_factory.mktemp("inventory")
    root = base / "root"
    build_territory(root)
    storage = LocalStorage(root)
    for key in RESTRICTED:
        storage.put_bytes(key, b"restricted " + key.encode())
    cog = root / product_key("couverture_cog", "S01", 2021)
    (cog.parent / f".{cog.name}.tmp-deadbeef.tif").write_bytes(b"a writer in progress")
    secret = base / "outside.tif"
    secret.write_bytes(b"root:x:0:0")
    (root / LINK_OUT).parent.mkdir(parents=True, exist_ok=True)
    (root / LINK_OUT).symlink_to(secret)
    publish(storage)
    return root


def test_ocsge_serve_answers_only_the_catalogue(root: Path) -> None:
    """The all-in-one server, as ``ocsge serve`` runs it (the catalogue's search decides)."""
    from services.app import AppContext, create_app

    client = TestClient(create_app(AppContext(root=str(root))), raise_server_exceptions=False)
    keys = every_file(root)
    assert set(RESTRICTED) | {LINK_OUT} <= set(keys)
    published = catalogued_keys(client, keys)
    assert {product_key("couverture_cog", "S01", 2021), product_key("archive", "S01", 2021),
            product_key("occupation_pmtiles", "S01", 2021), product_key("stats_commune_csv", "S01", 2021)} <= published
    served = reachable(client, keys)
    assert served["files"] == published
    assert served["downloads"] == {product_key("archive", "S01", 2021)}
    assert not (set(RESTRICTED) | {LINK_OUT}) & (served["files"] | served["downloads"])
    assert not any(k.startswith("stac/") for k in served["files"])  # the catalogue's own files go by /stac


def test_storage_finder_answers_only_served_products(root: Path) -> None:
    """A root served without a catalogue (tests, a root not yet published): only the served products."""
    from services.assets import StorageAssetFinder
    from services.downloads.app import create_app

    finder = StorageAssetFinder(root, ttl_s=3600)
    client = TestClient(create_app(finder), raise_server_exceptions=False)
    keys = every_file(root)
    served = reachable(client, keys)
    expected = {k for k in keys if (p := parse_key(k)) is not None and p.product in finder.PRODUCTS_SERVED
                and not (root / k).is_symlink()}
    assert served["files"] == expected
    assert not (set(RESTRICTED) | {LINK_OUT}) & served["files"]


def test_published_set_follows_the_catalogue_version(tmp_path: Path) -> None:
    """A key published later answers once the catalogue changes; one withdrawn stops answering."""
    from services.assets import StorageAssetFinder
    from services.downloads.published import PublishedKeys

    root = tmp_path / "root"
    storage = LocalStorage(root)
    first, second = product_key("stats_commune_csv", "S01", 2021), product_key("stats_commune_csv", "S01", 2024)
    storage.put_bytes(first, b"a,b\n1,2\n")
    finder = StorageAssetFinder(storage, ttl_s=0)
    published = PublishedKeys(finder)
    assert first in published and second not in published
    storage.put_bytes(second, b"a,b\n1,2\n")
    storage.delete(first)
    assert second in published and first not in published
    assert "../../etc/passwd" not in published and product_key("truth", "S01", 2021) not in published
