"""pytest fixtures shared by the catalogue and STAC API tests (import them into a conftest.py).

``sample_root``: a storage root with the sample artifacts of :mod:`support.catalog_samples`, published.
``pgstac_dsn``: a real PostgreSQL + PostGIS started for the session with pgstac migrated and the sample
catalogue loaded. Without PostgreSQL the pgstac tests skip locally and FAIL under CI (``CI=true``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog.pglocal import LocalPostgres, PostgresUnavailable, pgstac_database
from catalog.publish import publish
from ocsge.storage import open_storage
from support.catalog_samples import build_samples


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("catalogue-root")
    storage = open_storage(root)
    build_samples(storage)
    publish(storage)
    return str(root)


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    try:
        pg = LocalPostgres().start()
    except PostgresUnavailable as exc:
        message = f"PostgreSQL + PostGIS needed for the pgstac tests: {exc}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def pgstac_dsn(postgres: LocalPostgres, sample_root: str) -> str:
    dsn = pgstac_database(postgres, "pgstac_samples")
    publish(open_storage(sample_root), pgstac_dsn=dsn)
    return dsn


@pytest.fixture(params=["embedded", "memory", "pgstac"])
def backend(request: pytest.FixtureRequest, sample_root: str) -> Iterator[object]:
    """Each catalogue backend over the same published samples (the conformance suite runs on all three):
    the embedded index queried in place, the in-memory index it replaced, pgstac."""
    from catalog.search.embedded import EmbeddedBackend
    from catalog.search.indexed import IndexedBackend
    from catalog.search.pgstac import PgstacBackend

    if request.param == "embedded":
        be: object = IndexedBackend(open_storage(sample_root), asset_base_url=Path(sample_root).as_posix())
    elif request.param == "memory":
        be = EmbeddedBackend(open_storage(sample_root), asset_base_url=Path(sample_root).as_posix())
    else:
        be = PgstacBackend(request.getfixturevalue("pgstac_dsn"))
    yield be
    be.close()  # type: ignore[attr-defined]
