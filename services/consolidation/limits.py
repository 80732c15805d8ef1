"""Bounds on what a write may cost: body size (counted while reading: 413), JSON nesting depth, and a rate
per account and per IP (429 with ``Retry-After``).

The rate limiter is in memory, per process: on one server it is exact; behind several Lambdas each
container counts its own callers (API Gateway's throttling bounds the total, see infra/README.md).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError

from ocsge.consolidation.model import InvalidInput

MAX_JSON_DEPTH = 32
Model = TypeVar("Model", bound=BaseModel)


class TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class TooMany(HTTPException):
    def __init__(self, retry_after: int, what: str) -> None:
        super().__init__(429, f"too many {what}: retry in {retry_after} s", headers={"Retry-After": str(retry_after)})


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes — a declared
    ``Content-Length`` over the limit is refused before reading anything."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise TooLarge(limit)
        except ValueError:
            raise HTTPException(400, "invalid Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _depth_ok(text: str, limit: int) -> bool:
    """Nesting of a JSON text at most ``limit`` (counted on the raw text, before parsing recurses)."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def parse_json(body: bytes, model: type[Model]) -> Model:
    """A body as ``model``: 400 for what is not JSON (or nested too deep), 422 naming the field otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "request body is not UTF-8") from None
    if not _depth_ok(text, MAX_JSON_DEPTH):
        raise HTTPException(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data: Any = json.loads(text, parse_constant=lambda c: _refuse_constant(c))
    except (ValueError, RecursionError) as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise InvalidInput(where, str(first.get("msg", "invalid"))) from None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


class RateLimiter:
    """A token bucket per key (``account:alice``, ``ip:1.2.3.4``): ``per_minute`` writes, in bursts of at
    most as many. Keeps the most recent ``max_keys`` keys (memory bounded under a spray of IPs)."""

    def __init__(self, per_minute: int, max_keys: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, *keys: str, what: str = "writes") -> None:
        """Take one token from each key's bucket, or raise 429 (taking none) if one is empty."""
        now = time.monotonic()
        with self._lock:
            levels = []
            for key in keys:
                tokens, at = self._buckets.get(key, (self.capacity, now))
                tokens = min(self.capacity, tokens + (now - at) * self.rate)
                if tokens < 1.0:
                    raise TooMany(max(1, math.ceil((1.0 - tokens) / self.rate)), what)
                levels.append((key, tokens))
            for key, tokens in levels:
                self._buckets[key] = (tokens - 1.0, now)
                self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
