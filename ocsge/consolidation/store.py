"""The consolidation store: one interface over SQLite (embedded default) and PostgreSQL (at scale).

Every write is one transaction that also appends its audit row (who, when, what, before/after), so a
write either lands with its audit entry or not at all. Tasks, polygons and contributions carry a
``version``: a write names the version it read, and an update ``… WHERE version = ?`` that matches no row
means someone else wrote first — :class:`Conflict` (HTTP 409), the transaction is rolled back, nothing is
lost and the second writer is told. SQLite serialises writers (``BEGIN IMMEDIATE``); PostgreSQL's row lock
makes the second ``UPDATE … WHERE version = ?`` re-read the row and match nothing.

Geometries are WKB in the département's CRS with their bounding box in four columns, so that "what lies in
this cell" is an index range query on both engines; geometry operations are shapely's, in the caller. With
PostGIS, PostgreSQL also gets a ``geom`` column derived from the WKB, GiST-indexed, which the bbox queries
use (and GIS clients can read). The SQL is written once with ``?`` placeholders (PostgreSQL gets ``%s``);
the DDL differs only by types.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ocsge.consolidation.model import (
    Account,
    Conflict,
    Contribution,
    ContributionStatus,
    Forbidden,
    InvalidInput,
    NotFound,
    Polygon,
    PreviousPolygon,
    Provenance,
    Role,
    Task,
    TaskStatus,
    Window,
)

Bbox = tuple[float, float, float, float]
log = logging.getLogger("ocsge.consolidation")

_TABLES = """
CREATE TABLE IF NOT EXISTS accounts (
    username TEXT PRIMARY KEY, password_hash TEXT, role INTEGER NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revoked_tokens (jti TEXT PRIMARY KEY, expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS windows (
    id TEXT PRIMARY KEY, departement TEXT NOT NULL, millesime INTEGER NOT NULL,
    previous_millesime INTEGER NOT NULL, opens TEXT NOT NULL, closes TEXT NOT NULL, epsg INTEGER NOT NULL,
    minx {real} NOT NULL, miny {real} NOT NULL, maxx {real} NOT NULL, maxy {real} NOT NULL,
    grid_key TEXT NOT NULL, auto_key TEXT NOT NULL, previous_key TEXT NOT NULL, created_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    window_id TEXT NOT NULL, id TEXT NOT NULL, wkb {blob} NOT NULL,
    minx {real} NOT NULL, miny {real} NOT NULL, maxx {real} NOT NULL, maxy {real} NOT NULL,
    status TEXT NOT NULL, version INTEGER NOT NULL, changed_area_m2 {real} NOT NULL DEFAULT 0,
    assignee TEXT, done_by TEXT, done_at TEXT, sampled INTEGER NOT NULL DEFAULT 0, checked_by TEXT,
    agree INTEGER, check_comment TEXT, PRIMARY KEY (window_id, id));
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (window_id, status);
CREATE TABLE IF NOT EXISTS polygons (
    window_id TEXT NOT NULL, id TEXT NOT NULL, code_cs TEXT NOT NULL, code_us TEXT NOT NULL,
    wkb {blob} NOT NULL, minx {real} NOT NULL, miny {real} NOT NULL, maxx {real} NOT NULL, maxy {real} NOT NULL,
    version INTEGER NOT NULL, provenance TEXT NOT NULL, parent_id TEXT, retired INTEGER NOT NULL DEFAULT 0,
    updated_by TEXT, updated_at TEXT, PRIMARY KEY (window_id, id));
CREATE INDEX IF NOT EXISTS polygons_bbox ON polygons (window_id, minx, maxx, miny, maxy);
CREATE TABLE IF NOT EXISTS previous_polygons (
    window_id TEXT NOT NULL, id TEXT NOT NULL, code_cs TEXT NOT NULL, code_us TEXT NOT NULL,
    wkb {blob} NOT NULL, minx {real} NOT NULL, miny {real} NOT NULL, maxx {real} NOT NULL, maxy {real} NOT NULL,
    PRIMARY KEY (window_id, id));
CREATE INDEX IF NOT EXISTS previous_bbox ON previous_polygons (window_id, minx, maxx, miny, maxy);
CREATE TABLE IF NOT EXISTS contributions (
    id TEXT PRIMARY KEY, window_id TEXT NOT NULL, wkb {blob} NOT NULL,
    minx {real} NOT NULL, miny {real} NOT NULL, maxx {real} NOT NULL, maxy {real} NOT NULL,
    code_cs TEXT NOT NULL, code_us TEXT NOT NULL, comment TEXT NOT NULL, status TEXT NOT NULL,
    author TEXT NOT NULL, created TEXT NOT NULL, version INTEGER NOT NULL, reviewer TEXT, reviewed_at TEXT,
    reason TEXT);
CREATE INDEX IF NOT EXISTS contributions_status ON contributions (window_id, status);
CREATE TABLE IF NOT EXISTS audit (
    id {serial}, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, entity TEXT NOT NULL,
    entity_id TEXT NOT NULL, window_id TEXT, before TEXT, after TEXT);
"""

_GEOMETRY_TABLES = ("tasks", "polygons", "previous_polygons", "contributions")
_SQLITE_TYPES = {"real": "REAL", "blob": "BLOB", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"}
_PG_TYPES = {"real": "DOUBLE PRECISION", "blob": "BYTEA", "serial": "BIGSERIAL PRIMARY KEY"}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Tx:
    """One transaction: ``?``-placeholder SQL on either engine; rows as tuples."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        if self.postgres:
            sql = sql.replace("?", "%s")
        return self.conn.execute(sql, tuple(params))

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """One statement for many rows (a window's snapshot: batched, not a round trip per row)."""
        if self.postgres:
            with self.conn.cursor() as cur:
                cur.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])
        else:
            self.conn.executemany(sql, (tuple(r) for r in rows))

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.execute(sql, params).fetchall()

    def audit(
        self,
        actor: str,
        action: str,
        entity: str,
        entity_id: str,
        window_id: str | None,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> None:
        self.execute(
            "INSERT INTO audit (at, actor, action, entity, entity_id, window_id, before, after) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                now(),
                actor,
                action,
                entity,
                entity_id,
                window_id,
                None if before is None else json.dumps(before, default=_jsonable),
                None if after is None else json.dumps(after, default=_jsonable),
            ),
        )


