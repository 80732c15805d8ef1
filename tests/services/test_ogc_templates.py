"""The OGC documents come from autoescaped Jinja2 templates: a hostile value that reaches one (a public URL
built from the request's Host, a layer title with markup, a client's parameter echoed in an exception)
leaves the document well-formed, and reads back exactly as it went in."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest

from services.ogc import featureinfo, kvp, wms, wmts
from services.tiles.layers import Layer
from services.tiles.mosaic import LayerInfo
from services.tiles.render import PixelInfo

BASE = "https://evil\"<host>&'x.example/a b"  # what a forged Host / X-Forwarded-Host could make of base_url
TITLE = "<b>Titre</b> & \"cité\" 'x' ]]> <!-- -->"
LAYER_ID = "OCSGE.COUVERTURE.2021-2023<&>'\""
NS = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1",
      "xlink": "http://www.w3.org/1999/xlink", "wms": "http://www.opengis.net/wms"}
HREF = "{http://www.w3.org/1999/xlink}href"


@dataclass(frozen=True)
class HostileLayer(Layer):
    @property
    def title(self) -> str:
        return TITLE

    @property
    def abstract(self) -> str:
        return f"{TITLE} <script>alert(1)</script>"


def hostile_info() -> LayerInfo:
    layer = HostileLayer(id=LAYER_ID, kind="COUVERTURE", campaign="2021-2023", minzoom=14, maxzoom=15)
    return LayerInfo(layer=layer, assets=(), bounds=(2.3, 48.8, 2.4, 48.9), departements=("75",), legend=(),
                     colormap={})


def parse(document: str) -> ET.Element:
    assert "<b>" not in document and "<script>" not in document
    return ET.fromstring(document.encode())


def test_wmts_capabilities_escape_base_and_title() -> None:
    root = parse(wmts.capabilities_xml([hostile_info()], BASE))
    layer = root.find("w:Contents/w:Layer", NS)
    assert layer is not None
    assert layer.findtext("ows:Title", namespaces=NS) == TITLE
    assert layer.findtext("ows:Identifier", namespaces=NS) == LAYER_ID
    assert root.find("ows:ServiceProvider/ows:ProviderSite", NS).attrib[HREF] == BASE + "/"
    templates = [r.attrib["template"] for r in layer.findall("w:ResourceURL", NS)]
    assert templates and all(t.startswith(f"{BASE}/wmts/1.0.0/{LAYER_ID}/{{Style}}/") for t in templates)
    legends = [u.attrib[HREF] for u in layer.findall("w:Style/w:LegendURL", NS)]
    assert legends[0] == f"{BASE}/tiles/{LAYER_ID}/legend.png"
    # numbers are written as before: TopLeftCorner at full precision, ScaleDenominator via repr
    pm = root.find("w:Contents/w:TileMatrixSet", NS)
    assert pm.findtext("w:TileMatrix/w:TopLeftCorner", namespaces=NS) == "-20037508.342789244 20037508.342789244"
    assert pm.findtext("w:TileMatrix/w:ScaleDenominator", namespaces=NS) == repr(
        wmts.tms_registry.get("PM").matrix(0).scaleDenominator)


@pytest.mark.parametrize("version", ["1.3.0", "1.1.1"])
def test_wms_capabilities_escape_base_and_title(version: str) -> None:
    root = parse(wms.capabilities_xml([hostile_info()], BASE, version))
    ns = NS if version == "1.3.0" else {"wms": ""}
    layer = root.find("wms:Capability/wms:Layer/wms:Layer", ns)
    assert layer is not None
    assert layer.findtext("wms:Title", namespaces=ns) == TITLE
    assert layer.findtext("wms:Name", namespaces=ns) == LAYER_ID
    online = root.find("wms:Service/wms:OnlineResource", ns)
    assert online.attrib[HREF] == BASE + "/wms?"
    legend = layer.find("wms:Style/wms:LegendURL/wms:OnlineResource", ns).attrib[HREF]
    assert legend == (f"{BASE}/wms?SERVICE=WMS&VERSION={version}&REQUEST=GetLegendGraphic&LAYER={LAYER_ID}"
                      "&FORMAT=image/png&STYLE=normal")


def test_exception_reports_escape_code_locator_and_message() -> None:
    error = kvp.OgcError("Code<&>\"'", f"LAYER={TITLE!r} is unknown", locator="LAYER\"<&>'")
    for response in (kvp.ows_exception(error), kvp.wms_exception(error, "1.3.0"), kvp.wms_exception(error, "1.1.1")):
        root = parse(response.body.decode())
        exception = root[0]
        assert exception.attrib.get("exceptionCode", exception.attrib.get("code")) == error.code
        assert exception.attrib["locator"] == error.locator
        assert "".join(exception.itertext()).strip() == error.message


def test_feature_info_html_escapes_values() -> None:
    pixel = PixelInfo(layer=LAYER_ID, value=3, code="CS1.1.1.1", label=TITLE, colour="#ff0000\"><b>x</b>",
                      departement="75", millesime="2021", asset="a")
    body = featureinfo.feature_info_response([(LAYER_ID, pixel), ("<b>none</b>", None)], "text/html").body.decode()
    assert "<b>" not in body and "&lt;b&gt;Titre&lt;/b&gt;" in body and "&lt;b&gt;none&lt;/b&gt;" in body
