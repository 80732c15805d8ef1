"""How ``ocsge serve`` runs uvicorn: bounded in time and size for slow or hostile clients.

uvicorn bounds the *idle* time between two requests of a connection (``timeout_keep_alive``) but not the
time a client takes to *send* a request: its keep-alive timer is armed only after a response, and is
cancelled by the first byte of the next request. A client that opens a connection and trickles one header
line every few seconds (slowloris) therefore holds it forever, and a few hundred of them hold every file
descriptor. uvicorn has no header-read timeout option (0.55), so :class:`GuardedH11Protocol` adds one at
the protocol level: from the moment a connection opens, or a response completes, the whole next request
— request line, headers and body — must arrive within ``REQUEST_READ_TIMEOUT_S``, or the connection is
closed. A request that has arrived is not limited here (the time a request may *run* is the services'
own budget).

The other limits are uvicorn's own:

``timeout_keep_alive``             an idle keep-alive connection is closed after this many seconds;
``h11_max_incomplete_event_size``  the request line plus headers may not exceed this many bytes (h11
                                   answers 400 beyond it; a long CQL2 filter belongs in a POST body);
``limit_concurrency``              beyond this many open connections or running requests, new requests get
                                   503 at once instead of queueing without bound;
``timeout_graceful_shutdown``      Ctrl-C or SIGTERM waits at most this long for requests in flight.

Memory: ``ocsge serve`` bounds GDAL's block cache to ``GDAL_CACHEMAX_MB`` (GDAL's default is 5 % of the
machine's RAM; the local files are in the OS page cache anyway, the block cache only saves decompressing
them again; the Lambdas, reading from S3, keep 200 MB, see ``ocsge/gdal_env.py``), and
:class:`ThreadLimit` sizes the thread pool that runs the synchronous routes
(FastAPI ``def`` endpoints, file responses). anyio's default is 40 threads whatever the machine, and each
worker thread keeps its own GDAL dataset handles and PROJ context: under a soak at concurrency 16 the RSS
grew with the number of threads that had run. ``4 × CPUs`` (at least 8, at most 40) keeps the machine busy
with bounded per-thread state. :func:`tune_malloc` sets two glibc options before the threads start. The one
that made the RSS flat: a fixed ``M_MMAP_THRESHOLD`` of 128 KiB. glibc raises that threshold each time a
large block is freed (up to 32 MiB), after which tile buffers, decoded blocks and PNG encoders come from
the heap instead of mmap and fragment it: in the soak the server's RSS climbed ~30 MB/min with it and
levelled off without it. ``M_ARENA_MAX`` 2 (instead of 8 per CPU) keeps the threads from spreading that
memory over many arenas. Neither changed the throughput.

On AWS the services are not behind uvicorn but behind CloudFront and API Gateway, which already bound
slow clients (see infra/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

REQUEST_READ_TIMEOUT_S = 10.0
KEEP_ALIVE_TIMEOUT_S = 5
MAX_HEAD_BYTES = 16 * 1024
LIMIT_CONCURRENCY = 512
GRACEFUL_SHUTDOWN_S = 10
WORKER_THREADS = min(40, max(8, 4 * (os.cpu_count() or 2)))
GDAL_CACHEMAX_MB = 64


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on reading each request (see the module docstring)."""

    request_read_timeout_s: float = REQUEST_READ_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.request_read_timeout_s, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _disarm_once_read(self) -> None:
        # h11 moves the client's side from IDLE through SEND_BODY to DONE as the request arrives.
        if self._read_deadline is not None and self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.logger.debug("closing a connection that did not send its request within %ss",
                              self.request_read_timeout_s)
            self.transport.close()  # the app, if it started on a request head, sees http.disconnect

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._disarm_once_read()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request of this keep-alive connection has its own deadline
            self._disarm_once_read()  # unless it was already pipelined and read

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


MALLOC_ARENAS = 2
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # glibc's mallopt parameters


def tune_malloc() -> dict[str, bool]:
    """glibc ``mallopt``: a fixed mmap threshold and two arenas (see the module docstring), each unless the
    environment already sets it (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_ARENA_MAX``). Nothing happens where
    the C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    done = {}
    if not os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        done["mmap_threshold"] = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if not os.environ.get("MALLOC_ARENA_MAX"):
        done["arena_max"] = bool(mallopt(_M_ARENA_MAX, MALLOC_ARENAS))
    return done


class ThreadLimit:
    """Sets the size of anyio's default thread pool in the server's event loop (at its first call, the
    lifespan startup), then passes everything through."""

    def __init__(self, app: Any, threads: int = WORKER_THREADS) -> None:
        self.app = app
        self.threads = threads
        self._sized = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self._sized:
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = self.threads
            self._sized = True
        await self.app(scope, receive, send)


def server_config(app: Any, host: str, port: int, *, request_read_timeout_s: float = REQUEST_READ_TIMEOUT_S,
                  limit_concurrency: int | None = LIMIT_CONCURRENCY, threads: int = WORKER_THREADS,
                  log_level: str = "warning", **extra: Any) -> uvicorn.Config:
    """The uvicorn configuration of ``ocsge serve`` (also used by the tests and the soak benchmark)."""
    protocol = type("GuardedH11Protocol", (GuardedH11Protocol,), {"request_read_timeout_s": request_read_timeout_s})
    return uvicorn.Config(
        ThreadLimit(app, threads), host=host, port=port, log_level=log_level, http=protocol,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S, h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        limit_concurrency=limit_concurrency, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, **extra,
    )


RESTARTS_PER_MINUTE = 10


def run_workers(build_config: Callable[[], uvicorn.Config], host: str, port: int, workers: int) -> int:
    """Serve with ``workers`` processes sharing one listening socket (pre-fork); returns the exit status.

    One process is bound to one core by the GIL (a tile or a search page is CPU work in Python between
    GDAL and DuckDB calls), so on N cores N workers serve up to N times the requests. Written here rather
    than with uvicorn's ``--workers`` supervisor because that one *spawns* its workers and pickles the
    configuration, and ours holds an application object and a protocol class made at run time: here the
    parent binds the socket, then forks, and each worker builds its own application after the fork (no
    thread, GDAL handle or DuckDB connection crosses it). A worker that dies is replaced (at most
    ``RESTARTS_PER_MINUTE`` a minute, then the server stops with an error); SIGINT/SIGTERM stop every worker
    gracefully (uvicorn's own handlers in each)."""
    import signal
    import socket
    import time
    import traceback

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on accepted sockets whose protocol is
    # IPPROTO_TCP, and a protocol-0 listener made every response wait ≈ 40 ms for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)

    def start() -> int:
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                uvicorn.Server(build_config()).run(sockets=[sock])
                status = 0
            except BaseException:  # reported; the worker exits with an error status
                traceback.print_exc()
            finally:
                os._exit(status)
        return pid

    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    children: set[int] = set()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    restarts: list[float] = []
    status = 0
    try:
        children.update(start() for _ in range(workers))
        while children:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            children.discard(pid)
            if stopping:
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > RESTARTS_PER_MINUTE:
                status = 1
                stop(signal.SIGTERM, None)
                continue
            code = os.waitstatus_to_exitcode(wait_status)
            print(f"worker {pid} exited ({code}); starting another", flush=True)
            children.add(start())
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
    return status
