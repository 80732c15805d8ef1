"""Slow clients are cut off (issue 13, item 3): with the uvicorn configuration ``ocsge serve`` uses, a
connection trickling one header line every 2 s, one that sends nothing, one that trickles its body and an
idle keep-alive connection are all closed within a bounded time, while normal requests keep being answered.
Raw sockets against a server on 127.0.0.1; the whole module takes about 12 s."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from svc_territory import free_port

from services.server import (
    KEEP_ALIVE_TIMEOUT_S,
    MAX_HEAD_BYTES,
    REQUEST_READ_TIMEOUT_S,
    WORKER_THREADS,
    GuardedH11Protocol,
    ThreadLimit,
    server_config,
)

pytestmark = pytest.mark.timeout(60)
SLACK_S = 3.0


async def echo(request: Request) -> PlainTextResponse:
    try:
        return PlainTextResponse(f"{len(await request.body())} bytes")
    except ClientDisconnect:  # what the app sees when the server cuts a slow body off
        return PlainTextResponse("gone", status_code=400)


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    import uvicorn

    app = Starlette(routes=[Route("/healthz", health), Route("/echo", echo, methods=["POST"])])
    port = free_port()
    srv = uvicorn.Server(server_config(app, "127.0.0.1", port, lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield "127.0.0.1", port
    srv.should_exit = True
    thread.join(timeout=15)


def closed_after(address: tuple[str, int], chunks: list[bytes], every_s: float, limit_s: float) -> float | None:
    """Send ``chunks[0]``, then one more every ``every_s`` (the last repeated); seconds until the server
    closed the connection, or None if it was still open after ``limit_s``."""
    start = time.monotonic()
    with socket.create_connection(address, timeout=5) as sock:
        sock.settimeout(0.2)
        i, next_send = 0, start
        while time.monotonic() - start < limit_s:
            if chunks and time.monotonic() >= next_send:
                try:
                    sock.sendall(chunks[min(i, len(chunks) - 1)])
                except OSError:
                    return time.monotonic() - start
                i, next_send = i + 1, next_send + every_s
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - start
            if data == b"":
                return time.monotonic() - start
        return None


def request(address: tuple[str, int], raw: bytes) -> bytes:
    """One request on its own connection (``Connection: close``): the whole answer, read until closed."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_slow_clients_are_cut_off_and_others_are_served(server: tuple[str, int]) -> None:
    limit = REQUEST_READ_TIMEOUT_S + SLACK_S
    cases = {
        "trickled headers": [b"GET /healthz HTTP/1.1\r\nHost: x\r\n"] + [b"X-Slow: %d\r\n" % i for i in range(20)],
        "nothing sent": [],
        "trickled body": [b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"] + [b"x" * 10] * 20,
    }
    results: dict[tuple[str, int], float | None] = {}

    def attack(name: str, i: int) -> None:
        results[name, i] = closed_after(server, cases[name], 2.0, limit)

    threads = [threading.Thread(target=attack, args=(name, i)) for name in cases for i in range(4)]
    for t in threads:
        t.start()
    # meanwhile, ordinary requests are answered at once
    for _ in range(5):
        started = time.monotonic()
        assert request(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").endswith(b"ok")
        assert time.monotonic() - started < 2
        time.sleep(1)
    for t in threads:
        t.join()
    for name, after in results.items():
        assert after is not None, f"{name}: still open after {limit} s"
        assert after >= REQUEST_READ_TIMEOUT_S - 1, f"{name}: closed too early ({after:.1f} s)"


def test_idle_keep_alive_connection_is_closed(server: tuple[str, int]) -> None:
    started = time.monotonic()
    with socket.create_connection(server, timeout=KEEP_ALIVE_TIMEOUT_S + SLACK_S) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"ok"):
            answer += sock.recv(65536)
        sock.settimeout(KEEP_ALIVE_TIMEOUT_S + SLACK_S)
        assert sock.recv(65536) == b""  # closed by the server, not by our timeout
    assert time.monotonic() - started < KEEP_ALIVE_TIMEOUT_S + SLACK_S


def test_oversized_head_is_refused(server: tuple[str, int]) -> None:
    """A head still incomplete past MAX_HEAD_BYTES is refused: no connection buffers an endless head."""
    with socket.create_connection(server, timeout=5) as sock:
        sock.sendall(b"GET /healthz?" + b"a" * (MAX_HEAD_BYTES + 4096))
        time.sleep(0.3)
        with contextlib.suppress(OSError):  # already closed
            sock.sendall(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") or answer == b"", answer[:100]


def test_ocsge_serve_uses_this_configuration(territory, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from click.testing import CliRunner

    from catalog.publish import publish
    from ocsge.storage import LocalStorage
    from services.cli import serve

    publish(LocalStorage(territory.root))
    monkeypatch.setenv("GDAL_CACHEMAX", "64")  # what the environment says wins over the serve default
    seen: list[uvicorn.Config] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: seen.append(self.config))
    arenas: list[bool] = []
    monkeypatch.setattr("services.server.tune_malloc", lambda: arenas.append(True) or {})
    result = CliRunner().invoke(serve, ["--root", str(territory.root), "--port", "8765", "--request-timeout", "7"])
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert issubclass(config.http, GuardedH11Protocol) and config.http.request_read_timeout_s == 7
    assert config.timeout_keep_alive == KEEP_ALIVE_TIMEOUT_S and config.limit_concurrency
    assert config.h11_max_incomplete_event_size and config.timeout_graceful_shutdown
    assert isinstance(config.app, ThreadLimit) and config.app.threads == WORKER_THREADS
    assert os.environ["GDAL_CACHEMAX"] == "64" and arenas == [True]
