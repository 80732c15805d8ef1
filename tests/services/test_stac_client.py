"""pystac-client end to end against ``ocsge serve``'s app on 127.0.0.1: what a third party does."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pystac_client import Client

from services.app import AppContext, create_app


@pytest.fixture(scope="module")
def stac_url(sample_root: str) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(AppContext(root=sample_root)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "STAC server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/stac/"
    server.should_exit = True
    thread.join(timeout=10)


def test_open_list_and_search(stac_url: str, sample_root: str) -> None:
    client = Client.open(stac_url)
    assert client.id == "ocsge"
    collections = {c.id for c in client.get_collections()}
    assert {"ocsge-occupation", "ocsge-couverture", "ocsge-prediction", "ocsge-difference"} <= collections

    # "département 77, couverture, 2021-2023, as a COG"
    search = client.search(collections=["ocsge-couverture"], datetime="2021-01-01/2023-12-31",
                           filter={"op": "=", "args": [{"property": "ocsge:departement"}, "77"]})
    items = list(search.items())
    assert [i.id for i in items] == ["couverture_D077_2021"]
    asset = items[0].assets["data"]
    assert asset.media_type == "image/tiff; application=geotiff; profile=cloud-optimized"
    path = Path(asset.href)
    assert path == Path(sample_root) / "couverture/D077/2021/couverture_D077_2021.tif"
    assert asset.extra_fields["file:size"] == path.stat().st_size
    assert asset.extra_fields["file:checksum"] == "1220" + hashlib.sha256(path.read_bytes()).hexdigest()

    # by millésime (CQL2 text over GET), by bbox, paging through pystac-client
    by_year = client.search(filter="\"ocsge:millesime\" = 2017", filter_lang="cql2-text", method="GET")
    assert {i.properties["ocsge:departement"] for i in by_year.items()} == {"77"}
    gers = list(client.search(bbox=[0.3, 43.5, 0.6, 43.8], limit=4, max_items=100).items())
    assert len(gers) == 16 and all(i.properties["ocsge:departement"] == "32" for i in gers)
    for item in gers:
        for asset in item.assets.values():
            assert Path(asset.href).is_file()
    assert client.get_collection("ocsge-couverture").get_item("couverture_D032_2019").id == "couverture_D032_2019"


def test_open_without_the_trailing_slash(stac_url: str) -> None:
    """``/stac`` is the URL people type: it redirects to the API root, and pystac-client opens it."""
    import requests

    bare = stac_url.rstrip("/")
    resp = requests.get(bare + "?x=1", allow_redirects=False, timeout=30)
    assert resp.status_code in (301, 307, 308) and resp.headers["location"] == "/stac/?x=1"
    client = Client.open(bare)
    assert client.id == "ocsge"
    assert client.conforms_to("SORT") and client.conforms_to("FIELDS") and client.conforms_to("FILTER")
    assert [i.id for i in client.search(ids=["couverture_D077_2021"]).items()] == ["couverture_D077_2021"]
    landing = requests.get(stac_url, timeout=30).json()
    assert landing["stac_version"] == "1.1.0"
    for rel in ("service-desc", "service-doc"):
        link = next(link for link in landing["links"] if link["rel"] == rel)
        assert link["href"] in (stac_url + "api", stac_url + "api.html")
        assert requests.get(link["href"], headers={"Accept": link["type"]}, timeout=30).status_code == 200
    # every collection by default (not a first page of 10), and sorting seen by pystac-client
    assert len(list(client.get_collections())) == requests.get(stac_url + "collections", timeout=30).json()[
        "numberMatched"]
    years = [i.properties["ocsge:millesime"] for i in client.search(
        collections=["ocsge-couverture"], sortby="-properties.ocsge:millesime", max_items=10).items()]
    assert years == sorted(years, reverse=True) and len(years) == 4
