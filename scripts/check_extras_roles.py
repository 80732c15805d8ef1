"""What each image runs, executed in a clean virtual environment by ``scripts/check_extras.sh``.

``batch ROOT``: synth → ingest → products → publish on a tiny generated territory (the Batch image's verbs).
``pgstac ROOT SERVE_PYTHON``: the same published territory loaded into a real pgstac (PostgreSQL started
here), then searched through the STAC handler run by the services venv's interpreter (``serve-pgstac``).
``serve ROOT``: every Lambda handler imports and answers a request
over ROOT's published catalogue. Run from outside the repository so nothing is imported from the work tree.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

HANDLERS = ("stac", "tiles", "vector", "downloads", "viewer")


def run(*args: str, env: dict[str, str] | None = None) -> None:
    print("+ ocsge", " ".join(args), flush=True)
    ocsge = str(Path(sys.executable).with_name("ocsge"))
    subprocess.run([ocsge, *args], check=True, env={**os.environ, "OCSGE_QUIET": "1", **(env or {})})


def batch(root: str) -> None:
    run("synth", "--root", root, "--width-m", "500", "--height-m", "400", "--no-imagery")
    from ocsge.products import product_key

    for year in ("2021", "2024"):  # the generated IGN-like deliveries of both millésimes
        archive = Path(root) / product_key("delivery", "S01", int(year))
        run("ingest", str(archive), "--root", root, "-d", "S01", "--millesime", year)
    run("products", "--root", root, "-d", "S01")
    run("publish", "--root", root)
    run("publish", "--root", root, "--verify")


def pgstac(root: str, serve_python: str) -> None:
    from catalog.pglocal import LocalPostgres, pgstac_database

    with LocalPostgres() as pg:
        dsn = pgstac_database(pg, "pgstac_extras")
        run("publish", "--root", root, "--pgstac-dsn", dsn)
        subprocess.run([serve_python, __file__, "serve-pgstac", root, dsn], check=True)


def serve_pgstac(root: str, dsn: str) -> None:
    """The STAC handler of the services image searching pgstac."""
    os.environ.update({"OCSGE_CATALOG_BACKEND": "pgstac", "OCSGE_PGSTAC_DSN": dsn})
    _serve_env(root)
    module = importlib.import_module("services.handlers.stac")
    response = module.handler(_event("/stac/search", "limit=5"), _Context())
    assert int(response["statusCode"]) == 200, response.get("body", "")[:500]
    features = json.loads(response["body"])["features"]
    assert features, "pgstac search returned no item"
    print(f"stac handler over pgstac: {len(features)} items")


def _event(path: str, query: str = "") -> dict[str, object]:
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
            "headers": {"host": "localhost", "accept": "*/*"},
            "requestContext": {"accountId": "0", "apiId": "local", "domainName": "localhost", "domainPrefix": "local",
                               "requestId": "r", "routeKey": "$default", "stage": "$default", "time": "",
                               "timeEpoch": 0, "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                                                       "sourceIp": "127.0.0.1", "userAgent": "check"}},
            "isBase64Encoded": False}


class _Context:
    function_name = "ocsge-check"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-west-3:000000000000:function:ocsge-check"
    aws_request_id = "check"


def _serve_env(root: str) -> None:
    os.environ.update({"OCSGE_STORAGE_ROOT": root, "POWERTOOLS_TRACE_DISABLED": "true",
                       "POWERTOOLS_METRICS_NAMESPACE": "OCSGE", "AWS_DEFAULT_REGION": "eu-west-3"})


def serve(root: str) -> None:
    _serve_env(root)
    requests = {"stac": ("/stac/collections", ""), "tiles": ("/wmts", "SERVICE=WMTS&REQUEST=GetCapabilities"),
                "vector": ("/vector/datasets", ""), "downloads": ("/downloads/", ""), "viewer": ("/", "")}
    for name in HANDLERS:
        module = importlib.import_module(f"services.handlers.{name}")
        path, query = requests[name]
        response = module.handler(_event(path, query), _Context())
        status = int(response["statusCode"])
        body = response.get("body") or ""
        if response.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        print(f"{name:<10} {path}?{query} → {status}")
        assert status == 200, (name, status, body[:500])
        if name == "stac":
            assert json.loads(body)["collections"], "no collection served"


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    {"batch": batch, "pgstac": pgstac, "serve": serve, "serve-pgstac": serve_pgstac}[role](*args)
    print(f"{role}: ok")