def _jsonable(value: object) -> object:
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


# --- row mapping -----------------------------------------------------------------------------------

_TASK_COLS = (
    "window_id, id, wkb, status, version, changed_area_m2, assignee, done_by, done_at, sampled, "
    "checked_by, agree, check_comment"
)
_POLY_COLS = "window_id, id, code_cs, code_us, wkb, version, provenance, parent_id, retired, updated_by, updated_at"
_CONTRIB_COLS = (
    "id, window_id, wkb, code_cs, code_us, comment, status, author, created, version, reviewer, reviewed_at, reason"
)
_WINDOW_COLS = (
    "id, departement, millesime, previous_millesime, opens, closes, epsg, minx, miny, maxx, maxy, "
    "grid_key, auto_key, previous_key, created_by"
)


def _task(r: Sequence[Any]) -> Task:
    return Task(
        r[0],
        r[1],
        bytes(r[2]),
        TaskStatus(r[3]),
        int(r[4]),
        float(r[5]),
        r[6],
        r[7],
        r[8],
        bool(r[9]),
        r[10],
        None if r[11] is None else bool(r[11]),
        r[12],
    )


def _polygon(r: Sequence[Any]) -> Polygon:
    return Polygon(r[0], r[1], r[2], r[3], bytes(r[4]), int(r[5]), Provenance(r[6]), r[7], bool(r[8]), r[9], r[10])


def _contribution(r: Sequence[Any]) -> Contribution:
    return Contribution(
        r[0], r[1], bytes(r[2]), r[3], r[4], r[5], ContributionStatus(r[6]), r[7], r[8], int(r[9]), r[10], r[11], r[12]
    )


def _window(r: Sequence[Any]) -> Window:
    return Window(
        r[0], r[1], int(r[2]), int(r[3]), r[4], r[5], int(r[6]), (r[7], r[8], r[9], r[10]), r[11], r[12], r[13], r[14]
    )


def task_summary(t: Task) -> dict[str, Any]:
    return {
        "id": t.id,
        "status": str(t.status),
        "version": t.version,
        "assignee": t.assignee,
        "done_by": t.done_by,
        "sampled": t.sampled,
        "checked_by": t.checked_by,
        "agree": t.agree,
    }


def polygon_summary(p: Polygon) -> dict[str, Any]:
    return {
        "id": p.id,
        "code_cs": p.code_cs,
        "code_us": p.code_us,
        "version": p.version,
        "provenance": str(p.provenance),
        "retired": p.retired,
    }


