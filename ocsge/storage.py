"""Object storage over a local folder or ``s3://bucket/prefix``, one small API for both.

Writers never expose half a file: a local write goes to a hidden temporary file renamed into place;
an S3 write goes to a temporary key under ``_tmp/`` then is copied to its final key. A writer that
fails leaves no object. Keys are ``/``-separated paths relative to the root (see ``ocsge.products``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlparse

from ocsge.errors import ArtifactNotFound, InvalidStorageKey, StorageError, StorageUnavailable
from ocsge.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TMP_PREFIX = "_tmp/"  # infra puts a lifecycle rule on it: temporary keys of killed writers expire


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None = None


def _check_key(key: str) -> str:
    """Refuse keys that would escape the root (``..``), absolute keys and empty segments."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidStorageKey(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    root: str

    def url(self, key: str) -> str: ...
    def gdal_path(self, key: str) -> str: ...
    def exists(self, key: str) -> bool: ...
    def stat(self, key: str) -> ObjectInfo: ...
    def get_bytes(self, key: str) -> bytes: ...
    def get_range(self, key: str, offset: int, length: int) -> bytes: ...
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None: ...
    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None: ...
    def writer(self, key: str) -> contextlib.AbstractContextManager[Path]: ...
    def local_copy(self, key: str) -> contextlib.AbstractContextManager[Path]: ...
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def delete(self, key: str) -> None: ...
    def presigned_url(self, key: str, expires_s: int | None = None) -> str: ...
    def check_writable(self) -> None: ...


def _suffix(key: str) -> str:
    # GDAL and pyogrio pick drivers from the extension: temporary files keep the final one.
    name = key.rsplit("/", 1)[-1]
    return name[name.index(".") :] if "." in name else ""


class LocalStorage:
    """A folder on this machine; atomic writes by rename in the same directory."""

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root).expanduser().resolve()
        self.root = str(self.path)

    def _path(self, key: str) -> Path:
        """The file of a key, refused if a symlink on the way leads out of the root: a link placed in the
        root (``couverture/… -> /etc``) must not make a file elsewhere on the machine readable by key."""
        path = self.path / _check_key(key)
        if not self._inside(path):
            raise ArtifactNotFound(f"no object {key!r} under {self.root} (a symbolic link leads out of it)")
        return path

    def _inside(self, path: Path) -> bool:
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def url(self, key: str) -> str:
        return str(self._path(key))

    gdal_path = url

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except ArtifactNotFound:
            return False

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ArtifactNotFound(f"no object {key!r} under {self.root}") from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key!r} under {self.root}: {exc.strerror or exc}") from None
        return ObjectInfo(key, st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}")

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ArtifactNotFound(f"no object {key!r} under {self.root}") from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key!r} under {self.root}: {exc.strerror or exc}") from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as f:
                f.seek(offset)
                return f.read(length)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ArtifactNotFound(f"no object {key!r} under {self.root}") from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key!r} under {self.root}: {exc.strerror or exc}") from None

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[Path]:
        final = self._path(key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"storage root {self.root} cannot be written: {exc}") from exc
        tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}{_suffix(key)}")
        try:
            yield tmp
            if not tmp.exists():
                raise StorageError(f"writer for {key!r} produced no file")
            os.replace(tmp, final)
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        with self.writer(key) as tmp:
            tmp.write_bytes(data)

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        with self.writer(key) as tmp:
            shutil.copyfile(path, tmp)

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise ArtifactNotFound(f"no object {key!r} under {self.root}")
        yield path

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if ".." in prefix.split("/"):
            raise InvalidStorageKey(f"invalid storage prefix {prefix!r}")
        base = self.path / prefix if prefix else self.path
        # A prefix may end inside a file name ("occupation/D0"): walk its folder, never above the root.
        start = base if base.is_dir() or base == self.path else base.parent
        if not start.is_dir():
            return
        keys: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(start):
            for name in filenames:
                if name.startswith(".") and ".tmp-" in name:
                    continue  # a writer in progress
                path = Path(dirpath, name)
                rel = path.relative_to(self.path).as_posix()
                if rel.startswith(prefix) and self._inside(path):  # a link out of the root is not an object
                    keys.append(rel)
        # Lexicographic key order, as S3 lists, so that both backends behave alike.
        for key in sorted(keys):
            yield self.stat(key)

    def delete(self, key: str) -> None:
        try:
            path = self._path(key)
        except ArtifactNotFound:
            return  # not an object of this root (a link out of it): nothing here to delete
        path.unlink(missing_ok=True)

    def presigned_url(self, key: str, expires_s: int | None = None) -> str:
        if not self.exists(key):
            raise ArtifactNotFound(f"no object {key!r} under {self.root}")
        return self._path(key).as_uri()

    def check_writable(self) -> None:
        probe = f"_probe-{uuid.uuid4().hex[:8]}"
        try:
            self.put_bytes(probe, b"ok")
        except OSError as exc:
            raise StorageError(f"storage root {self.root} cannot be written: {exc}") from exc
        self.delete(probe)


