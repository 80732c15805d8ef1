"""Fixtures of the service tests: a tiny published territory (``svc_territory``), finders, apps and live
servers on 127.0.0.1 for real clients."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: let the tests import svc_territory

from svc_territory import Territory, build_territory


@pytest.fixture(scope="session")
def territory(tmp_path_factory: pytest.TempPathFactory) -> Territory:
    return build_territory(tmp_path_factory.mktemp("territory") / "root")


@pytest.fixture(scope="session")
def finder(territory: Territory):
    from services.assets import StorageAssetFinder

    return StorageAssetFinder(territory.root, ttl_s=3600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A uvicorn server on 127.0.0.1 in a thread, for real clients (GDAL, OWSLib, Chromium)."""

    def __init__(self, app, port: int | None = None) -> None:  # type: ignore[no-untyped-def]
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def tiles_app(finder):
    from services.tiles.app import create_app

    return create_app(finder)


@pytest.fixture(scope="session")
def tiles_server(tiles_app) -> Iterator[LiveServer]:
    with LiveServer(tiles_app) as server:
        yield server


# STAC API tests: the published sample catalogue and a real pgstac (see catalog/testing.py)
from catalog.testing import backend, pgstac_dsn, postgres, sample_root  # noqa: E402, F401
