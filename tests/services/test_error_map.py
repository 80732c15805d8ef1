"""One error map: missing artifact 404, storage unreachable 503 (Retry-After), OGC paths always an OGC
exception, a genuine fault a generic 500 without a traceback."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from rasterio.errors import RasterioIOError

from ocsge.errors import ArtifactNotFound, StorageUnavailable
from services.errors import add_error_handlers


def app_raising(exc: BaseException) -> TestClient:
    app = FastAPI()

    @app.get("/thing")
    @app.get("/wmts")
    @app.get("/wms")
    def boom() -> None:
        raise exc

    add_error_handlers(app, ogc=True, extra={RasterioIOError: 503})
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(("exc", "status"), [
    (ArtifactNotFound("no object 'x' under /secret/root"), 404),
    (StorageUnavailable("s3://secret-bucket did not answer"), 503),
    (RasterioIOError("/vsis3/secret-bucket/x.tif: read failed"), 503),
    (RuntimeError("internal detail"), 500),
])
def test_statuses_and_no_internals(exc, status):
    client = app_raising(exc)
    resp = client.get("/thing")
    assert resp.status_code == status
    assert "secret" not in resp.text and "internal detail" not in resp.text and "Traceback" not in resp.text
    if status == 503:
        assert resp.headers["Retry-After"]
    for path, tag in (("/wmts", "ExceptionReport"), ("/wms", "ServiceExceptionReport")):
        resp = client.get(path)
        assert resp.status_code == status
        root = ET.fromstring(resp.content)
        assert root.tag.endswith(tag)
        assert "secret" not in resp.text and "Traceback" not in resp.text


def test_wmts_read_error_through_the_tiles_app(tiles_app, monkeypatch):
    from services.tiles import render

    def unreadable(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RasterioIOError("/vsis3/bucket/key.tif: not recognized")

    monkeypatch.setattr(render.Renderer, "tile", unreadable)
    client = TestClient(tiles_app, raise_server_exceptions=False)
    resp = client.get("/wmts/1.0.0/OCSGE.COUVERTURE.2021-2023/normal/PM/14/5637/8298.png")
    assert resp.status_code == 503
    assert ET.fromstring(resp.content).tag == "{http://www.opengis.net/ows/1.1}ExceptionReport"
