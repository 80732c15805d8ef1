"""Downloads (listing with sizes and checksums, files or presigned URLs, no path traversal) and commune
statistics (JSON and CSV)."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def client(finder):
    from services.downloads.app import create_app

    return TestClient(create_app(finder), raise_server_exceptions=False)


def test_listing_has_sizes_and_checksums(client, territory):
    data = (territory.root / territory.archive_key).read_bytes()
    assert client.get("/downloads").json() == ["S01"]
    listing = client.get("/downloads/S01").json()
    assert listing["departement"] == "S01"
    (archive,) = listing["archives"]
    assert archive["name"] == "archives_DS01_2021.zip"
    assert archive["millesime"] == "2021"
    assert archive["size"] == len(data)
    assert archive["checksum"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert archive["href"] == "http://testserver/downloads/S01/archives_DS01_2021.zip"
    # département spellings users type resolve to the same code
    assert client.get("/downloads/DS01").json()["departement"] == "S01"


def test_download_local_file(client, territory):
    data = (territory.root / territory.archive_key).read_bytes()
    resp = client.get("/downloads/S01/archives_DS01_2021.zip")
    assert resp.status_code == 200
    assert resp.content == data
    assert resp.headers["content-disposition"] == 'attachment; filename="archives_DS01_2021.zip"'
    assert resp.headers["digest"] == "sha-256=" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "path",
    [
        "/downloads/S01/../../etc/passwd",
        "/downloads/S01/..%2F..%2F..%2Fetc%2Fpasswd",
        "/downloads/S01/%2Fetc%2Fpasswd",
        "/downloads/..%2F..%2Fetc/passwd",
        "/downloads/S01/archives%2F..%2F..%2Fetc%2Fpasswd",
        "/downloads/S01/couverture_DS01_2021.tif",
        "/downloads/99/archives_DS01_2021.zip",
        "/downloads/XYZ",
    ],
)
def test_path_traversal_and_unknown_files_are_4xx(client, path):
    resp = client.get(path)
    assert 400 <= resp.status_code < 500, (path, resp.status_code)
    assert b"root:" not in resp.content


def test_presigned_url_on_s3(s3_root, territory):
    from ocsge.storage import open_storage
    from services.assets import StorageAssetFinder
    from services.downloads.app import create_app

    storage = open_storage(s3_root)
    storage.put_file(territory.archive_key, territory.root / territory.archive_key)
    client = TestClient(create_app(StorageAssetFinder(storage)))
    resp = client.get("/downloads/S01/archives_DS01_2021.zip", follow_redirects=False)
    assert resp.status_code == 307
    url = resp.headers["location"]
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=" in url
    import httpx

    assert httpx.get(url).content == (territory.root / territory.archive_key).read_bytes()


def test_commune_stats_json_and_csv(client):
    listing = client.get("/stats/S01").json()
    assert [m["millesime"] for m in listing["millesimes"]] == ["2021"]
    data = client.get("/stats/S01/2021/communes.json").json()
    assert data["communes"][0] == {"code_insee": "S0101", "nom": "Commune Nord", "millesime": 2021,
                                   "surface_ha": 327.68, "artif_ha": 81.92, "artif_pct": 25.0}
    one = client.get("/stats/S01/2021/communes.json?commune=S0102").json()
    assert [c["nom"] for c in one["communes"]] == ["Commune Sud"]
    csv_text = client.get("/stats/S01/2021/communes.csv")
    assert csv_text.headers["content-type"].startswith("text/csv")
    assert csv_text.text.splitlines()[0] == "code_insee,nom,millesime,surface_ha,artif_ha,artif_pct"
    assert client.get("/stats/S01/2019/communes.json").status_code == 404
    assert client.get("/stats/S01/2021/communes.xml").status_code == 400
    assert client.get("/stats/S01/2021/communes.json?commune=00000").status_code == 404


def test_files_route_serves_artifacts_by_key_with_ranges(client, territory):
    from ocsge.products import product_key

    key = product_key("couverture_cog", "S01", 2021)
    data = (territory.root / key).read_bytes()
    whole = client.get(f"/files/{key}")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"].startswith("image/tiff")
    part = client.get(f"/files/{key}", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert client.get(f"/files/{key}", headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    assert client.head(f"/files/{key}").headers["content-length"] == str(len(data))


@pytest.mark.parametrize(
    "key",
    ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "stac/catalog.json", "_tmp/x/couverture_DS01_2021.tif",
     "couverture/DS01/2021/couverture_DS01_2022.tif", "couverture/DS01/2024/couverture_DS01_2024.tif.aux.xml"],
)
def test_files_route_serves_nothing_but_artifacts(client, key):
    resp = client.get(f"/files/{key}")
    assert resp.status_code == 404, (key, resp.status_code)
    assert b"root:" not in resp.content
