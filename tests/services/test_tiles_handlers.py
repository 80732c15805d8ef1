"""The Lambda handlers (``services.handlers.<service>.handler``, the paths infra references) answer API
Gateway HTTP API events: binary bodies base64-encoded, text as text, and a service per module."""

from __future__ import annotations

import base64
import importlib
import json
import sys

import pytest
from morecantile import tms
from svc_territory import build_territory, quadrant_centre_lonlat

from support.lambda_events import Context, api_event


def event(path: str, query: str = "") -> dict:
    return api_event(path, query, host="example.cloudfront.net")


@pytest.fixture(scope="module")
def handlers(tmp_path_factory):
    from catalog.publish import publish
    from ocsge.settings import get_settings
    from ocsge.storage import LocalStorage

    root = tmp_path_factory.mktemp("lambda") / "root"
    build_territory(root)
    publish(LocalStorage(root))
    mp = pytest.MonkeyPatch()
    mp.setenv("OCSGE_STORAGE_ROOT", str(root))
    mp.setenv("POWERTOOLS_METRICS_NAMESPACE", "OCSGE-test")
    mp.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    get_settings.cache_clear()
    modules = {}
    for name in ("tiles", "vector", "downloads", "viewer", "stac"):
        qualified = f"services.handlers.{name}"
        sys.modules.pop(qualified, None)
        modules[name] = importlib.import_module(qualified)
    yield modules
    mp.undo()
    get_settings.cache_clear()


def test_tiles_handler_png_and_capabilities(handlers):
    t = tms.get("WebMercatorQuad").tile(*quadrant_centre_lonlat("NW"), 15)
    resp = handlers["tiles"].handler(event(
        "/wmts", f"SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=OCSGE.COUVERTURE.2021-2023&STYLE=normal"
        f"&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX=15&TILEROW={t.y}&TILECOL={t.x}"), Context())
    assert resp["statusCode"] == 200
    assert resp["isBase64Encoded"] is True
    assert base64.b64decode(resp["body"])[:4] == b"\x89PNG"
    assert resp["headers"]["cache-control"].startswith("public")
    caps = handlers["tiles"].handler(event("/wms", "SERVICE=WMS&REQUEST=GetCapabilities"), Context())
    assert caps["statusCode"] == 200 and caps["isBase64Encoded"] is False
    assert "https://example.cloudfront.net/wms?" in caps["body"]  # links use the host the client saw
    bad = handlers["tiles"].handler(event("/wmts", "SERVICE=WMTS&REQUEST=GetTile&LAYER=x"), Context())
    assert bad["statusCode"] == 400 and "ExceptionReport" in bad["body"]


def test_other_handlers(handlers):
    vector = handlers["vector"].handler(event("/vector/datasets"), Context())
    assert json.loads(vector["body"])[0]["kind"] == "occupation"
    downloads = handlers["downloads"].handler(event("/downloads/S01"), Context())
    assert json.loads(downloads["body"])["archives"][0]["name"] == "archives_DS01_2021.zip"
    stats = handlers["downloads"].handler(event("/stats/S01/2021/communes.json"), Context())
    assert stats["statusCode"] == 200
    viewer = handlers["viewer"].handler(event("/"), Context())
    assert viewer["statusCode"] == 200 and "OCS GE" in viewer["body"]
    stac = handlers["stac"].handler(event("/stac/collections"), Context())
    assert stac["statusCode"] == 200
    links = json.loads(stac["body"])["links"]
    assert any(link["href"].startswith("https://example.cloudfront.net/stac/") for link in links)


def test_pgstac_password_comes_from_its_secret(monkeypatch):
    """Lambdas get a DSN without password plus the ARN of its secret (settings); the backend's DSN gets
    the password, and nothing is written to the process environment."""
    import json
    import os

    import boto3
    from moto import mock_aws

    from catalog.search.backends import open_backend
    from ocsge.settings import Settings

    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        secret = json.dumps({"username": "ocsge_read", "password": "s3cr3t"})
        arn = boto3.client("secretsmanager").create_secret(Name="ocsge/pgstac/reader", SecretString=secret)["ARN"]
        settings = Settings(catalog_backend="pgstac", pgstac_dsn="postgresql://ocsge_read@db.example:5432/pgstac",
                            pgstac_secret_arn=arn)
        backend = open_backend(settings=settings)  # the pool opens lazily: no connection is attempted here
    assert "password=s3cr3t" in backend.dsn and "host=db.example" in backend.dsn  # type: ignore[attr-defined]
    assert "PGPASSWORD" not in os.environ
