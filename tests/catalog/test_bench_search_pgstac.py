"""benchmarks/bench_search.py measures stac-fastapi-pgstac with its own deployment settings (`+api-hydrate`:
USE_API_HYDRATE, `+response-models`: ENABLE_RESPONSE_MODELS) beside its default configuration. Those rows
compare only if each configuration serves the same pages: the settings may move CPU (SQL vs Python
hydration, pydantic vs FastAPI's jsonable_encoder), never the answer."""

from __future__ import annotations

from typing import Any

import pytest

BODIES: list[dict[str, Any]] = [
    # the benchmark's target shape: collection + bbox + datetime
    {"collections": ["ocsge-prediction"], "bbox": [-180, -90, 180, 90], "limit": 50,
     "datetime": "2015-01-01T00:00:00Z/2030-12-31T23:59:59Z"},
    {"collections": ["ocsge-couverture", "ocsge-prediction"], "limit": 100, "filter-lang": "cql2-json",
     "filter": {"op": ">=", "args": [{"property": "ocsge:millesime"}, 2019]}},
]


def _pages(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> list[dict[str, Any]]:
    from fastapi.testclient import TestClient
    from stac_fastapi.pgstac.app import create_app

    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with TestClient(create_app()) as client:  # create_app reads its Settings from the environment
        answers = [client.post("/search", json=body) for body in BODIES]
    for answer in answers:
        assert answer.status_code == 200, answer.text
    return [answer.json() for answer in answers]


def test_api_hydration_and_response_models_serve_the_same_pages(
    pgstac_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(pgstac_dsn)
    monkeypatch.setenv("PGUSER", str(parts.get("user", "postgres")))
    monkeypatch.setenv("PGPASSWORD", str(parts.get("password", "")))
    monkeypatch.setenv("PGHOST", str(parts["host"]))
    monkeypatch.setenv("PGPORT", str(parts["port"]))
    monkeypatch.setenv("PGDATABASE", str(parts["dbname"]))

    default = _pages(monkeypatch, {"USE_API_HYDRATE": "false", "ENABLE_RESPONSE_MODELS": "false"})
    tuned = _pages(monkeypatch, {"USE_API_HYDRATE": "true", "ENABLE_RESPONSE_MODELS": "true"})

    assert all(page["features"] for page in default)  # pages with items: the comparison means something
    assert [f["assets"] for f in default[0]["features"]] == [f["assets"] for f in tuned[0]["features"]]
    assert tuned == default  # same JSON, key order aside
