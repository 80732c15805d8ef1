"""Fixtures of the service tests: a tiny published territory (``svc_territory``), finders, apps and live
servers on 127.0.0.1 for real clients."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: let the tests import svc_territory

from svc_territory import LiveServer, Territory, build_territory


@pytest.fixture(scope="session")
def territory(tmp_path_factory: pytest.TempPathFactory) -> Territory:
    return build_territory(tmp_path_factory.mktemp("territory") / "root")


@pytest.fixture(scope="session")
def finder(territory: Territory):
    from services.assets import StorageAssetFinder

    return StorageAssetFinder(territory.root, ttl_s=3600)


@pytest.fixture(scope="session")
def tiles_app(finder):
    from services.tiles.app import create_app

    return create_app(finder)


@pytest.fixture(scope="session")
def tiles_server(territory: Territory) -> Iterator[LiveServer]:
    """What ``ocsge serve`` runs (services.app: STAC + map services + viewer), over the territory once
    published to the catalogue: real clients go through the same stack as users."""
    from catalog.publish import publish
    from ocsge.storage import LocalStorage
    from services.app import AppContext, create_app

    publish(LocalStorage(territory.root))
    with LiveServer(create_app(AppContext(root=str(territory.root)))) as server:
        yield server


# STAC API tests: the published sample catalogue and a real pgstac (see tests/support/catalog_fixtures.py)
from support.catalog_fixtures import backend, pgstac_dsn, postgres, sample_root  # noqa: E402, F401
