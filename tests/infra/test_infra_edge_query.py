"""The CloudFront Function that normalises WMTS/WMS query strings, run in Node as CloudFront would run it."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from infra.edge_query import (
    DROPPED_HEADERS,
    OGC_KEYS,
    forward_host_function_code,
    forwarded_headers,
    normalise_query,
    ogc_function_code,
)

node = shutil.which("node")
needs_node = pytest.mark.skipif(node is None, reason="node is not installed (it is needed by CDK anyway)")


def _run(code: str, event: dict) -> dict:
    script = code + "\nconsole.log(JSON.stringify(handler(" + json.dumps(event) + ")));\n"
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True, timeout=30)  # type: ignore[list-item]
    return json.loads(out.stdout)


def _event(query: dict[str, list[str]], host: str = "tiles.example.org",
           headers: dict[str, str] | None = None) -> dict:
    qs = {}
    for name, values in query.items():
        qs[name] = {"value": values[0]}
        if len(values) > 1:
            qs[name]["multiValue"] = [{"value": v} for v in values]
    return {"version": "1.0", "context": {"eventType": "viewer-request"},
            "request": {"method": "GET", "uri": "/wmts", "querystring": qs,
                        "headers": {"host": {"value": host}, **{k: {"value": v} for k, v in (headers or {}).items()}},
                        "cookies": {}}}


CASES = [
    # case variants fold to one cache key; unknown keys (cache busters, vendor options) are dropped
    {"service": ["WMTS"], "Request": ["GetTile"], "LAYER": ["OCSGE.COUVERTURE.2021-2023"], "style": ["normal"],
     "TileMatrixSet": ["PM"], "tilematrix": ["14"], "TILEROW": ["5000"], "tilecol": ["8000"],
     "format": ["image/png"], "_": ["123456"]},
    {"SERVICE": ["WMS"], "request": ["GetMap"], "layers": ["OCSGE.USAGE.2021-2023"], "STYLES": [""],
     "crs": ["EPSG:3857"], "bbox": ["0,0,1,1"], "Width": ["256"], "height": ["256"], "FORMAT": ["image/png"],
     "Transparent": ["TRUE"], "VERSION": ["1.3.0"], "random": ["x"]},
    {"layer": ["A", "B"], "LAYER": ["C"]},  # repeated keys: the first value wins
    {},
]


@needs_node
@pytest.mark.parametrize("query", CASES)
def test_function_matches_python_twin(query: dict[str, list[str]]) -> None:
    request = _run(ogc_function_code(), _event(query))
    got = {k: v["value"] for k, v in request["querystring"].items()}
    assert got == normalise_query(query)
    assert list(got) == sorted(got)  # a canonical order
    assert all(k == k.upper() for k in got)
    assert request["headers"]["x-forwarded-host"] == {"value": "tiles.example.org"}


def test_case_variants_share_a_cache_key() -> None:
    a = normalise_query({"service": ["WMTS"], "layer": ["X"], "tilematrix": ["3"]})
    b = normalise_query({"TILEMATRIX": ["3"], "Layer": ["X"], "SERVICE": ["WMTS"], "foo": ["bar"]})
    assert a == b == {"LAYER": "X", "SERVICE": "WMTS", "TILEMATRIX": "3"}


def test_allow_list_covers_wmts_and_wms_requests() -> None:
    for key in ("SERVICE", "REQUEST", "VERSION", "LAYER", "STYLE", "TILEMATRIXSET", "TILEMATRIX", "TILEROW",
                "TILECOL", "FORMAT", "LAYERS", "STYLES", "CRS", "SRS", "BBOX", "WIDTH", "HEIGHT", "TRANSPARENT",
                "QUERY_LAYERS", "INFO_FORMAT", "I", "J", "INFOFORMAT", "TIME"):
        assert key in OGC_KEYS


@needs_node
def test_function_fits_cloudfront_limits() -> None:
    """CloudFront Functions: 10 KB of code; cloudfront-js-2.0 is ES 5.1 plus a few ES6 features (no let/const
    needed here)."""
    for code in (ogc_function_code(), forward_host_function_code()):
        assert len(code.encode()) < 10_240
        assert "let " not in code and "const " not in code and "=>" not in code
    request = _run(forward_host_function_code(), _event({"a": ["1"]}, host="x.example"))
    assert request["querystring"] == {"a": {"value": "1"}}
    assert request["headers"]["x-forwarded-host"] == {"value": "x.example"}


# --- forwarding headers (issue: STAC link poisoning through Forwarded / X-Forwarded-Host) ------------------

HOSTILE = {
    "forwarded": "for=1.2.3.4;host=evil.example;proto=http",
    "x-forwarded-host": "evil.example",
    "x-forwarded-port": "8443",
    "x-forwarded-prefix": "/evil",
    "accept": "application/json",
}


@needs_node
@pytest.mark.parametrize("code", [ogc_function_code(), forward_host_function_code()], ids=["ogc", "host"])
@pytest.mark.parametrize(
    ("host", "headers", "expected"),
    [
        ("ocsge.example.org", HOSTILE, "ocsge.example.org"),
        ("D123.CloudFront.net:443", HOSTILE, "d123.cloudfront.net"),  # port dropped, lower case: one cache key
        ("ocsge.example.org", {}, "ocsge.example.org"),
        ("ocsge.example.org", {"Forwarded": "host=evil.example"}, "ocsge.example.org"),  # any case from tests
    ],
)
def test_only_the_forwarding_header_cloudfront_writes_reaches_the_origin(
    code: str, host: str, headers: dict[str, str], expected: str
) -> None:
    """X-Forwarded-Host is set from the viewer's Host (the client's value overwritten); the client's Forwarded,
    X-Forwarded-Port and the like are deleted; other headers pass untouched."""
    lowered = {k.lower(): v for k, v in headers.items()}  # CloudFront gives functions lower-case names
    request = _run(code, _event({"a": ["1"]}, host=host, headers=lowered))
    got = {k: v["value"] for k, v in request["headers"].items()}
    assert got["x-forwarded-host"] == expected
    assert not set(got) & set(DROPPED_HEADERS)
    assert got == forwarded_headers({"host": host, **lowered})  # the Python twin agrees
    if "accept" in lowered:
        assert got["accept"] == "application/json"


@needs_node
def test_no_host_no_forwarded_host() -> None:
    event = _event({}, headers={"x-forwarded-host": "evil.example"})
    del event["request"]["headers"]["host"]
    for code in (ogc_function_code(), forward_host_function_code()):
        assert "x-forwarded-host" not in _run(code, event)["headers"]
