"""The one "skip finished work" mechanism of every batch step (ingest, artif, diff, render, tiles,
stats, archive, grid, vectorize, rules, qa, and ``ocsge products`` through them).

A step computes the fingerprint of its inputs as stored now (key, size and ETag of each input object,
missing ones included) and of its parameters, and records it, with who made the output, in a stamp
beside each output (``{key}.inputs.json``). The stamp is written after the output (atomically, as
every storage write), and the stamps of a step being redone are removed before it starts: a step
killed midway is never taken for done, and a rerun with the same inputs finds the same fingerprint
and skips. A re-delivered input changes the fingerprint of exactly the steps that read it, which
then run again, whether called by a standalone verb or by ``ocsge products``; ``--force`` redoes.

A stamp also says where an output comes from: ``delivery`` for the layers ``ocsge ingest`` writes
(IGN's official artificialisation layer among them), ``computed`` for ours. A computed step never
replaces a delivered layer (see :func:`is_delivered`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from ocsge.errors import StorageError
from ocsge.storage import Storage

STAMP_SUFFIX = ".inputs.json"
COMPUTED = "computed"
DELIVERY = "delivery"


def stamp_key(output_key: str) -> str:
    return f"{output_key}{STAMP_SUFFIX}"


def fingerprint(storage: Storage, input_keys: Iterable[str], input_prefixes: Iterable[str] = (),
                params: dict[str, Any] | None = None) -> str:
    """Digest of the inputs as stored now (missing inputs count too) and of the parameters."""
    state: dict[str, Any] = {"params": params or {}}
    for key in sorted(set(input_keys)):
        try:
            info = storage.stat(key)
            state[key] = [info.size, info.etag]
        except StorageError:
            state[key] = None
    for prefix in sorted(set(input_prefixes)):
        state[prefix] = [[o.key, o.size, o.etag] for o in storage.list(prefix) if not o.key.endswith(STAMP_SUFFIX)]
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def read_stamp(storage: Storage, output_key: str) -> dict[str, Any] | None:
    try:
        stamp = json.loads(storage.get_bytes(stamp_key(output_key)))
    except (StorageError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _keys(outputs: str | Iterable[str]) -> list[str]:
    return [outputs] if isinstance(outputs, str) else list(outputs)


def is_up_to_date(storage: Storage, outputs: str | Iterable[str], digest: str) -> bool:
    """True when every output exists and its stamp records ``digest``."""
    for key in _keys(outputs):
        stamp = read_stamp(storage, key)
        if stamp is None or stamp.get("inputs") != digest or not storage.exists(key):
            return False
    return True


def is_delivered(storage: Storage, key: str) -> bool:
    """True when ``key`` holds a delivered layer (written by ``ocsge ingest``), which no step replaces."""
    stamp = read_stamp(storage, key)
    return stamp is not None and stamp.get("origin") == DELIVERY and storage.exists(key)


def forget(storage: Storage, outputs: str | Iterable[str]) -> None:
    """Remove the stamps of outputs about to be rewritten (a kill midway then leaves them unstamped)."""
    for key in _keys(outputs):
        with contextlib.suppress(StorageError, FileNotFoundError):
            storage.delete(stamp_key(key))


def mark_done(storage: Storage, outputs: str | Iterable[str], digest: str, *, origin: str = COMPUTED,
              **extra: Any) -> None:
    """Record ``digest`` (and ``extra``, e.g. a content digest) beside each output, once it is written."""
    data = json.dumps({"inputs": digest, "origin": origin, **extra}).encode()
    for key in _keys(outputs):
        storage.put_bytes(stamp_key(key), data, "application/json")


@contextlib.contextmanager
def refreshing(storage: Storage, outputs: str | Iterable[str], digest: str, *,
               origin: str = COMPUTED) -> Iterator[None]:
    """Around the work that rewrites ``outputs``: stamps removed before, recorded after success only."""
    keys = _keys(outputs)
    forget(storage, keys)
    yield
    mark_done(storage, keys, digest, origin=origin)
