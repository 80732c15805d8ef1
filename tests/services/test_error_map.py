"""One error map: missing artifact 404, storage unreachable 503 (Retry-After), OGC paths always an OGC
exception, a genuine fault a generic 500 without a traceback."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel
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


def test_invalid_parameter_is_400_with_its_locator():
    from services.params import InvalidParameter

    client = app_raising(InvalidParameter("BBOX", "the box is outside EPSG:3857's range"))
    resp = client.get("/thing")
    assert resp.status_code == 400 and resp.json()["detail"].startswith("BBOX: ")
    for path in ("/wms", "/wmts"):
        resp = client.get(path)
        assert resp.status_code == 400
        exc = ET.fromstring(resp.content)[0]
        assert exc.attrib.get("locator") == "BBOX"
        assert "InvalidParameterValue" in exc.attrib.values()


@pytest.mark.parametrize("message", [
    "Tile(x=1, y=2, z=3) is outside /srv/ocsge/root/couverture/D77/2021/couverture_D77_2021.tif bounds",
    "cannot read /vsis3/secret-bucket/prefix/x.tif",
    "object s3://secret-bucket/prefix/x.tif is missing",
])
def test_client_errors_name_no_local_path(message):
    from rio_tiler.errors import TileOutsideBounds

    app = FastAPI()

    @app.get("/thing")
    def boom() -> None:
        raise TileOutsideBounds(message)

    @app.get("/http")
    def http() -> None:
        from fastapi import HTTPException

        raise HTTPException(404, message)

    add_error_handlers(app, extra={TileOutsideBounds: 404})
    client = TestClient(app, raise_server_exceptions=False)
    for path in ("/thing", "/http"):
        resp = client.get(path)
        assert resp.status_code == 404
        assert "<path>" in resp.json()["detail"]
        assert "secret" not in resp.text and "/srv/" not in resp.text


def test_render_timeout_is_503_with_its_own_message():
    from services.tiles.budget import RenderTimeout

    client = app_raising(RenderTimeout(20))
    app = client.app
    add_error_handlers(app, ogc=True, extra={RenderTimeout: 503})  # type: ignore[arg-type]
    resp = client.get("/thing")
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    assert "20 s budget" in resp.json()["detail"]
    resp = client.get("/wms")
    assert resp.status_code == 503 and "20 s budget" in resp.text


class Feature(BaseModel):
    type: str
    coordinates: list[float]


def test_validation_errors_do_not_echo_the_input():
    app = FastAPI()

    @app.post("/feature")
    def feature(body: Feature) -> None:
        return None

    add_error_handlers(app)
    client = TestClient(app, raise_server_exceptions=False)
    resp = client.post("/feature", json={"type": "Point", "coordinates": ["x" * 1000, 2]})
    assert resp.status_code == 422
    assert "x" * 100 not in resp.text
    assert resp.json()["detail"][0]["loc"] == ["body", "coordinates", 0]
