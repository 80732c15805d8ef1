"""Storage on a local folder and on an S3-compatible server on loopback: same behaviour, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from ocsge.errors import StorageError
from ocsge.storage import LocalStorage, S3Storage, open_storage, sha256_of


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> LocalStorage | S3Storage:
    if request.param == "local":
        return open_storage(tmp_path / "root")
    return open_storage(request.getfixturevalue("s3_root"))


def _raw_keys(storage: LocalStorage | S3Storage) -> list[str]:
    """Every object really present, temporary ones included (bypassing the API's own filtering)."""
    if isinstance(storage, LocalStorage):
        return sorted(p.relative_to(storage.path).as_posix() for p in storage.path.rglob("*") if p.is_file())
    client = boto3.client("s3", endpoint_url=storage.endpoint_url, region_name="eu-west-3")
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=storage.bucket).get("Contents", []))


def test_put_get_range_list_exists(storage: LocalStorage | S3Storage) -> None:
    storage.put_bytes("a/b/one.bin", b"0123456789")
    storage.put_bytes("a/two.txt", b"hello")
    assert storage.get_bytes("a/b/one.bin") == b"0123456789"
    assert storage.get_range("a/b/one.bin", 2, 3) == b"234"
    assert storage.exists("a/two.txt") and not storage.exists("a/three.txt")
    assert storage.stat("a/b/one.bin").size == 10
    assert [o.key for o in storage.list("a/")] == ["a/b/one.bin", "a/two.txt"]
    assert [o.key for o in storage.list("a/b/")] == ["a/b/one.bin"]
    storage.delete("a/two.txt")
    assert not storage.exists("a/two.txt")


def test_listing_an_empty_or_missing_root(tmp_path: Path) -> None:
    (tmp_path / "sibling.txt").write_text("outside the root")
    storage = open_storage(tmp_path / "not-yet")
    assert list(storage.list()) == [] and list(storage.list("a/")) == []
    storage.put_bytes("occupation/D001/x.parquet", b"x")
    assert [o.key for o in storage.list("occupation/D0")] == ["occupation/D001/x.parquet"]


def test_writer_publishes_with_extension_and_overwrites(storage: LocalStorage | S3Storage) -> None:
    with storage.writer("x/data.parquet") as tmp:
        assert tmp.suffix == ".parquet"  # drivers choose by extension
        tmp.write_bytes(b"v1")
    with storage.writer("x/data.parquet") as tmp:
        tmp.write_bytes(b"v2")
    assert storage.get_bytes("x/data.parquet") == b"v2"
    assert [o.key for o in storage.list()] == ["x/data.parquet"]


def test_failing_writer_leaves_no_object(storage: LocalStorage | S3Storage) -> None:
    storage.put_bytes("keep/old.tif", b"previous")
    with pytest.raises(RuntimeError, match="boom"), storage.writer("keep/old.tif") as tmp:
        tmp.write_bytes(b"half a fi")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError), storage.writer("new/file.tif") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert storage.get_bytes("keep/old.tif") == b"previous"
    assert not storage.exists("new/file.tif")
    suffix = "" if isinstance(storage, LocalStorage) else "root/"
    assert _raw_keys(storage) == [f"{suffix}keep/old.tif"]


def test_writer_that_writes_nothing_is_an_error(storage: LocalStorage | S3Storage) -> None:
    with pytest.raises(StorageError, match="produced no file"), storage.writer("empty/none.bin"):
        pass
    assert not storage.exists("empty/none.bin")


def test_local_copy_and_checksum(storage: LocalStorage | S3Storage) -> None:
    import hashlib

    data = os.urandom(3000)
    storage.put_bytes("c/blob.bin", data)
    with storage.local_copy("c/blob.bin") as path:
        assert Path(path).read_bytes() == data
    assert sha256_of(storage, "c/blob.bin", chunk=1024) == hashlib.sha256(data).hexdigest()


