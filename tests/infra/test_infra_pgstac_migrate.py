"""The pgstac migration custom resource, run against a real PostgreSQL + PostGIS (as the RDS admin would)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from support.catalog_fixtures import postgres  # noqa: F401  (session fixture: a local PostgreSQL + PostGIS)

HANDLER = Path(__file__).resolve().parents[2] / "infra" / "pgstac_migrate" / "handler.py"
pytestmark = pytest.mark.pgstac


def _handler():  # the Lambda's module, loaded by path as the image does (it is not a package of ours)
    spec = importlib.util.spec_from_file_location("pgstac_migrate_handler", HANDLER)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_delete_leaves_the_database_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = _handler()
    monkeypatch.setattr(handler, "migrate", lambda props: pytest.fail("no migration on Delete"))
    out = handler.on_event({"RequestType": "Delete", "PhysicalResourceId": "pgstac-x", "ResourceProperties": {}})
    assert out == {"PhysicalResourceId": "pgstac-x"}


def test_migrates_and_creates_users_idempotently(postgres, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import psycopg

    handler = _handler()
    postgres.create_database("pgstac_cr")
    secrets = {
        "admin": {"username": postgres.user, "password": "unused", "host": postgres.host, "port": postgres.port,
                  "sslmode": "disable"},
        "reader": {"username": "ocsge_read", "password": "r3ad-pw"},
        "ingest": {"username": "ocsge_ingest", "password": "1ngest-pw"},
        "consolidation": {"username": "ocsge_consolidation", "password": "c0nsol-pw"},
    }
    monkeypatch.setattr(handler, "_secret", lambda arn: secrets[arn])
    props = {"pgstac_version": "0.10.0", "database": "pgstac_cr", "admin_secret_arn": "admin",
             "reader_secret_arn": "reader", "ingest_secret_arn": "ingest",
             "consolidation_secret_arn": "consolidation"}
    for request in ("Create", "Update"):  # the second run finds everything in place
        out = handler.on_event({"RequestType": request, "ResourceProperties": props})
        assert out["PhysicalResourceId"] == "pgstac-pgstac_cr"
        assert out["Data"]["PgstacVersion"].startswith("0.10")
    dsn = postgres.dsn("pgstac_cr")
    with psycopg.connect(dsn) as conn:
        version = conn.execute("SELECT pgstac.get_version()").fetchone()[0]
        grants = dict(conn.execute(
            "SELECT r.rolname, g.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
            "JOIN pg_roles g ON g.oid = m.roleid WHERE r.rolname LIKE 'ocsge_%'"
        ).fetchall())
    assert version.startswith("0.10")
    assert grants == {"ocsge_read": "pgstac_read", "ocsge_ingest": "pgstac_ingest"}
    # The reader logs in with pgstac on its search path and can search, not write.
    reader = dsn.replace(f"{postgres.user}@", "ocsge_read@")
    with psycopg.connect(reader) as conn:
        assert conn.execute("SHOW search_path").fetchone()[0].startswith("pgstac")
        conn.execute("SELECT * FROM collections LIMIT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT create_collection('{\"id\": \"x\"}'::jsonb)")

    # The consolidation store's user owns its schema, has no pgstac role, and the store opens there.
    from ocsge.consolidation.store import open_store

    store_dsn = dsn.replace(f"{postgres.user}@", "ocsge_consolidation@")
    with psycopg.connect(store_dsn) as conn:
        assert conn.execute("SHOW search_path").fetchone()[0].startswith("consolidation")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pgstac.create_collection('{\"id\": \"x\"}'::jsonb)")
    store = open_store(store_dsn, "/nonexistent-root")
    store.close()
    with psycopg.connect(dsn) as conn:
        owners = {row[0] for row in conn.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'consolidation'").fetchall()}
    assert owners == {"ocsge_consolidation"}
