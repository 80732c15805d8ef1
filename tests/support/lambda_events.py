"""Invoking the Lambda handlers as API Gateway (HTTP API, payload 2.0) does, in-process or in a fresh
interpreter (a cold start with the functions' environment): shared by the service and infra tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
API_HOST = "abc123.execute-api.eu-west-3.amazonaws.com"


class Context:
    """What Powertools reads from the Lambda context."""

    function_name = "ocsge-local"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-west-3:000000000000:function:ocsge-local"
    aws_request_id = "local-request"


def api_event(path: str, query: str = "", *, method: str = "GET", host: str = API_HOST,
              headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An HTTP API event as CloudFront → HTTP API → Lambda delivers it (``host``: the Host the function sees)."""
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {"host": host, "x-forwarded-proto": "https", "accept": "*/*", **(headers or {})},
        "requestContext": {
            "accountId": "000000000000", "apiId": "abc123", "domainName": host, "domainPrefix": host.split(".")[0],
            "requestId": "req", "routeKey": "$default", "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 1767225600000,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": "pytest"},
        },
        "isBase64Encoded": False,
    }


_COLD_START = r"""
import json, sys
from importlib import import_module
from support.lambda_events import Context

module, attribute = sys.argv[1].rsplit(".", 1)
handler = getattr(import_module(module), attribute)
print("\n@@RESPONSE@@" + json.dumps(handler(json.loads(sys.argv[2]), Context())))
"""


def invoke_cold(handler: str, event: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """``handler`` (``module.attribute``) invoked once in a fresh interpreter with exactly ``env``."""
    env = {**env, "PYTHONPATH": str(REPO / "tests")}
    proc = subprocess.run([sys.executable, "-c", _COLD_START, handler, json.dumps(event)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.rsplit("@@RESPONSE@@", 1)[1])
