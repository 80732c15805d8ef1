"""Opening the catalogue backend the settings name (embedded snapshot or pgstac).

``embedded`` is the snapshot's search index queried in place (:mod:`catalog.search.indexed`); ``memory``,
the whole snapshot loaded into an in-process index (:mod:`catalog.search.embedded`), is kept as the
reference the indexed backend is tested against, and for benchmarks; it is chosen explicitly only.

Kept apart from :mod:`catalog.search.base` (the interface) so that the backends can import the
interface without the interface importing them back.
"""

from __future__ import annotations

from catalog.search.base import CatalogBackend
from ocsge.errors import OcsgeError
from ocsge.settings import Settings, get_settings


def open_backend(
    kind: str | None = None, *, root: str | None = None, dsn: str | None = None, asset_base_url: str | None = None,
    settings: Settings | None = None,
) -> CatalogBackend:
    """The backend named by ``settings`` (``OCSGE_CATALOG_BACKEND``, ``OCSGE_PGSTAC_DSN``,
    ``OCSGE_ASSET_BASE_URL``, ``OCSGE_STORAGE_ROOT``) unless given explicitly."""
    settings = settings or get_settings()
    kind = kind or settings.catalog_backend
    if kind == "pgstac":
        from catalog.search.pgstac import PgstacBackend

        dsn = dsn or settings.pgstac_dsn
        if not dsn:
            raise OcsgeError("catalog backend pgstac needs a DSN: set OCSGE_PGSTAC_DSN or pass --pgstac-dsn")
        if settings.pgstac_secret_arn:
            dsn = dsn_with_secret_password(dsn, settings.pgstac_secret_arn)
        return PgstacBackend(dsn)
    from ocsge.storage import open_storage

    storage = open_storage(root or settings.storage_root)
    if kind == "memory":
        from catalog.search.embedded import EmbeddedBackend

        return EmbeddedBackend(storage, asset_base_url=asset_base_url or settings.asset_base_url)
    from catalog.search.indexed import IndexedBackend

    return IndexedBackend(storage, asset_base_url=asset_base_url or settings.asset_base_url)


def dsn_with_secret_password(dsn: str, secret_arn: str) -> str:
    """``dsn`` with the password of a Secrets Manager secret (``{"password": …}``), fetched once per
    process: on AWS the functions get a password-less DSN and the ARN of its secret, never the password."""
    import json

    import boto3
    from psycopg.conninfo import make_conninfo

    try:
        secret = json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])
        password = secret["password"]
    except Exception as exc:  # boto3 raises many kinds; each means the same: no password
        raise OcsgeError(f"cannot read the pgstac password from secret {secret_arn}: {exc}") from exc
    return make_conninfo(dsn, password=password)
