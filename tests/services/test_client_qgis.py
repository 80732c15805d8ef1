"""PyQGIS (Debian ``qgis``/``python3-qgis`` 3.22, headless with ``QT_QPA_PLATFORM=offscreen``) against the
server on 127.0.0.1: QGIS loads our WMTS in ``PM``, the Géoplateforme's ``PM_6_16`` and ``LAMB93``, our WMS,
and the vector tiles styled by our MapLibre style through QGIS's own converter (``QgsMapBoxGlStyleConverter``,
the one *Add vector tile layer → style URL* uses), renders each to an image, and the pixels at the four
quadrant centres must carry the official colours (the vector style in colour, not the converter's grey).

QGIS runs in the system Python (``/usr/bin/python3``, where Debian installs ``qgis``), in a subprocess; the
test is skipped when that Python has no ``qgis`` (scripts/setup.sh installs it)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from svc_territory import DEP, ORIGIN, PIXEL, QUADRANTS, SIZE, quadrant_centre_l93

from ocsge.nomenclature import COUVERTURE

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
SYSTEM_PYTHON = "/usr/bin/python3"
LAYER = "OCSGE.COUVERTURE.2021-2023"
FILL_OPACITY = 0.85  # services.vector.style: fill-opacity of the polygons, over a white background

SCRIPT = r'''
import json, sys
from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform,
                       QgsMapRendererSequentialJob, QgsMapSettings, QgsMapBoxGlStyleConversionContext,
                       QgsMapBoxGlStyleConverter, QgsPointXY, QgsProject, QgsRasterLayer, QgsRectangle,
                       QgsVectorTileLayer)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor
import urllib.request

args = json.loads(sys.argv[1])
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
out = {"qgis": __import__("qgis.core", fromlist=["Qgis"]).Qgis.QGIS_VERSION, "layers": {}}
l93 = QgsCoordinateReferenceSystem("EPSG:2154")


def render(name, layer, crs):
    result = {"valid": layer.isValid(), "error": layer.error().summary() if not layer.isValid() else ""}
    out["layers"][name] = result
    if not layer.isValid():
        return
    dest = QgsCoordinateReferenceSystem(crs)
    to_dest = QgsCoordinateTransform(l93, dest, QgsProject.instance())
    x0, y0, x1, y1 = args["bbox_l93"]
    extent = to_dest.transformBoundingBox(QgsRectangle(x0, y0, x1, y1))
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(dest)
    settings.setOutputSize(QSize(512, 512))
    settings.setExtent(extent)
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    image.save(f"{args['out']}/qgis-{name}.png")
    result["errors"] = [e.message for e in job.errors()]
    result["pixels"] = {}
    m2p = settings.mapToPixel()
    for q, (x, y) in args["quadrants_l93"].items():
        p = m2p.transform(to_dest.transform(QgsPointXY(x, y)))
        c = QColor(image.pixel(int(p.x()), int(p.y())))
        result["pixels"][q] = [c.red(), c.green(), c.blue()]


caps = args["url"] + "/wmts?SERVICE%3DWMTS%26REQUEST%3DGetCapabilities"
for tms, crs in (("PM", "EPSG:3857"), ("PM_6_16", "EPSG:3857"), ("LAMB93", "EPSG:2154")):
    uri = (f"contextualWMSLegend=0&crs={crs}&dpiMode=7&format=image/png&layers={args['layer']}&styles=normal"
           f"&tileMatrixSet={tms}&url={caps}")
    render(f"wmts-{tms}", QgsRasterLayer(uri, f"wmts {tms}", "wms"), crs)

uri = f"crs=EPSG:2154&dpiMode=7&format=image/png&layers={args['layer']}&styles=normal&url={args['url']}/wms"
render("wms", QgsRasterLayer(uri, "wms", "wms"), "EPSG:2154")

vt = QgsVectorTileLayer(f"type=xyz&url={args['url']}/vector/occupation/{args['dep']}/2021/%7Bz%7D/%7Bx%7D/%7By%7D.mvt"
                        "&zmin=8&zmax=15", "vector tiles")
style = json.load(urllib.request.urlopen(f"{args['url']}/vector/occupation/{args['dep']}/2021/style.json"))
converter = QgsMapBoxGlStyleConverter()
context = QgsMapBoxGlStyleConversionContext()
converter.convert(style, context)
vt.setRenderer(converter.renderer())
if converter.labeling():
    vt.setLabeling(converter.labeling())
out["converter_warnings"] = list(converter.warnings())
render("vector", vt, "EPSG:3857")

print("RESULT" + json.dumps(out))
app.exitQgis()
'''


def system_qgis() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True, env=env, timeout=60)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def qgis_result(tiles_server, tmp_path_factory):
    if not system_qgis():
        pytest.skip("PyQGIS not installed in the system Python (apt-get install qgis python3-qgis; scripts/setup.sh)")
    out = tmp_path_factory.mktemp("qgis")
    side = SIZE * PIXEL
    args = {"url": tiles_server.url, "layer": LAYER, "dep": DEP, "out": str(out),
            "bbox_l93": [ORIGIN[0], ORIGIN[1] - side, ORIGIN[0] + side, ORIGIN[1]],
            "quadrants_l93": {q: list(quadrant_centre_l93(q)) for q in ("NW", "NE", "SW", "SE")}}
    script = out / "render.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(out), QGIS_CUSTOM_CONFIG_PATH=str(out / "profile"))
    proc = subprocess.run([SYSTEM_PYTHON, str(script), json.dumps(args)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=out)
    line = next((li for li in proc.stdout.splitlines() if li.startswith("RESULT")), None)
    assert line, (proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for png in out.glob("qgis-*.png"):
        png.replace(ARTIFACTS / png.name)
    return json.loads(line[len("RESULT"):])


def close(got: list[int], expected: tuple[int, int, int], tol: int = 2) -> bool:
    return max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= tol


@pytest.mark.parametrize("name", ["wmts-PM", "wmts-PM_6_16", "wmts-LAMB93", "wms"])
def test_qgis_renders_wmts_and_wms_in_the_official_colours(qgis_result, name):
    layer = qgis_result["layers"][name]
    assert layer["valid"], layer["error"]
    assert not layer["errors"], layer["errors"]
    for q, rgb in layer["pixels"].items():
        assert close(rgb, COUVERTURE[QUADRANTS[2021][q]].rgb), (name, q, rgb, qgis_result["qgis"])


def test_qgis_renders_the_maplibre_style_in_colour(qgis_result):
    """QGIS 3.22's MapLibre converter reads our ``match`` (one-element array labels) and draws each class in
    its official colour, at the style's fill opacity over white — not all polygons in the fallback grey."""
    layer = qgis_result["layers"]["vector"]
    assert layer["valid"], layer["error"]
    for q, rgb in layer["pixels"].items():
        expected = tuple(round(FILL_OPACITY * c + (1 - FILL_OPACITY) * 255) for c in COUVERTURE[QUADRANTS[2021][q]].rgb)
        assert close(rgb, expected, tol=3), (q, rgb, expected, qgis_result["converter_warnings"])
    assert len({tuple(rgb) for rgb in layer["pixels"].values()}) == 4

