"""Custom-resource handler (CDK provider framework): install or upgrade pgstac, then its users.

Runs in the pgstac Lambda image (``Dockerfile`` beside this file), never in the CDK app. On Create and
Update it connects as the RDS admin, runs ``pypgstac migrate`` to the requested version (idempotent:
an up-to-date schema is left alone), creates or updates the two application users from their secrets
and grants them ``pgstac_read`` / ``pgstac_ingest``, and the consolidation store's user, owner of its own
schema. Delete keeps the data (the database has its own
removal policy). Errors propagate: the provider framework reports them to CloudFormation.
"""

from __future__ import annotations

import json
import os
from typing import Any

ROLES = {"reader_secret_arn": "pgstac_read", "ingest_secret_arn": "pgstac_ingest"}
# users that own a schema of their own in the same database (the consolidation API's store)
SCHEMA_OWNERS = {"consolidation_secret_arn": "consolidation"}


def _secret(arn: str) -> dict[str, Any]:
    import boto3

    client = boto3.client("secretsmanager", region_name=os.environ.get("AWS_REGION"))
    return json.loads(client.get_secret_value(SecretId=arn)["SecretString"])


def _conninfo(admin: dict[str, Any], database: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(
        host=admin["host"], port=admin.get("port", 5432), user=admin["username"], password=admin["password"],
        dbname=database, sslmode=admin.get("sslmode", "require"), connect_timeout=10,
    )


def ensure_user(cursor: Any, username: str, password: str, role: str) -> None:
    """Create the login role (or reset its password), grant its pgstac role and the pgstac search path."""
    from psycopg import sql

    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (username,))
    verb = "ALTER" if cursor.fetchone() else "CREATE"
    cursor.execute(
        sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(username), sql.Literal(password))
    )
    cursor.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(username)))
    cursor.execute(sql.SQL("ALTER ROLE {} SET search_path TO pgstac, public").format(sql.Identifier(username)))


def ensure_schema_owner(cursor: Any, username: str, password: str, schema: str) -> None:
    """Create the login role (or reset its password) owning ``schema``, first on its search path (PostGIS's
    types stay reachable through ``public``); it gets no pgstac role."""
    from psycopg import sql

    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (username,))
    verb = "ALTER" if cursor.fetchone() else "CREATE"
    cursor.execute(
        sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(username), sql.Literal(password))
    )
    cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(sql.Identifier(schema),
                                                                                    sql.Identifier(username)))
    cursor.execute(sql.SQL("ALTER ROLE {} SET search_path TO {}, public").format(sql.Identifier(username),
                                                                                sql.Identifier(schema)))


def migrate(props: dict[str, Any]) -> dict[str, str]:
    import psycopg
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    admin = _secret(props["admin_secret_arn"])
    conninfo = _conninfo(admin, props["database"])
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    with PgstacDB(dsn=conninfo) as db:
        version = Migrate(db).run_migration(props["pgstac_version"])
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.cursor() as cursor:
        for key, role in ROLES.items():
            user = _secret(props[key])
            ensure_user(cursor, user["username"], user["password"], role)
        for key, schema in SCHEMA_OWNERS.items():
            if props.get(key):
                user = _secret(props[key])
                ensure_schema_owner(cursor, user["username"], user["password"], schema)
    return {"PgstacVersion": str(version)}


def on_event(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    request = event["RequestType"]
    props = event.get("ResourceProperties", {})
    physical_id = event.get("PhysicalResourceId") or f"pgstac-{props.get('database', 'pgstac')}"
    if request in ("Create", "Update"):
        data = migrate(props)
        print(f"pgstac {request.lower()}d: {data}")
        return {"PhysicalResourceId": physical_id, "Data": data}
    return {"PhysicalResourceId": physical_id}


handler = on_event
