"""The consolidation Lambda handler (``services/handlers/consolidation.py``) at a cold start, as API Gateway
invokes it: public reads answer, writes without a token are refused, and a function whose storage cannot
hold the embedded store (an S3 root, no PostgreSQL DSN) answers 503 instead of failing to start."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ocsge.storage import open_storage
from support.consolidation import DEP, NEW, PREVIOUS, build_territory
from support.lambda_events import api_event, invoke_cold

HANDLER = "services.handlers.consolidation.handler"


def environment(root: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCSGE_")}
    return env | {
        "OCSGE_STORAGE_ROOT": root,
        "POWERTOOLS_METRICS_NAMESPACE": "OCSGE",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "POWERTOOLS_TRACE_DISABLED": "1",
    }


def post_event(path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    event = api_event(path, method="POST", headers={"content-type": "application/json", **(headers or {})})
    return event | {"body": json.dumps(body)}


def test_handler_serves_reads_and_refuses_anonymous_writes(tmp_path: Path) -> None:
    build_territory(open_storage(tmp_path))
    env = environment(str(tmp_path))
    listing = invoke_cold(HANDLER, api_event("/consolidation/windows"), env)
    assert listing["statusCode"] == 200, listing.get("body")
    assert json.loads(listing["body"]) == {"windows": []}
    assert "content-security-policy" in {k.lower() for k in listing["headers"]}  # the services' headers
    body = {"departement": DEP, "millesime": NEW, "previous_millesime": PREVIOUS, "closes": "2099-12-31"}
    refused = invoke_cold(HANDLER, post_event("/consolidation/windows", body), env)
    assert refused["statusCode"] == 401, refused.get("body")
    after = invoke_cold(HANDLER, api_event("/consolidation/windows"), env)
    assert json.loads(after["body"]) == {"windows": []}  # the refused write opened nothing


def test_handler_without_a_usable_store_answers_503(tmp_path: Path) -> None:
    env = environment("s3://ocsge-test-data/data") | {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    response = invoke_cold(HANDLER, api_event("/consolidation/windows"), env)
    assert response["statusCode"] == 503, response.get("body")
    assert "OCSGE_CONSOLIDATION_DSN" in json.loads(response["body"])["detail"]
