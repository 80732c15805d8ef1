"""A time budget per rendering request: the work runs in a worker thread of a bounded pool, and a request
that has not finished within ``OCSGE_RENDER_BUDGET_S`` seconds (queueing included) is answered 503 with
``Retry-After`` (an OGC exception on ``/wms`` and ``/wmts``).

**The deadline is a backstop, not the bound.** A rio-tiler/GDAL read cannot be interrupted in the middle
of a call: the caps of :mod:`services.tiles.limits` bound the work of every request *before* it starts, and
the deadline catches what still overruns (a slow store, a saturated machine). Past its deadline the request
is answered at once; its worker stops at the next checkpoint (:func:`check_deadline`, called before each
asset read and between the layers of a WMS map), so it is freed after the GDAL call in flight returns,
not after the whole render. A request still queued when its deadline passes is never started.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute

log = logging.getLogger("ocsge.services.tiles")

T = TypeVar("T")

_local = threading.local()


class RenderTimeout(Exception):
    """A render past its budget: 503 + Retry-After (mapped in :data:`services.tiles.app.RASTER_STATUSES`)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request did not finish within its {seconds:g} s budget")
        self.seconds = seconds

    @property
    def public_detail(self) -> str:  # what the error map may show of a 5xx (services.errors.public_message)
        return f"{self}: retry later, or ask for a smaller area or image"


def check_deadline() -> None:
    """Raise :class:`RenderTimeout` when the render running on this thread is past its deadline (a no-op
    outside a budgeted render)."""
    deadline = getattr(_local, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise RenderTimeout(_local.seconds)


class RenderBudget:
    """A bounded pool of render workers and the deadline of each request run on it."""

    def __init__(self, seconds: float, workers: int) -> None:
        self.seconds = seconds
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocsge-render")

    @classmethod
    def from_settings(cls) -> RenderBudget:
        from ocsge.settings import get_settings

        settings = get_settings()
        return cls(settings.render_budget_s, settings.render_workers)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on a render worker, or :class:`RenderTimeout` after ``seconds``."""
        seconds = self.seconds
        deadline = time.monotonic() + seconds
        context = contextvars.copy_context()

        def call() -> T:
            if time.monotonic() > deadline:  # waited in the queue past its budget: never start it
                raise RenderTimeout(seconds)
            _local.deadline, _local.seconds = deadline, seconds
            try:
                return context.run(fn, *args, **kwargs)
            finally:
                _local.deadline = None

        future = self._pool.submit(call)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=seconds)
        except TimeoutError:
            future.cancel()  # a queued call is dropped; a running one stops at its next check_deadline()
            log.warning("render %s overran its %g s budget", getattr(fn, "__qualname__", fn), seconds)
            raise RenderTimeout(seconds) from None

    def wrap(self, endpoint: Callable[..., Any]) -> Callable[..., Any]:
        """A synchronous endpoint as an async one run by :meth:`run` (FastAPI reads the original signature
        through ``__wrapped__``); async endpoints are returned as they are."""
        if inspect.iscoroutinefunction(endpoint):
            return endpoint

        @functools.wraps(endpoint)
        async def budgeted(*args: Any, **kwargs: Any) -> Any:
            return await self.run(endpoint, *args, **kwargs)

        return budgeted

    def router(self, *dependencies: Callable[..., Any]) -> APIRouter:
        """An APIRouter whose routes run on this budget, after ``dependencies`` (titiler's factories take it)."""
        budget = self

        class BudgetedRoute(APIRoute):
            def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
                super().__init__(path, budget.wrap(endpoint), **kwargs)

        return APIRouter(route_class=BudgetedRoute, dependencies=[Depends(d) for d in dependencies])
