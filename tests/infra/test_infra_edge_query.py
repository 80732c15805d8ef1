"""The CloudFront Function that normalises WMTS/WMS query strings, run in Node as CloudFront would run it."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from infra.edge_query import OGC_KEYS, forward_host_function_code, normalise_query, ogc_function_code

node = shutil.which("node")
needs_node = pytest.mark.skipif(node is None, reason="node is not installed (it is needed by CDK anyway)")


def _run(code: str, event: dict) -> dict:
    script = code + "\nconsole.log(JSON.stringify(handler(" + json.dumps(event) + ")));\n"
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True, timeout=30)  # type: ignore[list-item]
    return json.loads(out.stdout)


def _event(query: dict[str, list[str]], host: str = "tiles.example.org") -> dict:
    qs = {}
    for name, values in query.items():
        qs[name] = {"value": values[0]}
        if len(values) > 1:
            qs[name]["multiValue"] = [{"value": v} for v in values]
    return {"version": "1.0", "context": {"eventType": "viewer-request"},
            "request": {"method": "GET", "uri": "/wmts", "querystring": qs, "headers": {"host": {"value": host}},
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
