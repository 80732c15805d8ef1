"""The consolidation API on both stores (SQLite and PostgreSQL): windows and tasks from the real change grid,
an interpreter's reclassify/split/done, optimistic locking, contributions and their review, the recette,
and every refusal (401, 403, CSRF, 409, 413, 422, 429) leaving the store as it was."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from ocsge.consolidation.model import Conflict
from ocsge.consolidation.store import ConsolidationStore
from ocsge.storage import open_storage
from support.catalog_fixtures import postgres  # noqa: F401  (the PostgreSQL of the session)
from support.consolidation import (  # noqa: F401  (store: the fixture over both engines)
    BASE,
    DEP,
    FLAGGED,
    NEW,
    PASSWORD,
    PREVIOUS,
    Api,
    build_territory,
    lonlat,
    make_api,
    store,
)


@pytest.fixture
def api(store: ConsolidationStore, tmp_path: Path) -> Iterator[Api]:  # noqa: F811
    build_territory(open_storage(tmp_path))
    api = make_api(store, tmp_path)
    r = api.post(
        "/consolidation/windows",
        "admin",
        {"departement": DEP, "millesime": NEW, "previous_millesime": PREVIOUS, "closes": "2099-12-31"},
    )
    assert r.status_code == 201, r.text
    yield api


def reclassify(polygon_id: str, version: int, cs: str = "CS1.1.1.2", us: str = "US5") -> dict[str, Any]:
    return {"action": "reclassify", "polygon_id": polygon_id, "version": version, "code_cs": cs, "code_us": us}


def snapshot(api: Api) -> tuple[Any, ...]:
    """Everything a refused write must leave as it was."""
    tasks = api.client.get(f"{BASE}/tasks").json()
    return (
        json.dumps(tasks, sort_keys=True),
        json.dumps([api.task(t) for t in FLAGGED], sort_keys=True),
        json.dumps(api.client.get(f"{BASE}/contributions").json(), sort_keys=True),
        len(api.store.audit_log()),
    )


# --- windows and tasks ------------------------------------------------------------------------------


def test_window_opens_one_task_per_flagged_cell(api: Api) -> None:
    windows = api.client.get("/consolidation/windows").json()["windows"]
    assert [(w["id"], w["tasks"], w["previous_millesime"]) for w in windows] == [(f"{DEP}-{NEW}", 2, PREVIOUS)]
    assert windows[0]["grid"].startswith("change_grid_auto/")
    tasks = api.client.get(f"{BASE}/tasks")
    assert tasks.headers["content-type"].startswith("application/geo+json")
    features = tasks.json()["features"]
    assert sorted(f["id"] for f in features) == sorted(FLAGGED)
    assert {f["properties"]["status"] for f in features} == {"todo"}
    lon, lat = features[0]["geometry"]["coordinates"][0][0]
    assert 2 < lon < 3 and 48 < lat < 49  # GeoJSON in lon/lat
    detail = api.task(FLAGGED[0])
    # the cell (x 0–65) holds the changed auto polygon A1; A2 only touches its edge
    assert [f["id"] for f in detail["polygons"]["features"]] == ["N_A1"]
    assert detail["polygons"]["features"][0]["properties"] | {} == {
        "id": "N_A1",
        "code_cs": "CS1.1.1.1",
        "code_us": "US5",
        "version": 1,
        "provenance": "auto",
    }
    assert [f["id"] for f in detail["previous"]["features"]] == ["P_A"]
    if api.store.postgres:  # PostGIS: the snapshot is a spatial table GIS clients can read
        assert api.store.postgis
        with api.store.read() as tx:
            assert tx.one("SELECT ST_Area(geom) FROM polygons WHERE id = ?", ("N_A1",))[0] == pytest.approx(65 * 130)
    assert api.client.get(f"{BASE}/tasks?status=done").json()["features"] == []
    # a second window on the same pair is refused
    again = api.post(
        "/consolidation/windows",
        "admin",
        {"departement": DEP, "millesime": NEW, "previous_millesime": PREVIOUS, "closes": "2099-12-31"},
    )
    assert again.status_code == 409


def test_interpreter_reclassifies_splits_and_marks_done(api: Api) -> None:
    r = api.post(f"{BASE}/tasks/{FLAGGED[0]}/edits", "alice", reclassify("N_A1", 1))
    assert r.status_code == 200, r.text
    assert r.json()["polygons"]["features"][0]["properties"] == {
        "id": "N_A1",
        "code_cs": "CS1.1.1.2",
        "code_us": "US5",
        "version": 2,
        "provenance": "pi",
    }
    assert r.json()["task"]["assignee"] == "alice"
    # split A1 along y = 65 m, drawn west → east: the north part is on the left
    line = {"type": "LineString", "coordinates": [lonlat(-5, 65), lonlat(70, 65)]}
    r = api.post(
        f"{BASE}/tasks/{FLAGGED[1]}/edits",
        "alice",
        {
            "action": "split",
            "polygon_id": "N_A1",
            "version": 2,
            "line": line,
            "codes": [{"code_cs": "CS1.1.1.1", "code_us": "US5"}, {"code_cs": "CS2.2.1", "code_us": "US1.1"}],
        },
    )
    assert r.status_code == 200, r.text
    parts = {f["id"]: f for f in r.json()["polygons"]["features"]}
    assert set(parts) == {"N_A1.1", "N_A1.2"}
    north_lat = max(p[1] for p in parts["N_A1.1"]["geometry"]["coordinates"][0])
    south_lat = max(p[1] for p in parts["N_A1.2"]["geometry"]["coordinates"][0])
    assert north_lat > south_lat
    assert parts["N_A1.1"]["properties"]["code_cs"] == "CS1.1.1.1"
    assert parts["N_A1.2"]["properties"] | {} == {
        "id": "N_A1.2",
        "code_cs": "CS2.2.1",
        "code_us": "US1.1",
        "version": 1,
        "provenance": "pi",
    }
    # each cell now shows its own part, the retired parent nowhere
    assert [f["id"] for f in api.task(FLAGGED[0])["polygons"]["features"]] == ["N_A1.2"]  # row 0: south
    assert [f["id"] for f in api.task(FLAGGED[1])["polygons"]["features"]] == ["N_A1.1"]
    # the retired parent cannot be edited any more
    assert api.post(f"{BASE}/tasks/{FLAGGED[0]}/edits", "alice", reclassify("N_A1", 3)).status_code == 409
    task = api.task(FLAGGED[0])["task"]["properties"]
    assert api.post(f"{BASE}/tasks/{FLAGGED[0]}/done", "alice", {"version": task["version"] - 1}).status_code == 409
    done = api.post(f"{BASE}/tasks/{FLAGGED[0]}/done", "alice", {"version": task["version"]})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done" and done.json()["done_by"] == "alice"
    progress = api.client.get(f"{BASE}/progress").json()
    assert progress["by_status"] == {"todo": 1, "done": 1, "checked": 0}
    assert progress["by_interpreter"] == {"alice": {"done": 1, "checked": 0, "agreed": 0}}
    actions = [(e["actor"], e["action"]) for e in api.store.audit_log(f"{DEP}-{NEW}")]
    assert actions == [("admin", "open"), ("alice", "reclassify"), ("alice", "split"), ("alice", "done")]
    split = api.store.audit_log(f"{DEP}-{NEW}")[2]
    assert split["before"]["code_cs"] == "CS1.1.1.2" and len(split["after"]["parts"]) == 2
    # the same log for reviewers over HTTP; an interpreter may not read it, nor anyone anonymous
    log = api.client.get(f"{BASE}/audit", headers=api.bearer("rita"))
    assert [(e["actor"], e["action"]) for e in log.json()["entries"]] == actions
    assert api.client.get(f"{BASE}/audit", headers=api.bearer("alice")).status_code == 403
    assert api.client.get(f"{BASE}/audit").status_code == 401


def test_concurrent_edits_second_writer_gets_409_and_nothing_is_lost(api: Api) -> None:
    first = api.post(f"{BASE}/tasks/{FLAGGED[0]}/edits", "alice", reclassify("N_A1", 1, "CS1.1.2.1", "US5"))
    second = api.post(f"{BASE}/tasks/{FLAGGED[0]}/edits", "bob", reclassify("N_A1", 1, "CS2.2.1", "US1.1"))
    assert first.status_code == 200 and second.status_code == 409
    assert "version" in second.json()["detail"]
    assert api.polygon(FLAGGED[0], "N_A1") | {} == {
        "id": "N_A1",
        "code_cs": "CS1.1.2.1",
        "code_us": "US5",
        "version": 2,
        "provenance": "pi",
    }
    # the same race in threads, straight on the store: exactly one of eight writers of version 2 wins
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def write(n: int) -> None:
        barrier.wait()
        try:
            api.store.reclassify(f"{DEP}-{NEW}", FLAGGED[0], "N_A1", 2, "CS1.1.1.1", "US5", f"writer{n}")
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]
    assert api.polygon(FLAGGED[0], "N_A1")["version"] == 3
    writes = [e for e in api.store.audit_log() if e["action"] == "reclassify"]
    assert len(writes) == 2  # alice's and the one winner's: every refused writer left no trace


# --- refusals change nothing --------------------------------------------------------------------------


def test_unauthenticated_and_unauthorised_writes_are_refused_and_change_nothing(api: Api) -> None:
    before = snapshot(api)
    point = {"type": "Point", "coordinates": list(lonlat(30, 30))}
    cases = [
        (f"{BASE}/tasks/{FLAGGED[0]}/edits", None, reclassify("N_A1", 1), 401),
        (f"{BASE}/tasks/{FLAGGED[0]}/edits", "carl", reclassify("N_A1", 1), 403),
        (f"{BASE}/tasks/{FLAGGED[0]}/done", None, {"version": 1}, 401),
        (f"{BASE}/tasks/{FLAGGED[0]}/done", "carl", {"version": 1}, 403),
        (f"{BASE}/contributions", None, {"geometry": point, "code_cs": "CS2.2.1", "code_us": "US1.1"}, 401),
        (f"{BASE}/recette/sample", "alice", {"count": 1}, 403),
        (
            "/consolidation/windows",
            "rita",
            {"departement": DEP, "millesime": NEW, "previous_millesime": PREVIOUS, "closes": "2099-01-01"},
            403,
        ),
    ]
    for path, who, body, status in cases:
        r = api.post(path, who, body)
        assert r.status_code == status, (path, who, r.text)
    bad = api.client.post(
        f"{BASE}/tasks/{FLAGGED[0]}/edits",
        json=reclassify("N_A1", 1),
        headers={"Authorization": "Bearer " + api.tokens["alice"][:-4] + "AAAA"},
    )
    assert bad.status_code == 401
    forged = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 60, "jti": "x", "iss": "ocsge-local", "aud": "ocsge-consolidation"},
        "not-the-secret-but-as-long-as-one",
        algorithm="HS256",
    )
    assert (
        api.client.post(
            f"{BASE}/tasks/{FLAGGED[0]}/edits",
            json=reclassify("N_A1", 1),
            headers={"Authorization": f"Bearer {forged}"},
        ).status_code
        == 401
    )
    unsigned = jwt.encode({"sub": "admin", "exp": int(time.time()) + 60}, None, algorithm="none")
    assert api.client.get("/consolidation/me", headers={"Authorization": f"Bearer {unsigned}"}).status_code == 401
    assert api.client.get("/consolidation/me").status_code == 401
    # a contribution of carl's cannot be reviewed by carl
    c = api.post(f"{BASE}/contributions", "carl", {"geometry": point, "code_cs": "CS2.2.1", "code_us": "US1.1"})
    assert c.status_code == 201
    after_contribution = snapshot(api)
    assert api.post(f"{BASE}/contributions/{c.json()['id']}/review", "carl", {"status": "accepted"}).status_code == 403
    assert snapshot(api) == after_contribution
    assert before[:2] == after_contribution[:2]  # tasks and polygons untouched by every refusal


def test_cookie_session_writes_need_the_csrf_token(api: Api) -> None:
    wrong = api.client.post("/consolidation/auth/login", json={"username": "alice", "password": "nope nope"})
    assert wrong.status_code == 401 and "ocsge_session" not in wrong.cookies
    login = api.client.post("/consolidation/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200, login.text
    body = login.json()
    assert body["role"] == "interpreter" and body["token_type"] == "bearer" and body["csrf_token"]
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/consolidation" in cookie
    session = TestClient(api.client.app, cookies={"ocsge_session": login.cookies["ocsge_session"]})
    assert session.get("/consolidation/me").json()["username"] == "alice"
    before = snapshot(api)
    missing = session.post(f"{BASE}/tasks/{FLAGGED[0]}/edits", json=reclassify("N_A1", 1))
    assert missing.status_code == 403 and "X-CSRF-Token" in missing.json()["detail"]
    wrong_token = session.post(
        f"{BASE}/tasks/{FLAGGED[0]}/edits", json=reclassify("N_A1", 1), headers={"X-CSRF-Token": "guess"}
    )
    assert wrong_token.status_code == 403
    assert snapshot(api) == before
    ok = session.post(
        f"{BASE}/tasks/{FLAGGED[0]}/edits", json=reclassify("N_A1", 1), headers={"X-CSRF-Token": body["csrf_token"]}
    )
    assert ok.status_code == 200, ok.text
    # the same token as a bearer needs no CSRF header; logging out revokes it
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert api.client.get("/consolidation/me", headers=bearer).status_code == 200
    out = session.post("/consolidation/auth/logout", headers={"X-CSRF-Token": body["csrf_token"]})
    assert out.status_code == 204
    assert api.client.get("/consolidation/me", headers=bearer).status_code == 401


def test_bad_geometries_and_bodies_get_4xx_naming_the_field(api: Api) -> None:
    before = snapshot(api)
    good = {"code_cs": "CS2.2.1", "code_us": "US1.1", "comment": "pré, pas forêt"}
    far = lonlat(5000, 5000)
    bowtie = [lonlat(0, 0), lonlat(50, 50), lonlat(50, 0), lonlat(0, 50), lonlat(0, 0)]
    many = [lonlat(10 + i * 1e-3, 10) for i in range(6000)]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"geometry": {"type": "LineString", "coordinates": [lonlat(0, 0), lonlat(9, 9)]}} | good, 422, "geometry"),
        ({"geometry": {"type": "Point", "coordinates": list(far)}} | good, 422, "territory"),
        ({"geometry": {"type": "Polygon", "coordinates": [bowtie]}} | good, 422, "invalid geometry"),
        ({"geometry": {"type": "Polygon", "coordinates": [many]}} | good, 422, "vertices"),
        ({"geometry": {"type": "Point", "coordinates": ["a", 1]}} | good, 422, "geometry"),
        (
            {"geometry": {"type": "Point", "coordinates": list(lonlat(9, 9))}, "code_cs": "CS9", "code_us": "US1.1"},
            422,
            "code_cs",
        ),
        (
            {"geometry": {"type": "Point", "coordinates": list(lonlat(9, 9))}, "code_cs": "CS1", "code_us": "US1.1"},
            422,
            "leaf",
        ),
        ({"geometry": {"type": "Point", "coordinates": list(lonlat(9, 9))}} | good | {"extra": 1}, 422, "extra"),
    ]
    for body, status, words in cases:
        r = api.post(f"{BASE}/contributions", "carl", body)
        assert r.status_code == status, (body, r.text)
        assert words in r.json()["detail"], r.text
    huge = api.client.post(
        f"{BASE}/contributions",
        content=b'{"comment": "' + b"x" * 300_000 + b'"}',
        headers=api.bearer("carl") | {"Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    chunks = api.client.post(
        f"{BASE}/contributions", content=iter([b"[" * 1000] * 300), headers=api.bearer("carl")
    )  # no Content-Length: counted while reading
    assert chunks.status_code == 413
    deep = api.client.post(f"{BASE}/contributions", content=b"[" * 5000 + b"]" * 5000, headers=api.bearer("carl"))
    assert deep.status_code == 400
    assert api.client.post(f"{BASE}/contributions", content=b"{nope", headers=api.bearer("carl")).status_code == 400
    # a line that does not cut the polygon in two
    short = {"type": "LineString", "coordinates": [lonlat(10, 10), lonlat(20, 10)]}
    r = api.post(
        f"{BASE}/tasks/{FLAGGED[0]}/edits",
        "alice",
        {
            "action": "split",
            "polygon_id": "N_A1",
            "version": 1,
            "line": short,
            "codes": [{"code_cs": "CS1.1.1.1", "code_us": "US5"}, {"code_cs": "CS2.2.1", "code_us": "US1.1"}],
        },
    )
    assert r.status_code == 422 and r.json()["detail"].startswith("line:")
    # a polygon outside the task's cell, an unknown action, an unknown task
    assert api.post(f"{BASE}/tasks/{FLAGGED[0]}/edits", "alice", reclassify("N_A2", 1)).status_code == 422
    assert api.post(f"{BASE}/tasks/{FLAGGED[0]}/edits", "alice", reclassify("N_B", 1)).status_code == 404
    assert api.post(f"{BASE}/tasks/{FLAGGED[0]}/edits", "alice", {"action": "merge"}).status_code == 422
    assert api.post(f"{BASE}/tasks/9_9/edits", "alice", reclassify("N_A1", 1)).status_code == 404
    assert api.client.get("/consolidation/S01/2025/tasks").status_code == 404
    assert api.client.get("/consolidation/ZZZ/2024/tasks").status_code == 404
    assert snapshot(api) == before


def test_writes_are_rate_limited(store: ConsolidationStore, tmp_path: Path) -> None:  # noqa: F811
    build_territory(open_storage(tmp_path))
    api = make_api(store, tmp_path, writes_per_minute=3)
    body = {"departement": DEP, "millesime": NEW, "previous_millesime": PREVIOUS, "closes": "2099-12-31"}
    assert api.post("/consolidation/windows", "admin", body).status_code == 201
    point = {"type": "Point", "coordinates": list(lonlat(30, 30))}
    statuses = [
        api.post(f"{BASE}/contributions", "carl", {"geometry": point, "code_cs": "CS2.2.1", "code_us": "US1.1"})
        for _ in range(4)
    ]
    assert [r.status_code for r in statuses] == [201, 201, 201, 429]
    assert int(statuses[-1].headers["Retry-After"]) >= 1
    assert len(api.client.get(f"{BASE}/contributions").json()["features"]) == 3
    assert api.post("/consolidation/windows", "admin", body).status_code == 409  # another account: its own budget


# --- contributions and recette --------------------------------------------------------------------------


def test_contribution_is_reviewed(api: Api) -> None:
    square = [lonlat(150, 20), lonlat(200, 20), lonlat(200, 60), lonlat(150, 60), lonlat(150, 20)]
    r = api.post(
        f"{BASE}/contributions",
        "carl",
        {
            "geometry": {"type": "Polygon", "coordinates": [square]},
            "code_cs": "CS2.2.1",
            "code_us": "US1.1",
            "comment": "une prairie, pas un bois",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "submitted" and r.json()["author"] == "carl"
    cid = r.json()["id"]
    listed = api.client.get(f"{BASE}/contributions?status=submitted").json()["features"]
    assert [f["id"] for f in listed] == [cid]
    assert api.client.get(f"{BASE}/contributions?status=accepted").json()["features"] == []
    assert api.client.get(f"{BASE}/contributions?status=bogus").status_code == 422
    review = api.post(
        f"{BASE}/contributions/{cid}/review", "rita", {"status": "accepted", "reason": "vu", "version": 1}
    )
    assert review.status_code == 200, review.text
    assert {k: review.json()[k] for k in ("status", "reviewer", "reason", "version")} == {
        "status": "accepted",
        "reviewer": "rita",
        "reason": "vu",
        "version": 2,
    }
    stale = api.post(f"{BASE}/contributions/{cid}/review", "rita", {"status": "rejected", "version": 1})
    assert stale.status_code == 409
    accepted = api.client.get(f"{BASE}/contributions?status=accepted").json()["features"]
    assert [f["properties"]["reason"] for f in accepted] == ["vu"]
    assert api.client.get(f"{BASE}/progress").json()["contributions"] == {"submitted": 0, "accepted": 1, "rejected": 0}


def test_recette_sample_and_agreement_rate(api: Api) -> None:
    for task_id in FLAGGED:
        version = api.task(task_id)["task"]["properties"]["version"]
        assert api.post(f"{BASE}/tasks/{task_id}/done", "alice", {"version": version}).status_code == 200
    assert api.post(f"{BASE}/recette/sample", "rita", {}).status_code == 422  # neither count nor rate
    r = api.post(f"{BASE}/recette/sample", "rita", {"rate": 1.0, "seed": 1})
    assert r.status_code == 200 and sorted(r.json()["sampled"]) == sorted(FLAGGED)
    first, second = FLAGGED
    v1 = api.task(first)["task"]["properties"]["version"]
    own = api.post(f"{BASE}/tasks/{first}/check", "alice", {"version": v1, "agree": True})
    assert own.status_code == 403  # the second interpreter must be another one
    assert api.post(f"{BASE}/tasks/{first}/check", "bob", {"version": v1, "agree": True}).status_code == 200
    v2 = api.task(second)["task"]["properties"]["version"]
    checked = api.post(f"{BASE}/tasks/{second}/check", "bob", {"version": v2, "agree": False, "comment": "bâti?"})
    assert checked.status_code == 200 and checked.json()["status"] == "checked"
    # a checked task is frozen
    assert api.post(f"{BASE}/tasks/{first}/edits", "alice", reclassify("N_A1", 1)).status_code == 409
    progress = api.client.get(f"{BASE}/progress").json()
    assert progress["by_status"] == {"todo": 0, "done": 0, "checked": 2}
    assert progress["agreement_rate"] == 0.5
    assert progress["by_interpreter"] == {"alice": {"done": 2, "checked": 2, "agreed": 1}}


# --- tokens of an OIDC issuer (Cognito on AWS) ------------------------------------------------------------


def test_rs256_tokens_of_the_oidc_issuer_are_checked_against_its_jwks(
    store: ConsolidationStore,  # noqa: F811
    tmp_path: Path,
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]}))
    issuer = "https://cognito-idp.eu-west-3.amazonaws.com/eu-west-3_test"
    build_territory(open_storage(tmp_path))
    api = make_api(store, tmp_path, oidc_issuer=issuer, oidc_audience="client-123", oidc_jwks_file=str(jwks))

    def token(signer: Any = key, **claims: Any) -> str:
        base = {
            "iss": issuer,
            "sub": "uuid-1",
            "cognito:username": "olga",
            "aud": "client-123",
            "cognito:groups": ["interpreter"],
            "exp": int(time.time()) + 300,
            "token_use": "id",
        }
        payload = {k: v for k, v in (base | claims).items() if v is not None}  # None: claim left out
        return jwt.encode(payload, signer, algorithm="RS256", headers={"kid": "k1"})

    def me(t: str) -> Any:
        return api.client.get("/consolidation/me", headers={"Authorization": f"Bearer {t}"})

    assert me(token()).json() == {"username": "olga", "role": "interpreter", "via": "oidc"}
    # a Cognito access token names the app client in client_id instead of aud
    access = token(aud=None, client_id="client-123", token_use="access")
    assert me(access).status_code == 200
    assert me(token(aud="another-client")).status_code == 401
    assert me(token(iss="https://evil.example")).status_code == 401
    assert me(token(signer=other)).status_code == 401
    assert me(token(exp=int(time.time()) - 10)).status_code == 401
    assert me(token(**{"cognito:groups": ["visitors"]})).status_code == 401
    assert me(token(**{"cognito:groups": ["contributor", "reviewer"]})).json()["role"] == "reviewer"
    # the same code path authorises its writes
    body = {"departement": DEP, "millesime": NEW, "previous_millesime": PREVIOUS, "closes": "2099-12-31"}
    assert (
        api.client.post("/consolidation/windows", json=body, headers={"Authorization": f"Bearer {token()}"}).status_code
        == 403
    )
    admin = token(**{"cognito:groups": ["admin"]})
    assert (
        api.client.post("/consolidation/windows", json=body, headers={"Authorization": f"Bearer {admin}"}).status_code
        == 201
    )
    assert api.store.audit_log()[-1]["actor"] == "olga"


def test_hostile_inputs_get_4xx_never_500(api: Api) -> None:
    """Inputs a careless or hostile client sends: each answered 4xx, never 500, on both engines."""
    point = {"type": "Point", "coordinates": list(lonlat(30, 30))}
    contribution = {"geometry": point, "code_cs": "CS2.2.1", "code_us": "US1.1"}
    edits = f"{BASE}/tasks/{FLAGGED[0]}/edits"
    posts: list[tuple[str, str | None, Any]] = [
        (edits, "alice", reclassify("N_A1", 10**30)),
        (edits, "alice", reclassify("N_A1", -1)),
        (edits, "alice", reclassify("N\x00A1", 1)),
        (
            edits,
            "alice",
            {
                "action": "split",
                "polygon_id": "N_A1",
                "version": 1,
                "line": {"type": "LineString", "coordinates": [lonlat(0, 0)]},
                "codes": [{"code_cs": "CS2.2.1", "code_us": "US1.1"}] * 2,
            },
        ),
        (
            edits,
            "alice",
            {
                "action": "split",
                "polygon_id": "N_A1",
                "version": 1,
                "line": {"type": "LineString", "coordinates": [[1e308, 1e308], [-1e308, 0]]},
                "codes": [{"code_cs": "CS2.2.1", "code_us": "US1.1"}] * 2,
            },
        ),
        (edits, "alice", [1, 2, 3]),
        (edits, "alice", "reclassify"),
        (f"{BASE}/contributions", "carl", contribution | {"comment": "nul \x00 byte"}),
        (f"{BASE}/contributions", "carl", contribution | {"geometry": {"type": "Polygon", "coordinates": [[[0, 0]]]}}),
        (f"{BASE}/contributions", "carl", contribution | {"geometry": {"type": "Polygon", "coordinates": 5}}),
        (f"{BASE}/contributions", "carl", contribution | {"geometry": {"type": "Point", "coordinates": [[[[[1]]]]]}}),
        (f"{BASE}/contributions", "carl", contribution | {"code_cs": "x" * 5000}),
        (f"{BASE}/contributions/nope/review", "rita", {"status": "accepted"}),
        (f"{BASE}/contributions/nope/review", "rita", {"status": "submitted"}),
        (f"{BASE}/recette/sample", "rita", {"count": 10**12}),
        (f"{BASE}/recette/sample", "rita", {"rate": 2, "seed": -5}),
        (f"{BASE}/tasks/{FLAGGED[0]}/check", "bob", {"version": 1, "agree": True}),
        (
            "/consolidation/windows",
            "admin",
            {"departement": "\x00", "millesime": 2024, "previous_millesime": 2021, "closes": "2099-01-01"},
        ),
        (
            "/consolidation/windows",
            "admin",
            {"departement": "77", "millesime": 2024, "previous_millesime": 2021, "closes": "2099-01-01"},
        ),
        (
            "/consolidation/windows",
            "admin",
            {"departement": DEP, "millesime": 2021, "previous_millesime": 2024, "closes": "2099-01-01"},
        ),
        (
            "/consolidation/windows",
            "admin",
            {"departement": DEP, "millesime": 2099, "previous_millesime": 2021, "closes": "2000-01-01"},
        ),
        ("/consolidation/auth/login", None, {"username": "a\x00b", "password": "x"}),
        ("/consolidation/auth/login", None, {"username": "alice"}),
    ]
    for path, who, body in posts:
        r = api.post(path, who, body)
        assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
    gets = [
        f"{BASE}/tasks/a%00b",
        f"{BASE}/tasks/{'x' * 500}",
        "/consolidation/%00/2024/tasks",
        "/consolidation/S01/99999999999999999999/tasks",
        f"{BASE}/contributions?status=%00",
        "/consolidation/../../etc/passwd",
        f"{BASE}/tasks?status=todo&status=done",
    ]
    for path in gets:
        r = api.client.get(path)
        assert r.status_code < 500, (path, r.status_code, r.text)
    for header in ("Bearer", "Bearer ", "Bearer a.b.c", "Bearer " + "A" * 10000, "Basic YWxpY2U6eA=="):
        r = api.client.get("/consolidation/me", headers={"Authorization": header})
        assert r.status_code == 401, (header[:20], r.text)
    r = api.client.get("/consolidation/me", cookies={"ocsge_session": "\x7fgarbage"})
    assert r.status_code == 401


def test_logins_are_rate_limited_per_address(store: ConsolidationStore, tmp_path: Path) -> None:  # noqa: F811
    api = make_api(store, tmp_path, logins_per_minute=3)
    answers = [
        api.client.post("/consolidation/auth/login", json={"username": "alice", "password": f"guess {n}"})
        for n in range(4)
    ]
    assert [r.status_code for r in answers] == [401, 401, 401, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    # even the right password waits: a guesser cannot tell it found it
    right = api.client.post("/consolidation/auth/login", json={"username": "alice", "password": PASSWORD})
    assert right.status_code == 429


def test_a_closed_window_takes_no_more_contributions_or_edits(api: Api) -> None:
    with api.store.tx() as tx:  # the window's last day was yesterday
        tx.execute("UPDATE windows SET closes = ? WHERE id = ?", ("2020-01-01", f"{DEP}-{NEW}"))
    before = snapshot(api)
    point = {"type": "Point", "coordinates": list(lonlat(30, 30))}
    late = api.post(f"{BASE}/contributions", "carl", {"geometry": point, "code_cs": "CS2.2.1", "code_us": "US1.1"})
    assert late.status_code == 409 and "closed" in late.json()["detail"]
    assert api.post(f"{BASE}/tasks/{FLAGGED[0]}/edits", "alice", reclassify("N_A1", 1)).status_code == 409
    assert api.post(f"{BASE}/tasks/{FLAGGED[0]}/done", "alice", {"version": 1}).status_code == 409
    assert snapshot(api) == before
