"""Issue item 3 (scaffolding; the lead wires it once the whole chain is in): the demo chain with its storage
root on an S3-compatible server on 127.0.0.1, then the Lambda handlers invoked with API Gateway v2 events,
reading through GDAL's ``/vsis3/`` and boto3 — the cloud code paths, without AWS.

Each handler runs in a fresh interpreter (as a Lambda cold start does), with the environment the CDK app
gives the functions (``infra.services.service_environment``) pointed at the loopback server.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.lambda_events import api_event, invoke_cold

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

REPO = Path(__file__).resolve().parents[2]


def event(path: str, query: str = "") -> dict[str, Any]:
    return api_event(path, query, headers={"x-forwarded-host": "ocsge.example.org"})


def lambda_env(s3_root: str, base: dict[str, str]) -> dict[str, str]:
    """The functions' environment from the CDK app, with the storage root on the loopback server."""
    from infra.config import load
    from infra.services import service_environment

    config = load({"data_bucket": "ocsge-local-data"})
    env = {k: v for k, v in service_environment(config).items() if isinstance(v, str)}
    env.update({"OCSGE_STORAGE_ROOT": s3_root, "OCSGE_S3_REGION": "eu-west-3", "OCSGE_CATALOG_BACKEND": "embedded",
                "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "OCSGE"})
    env.pop("OCSGE_PUBLIC_URL", None)
    return {**base, **env}


@pytest.fixture(scope="module")
def demo_on_s3(s3_server: str) -> tuple[str, dict[str, str]]:
    """``ocsge demo --no-serve`` (synth → ingest → predict → vectorize → rules → products → publish) on S3."""
    import uuid

    import boto3

    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_REGION": "eu-west-3", "OCSGE_S3_ENDPOINT_URL": s3_server, "OCSGE_S3_REGION": "eu-west-3",
        "AWS_S3_ENDPOINT": s3_server.removeprefix("http://"), "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
        "OCSGE_QUIET": "1",
    }
    bucket = f"demo-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="eu-west-3", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    root = f"s3://{bucket}/data"
    proc = subprocess.run([sys.executable, "-m", "ocsge.cli", "demo", "--root", root, "--width-m", "600",
                           "--height-m", "400", "--seed", "7", "--no-serve"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=800)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return root, env


def test_batch_wrote_products_and_catalogue_to_s3(demo_on_s3: tuple[str, dict[str, str]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from ocsge.storage import TMP_PREFIX, open_storage

    root, env = demo_on_s3
    for name, value in env.items():
        if name.startswith(("AWS_", "OCSGE_S3")):
            monkeypatch.setenv(name, value)
    storage = open_storage(root)
    keys = [o.key for o in storage.list()]
    assert any(k.startswith("prediction/") for k in keys)
    assert any(k.startswith("occupation") and k.endswith(".parquet") for k in keys)
    assert any(k.endswith(".pmtiles") for k in keys)
    assert storage.exists("stac/catalog.json")
    raw = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=f"data/{TMP_PREFIX}")  # type: ignore[attr-defined]
    assert raw.get("KeyCount", 0) == 0, "temporary keys left behind"


def test_stac_lambda_reads_the_catalogue_from_s3(demo_on_s3: tuple[str, dict[str, str]]) -> None:
    env = lambda_env(*demo_on_s3)
    response = invoke_cold("services.handlers.stac.handler", event("/stac/collections"), env)
    assert response["statusCode"] == 200
    collections = json.loads(response["body"])["collections"]
    assert collections


def test_wmts_lambda_reads_cogs_through_vsis3(demo_on_s3: tuple[str, dict[str, str]]) -> None:
    env = lambda_env(*demo_on_s3)
    caps = invoke_cold("services.handlers.tiles.handler",
                  event("/wmts", "SERVICE=WMTS&REQUEST=GetCapabilities"), env)
    assert caps["statusCode"] == 200 and "OCSGE." in caps["body"]
    tile = _territory_tile(zoom=16)
    query = ("SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=OCSGE.COUVERTURE.2024-2026&STYLE=normal"
             f"&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX=16&TILEROW={tile.y}&TILECOL={tile.x}")
    got = invoke_cold("services.handlers.tiles.handler", event("/wmts", query), env)
    assert got["statusCode"] == 200, got.get("body", "")[:500]
    assert got["isBase64Encoded"] and got["headers"]["content-type"] == "image/png"
    assert _official_colours_only(base64.b64decode(got["body"]))


def _territory_tile(zoom: int):  # type: ignore[no-untyped-def]
    """The Web Mercator tile at the centre of the demo territory (synth's default origin, 600 m × 400 m)."""
    import morecantile
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(2154, 4326, always_xy=True).transform(700000 + 300, 6600000 + 200)
    return morecantile.tms.get("WebMercatorQuad").tile(lon, lat, zoom)


def _official_colours_only(png: bytes) -> bool:
    import io

    import numpy as np
    from PIL import Image

    from ocsge.nomenclature import palette

    rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).reshape(-1, 4)
    opaque = {tuple(int(c) for c in p[:3]) for p in rgba[rgba[:, 3] == 255]}
    official = {c[:3] for v, c in palette("couverture").items() if v}
    return bool(opaque) and opaque <= official
