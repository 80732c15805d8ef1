"""Skip a batch step whose output is up to date with its inputs, so that reruns redo nothing.

A step records, next to its output, a stamp: the fingerprint of its inputs (key, size, ETag of each) and of
its parameters. A rerun with the same inputs and parameters finds the same fingerprint and skips; a new
prediction, a changed ancillary layer or another parameter changes it and the step runs again. Stamps are
written after the output, so a step killed midway is never taken for done.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from ocsge.errors import StorageError
from ocsge.storage import Storage


def _stamp_key(output_key: str) -> str:
    return f"{output_key}.inputs.json"


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
        state[prefix] = [[o.key, o.size, o.etag] for o in storage.list(prefix) if not o.key.endswith(".inputs.json")]
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def is_up_to_date(storage: Storage, output_key: str, digest: str) -> bool:
    try:
        stamp = json.loads(storage.get_bytes(_stamp_key(output_key)))
    except (StorageError, ValueError):
        return False
    return stamp.get("inputs") == digest and storage.exists(output_key)


def mark_done(storage: Storage, output_key: str, digest: str) -> None:
    storage.put_bytes(_stamp_key(output_key), json.dumps({"inputs": digest}).encode(), "application/json")