class S3Storage:
    """``s3://bucket/prefix`` through boto3; an endpoint URL makes any S3-compatible server work."""

    def __init__(self, root: str, endpoint_url: str | None = None, region: str | None = None) -> None:
        parsed = urlparse(root)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StorageError(f"invalid S3 root {root!r}: expected s3://bucket[/prefix]")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.root = root.rstrip("/")
        settings = get_settings()
        self.endpoint_url = endpoint_url or settings.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        self.region = region or settings.s3_region
        self._client: S3Client | None = None

    @property
    def client(self) -> S3Client:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                config=Config(s3={"addressing_style": "path"} if self.endpoint_url else {},
                              retries={"max_attempts": 5, "mode": "standard"}),
            )
        return self._client

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def gdal_path(self, key: str) -> str:
        return f"/vsis3/{self.bucket}/{self._key(key)}"

    def _missing(self, exc: Exception, key: str) -> StorageError:
        """A missing key (404 / NoSuchKey) is :class:`ArtifactNotFound`; anything else the store answered
        (403, throttling, 5xx) or a connection that failed is :class:`StorageUnavailable`."""
        code = ""
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return ArtifactNotFound(f"no object {key!r} under {self.root}")
        return StorageUnavailable(f"storage {self.root} did not answer for {key!r} ({code or type(exc).__name__})")

    def stat(self, key: str) -> ObjectInfo:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise self._missing(exc, key) from None
        return ObjectInfo(key, head["ContentLength"], head.get("ETag", "").strip('"') or None)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except StorageError:
            return False
        return True

    def get_bytes(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._missing(exc, key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        if length <= 0:
            return b""
        try:
            resp = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={offset}-{offset + length - 1}"
            )
            return resp["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""
            raise self._missing(exc, key) from None
        except BotoCoreError as exc:
            raise self._missing(exc, key) from None

    def _publish(self, key: str, upload_to_tmp) -> None:  # type: ignore[no-untyped-def]
        """Upload under a temporary key, then copy to the final key: readers see all or nothing."""
        from botocore.exceptions import BotoCoreError, ClientError

        tmp_key = self._key(f"{TMP_PREFIX}{uuid.uuid4().hex}/{key}")
        try:
            upload_to_tmp(tmp_key)
            self.client.copy({"Bucket": self.bucket, "Key": tmp_key}, self.bucket, self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"storage root {self.root} cannot be written ({key!r}): {exc}") from exc
        finally:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.delete_object(Bucket=self.bucket, Key=tmp_key)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        self._publish(key, lambda tmp: self.client.put_object(Bucket=self.bucket, Key=tmp, Body=data, **extra))

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        extra = {"ExtraArgs": {"ContentType": content_type}} if content_type else {}
        self._publish(key, lambda tmp: self.client.upload_file(str(path), self.bucket, tmp, **extra))

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[Path]:
        _check_key(key)
        with tempfile.TemporaryDirectory(prefix="ocsge-") as tmpdir:
            tmp = Path(tmpdir) / f"object{_suffix(key)}"
            yield tmp
            if not tmp.exists():
                raise StorageError(f"writer for {key!r} produced no file")
            self.put_file(key, tmp)

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        from botocore.exceptions import ClientError

        with tempfile.TemporaryDirectory(prefix="ocsge-") as tmpdir:
            tmp = Path(tmpdir) / key.rsplit("/", 1)[-1]
            try:
                self.client.download_file(self.bucket, self._key(key), str(tmp))
            except ClientError as exc:
                raise self._missing(exc, key) from None
            yield tmp

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if ".." in prefix.split("/"):
            raise InvalidStorageKey(f"invalid storage prefix {prefix!r}")
        from botocore.exceptions import BotoCoreError, ClientError

        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            pages = list(paginator.paginate(Bucket=self.bucket, Prefix=full))
        except (ClientError, BotoCoreError) as exc:
            raise self._missing(exc, prefix or "/") from None
        for page in pages:
            for obj in page.get("Contents", []):
                rel = self._rel(obj["Key"])
                if rel.startswith(TMP_PREFIX):
                    continue
                yield ObjectInfo(rel, obj["Size"], obj.get("ETag", "").strip('"') or None)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def presigned_url(self, key: str, expires_s: int | None = None) -> str:
        self.stat(key)  # a link to nothing is an error now, not a 404 later
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=expires_s or get_settings().presign_expires_s,
        )

    def check_writable(self) -> None:
        probe = f"_probe-{uuid.uuid4().hex[:8]}"
        self.put_bytes(probe, b"ok")
        self.delete(probe)


def open_storage(root: str | Path | None = None) -> LocalStorage | S3Storage:
    """The storage for a root (default: ``OCSGE_STORAGE_ROOT``)."""
    root = str(root if root is not None else get_settings().storage_root)
    if root.startswith("s3://"):
        return S3Storage(root)
    if "://" in root:
        raise StorageError(f"unsupported storage root {root!r}: use a folder or s3://bucket/prefix")
    return LocalStorage(root)


def sha256_of(storage: Storage, key: str, chunk: int = 8 << 20) -> str:
    """SHA-256 of an object, read by ranges so that large archives never sit whole in memory."""
    digest = hashlib.sha256()
    size = storage.stat(key).size
    for offset in range(0, size, chunk):
        digest.update(storage.get_range(key, offset, min(chunk, size - offset)))
    return digest.hexdigest()