def test_presigned_url_serves_the_object(storage: LocalStorage | S3Storage) -> None:
    import urllib.request

    storage.put_bytes("p/file.txt", b"presigned")
    url = storage.presigned_url("p/file.txt", expires_s=60)
    with urllib.request.urlopen(url, timeout=10) as resp:  # file:// locally, http:// on the S3 server
        assert resp.read() == b"presigned"
    with pytest.raises(StorageError, match="no object"):
        storage.presigned_url("p/missing.txt")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", ""])
def test_keys_cannot_escape_the_root(storage: LocalStorage | S3Storage, key: str) -> None:
    with pytest.raises(StorageError, match="invalid storage key"):
        storage.put_bytes(key, b"x")


def test_missing_object_errors_name_the_key(storage: LocalStorage | S3Storage) -> None:
    with pytest.raises(StorageError, match="nothing/here"):
        storage.get_bytes("nothing/here")


def test_gdal_reads_through_the_storage_path(storage: LocalStorage | S3Storage) -> None:
    """Services read COGs with GDAL: /vsis3/ on S3, a plain path locally."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    with storage.writer("r/tiny.tif") as tmp, rasterio.open(
        tmp, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8", crs="EPSG:2154",
        transform=from_origin(700000, 6600000, 1, 1),
    ) as dst:
        dst.write(np.arange(64, dtype="uint8").reshape(1, 8, 8))
    with rasterio.open(storage.gdal_path("r/tiny.tif")) as src:
        assert src.read(1)[7, 7] == 63


def test_unwritable_root_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot be written"):
        LocalStorage(blocker / "root").check_writable()


def test_s3_bucket_that_does_not_exist_is_reported(s3_root: str) -> None:
    storage = open_storage("s3://no-such-bucket-xyz/prefix")
    with pytest.raises(StorageError, match="cannot be written"):
        storage.check_writable()
    assert storage.exists("a") is False


def test_unsupported_roots() -> None:
    with pytest.raises(StorageError, match="unsupported storage root"):
        open_storage("gs://bucket/x")
    with pytest.raises(StorageError, match="invalid S3 root"):
        S3Storage("s3:///nobucket")


def test_symlinks_leaving_the_root_are_refused(tmp_path: Path) -> None:
    """A link placed in the root must not make a file elsewhere readable by key (issue 18, item 4): a file
    link, a folder link, and a link to a sibling folder whose name starts like the root's."""
    from ocsge.errors import ArtifactNotFound

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.tif").write_bytes(b"root:x:0:0")
    sibling = tmp_path / "root-evil"  # "…/root-evil" starts with "…/root": the check is by path component
    sibling.mkdir()
    (sibling / "secret.tif").write_bytes(b"root:x:0:0")
    storage = LocalStorage(tmp_path / "root")
    storage.put_bytes("couverture/DS01/2021/couverture_DS01_2021.tif", b"published")
    (storage.path / "couverture/DS01/2021/couverture_DS01_2024.tif").symlink_to(outside / "secret.tif")
    (storage.path / "usage").symlink_to(outside, target_is_directory=True)
    (storage.path / "artif").symlink_to(sibling, target_is_directory=True)
    (storage.path / "inside.tif").symlink_to(storage.path / "couverture/DS01/2021/couverture_DS01_2021.tif")

    for key in ("couverture/DS01/2021/couverture_DS01_2024.tif", "usage/secret.tif", "artif/secret.tif"):
        assert storage.exists(key) is False, key
        for read in (storage.stat, storage.get_bytes, lambda k: storage.get_range(k, 0, 4), storage.gdal_path):
            with pytest.raises(ArtifactNotFound, match="leads out"):
                read(key)
        with pytest.raises(ArtifactNotFound), storage.local_copy(key):
            pass
        storage.delete(key)  # nothing of the root to delete, and nothing outside is touched
    assert (outside / "secret.tif").exists() and (sibling / "secret.tif").exists()
    keys = [o.key for o in storage.list()]
    assert keys == ["couverture/DS01/2021/couverture_DS01_2021.tif", "inside.tif"]
    assert [o.key for o in storage.list("usage/")] == []
    assert storage.get_bytes("inside.tif") == b"published"  # a link that stays in the root is fine
