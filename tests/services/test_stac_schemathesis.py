"""schemathesis (pinned in the dev extra) against the STAC API's own OpenAPI description: whatever it
generates from the schema for every operation — valid values (positive mode) and values that break the
schema (negative mode) of every parameter and body — is never answered with a 5xx, and a 4xx is a STAC
error document. Bounded so that it fits in the suite: :data:`EXAMPLES` examples per operation and mode,
in-process (ASGI), about a minute on 2 cores.

(schemathesis' own pytest loader, ``schemathesis.pytest.from_fixture``, does not run under pytest 9, so
the strategies are driven by Hypothesis directly.)
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

EXAMPLES = 25


@pytest.fixture(scope="module")
def stac_app(sample_root: str):  # type: ignore[no-untyped-def]
    from services.app import AppContext, create_app

    return create_app(AppContext(root=sample_root))


def _failures(operation: Any, mode: GenerationMode) -> list[str]:
    found: list[str] = []

    @given(operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call()
        label = f"{case.method} {case.formatted_path} query={case.query} body={str(case.body)[:200]}"
        if response.status_code >= 500:
            found.append(f"{label} -> {response.status_code} {response.text[:300]}")
        elif 400 <= response.status_code and "json" in str(response.headers.get("content-type", "")):
            doc = response.json()
            if not (isinstance(doc, dict) and set(doc) == {"code", "description"}):
                found.append(f"{label} -> {response.status_code} not a STAC error document: {response.text[:300]}")

    with contextlib.suppress(Unsatisfiable):  # nothing to break in an operation without parameters (negative)
        run()
    return found


@pytest.mark.timeout(600)
def test_no_server_error_on_generated_requests(stac_app) -> None:  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_asgi("/stac/api", stac_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {"GET /search", "POST /search",
                                                                       "GET /collections/{collection_id}/items"}
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _failures(operation, mode)
    assert not failures, "\n".join(failures[:20])
