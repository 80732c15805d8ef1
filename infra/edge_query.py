"""Cache-key normalisation of OGC KVP requests (``/wmts``, ``/wms``) at the CloudFront edge.

OGC clients spell the same request many ways (``LAYER``/``layer``/``Layer``, any key order, extra
vendor or cache-busting keys), which splits the cache. A CloudFront Function on viewer request keeps
only the keys of this allow-list, renames every case variant to its canonical upper-case name, keeps
the first value of a repeated key and sorts the keys; the cache policy of these behaviours then keys
on the whole (normalised) query string. The allow-list lives in the function, not in the cache policy,
because a cache policy holds at most 10 query-string names (a CloudFront quota) and WMS alone needs 20.

OGC parameter *names* are case-insensitive, *values* are case-sensitive (WMS 1.3.0 §6.8.1): values
are passed through untouched. The services therefore receive upper-case keys only.

Forwarding headers. The HTTP API origin is reached under its own host name (CloudFront does not forward
the viewer's ``Host``), so the services learn the public host from ``X-Forwarded-Host``. Both functions
here (the OGC one and the one on every other API behaviour) *set* it from the viewer's ``Host``, port
removed and lower-cased, overwriting whatever the client sent, and delete the client's ``Forwarded`` and
``X-Forwarded-Port`` (a ``Forwarded: host=…`` would otherwise win over ``X-Forwarded-Host`` in
stac-fastapi's proxy middleware and poison links). ``X-Forwarded-Proto`` is a header CloudFront does not
let edge functions see or add; API Gateway writes its own (``https``: CloudFront reaches it over HTTPS
only) into the Lambda event. The API cache policies key on ``X-Forwarded-Host`` (infra.cdn).
"""

from __future__ import annotations

import json
import re

# The one forwarding header that reaches the services from CloudFront (and a cache-key header).
FORWARDED_HOST_HEADER = "X-Forwarded-Host"
# Client headers the functions delete: they could name another host or port than the viewer's.
DROPPED_HEADERS = ("forwarded", "x-forwarded-port", "x-forwarded-prefix", "x-forwarded-server", "x-original-host")

WMTS_KEYS = (
    "SERVICE", "REQUEST", "VERSION", "ACCEPTVERSIONS", "SECTIONS", "UPDATESEQUENCE", "ACCEPTFORMATS",
    "LAYER", "STYLE", "FORMAT", "TILEMATRIXSET", "TILEMATRIX", "TILEROW", "TILECOL",
    "I", "J", "INFOFORMAT", "TIME",
)
WMS_KEYS = (
    "SERVICE", "REQUEST", "VERSION", "LAYERS", "STYLES", "CRS", "SRS", "BBOX", "WIDTH", "HEIGHT",
    "FORMAT", "TRANSPARENT", "BGCOLOR", "EXCEPTIONS", "TIME", "ELEVATION", "SLD_VERSION",
    "QUERY_LAYERS", "INFO_FORMAT", "FEATURE_COUNT", "I", "J", "X", "Y", "DPI", "MAP_RESOLUTION", "FORMAT_OPTIONS",
    "LAYER",  # GetLegendGraphic
    "SCALE", "SLD",
)
OGC_KEYS: tuple[str, ...] = tuple(dict.fromkeys(WMTS_KEYS + WMS_KEYS))


def normalise_query(query: dict[str, list[str]]) -> dict[str, str]:
    """Python twin of the edge function (what the origin and the cache see), for tests and docs."""
    out: dict[str, str] = {}
    canonical = {key.lower(): key for key in OGC_KEYS}
    for name, values in query.items():
        key = canonical.get(name.lower())
        if key is not None and key not in out and values:
            out[key] = values[0]
    return dict(sorted(out.items()))


_TEMPLATE = """\
var KEYS = %(keys)s;
function handler(event) {
  var request = event.request;
  var query = request.querystring;
  var kept = {};
  var names = Object.keys(query);
  for (var i = 0; i < names.length; i++) {
    var key = KEYS[names[i].toLowerCase()];
    if (key === undefined || kept[key] !== undefined) { continue; }
    var item = query[names[i]];
    var value = item.multiValue && item.multiValue.length ? item.multiValue[0].value : item.value;
    kept[key] = { value: value };
  }
  var sorted = {};
  var keys = Object.keys(kept).sort();
  for (var j = 0; j < keys.length; j++) { sorted[keys[j]] = kept[keys[j]]; }
  request.querystring = sorted;
  return forwarding(request);
}
"""

# Shared by both functions: the only forwarding header the origin gets is the one written here.
_FORWARDING = """\
var DROPPED = %(dropped)s;
function forwarding(request) {
  var headers = request.headers;
  for (var i = 0; i < DROPPED.length; i++) { delete headers[DROPPED[i]]; }
  if (headers.host && headers.host.value) {
    headers['x-forwarded-host'] = { value: headers.host.value.replace(/:[0-9]*$/, '').toLowerCase() };
  } else {
    delete headers['x-forwarded-host'];
  }
  return request;
}
"""

_FORWARD_HOST = """\
function handler(event) {
  return forwarding(event.request);
}
"""


def _forwarding_code() -> str:
    return _FORWARDING % {"dropped": json.dumps(list(DROPPED_HEADERS))}


def forwarded_headers(headers: dict[str, str]) -> dict[str, str]:
    """Python twin of the header rewrite (lower-case names, as CloudFront gives them), for tests and docs."""
    out = {k: v for k, v in headers.items() if k not in DROPPED_HEADERS and k != "x-forwarded-host"}
    host = headers.get("host")
    if host:
        out["x-forwarded-host"] = re.sub(r":[0-9]*$", "", host).lower()
    return out


def ogc_function_code() -> str:
    """JavaScript (cloudfront-js-2.0) of the OGC normaliser, generated from :data:`OGC_KEYS`."""
    keys = {key.lower(): key for key in OGC_KEYS}
    return _forwarding_code() + _TEMPLATE % {"keys": json.dumps(keys, sort_keys=True)}


def forward_host_function_code() -> str:
    """JavaScript of the function on the other API behaviours (and the catalogue files): the forwarding
    headers only."""
    return _forwarding_code() + _FORWARD_HOST
