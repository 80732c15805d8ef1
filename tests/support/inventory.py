"""The URL inventory of a storage root (issue 18): every file under it, which of them ``/files`` and
``/downloads`` answer, and which the catalogue's assets point at — shared by the service test and the
end-to-end demo test."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from ocsge.products import parse_key


def every_file(root: Path) -> list[str]:
    """Every file really under the root (hidden temporary files and links included), as a key."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


def reachable(client: TestClient, keys: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"files": set(), "downloads": set()}
    for key in keys:
        resp = client.get(f"/files/{key}")
        assert resp.status_code in (200, 404), (key, resp.status_code)
        assert b"root:x" not in resp.content
        if resp.status_code == 200:
            out["files"].add(key)
        parsed = parse_key(key)
        dep = parsed.departement if parsed else "S01"
        resp = client.get(f"/downloads/{dep}/{key.rsplit('/', 1)[-1]}")
        assert resp.status_code in (200, 404), (key, resp.status_code)
        if resp.status_code == 200:
            out["downloads"].add(key)
    return out


def catalogued_keys(client: TestClient, keys: list[str]) -> set[str]:
    """Keys that some asset of the catalogue points at, read through the STAC API as a client would."""
    hrefs: set[str] = set()
    url: str | None = "/stac/search?limit=100"
    while url:
        page = client.get(url).json()
        hrefs |= {a["href"] for item in page["features"] for a in item["assets"].values()}
        url = next((lk["href"] for lk in page.get("links", []) if lk["rel"] == "next"), None)
    return {k for k in keys if any(h == k or h.endswith("/" + k) for h in hrefs)}
