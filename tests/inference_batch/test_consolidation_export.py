"""The batch side of the consolidation loop, on both stores: a contribution filed and accepted through the
API reaches the errors layer (IGN's PATCH_CORR form) and the next ``ocsge corrections`` run; the
interpreters' edits and the contribution give the corrected millésime, ingested with its provenance."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
from click.testing import CliRunner

from inference_batch.consolidation.cli import consolidation
from inference_batch.products.artifacts import key, read_vector
from ocsge.cli import run_verb
from ocsge.consolidation.store import ConsolidationStore
from ocsge.millesimes import label
from ocsge.storage import open_storage
from support.catalog_fixtures import postgres  # noqa: F401  (the PostgreSQL of the session)
from support.consolidation import (  # noqa: F401  (store: the fixture over both engines)
    BASE,
    DEP,
    FLAGGED,
    NEW,
    PREVIOUS,
    WINDOW,
    Api,
    build_territory,
    lonlat,
    make_api,
    square,
    store,
)

PATCH = f"PATCH_CORR_{label(DEP, PREVIOUS)}_{PREVIOUS}"  # IGN's name: the patch of millésime M{n}
PATCH_COLUMNS = [
    "id_ocs",
    "code_cs",
    "code_us",
    "millesime",
    "source",
    "ossature",
    "id_origine",
    "code_or",
    "cs_corr",
    "us_corr",
    "os_corr",
    "decoup_geo",
]


@pytest.fixture
def api(store: ConsolidationStore, tmp_path: Path) -> Api:  # noqa: F811
    build_territory(open_storage(tmp_path))
    api = make_api(store, tmp_path)
    assert api.post("/consolidation/windows", "admin", WINDOW).status_code == 201
    return api


def contribute(api: Api, geometry: dict[str, object], cs: str, us: str, status: str) -> str:
    r = api.post(
        f"{BASE}/contributions", "carl", {"geometry": geometry, "code_cs": cs, "code_us": us, "comment": "vu sur place"}
    )
    assert r.status_code == 201, r.text
    review = api.post(f"{BASE}/contributions/{r.json()['id']}/review", "rita", {"status": status, "reason": "ok"})
    assert review.status_code == 200, review.text
    return str(r.json()["id"])


def dsn_args(store: ConsolidationStore) -> list[str]:  # noqa: F811
    return ["--dsn", store.target] if store.postgres else []


def test_accepted_contribution_reaches_the_errors_layer_and_corrections(
    api: Api,
    store: ConsolidationStore,  # noqa: F811
    tmp_path: Path,
) -> None:
    # in the forest of 2021 (P_B), a 50 m × 40 m meadow; a rejected report elsewhere must not appear
    accepted = contribute(api, square(150, 20, 200, 60), "CS2.2.1", "US1.1", "accepted")
    contribute(api, square(20, 20, 40, 40), "CS1.2.2", "US1.4", "rejected")
    runner = CliRunner()
    out = runner.invoke(
        consolidation,
        ["export", "-d", DEP, "-m", str(NEW), "--errors-only", "--root", str(tmp_path), *dsn_args(store)],
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
    gpkg = tmp_path / "consolidation" / "DS01" / str(NEW) / f"{PATCH}.gpkg"
    assert gpkg.exists(), out.output
    layers = [name for name, _ in pyogrio.list_layers(gpkg)]
    assert layers == [PATCH]
    errors = gpd.read_file(gpkg)
    assert [c for c in errors.columns if c != "geometry"] == PATCH_COLUMNS
    assert errors.geometry.name == "geometry" and errors.geom_type.tolist() == ["MultiPolygon"]
    row = errors.iloc[0]
    assert len(errors) == 1
    assert (row.id_ocs, row.code_cs, row.code_us, row.cs_corr, row.us_corr, row.decoup_geo, row.millesime) == (
        "P_B",
        "CS2.1.1.1",
        "US1.2",
        "CS2.2.1",
        "US1.1",
        "OUI",
        str(PREVIOUS),
    )
    assert row.source == f"contribution:{accepted}"
    assert errors.geometry.area.iloc[0] == pytest.approx(2000, rel=1e-3)

    # the full export: the corrected 2024 delivered and ingested, the patch with it
    alice = api
    line = {"type": "LineString", "coordinates": [lonlat(-5, 65), lonlat(70, 65)]}
    split = alice.post(
        f"{BASE}/tasks/{FLAGGED[0]}/edits",
        "alice",
        {
            "action": "split",
            "polygon_id": "N_A1",
            "version": 1,
            "line": line,
            "codes": [{"code_cs": "CS1.1.1.1", "code_us": "US5"}, {"code_cs": "CS2.2.1", "code_us": "US1.1"}],
        },
    )
    assert split.status_code == 200, split.text
    version = alice.task(FLAGGED[0])["task"]["properties"]["version"]
    assert alice.post(f"{BASE}/tasks/{FLAGGED[0]}/done", "alice", {"version": version}).status_code == 200
    out = runner.invoke(
        consolidation,
        ["export", "-d", DEP, "-m", str(NEW), "--root", str(tmp_path), *dsn_args(store)],
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
    storage = open_storage(tmp_path)
    assert storage.exists(f"consolidation/DS01/{NEW}/OCS-GE_2-0__GPKG_LAMB93_DS01_{NEW}-01-01.7z")
    corrected = read_vector(storage, key("occupation", DEP, NEW)).set_index("id")
    assert corrected.loc["N_A1.1", ["code_cs", "code_us", "provenance"]].tolist() == ["CS1.1.1.1", "US5", "pi"]
    assert corrected.loc["N_A1.2", ["code_cs", "code_us", "provenance"]].tolist() == ["CS2.2.1", "US1.1", "pi"]
    assert "N_A1" not in corrected.index  # the split parent is gone
    assert corrected.loc["N_A2", "provenance"] == "auto"
    # the forest of 2024 repeats 2021's error under the accepted contribution: the meadow is carried forward
    assert corrected.loc["N_B.c", ["code_cs", "code_us", "provenance"]].tolist() == ["CS2.2.1", "US1.1", "contribution"]
    assert corrected.loc["N_B.c"].geometry.area == pytest.approx(2000, rel=1e-3)
    assert corrected.loc["N_B", "provenance"] == "auto"
    assert corrected.geometry.area.sum() == pytest.approx(260 * 130, rel=1e-6)  # nothing lost, no overlap
    assert corrected.geometry.union_all().area == pytest.approx(260 * 130, rel=1e-6)
    assert storage.exists(key("zone_construite", DEP, NEW))
    patch = read_vector(storage, key("patch_corr", DEP, (PREVIOUS, NEW)))
    assert patch["cs_corr"].tolist() == ["CS2.2.1"]

    # the next corrections run (the ordinary verb, its default input: the ingested patch) shows it
    run_verb(
        "corrections", ["--departement", DEP, "--before", str(PREVIOUS), "--after", str(NEW), "--root", str(tmp_path)]
    )
    layer = read_vector(storage, key("corrections", DEP, (PREVIOUS, NEW)))
    assert len(layer) == 1
    assert layer[["cs_corr", "us_corr"]].iloc[0].tolist() == ["CS2.2.1", "US1.1"]
    assert layer.geometry.area.iloc[0] == pytest.approx(2000, rel=1e-3)
    fixed = read_vector(storage, key("corrected_previous", DEP, (PREVIOUS, NEW)))
    meadow = fixed[fixed["code_cs"] == "CS2.2.1"]
    assert meadow.geometry.area.sum() == pytest.approx(130 * 130 + 2000, rel=1e-3)

    # exporting again changes nothing (the store is the source; the ingested patch is not stacked)
    again = runner.invoke(
        consolidation,
        ["export", "-d", DEP, "-m", str(NEW), "--root", str(tmp_path), *dsn_args(store)],
        catch_exceptions=False,
    )
    assert again.exit_code == 0, again.output
    assert read_vector(storage, key("patch_corr", DEP, (PREVIOUS, NEW)))["cs_corr"].tolist() == ["CS2.2.1"]
    assert len(read_vector(storage, key("occupation", DEP, NEW))) == len(corrected)


def test_corrections_reads_the_exported_gpkg(
    api: Api,
    store: ConsolidationStore,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``ocsge corrections --corrections FILE`` with the errors GeoPackage alone (no new delivery)."""
    point = {"type": "Point", "coordinates": list(lonlat(100, 100))}  # on P_A: the whole polygon is reported
    contribute(api, point, "CS2.2.1", "US1.3", "accepted")
    runner = CliRunner()
    out = runner.invoke(
        consolidation,
        ["export", "-d", DEP, "-m", str(NEW), "--errors-only", "--root", str(tmp_path), *dsn_args(store)],
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
    gpkg = tmp_path / "consolidation" / "DS01" / str(NEW) / f"{PATCH}.gpkg"
    errors = gpd.read_file(gpkg)
    assert errors[["id_ocs", "cs_corr", "us_corr", "decoup_geo"]].values.tolist() == [["P_A", "RAS", "US1.3", "RAS"]]
    storage = open_storage(tmp_path)
    # the new millésime for the comparison: here the automatic map published as is
    auto = read_vector(storage, key("occupation_auto", DEP, NEW))
    from inference_batch.products.artifacts import write_vector

    write_vector(storage, key("occupation", DEP, NEW), auto)
    run_verb(
        "corrections",
        [
            "--departement",
            DEP,
            "--before",
            str(PREVIOUS),
            "--after",
            str(NEW),
            "--root",
            str(tmp_path),
            "--corrections",
            str(gpkg),
        ],
    )
    layer = read_vector(storage, key("corrections", DEP, (PREVIOUS, NEW)))
    assert layer[["code_us", "us_corr"]].values.tolist() == [["US1.1", "US1.3"]]
    assert layer.geometry.area.sum() == pytest.approx(130 * 130, rel=1e-6)


def test_open_verb_opens_the_window_once(store: ConsolidationStore, tmp_path: Path) -> None:  # noqa: F811
    """``ocsge consolidation open`` (the demo's step) opens the window; a rerun leaves it as it is."""
    build_territory(open_storage(tmp_path))
    args = [
        "open",
        "-d",
        DEP,
        "-m",
        str(NEW),
        "--previous",
        str(PREVIOUS),
        "--closes",
        "2099-06-30",
        "--root",
        str(tmp_path),
        *dsn_args(store),
    ]
    first = CliRunner().invoke(consolidation, args, catch_exceptions=False)
    assert first.exit_code == 0 and "2 tasks" in first.output, first.output
    store.mark_done(f"{DEP}-{NEW}", FLAGGED[0], 1, "alice")
    again = CliRunner().invoke(consolidation, args, catch_exceptions=False)
    assert again.exit_code == 0 and "already open" in again.output, again.output
    assert [t.status.value for t in store.list_tasks(f"{DEP}-{NEW}")] == ["done", "todo"]
    assert store.get_window(f"{DEP}-{NEW}").closes == "2099-06-30"


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # the store's part runs on both engines above
def test_corrected_millesime_is_published_and_served(
    api: Api,
    store: ConsolidationStore,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Export → ``ocsge products`` → ``ocsge publish``: the corrected 2024 and its corrections are catalogued
    and served by the all-in-one server, the polygons with their provenance."""
    import io

    import pyarrow.parquet as pq
    from fastapi.testclient import TestClient

    from services.app import AppContext, create_app

    contribute(api, square(150, 20, 200, 60), "CS2.2.1", "US1.1", "accepted")
    assert (
        api.post(
            f"{BASE}/tasks/{FLAGGED[0]}/edits",
            "alice",
            {
                "action": "reclassify",
                "polygon_id": "N_A1",
                "version": 1,
                "code_cs": "CS1.1.1.2",
                "code_us": "US5",
            },
        ).status_code
        == 200
    )
    runner = CliRunner()
    out = runner.invoke(
        consolidation, ["export", "-d", DEP, "-m", str(NEW), "--root", str(tmp_path)], catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    run_verb("products", ["--root", str(tmp_path), "--departement", DEP])
    run_verb("publish", ["--root", str(tmp_path)])
    client = TestClient(create_app(AppContext(root=str(tmp_path))))
    found = client.get("/stac/search", params={"collections": "ocsge-occupation", "limit": 10}).json()["features"]
    item = next(f for f in found if f["properties"]["ocsge:millesime"] == NEW)
    served = client.get(f"/files/{key('occupation', DEP, NEW)}")
    assert served.status_code == 200
    table = pq.read_table(io.BytesIO(served.content), columns=["id", "code_cs", "provenance"]).to_pylist()
    by_id = {row["id"]: row for row in table}
    assert by_id["N_A1"] == {"id": "N_A1", "code_cs": "CS1.1.1.2", "provenance": "pi"}
    assert by_id["N_B.c"]["provenance"] == "contribution" and by_id["N_A2"]["provenance"] == "auto"
    assert item["assets"]["data"]["href"].endswith(key("occupation", DEP, NEW))
    corrections = client.get("/stac/search", params={"collections": "ocsge-corrections", "limit": 10})
    assert corrections.status_code == 200 and corrections.json()["features"], corrections.text[:300]
