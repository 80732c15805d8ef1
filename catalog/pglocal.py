"""A throwaway PostgreSQL + PostGIS cluster on 127.0.0.1, for tests, benchmarks and trying pgstac locally
without Docker (Debian packages ``postgresql-15`` and ``postgresql-15-postgis-3``).

initdb refuses to run as root, so when we are root the cluster is created and run as the ``postgres``
user through ``runuser``; otherwise as ourselves. The cluster lives in a temporary folder, listens on a
free port of the loopback only, trusts local connections, and is stopped and removed by :meth:`stop`.

    with LocalPostgres() as pg:
        dsn = pg.create_database("pgstac")

Command line (CI, benchmarks): ``python -m catalog.pglocal --check`` says whether a server can be started.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ocsge.errors import OcsgeError


class PostgresUnavailable(OcsgeError):
    """No PostgreSQL server binaries (or no PostGIS) on this machine."""


def find_bindir() -> Path:
    """The ``bin`` folder of the newest installed PostgreSQL that has PostGIS."""
    override = os.environ.get("OCSGE_PG_BINDIR")
    candidates = [Path(override)] if override else [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]),
                                reverse=True)
    ]
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            share = bindir.parent.parent.parent.parent / "share" / "postgresql" / bindir.parent.name / "extension"
            if override or list(share.glob("postgis.control")):
                return bindir
    raise PostgresUnavailable(
        "no PostgreSQL with PostGIS found (looked in /usr/lib/postgresql/*/bin): "
        "apt-get install -y postgresql-15-postgis-3, or set OCSGE_PG_BINDIR"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPostgres:
    def __init__(self, *, user: str = "postgres") -> None:
        self.bindir = find_bindir()
        self.user = user
        self.as_postgres = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="ocsge-pg-"))
        self.port = _free_port()
        self.host = "127.0.0.1"
        self._started = False

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> LocalPostgres:
        data, log = self.dir / "data", self.dir / "log"
        if self.as_postgres:
            shutil.chown(self.dir, "postgres")
        self.dir.chmod(0o700)
        try:
            self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                      "--no-sync")
            self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
                      f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                      "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200", "start")
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip()
            if log.exists():
                detail += "\n" + log.read_text()[-2000:]
            self.stop()
            raise PostgresUnavailable(f"could not start PostgreSQL in {self.dir}: {detail}") from exc
        self._started = True
        return self

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # our own identifier, never user input
        return self.dsn(name)

    def stop(self) -> None:
        if self._started:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop",
                      check=False)
            self._started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pgstac_database(pg: LocalPostgres, name: str = "pgstac") -> str:
    """A new database on ``pg`` with the pgstac schema migrated in; returns its DSN."""
    from catalog.search.pgstac import migrate

    dsn = pg.create_database(name)
    migrate(dsn)
    return dsn


if __name__ == "__main__":
    import sys

    if "--check" in sys.argv:
        try:
            print(find_bindir())
        except PostgresUnavailable as exc:
            print(exc)
            sys.exit(1)
    else:
        with LocalPostgres() as pg:
            started = time.perf_counter()
            dsn = pgstac_database(pg)
            print(f"pgstac ready at {dsn} in {time.perf_counter() - started:.1f} s; Ctrl-C stops it")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
