"""``ocsge serve --workers N`` (services.server.run_workers): N processes answer on one port, a worker that
dies is replaced, and SIGTERM stops them all. A tiny app reporting its process id, served from a child
Python process on 127.0.0.1 (stopped by the test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from svc_territory import free_port

pytestmark = pytest.mark.timeout(90)
REPO = Path(__file__).resolve().parents[2]

SERVER = textwrap.dedent("""
    import os, sys, time
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from services.server import run_workers, server_config

    async def pid(request):
        time.sleep(float(request.query_params.get("hold", "0")))  # holds this worker's event loop
        return PlainTextResponse(str(os.getpid()))

    def build():
        return server_config(Starlette(routes=[Route("/pid", pid)]), "127.0.0.1", int(sys.argv[1]), lifespan="off")

    sys.exit(run_workers(build, "127.0.0.1", int(sys.argv[1]), int(sys.argv[2])))
""")


def wait_up(url: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("server did not start")


def pids(url: str, n: int, hold: float) -> set[int]:
    def one(_: int) -> int:
        return int(httpx.get(url, params={"hold": hold}, timeout=20).text)

    with ThreadPoolExecutor(n) as pool:
        return set(pool.map(one, range(n)))


def test_two_workers_answer_one_port_a_dead_one_is_replaced_and_sigterm_stops_all(tmp_path: Path) -> None:
    script = tmp_path / "serve.py"
    script.write_text(SERVER)
    port = free_port()
    url = f"http://127.0.0.1:{port}/pid"
    proc = subprocess.Popen([sys.executable, str(script), str(port), "2"], cwd=REPO, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_up(url, proc)
        # each request blocks its worker's loop for 1 s, so two at once are answered by two processes — once the
        # second worker has built its app (it may still be starting under load) and unless one worker's accept
        # loop took both connections before blocking (asyncio accepts in batches): a few tries
        seen: set[int] = set()
        for _ in range(8):
            seen = pids(url, 2, hold=1.0)
            if len(seen) == 2:
                break
        assert len(seen) == 2, "never two workers answering"
        victim = seen.pop()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:  # the supervisor starts another worker: two processes again, the victim not among them
            now = pids(url, 2, hold=1.0)
            if len(now) == 2:
                break
            assert time.monotonic() < deadline, "no replacement worker"
        assert victim not in now
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        for pid in now:  # the workers are gone with it
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_worker_that_cannot_start_stops_the_server_with_an_error(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text(SERVER.replace("def build():", "def build():\n    raise RuntimeError('no catalogue')"))
    proc = subprocess.run([sys.executable, str(script), str(free_port()), "2"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1 and "no catalogue" in proc.stderr