def contribution_summary(c: Contribution) -> dict[str, Any]:
    return {
        "id": c.id,
        "status": str(c.status),
        "code_cs": c.code_cs,
        "code_us": c.code_us,
        "version": c.version,
        "reviewer": c.reviewer,
        "reason": c.reason,
    }


# --- the store -------------------------------------------------------------------------------------


class ConsolidationStore:
    """Accounts, windows, tasks, polygons, contributions and the audit log, on SQLite or PostgreSQL."""

    def __init__(self, target: str | Path) -> None:
        text = str(target)
        self.postgres = text.startswith(("postgresql://", "postgres://"))
        self.target = text
        self._pool: Any = None
        self._lock = threading.Lock()
        self.postgis = False
        if not self.postgres:
            Path(text).parent.mkdir(parents=True, exist_ok=True)
        self._create_schema()

    def __repr__(self) -> str:
        return f"ConsolidationStore({'postgresql' if self.postgres else 'sqlite'})"

    # connections ----------------------------------------------------------------------------------

    def _connect_sqlite(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.target, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _pg_pool(self) -> Any:
        with self._lock:
            if self._pool is None:
                from psycopg_pool import ConnectionPool

                self._pool = ConnectionPool(self.target, min_size=1, max_size=8, open=True, timeout=30)
            return self._pool

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        """One transaction: committed if the block returns, rolled back (nothing written) if it raises."""
        if self.postgres:
            with self._pg_pool().connection() as conn, conn.transaction():
                yield Tx(conn, postgres=True)
            return
        conn = self._connect_sqlite()
        try:
            conn.execute("BEGIN IMMEDIATE")  # one writer at a time: version checks and writes are atomic
            try:
                yield Tx(conn, postgres=False)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only view (no write lock on SQLite)."""
        if self.postgres:
            with self._pg_pool().connection() as conn:
                yield Tx(conn, postgres=True)
                conn.rollback()
            return
        conn = self._connect_sqlite()
        try:
            yield Tx(conn, postgres=False)
        finally:
            conn.close()

    def _create_schema(self) -> None:
        ddl = _TABLES.format(**(_PG_TYPES if self.postgres else _SQLITE_TYPES))
        with self.tx() as tx:
            for statement in (s.strip() for s in ddl.split(";")):
                if statement:
                    tx.execute(statement)
        self.postgis = self.postgres and self._add_postgis()

    def _add_postgis(self) -> bool:
        """On PostgreSQL with PostGIS: a ``geom`` column derived from the WKB of every geometry table, with a
        GiST index — the spatial queries use it, and QGIS or ``ogr2ogr`` read the store as a PostGIS
        source. Without PostGIS (or the right to create the extension) the bounding-box columns serve."""
        import psycopg

        try:
            with self.tx() as tx:
                tx.execute("CREATE EXTENSION IF NOT EXISTS postgis")
                for table in _GEOMETRY_TABLES:
                    tx.execute(
                        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS geom geometry "
                        "GENERATED ALWAYS AS (ST_GeomFromWKB(wkb)) STORED"
                    )
                    tx.execute(f"CREATE INDEX IF NOT EXISTS {table}_geom ON {table} USING GIST (geom)")
        except psycopg.Error as exc:
            log.warning("consolidation store without PostGIS geometry columns: %s", exc)
            return False
        return True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # accounts -------------------------------------------------------------------------------------

    def create_account(self, username: str, password_hash: str | None, role: Role, actor: str) -> Account:
        with self.tx() as tx:
            if tx.one("SELECT 1 FROM accounts WHERE username = ?", (username,)):
                raise Conflict(f"account {username!r} exists")
            created = now()
            tx.execute(
                "INSERT INTO accounts (username, password_hash, role, disabled, created) VALUES (?, ?, ?, 0, ?)",
                (username, password_hash, int(role), created),
            )
            tx.audit(actor, "create", "account", username, None, None, {"role": role.label})
        return Account(username, role, False, password_hash, created)

    def get_account(self, username: str) -> Account | None:
        with self.read() as tx:
            r = tx.one(
                "SELECT username, role, disabled, password_hash, created FROM accounts WHERE username = ?", (username,)
            )
        return None if r is None else Account(r[0], Role(int(r[1])), bool(r[2]), r[3], r[4])

    def list_accounts(self) -> list[Account]:
        with self.read() as tx:
            rows = tx.all("SELECT username, role, disabled, password_hash, created FROM accounts ORDER BY username")
        return [Account(r[0], Role(int(r[1])), bool(r[2]), r[3], r[4]) for r in rows]

    def set_disabled(self, username: str, disabled: bool, actor: str) -> None:
        with self.tx() as tx:
            r = tx.one("SELECT disabled FROM accounts WHERE username = ?", (username,))
            if r is None:
                raise NotFound(f"no account {username!r}")
            tx.execute("UPDATE accounts SET disabled = ? WHERE username = ?", (int(disabled), username))
            tx.audit(
                actor,
                "disable" if disabled else "enable",
                "account",
                username,
                None,
                {"disabled": bool(r[0])},
                {"disabled": disabled},
            )

    def revoke(self, jti: str, expires: int, actor: str) -> None:
        with self.tx() as tx:
            if not tx.one("SELECT 1 FROM revoked_tokens WHERE jti = ?", (jti,)):
                tx.execute("INSERT INTO revoked_tokens (jti, expires) VALUES (?, ?)", (jti, expires))
            tx.execute("DELETE FROM revoked_tokens WHERE expires < ?", (int(datetime.now(UTC).timestamp()),))
            tx.audit(actor, "logout", "token", jti, None, None, None)

    def is_revoked(self, jti: str) -> bool:
        with self.read() as tx:
            return tx.one("SELECT 1 FROM revoked_tokens WHERE jti = ?", (jti,)) is not None

    # windows --------------------------------------------------------------------------------------

    def open_window(
        self,
        window: Window,
        tasks: Sequence[Task],
        polygons: Sequence[Polygon],
        previous: Sequence[PreviousPolygon],
        bounds: dict[bytes, Bbox],
    ) -> Window:
        """Create a window with its tasks and its snapshots, all or nothing. ``bounds`` gives the bbox of
        each WKB (computed by the caller with shapely)."""
        with self.tx() as tx:
            if tx.one("SELECT 1 FROM windows WHERE id = ?", (window.id,)):
                raise Conflict(f"window {window.id} is already open")
            tx.execute(
                f"INSERT INTO windows ({_WINDOW_COLS}) VALUES ({', '.join('?' * 15)})",
                (
                    window.id,
                    window.departement,
                    window.millesime,
                    window.previous_millesime,
                    window.opens,
                    window.closes,
                    window.epsg,
                    *window.bbox,
                    window.grid_key,
                    window.auto_key,
                    window.previous_key,
                    window.created_by,
                ),
            )
            tx.many(
                "INSERT INTO tasks (window_id, id, wkb, minx, miny, maxx, maxy, status, version, "
                "changed_area_m2) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                ((window.id, t.id, t.wkb, *bounds[t.wkb], str(TaskStatus.TODO), t.changed_area_m2) for t in tasks),
            )
            tx.many(
                "INSERT INTO polygons (window_id, id, code_cs, code_us, wkb, minx, miny, maxx, maxy, "
                "version, provenance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                (
                    (window.id, p.id, p.code_cs, p.code_us, p.wkb, *bounds[p.wkb], str(Provenance.AUTO))
                    for p in polygons
                ),
            )
            tx.many(
                "INSERT INTO previous_polygons (window_id, id, code_cs, code_us, wkb, minx, miny, maxx, "
                "maxy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((window.id, p.id, p.code_cs, p.code_us, p.wkb, *bounds[p.wkb]) for p in previous),
            )
            tx.audit(
                window.created_by,
                "open",
                "window",
                window.id,
                window.id,
                None,
                {
                    "tasks": len(tasks),
                    "polygons": len(polygons),
                    "previous": len(previous),
                    "closes": window.closes,
                    "grid": window.grid_key,
                    "auto": window.auto_key,
                },
            )
        return replace(window, tasks=len(tasks), polygons=len(polygons))

    def get_window(self, window_id: str) -> Window:
        with self.read() as tx:
            r = tx.one(f"SELECT {_WINDOW_COLS} FROM windows WHERE id = ?", (window_id,))
            if r is None:
                raise NotFound(f"no consolidation window {window_id}")
            counts = tx.one(
                "SELECT (SELECT COUNT(*) FROM tasks WHERE window_id = ?), "
                "(SELECT COUNT(*) FROM polygons WHERE window_id = ? AND retired = 0)",
                (window_id, window_id),
            )
        return replace(_window(r), tasks=int(counts[0]), polygons=int(counts[1]))

    def list_windows(self) -> list[Window]:
        with self.read() as tx:
            ids = [r[0] for r in tx.all("SELECT id FROM windows ORDER BY id")]
        return [self.get_window(i) for i in ids]

    # tasks ----------------------------------------------------------------------------------------

    def list_tasks(self, window_id: str, status: TaskStatus | None = None) -> list[Task]:
        sql = f"SELECT {_TASK_COLS} FROM tasks WHERE window_id = ?"
        params: list[Any] = [window_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(str(status))
        with self.read() as tx:
            return [_task(r) for r in tx.all(sql + " ORDER BY id", params)]

    def get_task(self, window_id: str, task_id: str, tx: Tx | None = None) -> Task:
        if tx is None:
            with self.read() as rtx:
                return self.get_task(window_id, task_id, rtx)
        r = tx.one(f"SELECT {_TASK_COLS} FROM tasks WHERE window_id = ? AND id = ?", (window_id, task_id))
        if r is None:
            raise NotFound(f"no task {task_id} in window {window_id}")
        return _task(r)

    def task_bbox(self, window_id: str, task_id: str) -> Bbox:
        with self.read() as tx:
            r = tx.one("SELECT minx, miny, maxx, maxy FROM tasks WHERE window_id = ? AND id = ?", (window_id, task_id))
        if r is None:
            raise NotFound(f"no task {task_id} in window {window_id}")
        return (float(r[0]), float(r[1]), float(r[2]), float(r[3]))

    def _meets(self, bbox: Bbox) -> tuple[str, tuple[float, ...]]:
        """SQL (and its parameters) keeping the rows whose bounding box meets ``bbox``: PostGIS's ``&&`` on
        the GiST index when there is one, else the four bbox columns."""
        if self.postgis:
            return "geom && ST_MakeEnvelope(?, ?, ?, ?)", bbox
        return "minx <= ? AND maxx >= ? AND miny <= ? AND maxy >= ?", (bbox[2], bbox[0], bbox[3], bbox[1])

    def polygons_in(self, window_id: str, bbox: Bbox) -> list[Polygon]:
        """Live polygons whose bbox meets ``bbox`` (the caller keeps those that really intersect)."""
        where, params = self._meets(bbox)
        with self.read() as tx:
            rows = tx.all(
                f"SELECT {_POLY_COLS} FROM polygons WHERE window_id = ? AND retired = 0 AND {where} ORDER BY id",
                (window_id, *params),
            )
        return [_polygon(r) for r in rows]

    def previous_in(self, window_id: str, bbox: Bbox) -> list[PreviousPolygon]:
        where, params = self._meets(bbox)
        with self.read() as tx:
            rows = tx.all(
                "SELECT window_id, id, code_cs, code_us, wkb FROM previous_polygons WHERE window_id = ? "
                f"AND {where} ORDER BY id",
                (window_id, *params),
            )
        return [PreviousPolygon(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def all_polygons(self, window_id: str) -> list[Polygon]:
        """Every polygon of the window's snapshot, retired ones included (the export replaces them)."""
        with self.read() as tx:
            return [
                _polygon(r)
                for r in tx.all(f"SELECT {_POLY_COLS} FROM polygons WHERE window_id = ? ORDER BY id", (window_id,))
            ]

    def get_polygon(self, window_id: str, polygon_id: str) -> Polygon:
        with self.read() as tx:
            r = tx.one(f"SELECT {_POLY_COLS} FROM polygons WHERE window_id = ? AND id = ?", (window_id, polygon_id))
        if r is None:
            raise NotFound(f"no polygon {polygon_id} in window {window_id}")
        return _polygon(r)

    def _editable_task(self, tx: Tx, window_id: str, task_id: str) -> Task:
        task = self.get_task(window_id, task_id, tx)
        if task.status is TaskStatus.CHECKED:
            raise Conflict(f"task {task_id} is checked: its polygons are frozen")
        return task

    def _live_polygon(self, tx: Tx, window_id: str, polygon_id: str, version: int) -> Polygon:
        r = tx.one(f"SELECT {_POLY_COLS} FROM polygons WHERE window_id = ? AND id = ?", (window_id, polygon_id))
        if r is None:
            raise NotFound(f"no polygon {polygon_id} in window {window_id}")
        polygon = _polygon(r)
        if polygon.retired:
            raise Conflict(f"polygon {polygon_id} was split (version {polygon.version}): reload the task")
        if polygon.version != version:
            raise Conflict(
                f"polygon {polygon_id} is at version {polygon.version}, not {version}: someone edited "
                "it since you read it; reload the task"
            )
        return polygon

    def _touch_task(self, tx: Tx, task: Task, actor: str) -> Task:
        """An edit bumps its task's version (a stale 'done' is then refused) and assigns it if unassigned."""
        tx.execute(
            "UPDATE tasks SET version = version + 1, assignee = COALESCE(assignee, ?) WHERE window_id = ? AND id = ?",
            (actor, task.window_id, task.id),
        )
        return replace(task, version=task.version + 1, assignee=task.assignee or actor)

    def reclassify(
        self, window_id: str, task_id: str, polygon_id: str, version: int, code_cs: str, code_us: str, actor: str
    ) -> tuple[Task, list[Polygon]]:
        with self.tx() as tx:
            task = self._editable_task(tx, window_id, task_id)
            before = self._live_polygon(tx, window_id, polygon_id, version)
            stamp = now()
            cur = tx.execute(
                "UPDATE polygons SET code_cs = ?, code_us = ?, version = version + 1, provenance = ?, "
                "updated_by = ?, updated_at = ? WHERE window_id = ? AND id = ? AND version = ? "
                "AND retired = 0",
                (code_cs, code_us, str(Provenance.PI), actor, stamp, window_id, polygon_id, version),
            )
            if cur.rowcount != 1:  # lost a race with a concurrent writer between the read and the update
                raise Conflict(f"polygon {polygon_id} changed while it was being edited; reload the task")
            after = replace(
                before,
                code_cs=code_cs,
                code_us=code_us,
                version=version + 1,
                provenance=Provenance.PI,
                updated_by=actor,
                updated_at=stamp,
            )
            task = self._touch_task(tx, task, actor)
            tx.audit(
                actor,
                "reclassify",
                "polygon",
                polygon_id,
                window_id,
                polygon_summary(before),
                {**polygon_summary(after), "task": task_id},
            )
        return task, [after]

    def split(
        self,
        window_id: str,
        task_id: str,
        polygon_id: str,
        version: int,
        parts: Sequence[tuple[bytes, Bbox, str, str]],
        actor: str,
    ) -> tuple[Task, list[Polygon]]:
        """Retire the polygon and insert its parts (``{id}.1``, ``{id}.2``…) as ``pi`` polygons."""
        with self.tx() as tx:
            task = self._editable_task(tx, window_id, task_id)
            before = self._live_polygon(tx, window_id, polygon_id, version)
            stamp = now()
            cur = tx.execute(
                "UPDATE polygons SET retired = 1, version = version + 1, updated_by = ?, updated_at = ? "
                "WHERE window_id = ? AND id = ? AND version = ? AND retired = 0",
                (actor, stamp, window_id, polygon_id, version),
            )
            if cur.rowcount != 1:
                raise Conflict(f"polygon {polygon_id} changed while it was being edited; reload the task")
            created: list[Polygon] = []
            for n, (wkb, bbox, cs, us) in enumerate(parts, start=1):
                child = Polygon(
                    window_id, f"{polygon_id}.{n}", cs, us, wkb, 1, Provenance.PI, polygon_id, False, actor, stamp
                )
                if tx.one("SELECT 1 FROM polygons WHERE window_id = ? AND id = ?", (window_id, child.id)):
                    raise Conflict(f"polygon {child.id} exists already")
                tx.execute(
                    "INSERT INTO polygons (window_id, id, code_cs, code_us, wkb, minx, miny, maxx, maxy, "
                    "version, provenance, parent_id, retired, updated_by, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, 0, ?, ?)",
                    (window_id, child.id, cs, us, wkb, *bbox, str(Provenance.PI), polygon_id, actor, stamp),
                )
                created.append(child)
            task = self._touch_task(tx, task, actor)
            tx.audit(
                actor,
                "split",
                "polygon",
                polygon_id,
                window_id,
                {**polygon_summary(before), "wkb": before.wkb},
                {"task": task_id, "parts": [{**polygon_summary(c), "wkb": c.wkb} for c in created]},
            )
        return task, created

    def mark_done(self, window_id: str, task_id: str, version: int, actor: str) -> Task:
        with self.tx() as tx:
            task = self.get_task(window_id, task_id, tx)
            if task.status is TaskStatus.CHECKED:
                raise Conflict(f"task {task_id} is checked already")
            stamp = now()
            cur = tx.execute(
                "UPDATE tasks SET status = ?, version = version + 1, done_by = ?, done_at = ?, "
                "assignee = COALESCE(assignee, ?) WHERE window_id = ? AND id = ? AND version = ?",
                (str(TaskStatus.DONE), actor, stamp, actor, window_id, task_id, version),
            )
            if cur.rowcount != 1:
                raise Conflict(
                    f"task {task_id} is at version {task.version}, not {version}: it changed since you "
                    "read it; reload it"
                )
            after = replace(
                task,
                status=TaskStatus.DONE,
                version=task.version + 1,
                done_by=actor,
                done_at=stamp,
                assignee=task.assignee or actor,
            )
            tx.audit(actor, "done", "task", task_id, window_id, task_summary(task), task_summary(after))
        return after

    def sample(self, window_id: str, count: int, seed: int | None, actor: str) -> list[str]:
        """Draw ``count`` done tasks not sampled yet for the recette (a second interpreter checks them)."""
        with self.tx() as tx:
            ids = [
                r[0]
                for r in tx.all(
                    "SELECT id FROM tasks WHERE window_id = ? AND status = ? AND sampled = 0 ORDER BY id",
                    (window_id, str(TaskStatus.DONE)),
                )
            ]
            chosen = sorted(random.Random(seed).sample(ids, min(count, len(ids))))
            for task_id in chosen:
                tx.execute(
                    "UPDATE tasks SET sampled = 1, version = version + 1 WHERE window_id = ? AND id = ?",
                    (window_id, task_id),
                )
            tx.audit(actor, "sample", "window", window_id, window_id, None, {"tasks": chosen, "seed": seed})
        return chosen

    def check(self, window_id: str, task_id: str, version: int, agree: bool, comment: str | None, actor: str) -> Task:
        with self.tx() as tx:
            task = self.get_task(window_id, task_id, tx)
            if not task.sampled or task.status is not TaskStatus.DONE:
                raise Conflict(f"task {task_id} is not a done task drawn for the recette")
            if task.done_by == actor:
                raise Forbidden(f"task {task_id} was done by {actor}: a second interpreter checks it")
            cur = tx.execute(
                "UPDATE tasks SET status = ?, version = version + 1, checked_by = ?, agree = ?, "
                "check_comment = ? WHERE window_id = ? AND id = ? AND version = ?",
                (str(TaskStatus.CHECKED), actor, int(agree), comment, window_id, task_id, version),
            )
            if cur.rowcount != 1:
                raise Conflict(f"task {task_id} is at version {task.version}, not {version}; reload it")
            after = replace(
                task,
                status=TaskStatus.CHECKED,
                version=task.version + 1,
                checked_by=actor,
                agree=agree,
                check_comment=comment,
            )
            tx.audit(
                actor,
                "check",
                "task",
                task_id,
                window_id,
                task_summary(task),
                {**task_summary(after), "comment": comment},
            )
        return after

    def progress(self, window_id: str) -> dict[str, Any]:
        with self.read() as tx:
            by_status = {s: 0 for s in TaskStatus}
            for status, n in tx.all(
                "SELECT status, COUNT(*) FROM tasks WHERE window_id = ? GROUP BY status", (window_id,)
            ):
                by_status[TaskStatus(status)] = int(n)
            people: dict[str, dict[str, int]] = {}
            for who, status, agree, n in tx.all(
                "SELECT done_by, status, agree, COUNT(*) FROM tasks WHERE window_id = ? AND done_by IS NOT NULL "
                "GROUP BY done_by, status, agree",
                (window_id,),
            ):
                row = people.setdefault(who, {"done": 0, "checked": 0, "agreed": 0})
                row["done"] += int(n)  # a checked task was done first
                if status == TaskStatus.CHECKED:
                    row["checked"] += int(n)
                    row["agreed"] += int(n) if agree else 0
            sampled = int(tx.one("SELECT COUNT(*) FROM tasks WHERE window_id = ? AND sampled = 1", (window_id,))[0])
            contributions = {s: 0 for s in ContributionStatus}
            for status, n in tx.all(
                "SELECT status, COUNT(*) FROM contributions WHERE window_id = ? GROUP BY status", (window_id,)
            ):
                contributions[ContributionStatus(status)] = int(n)
        checked = sum(p["checked"] for p in people.values())
        agreed = sum(p["agreed"] for p in people.values())
        return {
            "window": window_id,
            "tasks": sum(by_status.values()),
            "by_status": {str(k): v for k, v in by_status.items()},
            "by_interpreter": dict(sorted(people.items())),
            "sampled": sampled,
            "checked": checked,
            "agreement_rate": round(agreed / checked, 4) if checked else None,
            "contributions": {str(k): v for k, v in contributions.items()},
        }

    # contributions --------------------------------------------------------------------------------

    def add_contribution(self, c: Contribution, bbox: Bbox) -> Contribution:
        with self.tx() as tx:
            tx.execute(
                f"INSERT INTO contributions ({_CONTRIB_COLS}, minx, miny, maxx, maxy) VALUES ({', '.join('?' * 17)})",
                (
                    c.id,
                    c.window_id,
                    c.wkb,
                    c.code_cs,
                    c.code_us,
                    c.comment,
                    str(c.status),
                    c.author,
                    c.created,
                    c.version,
                    c.reviewer,
                    c.reviewed_at,
                    c.reason,
                    *bbox,
                ),
            )
            tx.audit(
                c.author,
                "submit",
                "contribution",
                c.id,
                c.window_id,
                None,
                {**contribution_summary(c), "comment": c.comment},
            )
        return c

    def list_contributions(self, window_id: str, status: ContributionStatus | None = None) -> list[Contribution]:
        sql = f"SELECT {_CONTRIB_COLS} FROM contributions WHERE window_id = ?"
        params: list[Any] = [window_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(str(status))
        with self.read() as tx:
            return [_contribution(r) for r in tx.all(sql + " ORDER BY created, id", params)]

    def review(
        self,
        window_id: str,
        contribution_id: str,
        status: ContributionStatus,
        reason: str,
        version: int | None,
        actor: str,
    ) -> Contribution:
        if status is ContributionStatus.SUBMITTED:
            raise InvalidInput("status", "a review accepts or rejects")
        with self.tx() as tx:
            r = tx.one(
                f"SELECT {_CONTRIB_COLS} FROM contributions WHERE window_id = ? AND id = ?",
                (window_id, contribution_id),
            )
            if r is None:
                raise NotFound(f"no contribution {contribution_id} in window {window_id}")
            before = _contribution(r)
            expected = before.version if version is None else version
            stamp = now()
            cur = tx.execute(
                "UPDATE contributions SET status = ?, reason = ?, reviewer = ?, reviewed_at = ?, "
                "version = version + 1 WHERE id = ? AND version = ?",
                (str(status), reason, actor, stamp, contribution_id, expected),
            )
            if cur.rowcount != 1:
                raise Conflict(
                    f"contribution {contribution_id} is at version {before.version}, not {expected}; reload it"
                )
            after = replace(
                before, status=status, reason=reason, reviewer=actor, reviewed_at=stamp, version=before.version + 1
            )
            tx.audit(
                actor,
                "review",
                "contribution",
                contribution_id,
                window_id,
                contribution_summary(before),
                contribution_summary(after),
            )
        return after

    # audit ----------------------------------------------------------------------------------------

    def audit_log(self, window_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql = "SELECT at, actor, action, entity, entity_id, window_id, before, after FROM audit"
        params: list[Any] = []
        if window_id is not None:
            sql += " WHERE window_id = ?"
            params.append(window_id)
        with self.read() as tx:
            rows = tx.all(sql + " ORDER BY id LIMIT ?", [*params, limit])
        return [
            {
                "at": r[0],
                "actor": r[1],
                "action": r[2],
                "entity": r[3],
                "entity_id": r[4],
                "window": r[5],
                "before": json.loads(r[6]) if r[6] else None,
                "after": json.loads(r[7]) if r[7] else None,
            }
            for r in rows
        ]


def window_id(departement: str, millesime: int) -> str:
    return f"{departement}-{millesime}"


def default_location(storage_root: str) -> Path:
    """The embedded store of a local storage root (never published: /files serves catalogued assets only)."""
    if "://" in storage_root:
        raise InvalidInput(
            "storage_root",
            "the embedded store needs a local storage root: set "
            "OCSGE_CONSOLIDATION_DSN to a PostgreSQL database for an S3 root",
        )
    return Path(storage_root).expanduser().resolve() / "consolidation" / "consolidation.sqlite"


def open_store(dsn: str | None, storage_root: str) -> ConsolidationStore:
    """The PostgreSQL store of ``dsn`` if given, else the SQLite file of the storage root."""
    return ConsolidationStore(dsn or default_location(storage_root))
